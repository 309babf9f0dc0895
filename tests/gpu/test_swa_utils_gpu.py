"""nn.swa_utils on a real GPU: the EMA of a CUDA model against torch's AveragedModel, and an EMA update
recorded inside a captured training step (nn.capture) agreeing with eager steps. Needs a GPU."""
import numpy as np

import nn
from nn import swa_utils
from tests.gpu.test_capture_gpu import CASES, make_training
from tests.oracle import assert_close, torch_module

REPLAYS = 10


def _training_with_average(name, decay):
    build, shape, optimizer_name, options = CASES[name]
    model, _, scheduler, step = make_training(build, optimizer_name, options)
    averaged = swa_utils.AveragedModel(model, multi_avg_fn=swa_utils.get_ema_multi_avg_fn(decay))

    def step_and_average(inputs, targets):
        loss = step(inputs, targets)
        averaged.update_parameters(model)
        return loss

    return model, averaged, scheduler, step_and_average, shape


def test_captured_ema_agrees_with_eager_steps(deterministic):
    import cupy
    _, eager_averaged, eager_scheduler, eager_step, shape = _training_with_average("cnn-sgd-momentum", 0.8)
    model, averaged, scheduler, step, _ = _training_with_average("cnn-sgd-momentum", 0.8)
    captured = nn.capture(step)     # the first call (the average's first update, a copy) runs eagerly
    rng = np.random.default_rng(3)
    calls = 2 + REPLAYS
    for _ in range(calls):
        inputs = nn.Tensor(cupy.asarray(rng.random(shape, dtype=np.float32)))
        targets = cupy.asarray(rng.integers(0, 10, size=shape[0]))
        eager_step(inputs, targets)
        captured(inputs, targets)
        eager_scheduler.step()
        scheduler.step()
    assert captured.captured
    saved, expected = averaged.state_dict(), eager_averaged.state_dict()
    assert int(saved["n_averaged"]) == int(expected["n_averaged"]) == calls   # counted by every replay
    for key, value in expected.items():
        assert_close(saved[key], value, np.float32, rtol=1e-4, atol=1e-6, name=key)
    # averaged, not a copy of the live weights
    live = model.state_dict()
    assert not np.allclose(saved["module.features.0.weight"], live["features.0.weight"])


def test_ema_on_gpu_matches_torch():
    import cupy
    torch = torch_module()
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
    model, averaged, _, step, shape = _training_with_average("mlp-adam", 0.9)
    twin = torch.nn.Sequential(torch.nn.Linear(12, 48), torch.nn.ReLU(), torch.nn.Linear(48, 10))
    reference = AveragedModel(twin, multi_avg_fn=get_ema_multi_avg_fn(0.9))
    rng = np.random.default_rng(4)
    for _ in range(6):
        inputs = nn.Tensor(cupy.asarray(rng.random(shape, dtype=np.float32)))
        step(inputs, cupy.asarray(rng.integers(0, 10, size=shape[0])))
        twin.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
        reference.update_parameters(twin)
    for key, value in reference.state_dict().items():
        assert_close(averaged.state_dict()[key], value.numpy(), np.float32, name=key)
