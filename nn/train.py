"""`numbanet train cnn|rnn|crnn`: train a model end to end on the best device present.

Writes to --output (default runs/<model>-<time>): metrics.json, history.jsonl, curves.png and
checkpoint.npz (after every epoch, atomically). --resume continues a run and ends with the same
weights as an uninterrupted run of the same seed on the CPU; Ctrl-C writes a checkpoint first.
With --ema DECAY (off by default) an exponential moving average of the weights
(nn.swa_utils.AveragedModel) is updated after every step; validation, the test metrics and
`numbanet evaluate/predict` then use the averaged weights.
Also runnable as `python -m nn.train MODEL ...`.

Here: the run itself (build, training_step, record_kernels, Run) and the entry point (train_main). The
command line (defaults, parser, settings, device, UsageError) is in nn/train_cli.py, the curves.png plot in
nn/train_curves.py, an epoch's loss and accuracy sums (RunningTotals) in nn/train_totals.py; their names are
importable from here too.
"""
import copy
import glob
import json
import os
import signal
import sys
import tempfile
import time
import warnings

import numpy as np

from kernels import backend

from . import checkpoint, data, init, layers, optim, recurrent
from .capture import capture
from .swa_utils import AveragedModel, get_ema_multi_avg_fn
from .tasks import EvaluationForward, make_task
from .train_cli import (DEFAULTS, UsageError, _cli, blas_threads, build_parser, explicit_settings, resolve_device,
                        settings_from_args)
from .train_curves import plot_curves
from .train_totals import RunningTotals
from .utils import clip_grad_norm_

CHECKPOINT_NAME = "checkpoint.npz"
RUN_FILES = (CHECKPOINT_NAME, "history.jsonl", "metrics.json", "curves.png")   # what a run writes into --output


class TrainingInterrupted(Exception):
    """Raised at a safe point after Ctrl-C: the run's state is whole, and the checkpoint may be written."""


class DeferredInterrupt:
    """Ctrl-C during training takes effect at the next safe point: after a whole step (its batch counted) or after
    an epoch's validation and checkpoint. A KeyboardInterrupt raised inside a step would leave its weights, batch
    norm statistics or optimizer moments changed but the batch uncounted, and --resume would then run that batch
    twice. A second Ctrl-C stops at once (nothing more is written). Only where Python's own handler is in place
    (a process started with SIGINT ignored keeps ignoring it; a thread other than the main one cannot set one)."""

    def __init__(self):
        self.requested, self._previous = False, None

    def __enter__(self):
        try:
            if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:   # not the main thread
            pass
        return self

    def __exit__(self, *exc_info):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nnumbanet: stopping after this step to write a checkpoint (Ctrl-C again to stop at once, without "
              "one)", file=sys.stderr, flush=True)


def build(settings):
    """Task, model, optimizer and scheduler for these settings, initialised from the seed."""
    init.manual_seed(settings["seed"])
    task = make_task(settings)
    model = task.build_model()
    optimizer = optim.Adam(model.parameters(), lr=settings["lr"], flat=True)   # one update launch on the GPU
    # warm_up (a linear rise of the lr over the first epoch) is a per-model default, not a flag
    warm_up = DEFAULTS.get(settings["model"], {}).get("warm_up", False)
    schedule = optim.lr_scheduler.WarmupCosineAnnealingLR if warm_up else optim.lr_scheduler.CosineAnnealingLR
    scheduler = schedule(optimizer, T_max=settings["epochs"])
    return task, model, optimizer, scheduler


def training_step(task, model, optimizer, clip, arrays):
    """One optimisation step on one minibatch (device arrays): (loss Tensor, correct count or None)."""
    optimizer.zero_grad()
    loss, correct = task.step_loss(model, *arrays)
    loss.backward()
    if clip > 0:
        clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    return loss, correct


def record_kernels(model, task, settings, split, device):
    """The (kernel, argument types) that a training step and a validation batch of `model` launch on
    `device`, recorded, not launched (kernels/cuda/compile_ahead.py `recording`), on a twin of the model with
    an optimizer of its own and batches from `split`. Nothing is touched: not `model`, not `task`, not the
    random generators. A step that fails on the garbage the skipped launches leave is cut short, with a
    warning: what it recorded so far is returned. With --ema, the averaging of the weights is recorded too."""
    from kernels.cuda import compile_ahead
    cupy = backend.cupy_module()
    saved_rng = init.rng_state()
    saved_cupy_rng = cupy.random.get_random_state() if cupy is not None else None
    if cupy is not None:   # (the twin's dropout masks are drawn from a generator of their own)
        cupy.random.set_random_state(cupy.random.RandomState(0))
    records = []
    try:
        twin = copy.deepcopy(model)
        optimizer = optim.Adam(twin.parameters(), lr=settings["lr"], flat=True)
        twin_task = copy.copy(task)
        twin_task._evaluation_forward = EvaluationForward._forward   # eager: nothing is captured while recording
        count = min(settings["batch_size"], len(split))
        subset = data.Split(split.inputs[:count], split.labels[:count],
                            None if split.label_lengths is None else split.label_lengths[:count])
        arrays = [backend.to_device(a, device) for a in twin_task.batch_arrays(subset, np.arange(count))]
        with compile_ahead.recording() as records, np.errstate(all="ignore"):   # (host work on garbage: overflows)
            twin.train()
            training_step(twin_task, twin, optimizer, settings["clip"], arrays)
            twin.eval()
            twin_task.evaluate(twin, subset, device)
            if settings.get("ema"):   # the first update copies; the second averages, as every later step
                averaged = AveragedModel(twin, multi_avg_fn=get_ema_multi_avg_fn(settings["ema"]))
                averaged.update_parameters(twin)
                averaged.update_parameters(twin)
    except Exception as error:
        warnings.warn(f"numbanet: recording the kernels of a step stopped early ({error!r}); those it did not "
                      f"reach compile at their first launch", RuntimeWarning, stacklevel=2)
    finally:
        init.set_rng_state(saved_rng)
        if cupy is not None:
            cupy.random.set_random_state(saved_cupy_rng)
    return records


def _has_dropout(module):
    if isinstance(module, layers.Dropout):
        return module.p > 0
    return isinstance(module, recurrent._RecurrentBase) and module.num_layers > 1 and module.dropout > 0


class Run:
    """One training run: the loop, its checkpoints and its reports."""

    def __init__(self, settings, output, device, quiet=False):
        self.settings, self.output, self.device, self.quiet = settings, output, device, quiet
        self.task, self.model, self.optimizer, self.scheduler = build(settings)
        self.model.to(device)
        # settings.get: checkpoints written before --ema existed resume without an average
        self.averaged = (AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(settings["ema"]))
                         if settings.get("ema") else None)
        self.splits = self.task.load()
        self.rng = np.random.default_rng(settings["seed"])
        self.epoch, self.batches_done, self.epoch_rng_state = 0, 0, None
        self.epoch_totals = None   # the running sums of an epoch interrupted after batches_done batches
        self.interrupt = DeferredInterrupt()   # entered by fit()
        self.history, self.best = [], None
        self.epochs_without_improvement = 0
        self.captured_step, self.capture_failed = None, False
        self.compiled_ahead, self.compile_ahead_seconds = 0, 0.0   # kernels compile_ahead had compiled elsewhere

    @property
    def evaluated_model(self):
        """The weights that validation and the test metrics use: the averaged ones if averaging."""
        return self.model if self.averaged is None else self.averaged.module

    # ---- checkpoints -------------------------------------------------------------------------
    @property
    def checkpoint_path(self):
        return os.path.join(self.output, CHECKPOINT_NAME)

    def state(self):
        return {"model_name": self.settings["model"], "settings": self.settings, "epoch": self.epoch,
                "batches_done": self.batches_done, "epoch_rng_state": self.epoch_rng_state,
                "epoch_totals": self.epoch_totals,
                "rng_state": self.rng.bit_generator.state, "dropout_rng_state": init.rng_state(),
                "model": dict(self.model.state_dict()), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "history": self.history, "best": self.best,
                "epochs_without_improvement": self.epochs_without_improvement,
                "averaged_model": None if self.averaged is None else dict(self.averaged.state_dict())}

    def restore(self, state):
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.averaged is not None:
            self.averaged.load_state_dict(state["averaged_model"])
        self.rng.bit_generator.state = state["rng_state"]
        init.set_rng_state(state["dropout_rng_state"])
        self.epoch, self.batches_done = state["epoch"], state["batches_done"]
        self.epoch_rng_state = state["epoch_rng_state"]
        self.epoch_totals = state.get("epoch_totals")   # (checkpoints written before it existed have none)
        self.history, self.best = list(state["history"]), state["best"]
        self.epochs_without_improvement = state["epochs_without_improvement"]

    def save(self):
        checkpoint.save(self.checkpoint_path, self.state())

    # ---- the loop ----------------------------------------------------------------------------
    def train_step(self, *arrays):
        """One optimisation step on one minibatch (device arrays in): (loss, correct count or None),
        both left on the device; then the averaged weights' update, if averaging. Nothing here waits for the
        GPU (the averaged model's first update, which does, is the capture's eager warm-up), so on the GPU
        it is captured."""
        loss, correct = training_step(self.task, self.model, self.optimizer, self.settings["clip"], arrays)
        if self.averaged is not None:
            self.averaged.update_parameters(self.model)
        return loss.data, correct

    def step_function(self, batch_size):
        """The step to call for a minibatch of this size: on the GPU, full batches replay one CUDA
        graph (nn.capture: one launch instead of hundreds of Python launches); the last, smaller
        batch of an epoch and models with dropout (whose masks a graph would freeze) run eagerly."""
        if self.device != "cuda" or batch_size != self.settings["batch_size"] or self.capture_failed:
            return self.train_step
        if self.captured_step is None:
            if any(_has_dropout(m) for m in self.model.modules()):
                self.capture_failed = True
                return self.train_step
            self.captured_step = capture(self.train_step)
        return self.captured_step

    def train_epoch(self):
        from tqdm import tqdm
        train = self.task.training_split(self.splits["train"], self.epoch)
        if self.batches_done == 0:
            self.epoch_rng_state = self.rng.bit_generator.state
        else:  # resuming inside an epoch: replay the same shuffle, skip the batches already done
            self.rng.bit_generator.state = self.epoch_rng_state
        order = list(data.batches(len(train), self.settings["batch_size"], self.rng))
        self.model.train()
        so_far = self.epoch_totals if self.batches_done else None
        totals = RunningTotals(self.device, self.epoch, so_far)
        progress = tqdm(order[self.batches_done:], desc=f"epoch {self.epoch + 1}/{self.settings['epochs']}",
                        disable=self.quiet, leave=False, file=sys.stderr)
        started = time.perf_counter() - (so_far["seconds"] if so_far else 0.0)
        for index in progress:
            arrays = [backend.to_device(a, self.device) for a in self.task.batch_arrays(train, index)]
            step = self.step_function(len(index))
            if hasattr(self.scheduler, "warm_up"):  # per-batch lr of a warm-up (outside a captured step)
                self.scheduler.warm_up(self.epoch, self.batches_done, len(order))
            try:
                loss, correct = step(*arrays)
            except RuntimeError as error:
                if step is self.train_step or not str(error).startswith("capture:"):
                    raise
                # the graph was recorded, not run: this step runs eagerly, and so do the rest
                print(f"numbanet: training eagerly, the step could not be captured ({error})", file=sys.stderr)
                self.capture_failed = True
                loss, correct = self.train_step(*arrays)
            totals.add(loss, correct, len(index))
            self.batches_done += 1
            if totals.steps % totals.sync_every == 0 or self.batches_done == len(order):
                progress.set_postfix(totals.read())
            if self.interrupt.requested:   # a safe point: the step is whole and counted
                totals.read()
                self.epoch_totals = {**totals.as_dict(), "seconds": time.perf_counter() - started}
                progress.close()
                raise TrainingInterrupted
        seconds = time.perf_counter() - started
        totals.read()
        return totals.as_dict(), seconds

    def compile_ahead(self):
        """On the GPU, before training: the kernels a training step and a validation batch launch (recorded
        on a twin of the model, `record_kernels`) are compiled by several processes at once into the disk
        cache (kernels/cuda/compile_ahead.py), where the run's launches find them. Otherwise a first run
        compiles each kernel at its first launch, one after another (about 20 s of a first CRNN run on an
        H100). Returns the number of kernels compiled ahead (0: nothing to do, no GPU, too few cores)."""
        if self.device != "cuda":
            return 0
        from kernels.cuda import compile_ahead
        with compile_ahead.CompilingProcesses() as compiling:
            if compiling.processes < 2:
                return 0
            if compile_ahead.is_cold():   # a first run: the processes start up while this one records
                compiling.start()
            records = record_kernels(self.model, self.task, self.settings, self.splits["validation"], self.device)
            return compiling.compile(records)

    def fit(self):
        """Train the remaining epochs; Ctrl-C raises TrainingInterrupted at the next safe point (DeferredInterrupt),
        with the state whole for save()."""
        with self.interrupt:
            self._fit()

    def _fit(self):
        if self.device == "cuda" and self.batches_done == 0:
            started = time.perf_counter()
            try:
                self.compiled_ahead = self.compile_ahead()
            except Exception as error:   # the run compiles its kernels as it goes, as it would have anyway
                warnings.warn(f"numbanet: compiling kernels ahead failed ({error!r})", RuntimeWarning, stacklevel=2)
            self.compile_ahead_seconds = time.perf_counter() - started
            if self.compiled_ahead and not self.quiet:
                print(f"compiled {self.compiled_ahead} kernels ahead in other processes "
                      f"({self.compile_ahead_seconds:.1f} s)", file=sys.stderr, flush=True)
        while self.epoch < self.settings["epochs"]:
            lr = self.optimizer.param_groups[0]["lr"]
            totals, seconds = self.train_epoch()
            self.model.eval()
            validation = self.task.evaluate(self.evaluated_model, self.splits["validation"], self.device)
            record = {"epoch": self.epoch + 1, "loss": totals["loss"] / max(totals["count"], 1), "lr": lr,
                      "seconds": seconds, "samples_per_second": totals["count"] / max(seconds, 1e-9)}
            if totals["correct"] is not None:
                record["accuracy"] = totals["correct"] / max(totals["count"], 1)
            record.update({f"validation_{k}": v for k, v in validation.items()})
            self.history.append(record)
            self.scheduler.step()
            self.epoch, self.batches_done, self.epoch_totals = self.epoch + 1, 0, None
            stop = self.track_improvement(validation[self.task.metric])
            self.save()
            self.append_history(record)
            if not self.quiet:
                shown = ", ".join(f"{k} {v:.4g}" for k, v in record.items() if k not in ("epoch",))
                print(f"epoch {record['epoch']}: {shown}", file=sys.stderr, flush=True)
            if self.interrupt.requested and self.epoch < self.settings["epochs"]:   # after the epoch's checkpoint
                raise TrainingInterrupted
            if stop:
                print(f"early stopping: no improvement for {self.settings['patience']} epochs", file=sys.stderr)
                break

    def track_improvement(self, value):
        better = self.best is None or (value > self.best if self.task.higher_is_better else value < self.best)
        if better:
            self.best, self.epochs_without_improvement = value, 0
        else:
            self.epochs_without_improvement += 1
        return 0 < self.settings["patience"] <= self.epochs_without_improvement

    # ---- reports -----------------------------------------------------------------------------
    def append_history(self, record):
        with open(os.path.join(self.output, "history.jsonl"), "a") as handle:
            handle.write(json.dumps(record) + "\n")

    def report(self):
        self.model.eval()
        test = self.task.evaluate(self.evaluated_model, self.splits["test"], self.device)
        epoch_times = [r["seconds"] for r in self.history]
        metrics = {f"test_{k}" if not k.startswith("test") else k: v for k, v in test.items()}
        if self.settings["model"] == "crnn":
            metrics = {"sequence_accuracy": test["sequence_accuracy"], "char_error_rate": test["char_error_rate"],
                       **metrics}
        metrics.update({"seconds_per_epoch": float(np.mean(epoch_times)) if epoch_times else None,
                        "samples_per_second": float(np.mean([r["samples_per_second"] for r in self.history]))
                        if self.history else None,
                        "device": self.device, "machine": backend.describe().get("gpu") if self.device == "cuda"
                        else "cpu", "epochs_run": self.epoch, "settings": self.settings})
        if self.device == "cuda":   # how much of the start-up was compiling (kernels/cuda/jit.py)
            from kernels.cuda import jit
            metrics["kernels"] = {**jit.compile_counts(), "compiled_ahead": self.compiled_ahead,
                                  "compile_ahead_seconds": self.compile_ahead_seconds,
                                  "cache": jit.cache_directory() if jit.caching_enabled() else None}
        with open(os.path.join(self.output, "metrics.json"), "w") as handle:
            json.dump(metrics, handle, indent=2)
        plot_curves(self.history, os.path.join(self.output, "curves.png"), self.task.metric)
        shown = ", ".join(f"{k} {v:.4f}" for k, v in test.items())
        print(f"{self.settings['model']}: test {shown} | {metrics['seconds_per_epoch']:.2f} s/epoch, "
              f"{metrics['samples_per_second']:.0f} samples/s, device {self.device} | {self.output}")
        return metrics




def _latest_run(model):
    runs = sorted(glob.glob(os.path.join("runs", f"{model}-*", CHECKPOINT_NAME)), key=os.path.getmtime)
    if not runs:
        raise UsageError(f"--resume: no run of {model} found under runs/; give --output")
    return os.path.dirname(runs[-1])


def _resumed_settings(path, saved, explicit):
    """The saved run's settings: --resume continues that run, so an option given with another value is refused
    (a different --epochs would bend the learning-rate schedule midway, and no uninterrupted run has it)."""
    settings = saved.get("settings")
    if isinstance(settings, dict) and "deterministic" not in settings:
        settings = {**settings, "deterministic": False}   # written before the option existed
    if not isinstance(settings, dict) or not all(key in settings for key in explicit):
        raise checkpoint.CheckpointError(f"checkpoint {path!r} has no usable settings")
    for key, value in explicit.items():
        if settings[key] != value:
            option = "--" + key.replace("_", "-")
            raise UsageError(f"--resume continues the saved run with its own settings: {option} {value} differs "
                             f"from its {settings[key]} (start a new run with another --output to change it)")
    return settings


def _restored_run(path, saved, settings, output, device, quiet):
    """The Run of a checkpoint's settings with its state; a checkpoint whose contents do not fit them (edited,
    or written by another version) is a CheckpointError, not a traceback."""
    try:
        run = Run(settings, output, device, quiet)
        run.restore(saved)
    except (KeyError, ValueError, TypeError, AttributeError) as error:
        raise checkpoint.CheckpointError(f"checkpoint {path!r} does not fit a {settings.get('model')} run "
                                         f"({type(error).__name__}: {error})") from None
    return run


def _check_writable(output):
    """--output as a folder this process can write into, made if missing: checked before any training, so that
    a wrong path costs no epoch."""
    try:
        os.makedirs(output, exist_ok=True)
        with tempfile.TemporaryFile(dir=output):
            pass
    except OSError as error:
        raise UsageError(f"--output {output!r} cannot hold a run: {error.strerror or error}") from None


def _run_training(argv):
    args = build_parser().parse_args(argv)
    settings = settings_from_args(args)
    device = resolve_device(args.device)
    if device == "cuda":   # a bad NUMBANET_COMPILE_PROCESSES is a usage error, not a warning at the first epoch
        from kernels.cuda import compile_ahead
        try:
            compile_ahead.processes_for_compiling()
        except ValueError as error:
            raise UsageError(str(error)) from None
    if args.resume:
        output = args.output or _latest_run(settings["model"])
        path = os.path.join(output, CHECKPOINT_NAME)
        saved = checkpoint.load(path, expected_model=settings["model"])
        settings = _resumed_settings(path, saved, explicit_settings(args, settings))
        _check_writable(output)
        run = _restored_run(path, saved, settings, output, device, args.quiet)
    else:
        output = args.output or os.path.join("runs", f"{settings['model']}-{time.strftime('%Y%m%d-%H%M%S')}")
        existing = [name for name in RUN_FILES if os.path.exists(os.path.join(output, name))]
        if existing:   # (a run's history.jsonl would be appended to, its metrics and curves replaced)
            raise UsageError(f"{output} already holds a run ({', '.join(existing)}); use --resume or another --output")
        _check_writable(output)
        run = Run(settings, output, device, args.quiet)
    if device == "cpu":
        backend.keep_freed_memory()  # no page faults on every step's new arrays (see its docstring)
    resume = f"`numbanet train {settings['model']} --output {output} --resume`"
    with blas_threads(device, args.blas_threads), backend.deterministic_algorithms(bool(settings["deterministic"])):
        try:
            run.fit()
        except FloatingPointError as error:   # a diverging loss (RunningTotals): the epochs' checkpoints are kept
            raise UsageError(str(error)) from None
        except TrainingInterrupted:
            run.save()
            print(f"interrupted: checkpoint written to {run.checkpoint_path} (epoch {run.epoch + 1}, "
                  f"{run.batches_done} batches done); continue with {resume}", file=sys.stderr)
            return 130
        except KeyboardInterrupt:   # a second Ctrl-C: the state may be half a step on, so nothing is written
            kept = (f"the last checkpoint written, {run.checkpoint_path}, is kept"
                    if os.path.exists(run.checkpoint_path) else "no checkpoint was written yet")
            print(f"\ninterrupted at once: {kept}; continue with {resume}", file=sys.stderr)
            return 130
        try:
            run.report()
        except KeyboardInterrupt:
            print(f"\ninterrupted during the final report; the run's checkpoint is complete: `numbanet evaluate "
                  f"{run.checkpoint_path}` gives its test metrics", file=sys.stderr)
            return 130
    return 0


def train_main(argv):
    return _cli(_run_training, argv)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(train_main(sys.argv[1:]))
