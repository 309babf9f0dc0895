"""The direct launcher (the default, kernels/cuda/launch.py) on a real GPU: training steps of
the three models and of the per-step LSTM path give the losses and weights they give through Numba's
launcher, every kernel they launch is replayed after its first launch (none is left to Numba), and a step
captured into a CUDA graph under it replays as the eager steps run. Needs a GPU (skipped elsewhere)."""
import numpy as np
import pytest

import nn
from kernels.cuda import conv_winograd, launch, rnn as cuda_rnn
from nn import models
from tests.gpu.test_capture_gpu import make_training
from tests.gpu.test_models_gpu import LOSS_TOLERANCE, WEIGHT_TOLERANCE
from tests.oracle import assert_close

STEPS = 3


def cnn_case(rng):
    return (lambda: models.CNN(channels=(8, 16), hidden=32), rng.random((16, 1, 8, 8), dtype=np.float32),
            rng.integers(0, 10, 16), "cross_entropy")


def lstm_case(rng):
    return (lambda: models.RNNClassifier(input_size=8, hidden_size=48, num_classes=10, cell="lstm", num_layers=2,
                                         bidirectional=True),
            rng.random((16, 8, 8), dtype=np.float32), rng.integers(0, 10, 16), "cross_entropy")


def crnn_case(rng):
    # 64 channels at the end, so the Winograd convolution's kernels run too (forced below)
    return (lambda: models.CRNN(image_height=12, in_channels=1, num_classes=10, channels=(8, 16, 16, 16, 64, 64, 64),
                                hidden_size=32),
            rng.random((8, 1, 12, 40), dtype=np.float32), rng.integers(1, 11, (8, 4)), "ctc")


CASES = {"cnn": cnn_case, "lstm-persistent": lstm_case, "lstm-per-step": lstm_case, "crnn": crnn_case}


def run_steps(case, which, monkeypatch, after_step=lambda index: None):
    """STEPS SGD steps from the same seed: the losses and the final weights, on the host (the callers run under
    the `deterministic` fixture: no atomics in the conv weight gradients)."""
    import cupy
    monkeypatch.setattr(launch, "launcher", which)
    monkeypatch.setattr(conv_winograd, "force_algorithm", "winograd")
    monkeypatch.setattr(cuda_rnn, "force_path", "step" if case == "lstm-per-step" else None)
    build, inputs, targets, loss_name = CASES[case](np.random.default_rng(3))
    nn.manual_seed(0)
    model = build().to("cuda")
    optimizer = nn.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x, y = nn.Tensor(cupy.asarray(inputs)), cupy.asarray(targets)
    losses = []
    for index in range(STEPS):
        optimizer.zero_grad()
        output = model(x)
        if loss_name == "ctc":
            lengths = cupy.full(output.shape[1], output.shape[0], dtype=np.int64)
            loss = nn.functional.ctc_loss(output, y, lengths, cupy.full(len(y), y.shape[1], dtype=np.int64))
        else:
            loss = nn.functional.cross_entropy(output, y)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        losses.append(float(loss.numpy()))
        after_step(index)
    return np.array(losses, np.float32), {k: cupy.asnumpy(v) for k, v in model.state_dict().items()}


def _count_replays(monkeypatch):
    """The ids of the ReplayedLaunch objects that launch from now on (the launches not sent through Numba)."""
    replayed = set()
    original = launch.ReplayedLaunch.launch
    monkeypatch.setattr(launch.ReplayedLaunch, "launch",
                        lambda self, args: (replayed.add(id(self)), original(self, args)))
    monkeypatch.setattr(launch, "_replays", {})
    monkeypatch.setattr(launch, "_replay_failed", None)
    return replayed


def _assert_every_launch_replayable():
    assert launch._replay_failed is None, f"the direct launcher gave up: {launch._replay_failed}"
    left_to_numba = [key[0] for key, replay in launch._replays.items() if replay is None]
    assert not left_to_numba, f"launches not replayed: {left_to_numba}"


@pytest.mark.parametrize("case", list(CASES))
def test_direct_launches_train_as_numba_launches_do(case, monkeypatch, deterministic):
    # The Numba pass first: it also grows gemm's shared split-K workspace to its full size, so no replay of
    # the direct pass is keyed on a workspace that a later, larger GEMM of its first step replaces.
    numba_losses, numba_weights = run_steps(case, "numba", monkeypatch)
    replayed, first_step_replays = _count_replays(monkeypatch), {}
    direct_losses, direct_weights = run_steps(
        case, "direct", monkeypatch,
        after_step=lambda index: index == 0 and first_step_replays.update(launch._replays))
    _assert_every_launch_replayable()
    # the later steps launch what the first did: each of those launches was replayed, not sent through Numba
    assert first_step_replays and all(id(replay) in replayed for replay in first_step_replays.values())
    # the same kernels on the same data: only atomic sums may round differently
    assert_close(direct_losses, numba_losses, np.float32, **LOSS_TOLERANCE)
    # the CRNN's batch norm and CTC carry that rounding into every weight (WEIGHT_TOLERANCE says how far)
    tolerance = WEIGHT_TOLERANCE if case == "crnn" else dict(rtol=1e-4, atol=1e-5)
    for name, weight in numba_weights.items():
        assert_close(direct_weights[name], weight, np.float32, **tolerance, name=name)


def test_a_step_captured_under_the_direct_launcher_replays_as_eager_steps_run(monkeypatch):
    import cupy
    losses = {}
    for which in ("numba", "direct"):
        if which == "direct":
            replayed = _count_replays(monkeypatch)
        monkeypatch.setattr(launch, "launcher", which)
        _, _, _, step = make_training(lambda: models.CNN(channels=(8, 16), hidden=32), "SGD",
                                      dict(lr=0.05, momentum=0.9))
        run = step if which == "numba" else nn.capture(step)
        rng = np.random.default_rng(5)
        losses[which] = []
        for _ in range(6):
            inputs = nn.Tensor(cupy.asarray(rng.random((16, 1, 8, 8), dtype=np.float32)))
            losses[which].append(float(run(inputs, cupy.asarray(rng.integers(0, 10, 16))).numpy()))
    assert run.captured
    _assert_every_launch_replayable()
    assert replayed   # the captured launches were replays (the eager warm-up made them)
    assert_close(np.float32(losses["direct"]), np.float32(losses["numba"]), np.float32, **LOSS_TOLERANCE)
