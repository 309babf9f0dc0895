"""nn.capture with the optimizers: a training step replayed from a CUDA graph while Adam's step count
advances and a scheduler changes the lr between calls agrees with the same steps run eagerly.
Needs a GPU (skipped elsewhere)."""
import numpy as np
import pytest

import nn
from nn import models
from tests.oracle import assert_close

REPLAYS = 10
# The tests here and in test_swa_utils, test_models, test_launch and test_train_gpu that compare captured and
# eager training steps run under the `deterministic` fixture (use_deterministic_algorithms). With its default
# splits the implicit convolution weight gradient adds its split partial sums with atomics, in an order that
# changes run to run; near a ReLU's or a max-pool's tie that last-bit difference picks another gradient path,
# and a few SGD steps later two runs differ by about lr (on an H100, the nineteenth session: 3% on the CNN's
# first weights in test_swa_utils_gpu.py's EMA test, in the captured run one time and the eager twin the next).
# Without those atomics (one split a tile, there) two eager and two captured CNN trainings were bit-identical.


def make_training(build, optimizer_name, options, seed=0):
    """options: the optimizer's, and `clip` (clip_grad_norm_'s max_norm) if the step clips."""
    nn.manual_seed(seed)
    model = build().to("cuda")
    options = dict(options)
    clip = options.pop("clip", None)
    optimizer = getattr(nn.optim, optimizer_name)(model.parameters(), **options)
    scheduler = nn.optim.CosineAnnealingLR(optimizer, T_max=4, eta_min=1e-4)  # short period: lr moves every step

    def step(inputs, targets):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(inputs), targets)
        loss.backward()
        if clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        return loss

    return model, optimizer, scheduler, step


def mlp():
    return nn.Sequential(nn.Linear(12, 48), nn.ReLU(), nn.Linear(48, 10))


CASES = {
    "mlp-adam": (mlp, (64, 12), "Adam", dict(lr=1e-2, amsgrad=True)),
    "mlp-adamw": (mlp, (64, 12), "AdamW", dict(lr=1e-2, weight_decay=0.1)),
    # captured with flat=True (one update launch, clipping over one buffer), run eagerly without
    "mlp-adam-flat-clip": (mlp, (64, 12), "Adam", dict(lr=1e-2, amsgrad=True, flat=True, clip=0.5)),
    "mlp-sgd-flat": (mlp, (64, 12), "SGD", dict(lr=0.1, momentum=0.9, nesterov=True, flat=True)),
    "mlp-sgd-momentum": (mlp, (64, 12), "SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
    # SGD for the CNN: its conv biases feed batch norms, so their gradients are rounding noise, which Adam
    # would magnify into visible differences between two runs that round differently.
    "cnn-sgd-momentum": (lambda: models.CNN(channels=(8, 16), hidden=32), (32, 1, 8, 8), "SGD",
                         dict(lr=0.05, momentum=0.9, weight_decay=1e-4)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_replays_with_a_scheduler_agree_with_eager_steps(name, deterministic):
    import cupy
    build, shape, optimizer_name, options = CASES[name]
    eager_options = {key: value for key, value in options.items() if key != "flat"}
    eager_model, eager_optimizer, eager_scheduler, eager_step = make_training(build, optimizer_name, eager_options)
    model, optimizer, scheduler, step = make_training(build, optimizer_name, options)
    captured = nn.capture(step)
    rng = np.random.default_rng(1)
    calls = 2 + REPLAYS   # an eager warm-up, the call that captures and replays, then REPLAYS more replays
    for index in range(calls):
        inputs = nn.Tensor(cupy.asarray(rng.random(shape, dtype=np.float32)))
        targets = cupy.asarray(rng.integers(0, 10, size=shape[0]))
        eager_loss = float(eager_step(inputs, targets).numpy())
        captured_loss = float(captured(inputs, targets).numpy())
        assert captured.captured == (index >= 1)
        assert_close(np.float32(captured_loss), np.float32(eager_loss), np.float32, rtol=1e-5, atol=1e-6,
                     name=f"loss at step {index}")
        eager_scheduler.step()
        scheduler.step()      # between replays: written through to the device lr the graph reads
        assert optimizer.param_groups[0]["lr"] == eager_optimizer.param_groups[0]["lr"]
    if options.get("flat"):
        packed = optimizer.param_groups[0].flat
        assert packed and all(p.grad.data is grad for p, (_, grad, _) in zip(model.parameters(), packed.views))
    for (key, p), (_, q) in zip(eager_model.named_parameters(), model.named_parameters()):
        assert_close(q.data, p.data, np.float32, rtol=1e-4, atol=1e-6, name=key)
    saved, expected = optimizer.state_dict(), eager_optimizer.state_dict()
    assert saved["param_groups"] == expected["param_groups"]
    for index, entry in expected["state"].items():
        for key, value in entry.items():
            if key == "step":
                assert saved["state"][index][key] == value == calls   # advanced by every replay
            else:
                assert_close(saved["state"][index][key], value, np.float32, rtol=1e-4, atol=1e-6,
                             name=f"state {index} {key}")


def test_eager_steps_after_replays_continue_from_the_device_counts():
    import cupy
    build, shape, optimizer_name, options = CASES["mlp-adam"]
    eager_model, _, _, eager_step = make_training(build, optimizer_name, options)
    model, optimizer, _, step = make_training(build, optimizer_name, options)
    captured = nn.capture(step)
    rng = np.random.default_rng(2)
    for index in range(8):
        inputs = nn.Tensor(cupy.asarray(rng.random(shape, dtype=np.float32)))
        targets = cupy.asarray(rng.integers(0, 10, size=shape[0]))
        eager_step(inputs, targets)
        (captured if index < 5 else step)(inputs, targets)   # 5 through the graph, then 3 eager
    assert optimizer.state_dict()["state"][0]["step"] == 8
    for (key, p), (_, q) in zip(eager_model.named_parameters(), model.named_parameters()):
        assert_close(q.data, p.data, np.float32, rtol=1e-4, atol=1e-6, name=key)


def test_scheduler_inside_the_captured_step_is_refused():
    import cupy
    build, shape, optimizer_name, options = CASES["mlp-sgd-momentum"]
    _, _, scheduler, step = make_training(build, optimizer_name, options)

    def step_and_schedule(inputs, targets):
        loss = step(inputs, targets)
        scheduler.step()    # Python: would run once, at capture, and the graph would replay its lr
        return loss

    captured = nn.capture(step_and_schedule)
    inputs = nn.Tensor(cupy.random.random(shape, dtype=cupy.float32))
    targets = cupy.zeros(shape[0], dtype=cupy.int64)
    captured(inputs, targets)   # eager warm-up
    with pytest.raises(RuntimeError, match="lr set to .* while a CUDA graph is being captured"):
        captured(inputs, targets)
