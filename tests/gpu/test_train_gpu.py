"""The training loop on the GPU: full batches replay a captured step, and give the same epoch as
eager steps (up to the eager path's own run-to-run rounding), for a classifier and for the CRNN with CTC."""
import numpy as np
import pytest

from nn import data, train
from tests.gpu.test_models_gpu import biases_cancelled_by_batch_norm
from tests.oracle import assert_adam_runs_agree


def make_run(tmp_path, name, model, batches, *extra):
    args = train.build_parser().parse_args([model, "--device", "cuda", "--epochs", "1", "--seed", "5", *extra])
    run = train.Run(train.settings_from_args(args), str(tmp_path / name), "cuda", quiet=True)
    full = run.splits["train"]
    # a few full batches and one smaller one, so both the replayed and the eager path run
    count = batches * run.settings["batch_size"] + 5
    fields = {key: value[:count] for key, value in vars(full).items() if isinstance(value, np.ndarray)}
    run.splits["train"] = data.Split(**fields)
    return run


@pytest.mark.parametrize("model, extra", [("cnn", ()), ("crnn", ()), ("rnn", ("--task", "adding"))])
def test_captured_training_epoch_matches_eager_epoch(tmp_path, model, extra, deterministic):
    # (deterministic: no atomics in the conv weight gradients, so less run-to-run noise)
    eager, second_eager = (make_run(tmp_path, name, model, 6, *extra) for name in ("eager", "second-eager"))
    eager.capture_failed = second_eager.capture_failed = True  # forces every step down the eager path
    captured = make_run(tmp_path, "captured", model, 6, *extra)
    eager_totals, _ = eager.train_epoch()
    second_eager.train_epoch()   # the run-to-run rounding noise of the eager path, the yardstick below
    captured_totals, _ = captured.train_epoch()
    assert captured.captured_step is not None and captured.captured_step.captured
    assert not captured.capture_failed
    assert captured_totals["count"] == eager_totals["count"] == 6 * eager.settings["batch_size"] + 5
    assert captured_totals["correct"] == pytest.approx(eager_totals["correct"], abs=2)
    assert captured_totals["loss"] == pytest.approx(eager_totals["loss"], rel=1e-3)
    noisy = biases_cancelled_by_batch_norm(eager.model)
    for (key, p), (_, p2), (_, q) in zip(eager.model.named_parameters(), second_eager.model.named_parameters(),
                                         captured.model.named_parameters()):
        if key in noisy:  # seven Adam steps of at most lr each, steered by rounding noise
            assert float(abs(p.data - q.data).max()) <= 7 * eager.settings["lr"], key
            continue
        # On an H100 two eager CRNN epochs put 1.4% of a conv layer's weights more than (1e-3, 1e-4) apart, and
        # captured against eager epochs 7% and 20% in two earlier runs (weights whose gradients are mostly
        # rounding noise): the captured epoch is held to the eager path's own spread, not to a fixed count.
        assert_adam_runs_agree(q.data, p.data, p2.data, eager.settings["lr"], steps=7, name=key)


@pytest.mark.parametrize("model", ["cnn", "crnn"])
def test_evaluation_replayed_from_a_graph_matches_the_eager_forward(tmp_path, model):
    """The task's evaluation forward (tasks.EvaluationForward: a CUDA graph per model and batch shape)
    gives the eager forward's outputs; after training steps and load_state_dict, which write the weights
    in place, the same graph follows them; after .double().float(), which gives them new arrays, the
    forward is captured again."""
    import nn
    from kernels import backend
    from nn import tasks
    from tests.oracle import assert_close

    run = make_run(tmp_path, "run", model, 3)
    run.train_epoch()                          # packs the optimizer: the parameters have moved once
    forward = tasks.EvaluationForward()

    def compare(label):
        run.model.eval()
        for index, (batch, count) in enumerate(tasks._evaluation_batches(
                run.splits["validation"].inputs[:5 * run.settings["batch_size"]], run.settings["batch_size"],
                "cuda")):
            replayed = backend.to_numpy(forward(run.model, batch).data)
            with nn.no_grad():
                eager = backend.to_numpy(run.model(batch).data)
            assert_close(replayed, eager, np.float32, rtol=1e-5, atol=1e-6, name=f"{label}, batch {index}")
        assert not forward.eager
        run.model.train()

    compare("after one epoch")
    graphs = dict(forward.graphs)
    assert len(graphs) == 1 and next(iter(graphs.values()))[1].captured
    saved = run.model.state_dict()             # host copies of the weights after one epoch
    run.epoch, run.batches_done = run.epoch + 1, 0     # as fit() moves on to the next epoch
    run.train_epoch()
    assert any(not np.array_equal(saved[key], backend.to_numpy(p.data)) for key, p in run.model.named_parameters())
    compare("after another epoch")
    assert forward.graphs == graphs            # the same graph, reading the updated weights
    # load_state_dict copies into the model's own arrays (as torch's does): the same graph replays the
    # loaded values (those of one epoch ago, which the eager forward reads too)
    run.model.load_state_dict(saved)
    compare("after load_state_dict")
    assert forward.graphs == graphs
    # new arrays (the old ones held, so that none of them is handed out again): captured again
    held = [p.data for p in run.model.parameters()]
    run.model.double().float()
    assert all(p.data is not old for p, old in zip(run.model.parameters(), held))
    compare("after double().float()")
    assert forward.graphs.keys() == graphs.keys() and forward.graphs != graphs   # captured again
