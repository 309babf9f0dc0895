"""The command line of `numbanet train` (nn.train): each model's default settings, the argument parser,
the settings it gives (checked), the device to run on, the BLAS threads of a CPU run and the one-line
reports of user errors (UsageError, exit code 2), which `numbanet evaluate/predict` (nn.inference) share.
"""
import argparse
import contextlib
import math
import sys

from kernels import backend

from . import checkpoint

MODELS = ("cnn", "rnn", "crnn")
# Defaults tuned so that the bare command reaches the targets of each model (see README).
DEFAULTS = {
    "cnn": {"epochs": 30, "batch_size": 32, "lr": 2e-3, "clip": 0.0, "hidden_size": 0},
    "rnn": {"epochs": 60, "batch_size": 32, "lr": 3e-3, "clip": 1.0, "hidden_size": 128},
    # crnn: an EMA of the weights (--ema 0.998) moved test accuracy by +0.001 on average over 9 paired runs
    # (5 up, 4 down) and its validation lags the live model by epochs, so it is not a default.
    "crnn": {"epochs": 10, "batch_size": 32, "lr": 2e-3, "clip": 5.0, "hidden_size": 64, "warm_up": True},
}
ADDING_DEFAULTS = {"epochs": 12, "batch_size": 64, "lr": 3e-3, "clip": 1.0, "hidden_size": 64}
# Settings every model shares, the value a run takes when the option is not given (the parser's defaults are
# None, so that `explicit_settings` can tell what was given: a resumed run refuses a setting other than its own).
# The adding problem's 100 steps: at 50 a tanh RNN with clipping learned it on some seeds (test MSE 0.0096 with
# seed 0), at 100 it stays at the mean's 0.16 where the LSTM reaches about 0.001 (benchmarks/RESULTS.md).
COMMON_DEFAULTS = {"seed": 0, "task": "digits", "cell": "lstm", "sequence_length": 100, "patience": 0,
                   "deterministic": False}
# option -> settings key, for the options that make a run's settings
SETTING_OPTIONS = ("epochs", "batch_size", "lr", "clip", "hidden_size", "ema", "seed", "task", "cell",
                   "sequence_length", "patience", "deterministic")


class UsageError(Exception):
    """Bad command-line input: reported as one line with exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def build_parser():
    parser = _Parser(prog="numbanet train", description="Train a model end to end.")
    parser.add_argument("model", help="cnn, rnn or crnn")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--seed", type=int, help="default 0")
    parser.add_argument("--output", help="run folder (default runs/<model>-<time>)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --output (or the latest run)")
    parser.add_argument("--task", choices=("digits", "adding"), help="rnn only (default digits)")
    parser.add_argument("--cell", choices=("lstm", "gru", "rnn"), help="rnn only (default lstm)")
    parser.add_argument("--sequence-length", type=int, help="adding task only (default 100)")
    parser.add_argument("--hidden-size", type=int)
    parser.add_argument("--clip", type=float, help="gradient-norm clipping (0: off)")
    parser.add_argument("--ema", type=float, metavar="DECAY",
                        help="evaluate an exponential moving average of the weights with this decay "
                             "(e.g. 0.998; default 0: off)")
    parser.add_argument("--patience", type=int,
                        help="early stopping after N epochs without improvement (default 0: off)")
    parser.add_argument("--deterministic", action="store_true", default=None,
                        help="GPU: the same weights every run of a seed (nn.use_deterministic_algorithms; the CPU "
                             "always is)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--blas-threads", type=int, default=1,
                        help="BLAS threads on the CPU (default 1: the models are small; 0 leaves BLAS's own choice)")
    return parser


def settings_from_args(args):
    if args.model not in MODELS:
        raise UsageError(f"unknown model {args.model!r}; choose from {', '.join(MODELS)}")
    given = {key: getattr(args, key) for key in COMMON_DEFAULTS if getattr(args, key) is not None}
    common = {**COMMON_DEFAULTS, **given}
    defaults = ADDING_DEFAULTS if (args.model == "rnn" and common["task"] == "adding") else DEFAULTS[args.model]
    settings = {"model": args.model, **common, "task": common["task"] if args.model == "rnn" else "default"}
    for key in ("epochs", "batch_size", "lr", "clip", "hidden_size"):
        value = getattr(args, key)
        settings[key] = defaults[key] if value is None else value
    settings["ema"] = defaults.get("ema", 0.0) if args.ema is None else args.ema
    if not 0.0 <= settings["ema"] < 1.0:
        raise UsageError(f"--ema must be in [0, 1) (0: off), got {settings['ema']}")
    if settings["epochs"] < 1:
        raise UsageError(f"--epochs must be at least 1, got {settings['epochs']}")
    if settings["batch_size"] < 1:
        raise UsageError(f"--batch-size must be at least 1, got {settings['batch_size']}")
    if not (settings["lr"] > 0 and math.isfinite(settings["lr"])):
        raise UsageError(f"--lr must be positive and finite, got {settings['lr']}")
    if not (settings["clip"] >= 0 and math.isfinite(settings["clip"])):
        raise UsageError(f"--clip must be >= 0 and finite (0: off), got {settings['clip']}")
    if settings["seed"] < 0:
        raise UsageError(f"--seed must be >= 0, got {settings['seed']}")
    if settings["patience"] < 0:
        raise UsageError(f"--patience must be >= 0 (0: off), got {settings['patience']}")
    if args.hidden_size is not None and args.hidden_size < 1:
        raise UsageError(f"--hidden-size must be at least 1, got {args.hidden_size}")
    if args.blas_threads < 0:
        raise UsageError(f"--blas-threads must be >= 0, got {args.blas_threads}")
    if settings["sequence_length"] < 2:
        raise UsageError(f"--sequence-length must be at least 2, got {settings['sequence_length']}")
    return settings


def explicit_settings(args, settings):
    """The settings whose options were given on the command line (their values as `settings` holds them)."""
    return {key: settings[key] for key in SETTING_OPTIONS if getattr(args, key) is not None}


def resolve_device(requested):
    if requested == "auto":
        return backend.default_device()
    if requested == "cuda" and not backend.gpu_available():
        raise UsageError("--device cuda: no usable GPU/CuPy found (see `numbanet info`)")
    return requested


def blas_threads(device, count):
    """On the CPU, cap the BLAS threads for the run: these models' matrices are small, and a second
    OpenBLAS thread spin-waiting on a busy core made a CNN run 8x slower (132 s against 16 s)."""
    if device != "cpu" or count == 0:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits
    return threadpool_limits(limits=count, user_api="blas")


def _cli(function, argv):
    """Run a command; user errors become one line on stderr and exit code 2."""
    try:
        return function(argv)
    except (UsageError, checkpoint.CheckpointError) as error:
        print(f"numbanet: error: {error}", file=sys.stderr)
        return 2
