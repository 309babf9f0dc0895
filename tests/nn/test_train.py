"""The training command: bad input, resume equals an uninterrupted run, evaluate and predict."""
import json
import os
import signal

import numpy as np
import pytest

from nn import checkpoint, inference, train


@pytest.fixture(autouse=True)
def python_sigint_handler():
    """Python's own SIGINT handler for each test, as `python -m nn.train` installs it (a process started in the
    background, as CI may be, inherits SIGINT ignored, and the training command then leaves it so)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _run(capsys, *argv):
    code = train.train_main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("argv,message", [
    (["mlp"], "unknown model 'mlp'"),
    (["cnn", "--lr", "-1"], "--lr must be positive"),
    (["cnn", "--batch-size", "0"], "--batch-size must be at least 1"),
    (["cnn", "--epochs", "x"], "invalid int value"),
    (["cnn", "--blas-threads", "-1"], "--blas-threads must be >= 0"),
    (["crnn", "--ema", "1"], "--ema must be in [0, 1) (0: off), got 1.0"),
    (["cnn", "--lr", "inf"], "--lr must be positive and finite, got inf"),
    (["cnn", "--clip", "nan"], "--clip must be >= 0 and finite (0: off), got nan"),
    (["cnn", "--seed", "-1"], "--seed must be >= 0, got -1"),
    (["rnn", "--hidden-size", "0"], "--hidden-size must be at least 1, got 0"),
    (["cnn", "--patience", "-2"], "--patience must be >= 0 (0: off), got -2"),
])
def test_bad_arguments_give_one_line_and_exit_code_2(capsys, argv, message):
    code, out, err = _run(capsys, *argv)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def _whole_and_resumed(tmp_path, capsys, monkeypatch, task_class, common, interrupt_at, method="step_loss"):
    """Checkpoints of an uninterrupted run, and of the same run stopped by Ctrl-C (a real SIGINT) in the middle of
    its `interrupt_at`-th call of task_class.`method` (step_loss: after the forward pass, which has updated the
    batch norm statistics; evaluate: an epoch's validation), checked to exit 130 and name --resume, then resumed;
    also the interrupted checkpoint."""
    whole, split = str(tmp_path / "whole"), str(tmp_path / "split")
    assert _run(capsys, *common, "--output", whole)[0] == 0
    original, calls = getattr(task_class, method), []

    def interrupting(self, *args):
        result = original(self, *args)
        calls.append(1)
        if len(calls) == interrupt_at:
            signal.raise_signal(signal.SIGINT)   # (a KeyboardInterrupt here would leave the step half done)
        return result

    monkeypatch.setattr(task_class, method, interrupting)
    code, _, err = _run(capsys, *common, "--output", split)
    assert code == 130 and "--resume" in err
    interrupted = checkpoint.load(os.path.join(split, "checkpoint.npz"))
    monkeypatch.setattr(task_class, method, original)
    assert _run(capsys, *common, "--output", split, "--resume")[0] == 0
    a = checkpoint.load(os.path.join(whole, "checkpoint.npz"))
    b = checkpoint.load(os.path.join(split, "checkpoint.npz"))
    for key in a["model"]:
        np.testing.assert_array_equal(a["model"][key], b["model"][key], err_msg=key)
    return a, b, interrupted, whole


def test_resume_reaches_the_same_weights_as_an_uninterrupted_run(tmp_path, capsys, monkeypatch):
    from nn import tasks
    common = ["cnn", "--device", "cpu", "--seed", "3", "--quiet", "--batch-size", "64", "--epochs", "2"]
    # Ctrl-C in the middle of the second epoch (inside step 25 of 2 x 20): the step ends, then --resume
    a, b, interrupted, whole = _whole_and_resumed(tmp_path, capsys, monkeypatch, tasks.ClassificationTask,
                                                  common, 25)
    assert interrupted["epoch"] == 1 and interrupted["batches_done"] == 5
    assert interrupted["optimizer"]["state"][0]["step"] == 25   # the step it stopped in is whole and counted
    assert a["epoch"] == b["epoch"] == 2
    assert a["averaged_model"] is None   # cnn averages no weights unless --ema is given
    metrics = json.load(open(os.path.join(whole, "metrics.json")))
    assert 0.0 <= metrics["test_accuracy"] <= 1.0 and metrics["device"] == "cpu"
    assert len(open(os.path.join(whole, "history.jsonl")).read().splitlines()) == 2
    assert os.path.getsize(os.path.join(whole, "curves.png")) > 0
    # an existing run is never overwritten
    code, _, err = _run(capsys, *common, "--epochs", "1", "--output", whole)
    assert code == 2 and "already holds a run" in err


def test_ctrl_c_in_validation_writes_the_epoch_and_resume_completes_its_history(tmp_path, capsys, monkeypatch):
    """Ctrl-C during an epoch's validation: the epoch is finished, saved and reported, then the run stops; the
    resumed run ends with the uninterrupted run's weights and history (an empty epoch without accuracy was logged
    before, and curves.png then failed on every later --resume)."""
    from nn import tasks
    common = ["cnn", "--device", "cpu", "--seed", "3", "--quiet", "--batch-size", "64", "--epochs", "2"]
    a, b, interrupted, whole = _whole_and_resumed(tmp_path, capsys, monkeypatch, tasks.ClassificationTask,
                                                  common, 1, method="evaluate")
    assert interrupted["epoch"] == 1 and interrupted["batches_done"] == 0
    split = os.path.join(os.path.dirname(whole), "split")
    histories = [[json.loads(line) for line in open(os.path.join(run, "history.jsonl"))] for run in (whole, split)]
    assert [r["epoch"] for r in histories[1]] == [1, 2]
    for mine, reference in zip(*histories, strict=True):
        assert mine["loss"] == reference["loss"] and mine["accuracy"] == reference["accuracy"]
    assert os.path.getsize(os.path.join(split, "curves.png")) > 0


def test_ctrl_c_mid_epoch_keeps_the_epochs_running_totals(tmp_path, capsys, monkeypatch):
    """A resumed epoch's history line covers all its batches: the loss and accuracy sums of the batches before
    Ctrl-C are in the checkpoint."""
    from nn import tasks
    common = ["cnn", "--device", "cpu", "--seed", "1", "--quiet", "--batch-size", "64", "--epochs", "1"]
    _whole_and_resumed(tmp_path, capsys, monkeypatch, tasks.ClassificationTask, common, 7)
    whole, split = (json.loads(open(os.path.join(tmp_path, run, "history.jsonl")).read()) for run in ("whole", "split"))
    assert split["loss"] == pytest.approx(whole["loss"], rel=1e-12) and split["accuracy"] == whole["accuracy"]


def test_a_second_ctrl_c_stops_at_once_and_writes_nothing(tmp_path, capsys, monkeypatch):
    from nn import tasks
    original = tasks.ClassificationTask.step_loss

    def interrupted_twice(self, *args):
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)   # the handler raises KeyboardInterrupt here: half a step
        return original(self, *args)

    monkeypatch.setattr(tasks.ClassificationTask, "step_loss", interrupted_twice)
    output = str(tmp_path / "run")
    code, _, err = _run(capsys, "cnn", "--device", "cpu", "--quiet", "--epochs", "1", "--output", output)
    assert code == 130 and "interrupted at once: no checkpoint was written yet" in err
    assert not os.path.exists(os.path.join(output, "checkpoint.npz"))
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler   # put back


def test_resume_refuses_other_settings_and_runs_need_a_writable_folder_of_their_own(tmp_path, capsys):
    output = str(tmp_path / "run")
    common = ["cnn", "--device", "cpu", "--quiet", "--epochs", "1", "--batch-size", "256"]
    assert _run(capsys, *common, "--output", output)[0] == 0
    for extra, message in [(["--lr", "0.5"], "--lr 0.5 differs from its 0.002"),
                           (["--epochs", "3"], "--epochs 3 differs from its 1"),
                           (["--seed", "4"], "--seed 4 differs from its 0")]:
        code, _, err = _run(capsys, "cnn", "--device", "cpu", "--quiet", "--output", output, "--resume", *extra)
        assert code == 2 and message in err and "Traceback" not in err, err
    # the same settings given again are fine (the run is complete: nothing is left to train)
    assert _run(capsys, *common, "--output", output, "--resume")[0] == 0
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    for target in (str(a_file), str(a_file / "sub")):
        code, _, err = _run(capsys, *common, "--output", target)
        assert code == 2 and "cannot hold a run" in err and "Traceback" not in err, err
    stale = tmp_path / "stale"
    stale.mkdir()
    (stale / "history.jsonl").write_text('{"epoch": 1}\n')
    code, _, err = _run(capsys, *common, "--output", str(stale))
    assert code == 2 and "already holds a run (history.jsonl)" in err
    assert (stale / "history.jsonl").read_text() == '{"epoch": 1}\n'



def test_deterministic_holds_the_switch_for_the_run_and_is_a_setting_of_it(tmp_path, capsys, monkeypatch):
    from kernels import backend
    seen = []
    fit = train.Run.fit
    monkeypatch.setattr(train.Run, "fit", lambda run: seen.append(backend.are_deterministic_algorithms_enabled())
                        or fit(run))
    common = ["cnn", "--device", "cpu", "--quiet", "--epochs", "1", "--batch-size", "256"]
    output = str(tmp_path / "run")
    assert _run(capsys, *common, "--output", output, "--deterministic")[0] == 0
    assert _run(capsys, *common, "--output", str(tmp_path / "plain"))[0] == 0
    assert seen == [True, False] and not backend.are_deterministic_algorithms_enabled()
    with open(os.path.join(output, "metrics.json")) as handle:
        assert json.load(handle)["settings"]["deterministic"] is True
    code, _, err = _run(capsys, *common, "--output", str(tmp_path / "plain"), "--resume", "--deterministic")
    assert code == 2 and "--deterministic True differs from its False" in err
    # a checkpoint written before the option existed resumes as a run without it
    saved = checkpoint.load(os.path.join(output, train.CHECKPOINT_NAME))
    del saved["settings"]["deterministic"]
    assert train._resumed_settings("old", saved, {})["deterministic"] is False

def test_checkpoints_whose_contents_do_not_fit_give_one_line(tmp_path, capsys):
    output = str(tmp_path / "run")
    assert _run(capsys, "cnn", "--device", "cpu", "--quiet", "--epochs", "1", "--output", output)[0] == 0
    state = checkpoint.load(os.path.join(output, "checkpoint.npz"))
    edits = {"missing_weight": lambda s: s["model"].pop("features.0.weight"),
             "settings_a_string": lambda s: s.update(settings="cnn"),
             "wrong_shape": lambda s: s["model"].update({"features.0.weight": np.zeros((1, 2), np.float32)})}
    for name, edit in edits.items():
        edited = checkpoint.load(os.path.join(output, "checkpoint.npz"))
        edit(edited)
        folder = tmp_path / name
        folder.mkdir()
        checkpoint.save(str(folder / "checkpoint.npz"), edited)
        assert inference.evaluate_main([str(folder / "checkpoint.npz"), "--device", "cpu"]) == 2
        assert "does not fit a cnn model" in capsys.readouterr().err or name == "settings_a_string"
        code, _, err = _run(capsys, "cnn", "--device", "cpu", "--quiet", "--output", str(folder), "--resume")
        assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, (name, err)
    assert state["epoch"] == 1


def test_evaluate_and_predict_use_the_checkpoint(tmp_path, capsys):
    output = str(tmp_path / "run")
    assert _run(capsys, "rnn", "--device", "cpu", "--epochs", "1", "--quiet", "--output", output,
                "--hidden-size", "16")[0] == 0
    path = os.path.join(output, "checkpoint.npz")
    assert inference.evaluate_main([path, "--device", "cpu"]) == 0
    assert "test_accuracy" in json.loads(capsys.readouterr().out)
    image = tmp_path / "digit.npy"
    from nn import data
    np.save(image, data.digits()["test"].inputs[0, 0])
    assert inference.predict_main([path, str(image), "--device", "cpu"]) == 0
    assert capsys.readouterr().out.startswith("digit ")
    for scale, name in [(16.0, "raw_digits.npy"), (255.0, "bytes.npy")]:   # read as the float image is
        np.save(tmp_path / name, np.round(data.digits()["test"].inputs[0, 0] * scale))
        assert inference.predict_main([path, str(tmp_path / name), "--device", "cpu"]) == 0
    predictions = capsys.readouterr().out.split("\n")
    assert predictions[0] == predictions[1] and predictions[0].startswith("digit ")
    np.save(tmp_path / "complex.npy", np.ones((8, 8), np.complex64))
    assert inference.predict_main([path, str(tmp_path / "complex.npy"), "--device", "cpu"]) == 2
    assert "expected an array of real numbers" in capsys.readouterr().err
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((2, 3, 4, 5)))
    assert inference.predict_main([path, str(wrong), "--device", "cpu"]) == 2
    assert inference.predict_main([path, str(tmp_path / "missing.png")]) == 2
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"garbage")
    assert inference.evaluate_main([str(corrupt)]) == 2
    assert "corrupt" in capsys.readouterr().err


def test_evaluate_uses_the_averaged_weights(tmp_path, capsys):
    output = str(tmp_path / "run")
    assert _run(capsys, "cnn", "--device", "cpu", "--epochs", "1", "--quiet", "--output", output,
                "--ema", "0.9")[0] == 0
    path = os.path.join(output, "checkpoint.npz")
    state = checkpoint.load(path)
    assert state["settings"]["ema"] == 0.9 and int(state["averaged_model"]["n_averaged"]) > 1
    _, _, model = inference._load_for_inference(path, "cpu")
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, state["averaged_model"]["module." + key], err_msg=key)
    assert not np.array_equal(state["model"]["features.0.weight"], state["averaged_model"]["module.features.0.weight"])
    assert inference.evaluate_main([path, "--device", "cpu"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    with open(os.path.join(output, "metrics.json")) as handle:
        metrics = json.load(handle)
    assert evaluated["test_accuracy"] == metrics["test_accuracy"]


@pytest.mark.parametrize("command", ["train", "evaluate", "predict"])
def test_each_command_answers_help(command, capsys):
    from nn import cli
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: numbanet {command}")


@pytest.mark.parametrize("interrupt_at, epoch, batches_done", [(3, 0, 3), (10, 2, 2)])
def test_crnn_resume_redraws_the_same_training_strips(tmp_path, capsys, monkeypatch, interrupt_at, epoch,
                                                      batches_done):
    """The CRNN's training strips are re-composed each epoch from the seed and the epoch number, its
    first epoch warms the lr up and with --ema it averages its weights, so a run interrupted in
    its warm-up or in its third epoch and resumed still ends with the weights of an uninterrupted one."""
    from nn import data, tasks
    monkeypatch.setattr(data, "STRIP_COUNTS", {"train": 64, "validation": 16, "test": 16})
    task = tasks.StripTask({"seed": 3})
    fixed = data.digit_strips()["train"]
    fresh = tasks.STRIP_FRESH_FROM
    assert all(task.training_split(fixed, epoch) is fixed for epoch in range(fresh))
    first, second = task.training_split(fixed, fresh), task.training_split(fixed, fresh + 1)
    assert first.inputs.shape == fixed.inputs.shape and not np.array_equal(first.inputs, second.inputs)
    assert not np.array_equal(first.inputs, fixed.inputs)
    np.testing.assert_array_equal(first.inputs, tasks.StripTask({"seed": 3}).training_split(fixed, fresh).inputs)

    common = ["crnn", "--device", "cpu", "--seed", "3", "--quiet", "--batch-size", "16", "--epochs", "3",
              "--hidden-size", "8", "--ema", "0.998"]
    # 4 batches an epoch: step `interrupt_at` falls in epoch `epoch` and ends there
    a, b, interrupted, _ = _whole_and_resumed(tmp_path, capsys, monkeypatch, tasks.StripTask, common,
                                              interrupt_at)
    assert interrupted["epoch"] == epoch and interrupted["batches_done"] == batches_done
    assert a["epoch"] == b["epoch"] == 3
    assert a["settings"]["ema"] == 0.998
    assert int(a["averaged_model"]["n_averaged"]) == 12   # one update a step: 3 epochs of 4 batches
    for key in a["averaged_model"]:
        np.testing.assert_array_equal(a["averaged_model"][key], b["averaged_model"][key], err_msg=key)


def test_compiling_ahead_starts_and_stops_its_processes_and_never_stops_the_run(tmp_path, monkeypatch):
    """Run.compile_ahead's plumbing, without a GPU: on a cold cache the compiling processes start before the
    recording; a recording that fails (here: 'cuda' arrays cannot be made) warns, and the processes are
    stopped with nothing to compile."""
    from kernels import backend
    if backend.SIMULATOR:
        pytest.skip("the CPU path")
    from kernels.cuda import compile_ahead
    from nn import train
    args = train.build_parser().parse_args(["cnn", "--device", "cpu", "--epochs", "1"])
    run = train.Run(train.settings_from_args(args), str(tmp_path / "run"), "cpu", quiet=True)
    assert run.compile_ahead() == 0   # the CPU: nothing to compile
    started = []
    monkeypatch.setattr(compile_ahead, "processes_for_compiling", lambda: 2)
    monkeypatch.setattr(compile_ahead, "is_cold", lambda: True)
    original_start = compile_ahead.CompilingProcesses.start
    monkeypatch.setattr(compile_ahead.CompilingProcesses, "start",
                        lambda self, count=None: started.append(count) or original_start(self, count))
    run.device = "cuda"
    with pytest.warns(RuntimeWarning, match="recording the kernels of a step stopped early"):
        assert run.compile_ahead() == 0
    assert started == [None]


def test_evaluate_and_predict_decode_by_beam_search_on_request(tmp_path, capsys, monkeypatch):
    """`--beam-width N` makes the CRNN's evaluate and predict decode by CTC prefix beam search (greedy by
    default); below 1, or on a checkpoint of another model, it is a one-line usage error (exit 2)."""
    from nn import data, models
    monkeypatch.setattr(data, "STRIP_COUNTS", {"train": 32, "validation": 16, "test": 16})
    output = str(tmp_path / "crnn")
    assert _run(capsys, "crnn", "--device", "cpu", "--epochs", "1", "--quiet", "--batch-size", "16",
                "--hidden-size", "8", "--output", output)[0] == 0
    path = os.path.join(output, "checkpoint.npz")
    widths = []
    original = models.ctc_beam_search
    monkeypatch.setattr(models, "ctc_beam_search",
                        lambda log_probs, beam_width=8, blank=0: widths.append(beam_width) or
                        original(log_probs, beam_width=beam_width, blank=blank))
    assert inference.evaluate_main([path, "--device", "cpu"]) == 0
    greedy = json.loads(capsys.readouterr().out)
    assert widths == []
    assert inference.evaluate_main([path, "--device", "cpu", "--beam-width", "4"]) == 0
    beam = json.loads(capsys.readouterr().out)
    assert widths and set(widths) == {4}
    assert set(beam) == set(greedy) == {"test_sequence_accuracy", "test_char_error_rate"}
    strip = tmp_path / "strip.npy"
    np.save(strip, data.digit_strips(train=0)["test"].inputs[0, 0])
    widths.clear()
    assert inference.predict_main([path, str(strip), "--device", "cpu", "--beam-width", "3"]) == 0
    assert capsys.readouterr().out.startswith("digits ") and widths == [3]
    assert inference.evaluate_main([path, "--beam-width", "0"]) == 2
    assert "--beam-width must be at least 1, got 0" in capsys.readouterr().err
    cnn_output = str(tmp_path / "cnn")
    assert _run(capsys, "cnn", "--device", "cpu", "--epochs", "1", "--quiet", "--output", cnn_output)[0] == 0
    assert inference.evaluate_main([os.path.join(cnn_output, "checkpoint.npz"), "--beam-width", "2"]) == 2
    assert "--beam-width applies to crnn checkpoints only, got a cnn checkpoint" in capsys.readouterr().err
