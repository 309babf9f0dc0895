"""Fused RMSprop and Adagrad updates (CPU path) against torch.optim.RMSprop / Adagrad over 5 consecutive steps."""
import itertools

import numpy as np
import pytest

import kernels
from tests.oracle import assert_close, random_array, torch_module

SHAPE = (7, 13)
STEPS = 5


def _gradients(dtype, seed):
    # a wide range from step to step, so that the running averages differ from the latest square
    return [random_array(SHAPE, dtype, seed=seed + step) * (1.0 + 4.0 * (step % 2)) for step in range(STEPS)]


def _torch_run(optimizer_class, param0, grads, **options):
    torch = torch_module()
    param = torch.tensor(param0.astype(np.float64), requires_grad=True)
    optimizer = optimizer_class([param], **options)
    for grad in grads:
        param.grad = torch.tensor(grad.astype(np.float64))
        optimizer.step()
    return param.detach().numpy(), optimizer.state[param]


def _name(options):
    return ",".join(f"{k}={v}" for k, v in options.items())


# every combination of momentum, centered, weight_decay and maximize; alpha < 0.5 takes lerp's other branch
RMSPROP_CASES = [dict(lr=0.01, momentum=momentum, centered=centered, weight_decay=decay, maximize=maximize)
                 for momentum, centered, decay, maximize in itertools.product((0.0, 0.9), (False, True), (0.0, 0.1),
                                                                              (False, True))]
RMSPROP_CASES += [dict(lr=0.02, alpha=0.3, eps=1e-4, centered=True, momentum=0.5),
                  dict(lr=0.02, alpha=0.3, eps=1e-3, weight_decay=0.1, maximize=True)]


def _rmsprop_state(param, options):
    square_avg = np.zeros_like(param)
    grad_avg = np.zeros_like(param) if options.get("centered") else None
    buffer = np.zeros_like(param) if options.get("momentum") else None
    return square_avg, grad_avg, buffer


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("options", RMSPROP_CASES, ids=_name)
def test_rmsprop_matches_torch(options, dtype):
    torch = torch_module()
    param = random_array(SHAPE, dtype, seed=1)
    grads = _gradients(dtype, seed=10)
    expected, state = _torch_run(torch.optim.RMSprop, param, grads, **options)
    square_avg, grad_avg, buffer = _rmsprop_state(param, options)
    for grad in grads:
        kernels.rmsprop_update(param, grad, square_avg, grad_avg, buffer, **options)
    assert_close(param, expected, dtype, name="param")
    assert_close(square_avg, state["square_avg"].numpy(), dtype, name="square_avg")
    if grad_avg is not None:
        assert_close(grad_avg, state["grad_avg"].numpy(), dtype, name="grad_avg")
    if buffer is not None:
        assert_close(buffer, state["momentum_buffer"].numpy(), dtype, name="momentum_buffer")


ADAGRAD_CASES = [dict(lr=0.05, lr_decay=decay_rate, weight_decay=decay, initial_accumulator_value=initial,
                      maximize=maximize)
                 for decay_rate, decay, initial, maximize in itertools.product((0.0, 0.3), (0.0, 0.1), (0.0, 0.5),
                                                                               (False, True))]
ADAGRAD_CASES.append(dict(lr=0.1, eps=1e-3, lr_decay=1.0))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("options", ADAGRAD_CASES, ids=_name)
def test_adagrad_matches_torch(options, dtype):
    torch = torch_module()
    options = dict(options)
    param = random_array(SHAPE, dtype, seed=2)
    grads = _gradients(dtype, seed=20)
    expected, state = _torch_run(torch.optim.Adagrad, param, grads, **options)
    state_sum = np.full_like(param, options.pop("initial_accumulator_value", 0.0))
    for step, grad in enumerate(grads, start=1):
        kernels.adagrad_update(param, grad, state_sum, step=step, **options)
    assert_close(param, expected, dtype, name="param")
    assert_close(state_sum, state["sum"].numpy(), dtype, name="sum")


@pytest.mark.parametrize("name", ["RMSprop", "Adagrad"])
def test_updates_work_on_non_contiguous_views(name):
    """param, gradient and state arrays given as strided views: updated in place through the views."""
    torch = torch_module()
    storage = random_array((6, 10), np.float64, seed=3)
    param = storage[:, ::2]
    grads = [random_array((5, 6), np.float64, seed=30 + k).T for k in range(STEPS)]
    options = dict(lr=0.01, momentum=0.9, centered=True) if name == "RMSprop" else dict(lr=0.05, lr_decay=0.1)
    expected, state = _torch_run(getattr(torch.optim, name), param.copy(), [np.ascontiguousarray(g) for g in grads],
                                 **options)
    state_storage = np.zeros((3, 12, 10))
    views = [state_storage[k, ::2, ::2] for k in range(3)]
    for step, grad in enumerate(grads, start=1):
        if name == "RMSprop":
            kernels.rmsprop_update(param, grad, *views, **options)
        else:
            kernels.adagrad_update(param, grad, views[0], step=step, **options)
    assert_close(storage[:, ::2], expected, np.float64)
    assert_close(views[0], state["square_avg" if name == "RMSprop" else "sum"].numpy(), np.float64)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_adagrad_with_step_and_lr_arrays_equals_scalar_path(dtype):
    """The array form (how nn.optim passes step and lr on the GPU) reads the same values on the CPU."""
    param = random_array(SHAPE, dtype, seed=4)
    state_sum = np.full_like(param, 0.1)
    expected, expected_sum = param.copy(), state_sum.copy()
    step_array, lr_array = np.zeros(1, dtype), np.zeros((1, 1), np.float64)
    for step, grad in enumerate(_gradients(dtype, seed=40), start=1):
        step_array += 1
        lr_array[...] = 0.05 * 0.7 ** step   # a schedule: the value read changes from call to call
        kernels.adagrad_update(param, grad, state_sum, step=step_array, lr=lr_array, lr_decay=0.2, weight_decay=0.1)
        kernels.adagrad_update(expected, grad, expected_sum, step=step, lr=0.05 * 0.7 ** step, lr_decay=0.2,
                               weight_decay=0.1)
    np.testing.assert_array_equal(param, expected)
    np.testing.assert_array_equal(state_sum, expected_sum)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_rmsprop_with_lr_array_equals_scalar_path(dtype):
    options = dict(momentum=0.9, centered=True, weight_decay=0.1)
    param = random_array(SHAPE, dtype, seed=5)
    state = _rmsprop_state(param, options)
    expected = [param.copy()] + [s.copy() for s in state]
    lr_array = np.zeros(1, np.float32)
    for step, grad in enumerate(_gradients(dtype, seed=50)):
        lr_array[0] = 0.01 * 0.5 ** step
        kernels.rmsprop_update(param, grad, *state, lr=lr_array, **options)
        kernels.rmsprop_update(expected[0], grad, *expected[1:], lr=float(lr_array[0]), **options)
    for actual, reference in zip((param,) + state, expected):
        np.testing.assert_array_equal(actual, reference)


def test_optim_adaptive_rejects_bad_input():
    p, g = np.ones(4, np.float32), np.ones(4, np.float32)
    with pytest.raises(ValueError, match="rmsprop_update: grad_avg is required when centered=True"):
        kernels.rmsprop_update(p, g, p.copy(), centered=True)
    with pytest.raises(ValueError, match=r"rmsprop_update: momentum_buffer is required when momentum > 0"):
        kernels.rmsprop_update(p, g, p.copy(), momentum=0.9)
    with pytest.raises(ValueError, match="rmsprop_update: alpha must be >= 0.0, got -0.5"):
        kernels.rmsprop_update(p, g, p.copy(), alpha=-0.5)
    with pytest.raises(ValueError, match="rmsprop_update: eps must be >= 0.0"):
        kernels.rmsprop_update(p, g, p.copy(), eps=-1.0)
    with pytest.raises(ValueError, match="rmsprop_update: lr must be >= 0.0"):
        kernels.rmsprop_update(p, g, p.copy(), lr=np.array([-0.1], np.float32))
    with pytest.raises(ValueError, match=r"rmsprop_update: square_avg must have shape \(4,\)"):
        kernels.rmsprop_update(p, g, np.ones(3, np.float32))
    with pytest.raises(ValueError, match=r"rmsprop_update: grad_avg must have shape"):
        kernels.rmsprop_update(p, g, p.copy(), np.ones(5, np.float32), centered=True)
    with pytest.raises(TypeError, match="rmsprop_update: all arrays must share one dtype"):
        kernels.rmsprop_update(p, g, np.ones(4))
    with pytest.raises(TypeError, match="rmsprop_update: momentum must be a Python number"):
        kernels.rmsprop_update(p, g, p.copy(), p.copy(), momentum="0.9")
    with pytest.raises(ValueError, match="adagrad_update: step must be a positive integer"):
        kernels.adagrad_update(p, g, p.copy(), step=0)
    with pytest.raises(ValueError, match="adagrad_update: step must be a positive integer"):
        kernels.adagrad_update(p, g, p.copy(), step=np.array([1.5]))
    with pytest.raises(ValueError, match="adagrad_update: lr_decay must be >= 0.0"):
        kernels.adagrad_update(p, g, p.copy(), step=1, lr_decay=-0.1)
    with pytest.raises(ValueError, match="adagrad_update: weight_decay must be >= 0.0"):
        kernels.adagrad_update(p, g, p.copy(), step=1, weight_decay=-0.1)
    with pytest.raises(ValueError, match=r"adagrad_update: state_sum must have shape \(4,\)"):
        kernels.adagrad_update(p, g, np.ones((4, 1), np.float32), step=1)
    with pytest.raises(TypeError, match="adagrad_update: param must be float32 or float64"):
        kernels.adagrad_update(np.ones(4, np.int32), np.ones(4, np.int32), np.ones(4, np.int32), step=1)
    with pytest.raises(ValueError, match=r"adagrad_update: lr given as an array must have 1 element"):
        kernels.adagrad_update(p, g, p.copy(), step=1, lr=np.ones(2))
