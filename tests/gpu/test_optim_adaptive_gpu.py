"""RMSprop and Adagrad kernels on a real GPU against the CPU path (float64 reference) at realistic sizes, from a
CUDA graph, and nn.optim.RMSprop / Adagrad in a step captured by nn.capture. Needs a GPU (skipped elsewhere)."""
import numpy as np
import pytest

import kernels
import nn
from tests.gpu.test_capture_gpu import make_training, mlp
from tests.oracle import assert_close, random_array

SIZE = 1_000_003   # not a multiple of the block size


def _grad(seed, step):
    return random_array((SIZE,), np.float64, seed=seed + step) * (1 + 3 * (step % 2))


def _cosine_lr(step, base=1e-2, period=7):
    return 0.5 * base * (1.0 + np.cos(np.pi * step / period))


@pytest.mark.parametrize("options", [dict(lr=1e-2),
                                     dict(lr=1e-2, momentum=0.9, centered=True, weight_decay=0.05, maximize=True),
                                     dict(lr=1e-2, alpha=0.9, momentum=0.5, weight_decay=1e-4),
                                     dict(lr=1e-2, alpha=0.3, eps=1e-4, centered=True)])
def test_rmsprop_on_gpu_matches_cpu(options):
    import cupy
    param = random_array((SIZE,), np.float64, seed=1)
    state = [np.zeros(SIZE), np.zeros(SIZE) if options.get("centered") else None,
             np.zeros(SIZE) if options.get("momentum") else None]
    param_gpu = cupy.asarray(param, dtype=cupy.float32)
    state_gpu = [None if s is None else cupy.zeros(SIZE, cupy.float32) for s in state]
    for step in range(5):
        grad = _grad(10, step)
        kernels.rmsprop_update(param, grad, *state, **options)
        kernels.rmsprop_update(param_gpu, cupy.asarray(grad, dtype=cupy.float32), *state_gpu, **options)
    assert_close(param_gpu, param, np.float32)
    for actual, expected in zip(state_gpu, state):
        if expected is not None:
            assert_close(actual, expected, np.float32)


@pytest.mark.parametrize("options", [dict(lr=1e-2),
                                     dict(lr=5e-2, lr_decay=0.2, weight_decay=0.05, maximize=True, initial=0.1),
                                     dict(lr=1e-1, eps=1e-6, initial=0.5)])
def test_adagrad_on_gpu_matches_cpu(options):
    import cupy
    options = dict(options)
    initial = options.pop("initial", 0.0)
    param = random_array((SIZE,), np.float64, seed=2)
    state_sum = np.full(SIZE, initial)
    param_gpu = cupy.asarray(param, dtype=cupy.float32)
    sum_gpu = cupy.full(SIZE, initial, cupy.float32)
    for step in range(1, 6):
        grad = _grad(20, step)
        kernels.adagrad_update(param, grad, state_sum, step=step, **options)
        kernels.adagrad_update(param_gpu, cupy.asarray(grad, dtype=cupy.float32), sum_gpu, step=step, **options)
    assert_close(param_gpu, param, np.float32)
    assert_close(sum_gpu, state_sum, np.float32)


def test_updates_on_gpu_non_contiguous_arrays():
    import cupy
    storage = random_array((512, 300), np.float64, seed=3)
    grad = random_array((512, 150), np.float64, seed=4)
    storage_gpu = cupy.asarray(storage, dtype=cupy.float32)
    state = np.full((2, 512, 300), 0.1)
    state_gpu = cupy.asarray(state, dtype=cupy.float32)
    for xp_storage, xp_state, xp_grad in ((storage, state, grad),
                                          (storage_gpu, state_gpu, cupy.asarray(grad, dtype=cupy.float32))):
        kernels.rmsprop_update(xp_storage[:, ::2], xp_grad, xp_state[0, :, ::2], xp_state[1, :, ::2], centered=True,
                               lr=0.1)
        kernels.adagrad_update(xp_storage[:, ::2], xp_grad, xp_state[1, :, 1::2], step=3, lr=0.1, lr_decay=0.5)
    assert_close(storage_gpu, storage, np.float32)
    assert_close(state_gpu, state, np.float32)


def test_rmsprop_with_device_lr_matches_cpu():
    import cupy
    param = random_array((SIZE,), np.float64, seed=5)
    state = [np.zeros(SIZE) for _ in range(3)]
    param_gpu = cupy.asarray(param, dtype=cupy.float32)
    state_gpu = [cupy.zeros(SIZE, cupy.float32) for _ in range(3)]
    lr_gpu = cupy.zeros(1, cupy.float32)
    options = dict(momentum=0.9, centered=True, weight_decay=0.05)
    for step in range(1, 8):
        grad = _grad(50, step)
        lr_gpu.fill(_cosine_lr(step))
        kernels.rmsprop_update(param, grad, *state, lr=float(np.float32(_cosine_lr(step))), **options)
        kernels.rmsprop_update(param_gpu, cupy.asarray(grad, dtype=cupy.float32), *state_gpu, lr=lr_gpu, **options)
    assert_close(param_gpu, param, np.float32)
    for actual, expected in zip(state_gpu, state):
        assert_close(actual, expected, np.float32)


def test_adagrad_with_device_step_and_lr_matches_cpu():
    """step and lr in 1-element CuPy arrays (as nn.optim passes them): the decayed rate computed on the device."""
    import cupy
    param = random_array((SIZE,), np.float64, seed=6)
    state_sum = np.full(SIZE, 0.1)
    param_gpu, sum_gpu = cupy.asarray(param, dtype=cupy.float32), cupy.full(SIZE, 0.1, cupy.float32)
    step_gpu, lr_gpu = cupy.zeros(1, cupy.float32), cupy.zeros(1, cupy.float32)
    for step in range(1, 8):
        grad = _grad(60, step)
        step_gpu += 1
        lr_gpu.fill(_cosine_lr(step))
        kernels.adagrad_update(param, grad, state_sum, step=step, lr=float(np.float32(_cosine_lr(step))),
                               lr_decay=0.3, weight_decay=0.05)
        kernels.adagrad_update(param_gpu, cupy.asarray(grad, dtype=cupy.float32), sum_gpu, step=step_gpu, lr=lr_gpu,
                               lr_decay=0.3, weight_decay=0.05)
    assert float(step_gpu[0]) == 7.0
    assert_close(param_gpu, param, np.float32)
    assert_close(sum_gpu, state_sum, np.float32)


def test_updates_replayed_from_a_cuda_graph_follow_step_and_lr():
    """The mechanism nn.capture relies on, without nn: a graph holding `step += 1`, the Adagrad kernel and the
    RMSprop kernel (each on its own parameter), replayed 10 times with lr rewritten between replays, equals 10
    eager steps."""
    import cupy
    size = 100_003
    grad = random_array((size,), np.float64, seed=8)
    params = [random_array((size,), np.float64, seed=7 + 10 * k) for k in range(2)]
    expected = [p.copy() for p in params]
    state = [np.full(size, 0.1), np.zeros(size), np.zeros(size), np.zeros(size)]   # sum; square, grad avg, buffer
    params_gpu = [cupy.asarray(p, dtype=cupy.float32) for p in params]
    state_gpu = [cupy.asarray(s, dtype=cupy.float32) for s in state]
    grad_gpu = cupy.asarray(grad, dtype=cupy.float32)
    step_gpu, lr_gpu = cupy.zeros(1, cupy.float32), cupy.zeros(1, cupy.float32)
    rmsprop = dict(momentum=0.9, centered=True)

    def one_step():
        step_gpu[...] += 1
        kernels.adagrad_update(params_gpu[0], grad_gpu, state_gpu[0], step=step_gpu, lr=lr_gpu, lr_decay=0.2)
        kernels.rmsprop_update(params_gpu[1], grad_gpu, *state_gpu[1:], lr=lr_gpu, **rmsprop)

    def reference(step):
        lr = float(np.float32(_cosine_lr(step)))
        kernels.adagrad_update(expected[0], grad, state[0], step=step, lr=lr, lr_decay=0.2)
        kernels.rmsprop_update(expected[1], grad, *state[1:], lr=lr, **rmsprop)

    lr_gpu.fill(_cosine_lr(1))
    one_step()                       # eager: compiles the kernels, step 1
    reference(1)
    stream = cupy.cuda.Stream(non_blocking=True)
    stream.wait_event(cupy.cuda.get_current_stream().record())
    with stream:
        stream.begin_capture()
        one_step()
        graph = stream.end_capture()
    caller = cupy.cuda.get_current_stream()
    for step in range(2, 12):
        lr_gpu.fill(_cosine_lr(step))     # between replays, on the stream they run on
        graph.launch(stream=caller)
        reference(step)
    caller.synchronize()
    assert float(step_gpu[0]) == 11.0
    for actual, wanted in zip(params_gpu + state_gpu, expected + state):
        assert_close(actual, wanted, np.float32)


CAPTURE_CASES = {
    "rmsprop": ("RMSprop", dict(lr=1e-3, momentum=0.9, centered=True)),
    "rmsprop-flat": ("RMSprop", dict(lr=1e-3, alpha=0.9, weight_decay=1e-4, flat=True)),
    "adagrad": ("Adagrad", dict(lr=1e-2, lr_decay=0.1, initial_accumulator_value=0.1)),
    "adagrad-flat": ("Adagrad", dict(lr=1e-2, lr_decay=0.1, weight_decay=1e-4, flat=True)),
}


@pytest.mark.parametrize("name", list(CAPTURE_CASES))
def test_captured_training_step_agrees_with_eager_steps(name):
    """nn.capture of a whole step with these optimizers: the device step counts advance in every replay (Adagrad's
    rate follows them) and the scheduler's lr reaches the graph, as eager steps; state dicts agree."""
    import cupy
    optimizer_name, options = CAPTURE_CASES[name]
    eager_options = {key: value for key, value in options.items() if key != "flat"}
    eager_model, eager_optimizer, eager_scheduler, eager_step = make_training(mlp, optimizer_name, eager_options)
    model, optimizer, scheduler, step = make_training(mlp, optimizer_name, options)
    captured = nn.capture(step)
    rng = np.random.default_rng(1)
    calls = 12   # an eager warm-up, the call that captures and replays, then 10 more replays
    for index in range(calls):
        inputs = nn.Tensor(cupy.asarray(rng.random((64, 12), dtype=np.float32)))
        targets = cupy.asarray(rng.integers(0, 10, size=64))
        eager_loss = float(eager_step(inputs, targets).numpy())
        captured_loss = float(captured(inputs, targets).numpy())
        assert captured.captured == (index >= 1)
        assert_close(np.float32(captured_loss), np.float32(eager_loss), np.float32, rtol=1e-5, atol=1e-6,
                     name=f"loss at step {index}")
        eager_scheduler.step()
        scheduler.step()
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
