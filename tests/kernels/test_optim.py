"""Fused optimizer updates (CPU path) against torch.optim.SGD / Adam / AdamW over 5 consecutive steps."""
import numpy as np
import pytest

import kernels
from tests.oracle import assert_close, random_array, torch_module

SHAPE = (7, 13)
STEPS = 5


def _gradients(dtype, seed):
    return [random_array(SHAPE, dtype, seed=seed + step) for step in range(STEPS)]


def _torch_run(optimizer_class, param0, grads, **options):
    torch = torch_module()
    param = torch.tensor(param0.astype(np.float64), requires_grad=True)
    optimizer = optimizer_class([param], **options)
    for grad in grads:
        param.grad = torch.tensor(grad.astype(np.float64))
        optimizer.step()
    return param.detach().numpy(), optimizer.state[param]


SGD_CASES = [
    dict(lr=0.1),
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.9, dampening=0.3),
    dict(lr=0.05, momentum=0.8, nesterov=True),
    dict(lr=0.02, momentum=0.9, weight_decay=0.01),
    dict(lr=0.03, momentum=0.7, weight_decay=0.05, nesterov=True, maximize=True),
    dict(lr=0.1, weight_decay=0.1, maximize=True),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("options", SGD_CASES, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_sgd_matches_torch(options, dtype):
    torch = torch_module()
    param = random_array(SHAPE, dtype, seed=1)
    grads = _gradients(dtype, seed=10)
    expected, state = _torch_run(torch.optim.SGD, param, grads, **options)
    momentum = options.get("momentum", 0.0)
    buffer = np.zeros_like(param) if momentum else None
    for step, grad in enumerate(grads):
        kernels.sgd_update(param, grad, buffer, first_step=(step == 0), **options)
    assert_close(param, expected, dtype, name="param")
    if momentum:
        assert_close(buffer, state["momentum_buffer"].numpy(), dtype, name="momentum_buffer")


ADAM_CASES = [
    dict(lr=1e-2),
    dict(lr=1e-2, betas=(0.8, 0.95), eps=1e-6),
    dict(lr=1e-2, weight_decay=0.1),
    dict(lr=1e-2, weight_decay=0.1, amsgrad=True),
    dict(lr=1e-2, amsgrad=True, maximize=True),
    dict(lr=1e-2, weight_decay=0.1, decoupled=True),
    dict(lr=1e-2, weight_decay=0.05, decoupled=True, amsgrad=True, maximize=True),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("options", ADAM_CASES, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_adam_matches_torch(options, dtype):
    torch = torch_module()
    options = dict(options)
    decoupled = options.pop("decoupled", False)
    param = random_array(SHAPE, dtype, seed=2)
    grads = _gradients(dtype, seed=20)
    # A wide-range gradient makes the two moments differ from step to step (amsgrad matters).
    grads = [g * (1.0 + 4.0 * (k % 2)) for k, g in enumerate(grads)]
    expected, state = _torch_run(torch.optim.AdamW if decoupled else torch.optim.Adam, param, grads, **options)
    beta1, beta2 = options.pop("betas", (0.9, 0.999))
    amsgrad = options.get("amsgrad", False)
    exp_avg, exp_avg_sq = np.zeros_like(param), np.zeros_like(param)
    max_exp_avg_sq = np.zeros_like(param) if amsgrad else None
    for step, grad in enumerate(grads, start=1):
        kernels.adam_update(param, grad, exp_avg, exp_avg_sq, step=step, beta1=beta1, beta2=beta2,
                            decoupled_weight_decay=decoupled, max_exp_avg_sq=max_exp_avg_sq, **options)
    assert_close(param, expected, dtype, name="param")
    assert_close(exp_avg, state["exp_avg"].numpy(), dtype, name="exp_avg")
    assert_close(exp_avg_sq, state["exp_avg_sq"].numpy(), dtype, name="exp_avg_sq")
    if amsgrad:
        assert_close(max_exp_avg_sq, state["max_exp_avg_sq"].numpy(), dtype, name="max_exp_avg_sq")


def test_updates_work_on_non_contiguous_views():
    torch = torch_module()
    storage = random_array((6, 10), np.float64, seed=3)
    param = storage[:, ::2]
    grads = [random_array((5, 6), np.float64, seed=30 + k).T for k in range(STEPS)]
    expected, _ = _torch_run(torch.optim.Adam, param.copy(), [np.ascontiguousarray(g) for g in grads], lr=0.01)
    exp_avg, exp_avg_sq = np.zeros((6, 5)), np.zeros((6, 5))
    for step, grad in enumerate(grads, start=1):
        kernels.adam_update(param, grad, exp_avg, exp_avg_sq, step=step, lr=0.01)
    assert_close(storage[:, ::2], expected, np.float64)


def test_optim_rejects_bad_input():
    p, g = np.ones(4, np.float32), np.ones(4, np.float32)
    with pytest.raises(ValueError, match="sgd_update: momentum_buffer is required"):
        kernels.sgd_update(p, g, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="sgd_update: nesterov needs momentum"):
        kernels.sgd_update(p, g, np.zeros(4, np.float32), lr=0.1, momentum=0.9, dampening=0.1, nesterov=True)
    with pytest.raises(ValueError, match="sgd_update: grad must have shape"):
        kernels.sgd_update(p, np.ones(5, np.float32), lr=0.1)
    with pytest.raises(TypeError, match="sgd_update: all arrays must share one dtype"):
        kernels.sgd_update(p, np.ones(4), lr=0.1)
    with pytest.raises(TypeError, match="sgd_update: param must be float32 or float64"):
        kernels.sgd_update(np.ones(4, np.int32), np.ones(4, np.int32), lr=0.1)
    with pytest.raises(ValueError, match="adam_update: step must be a positive integer"):
        kernels.adam_update(p, g, p.copy(), p.copy(), step=0)
    with pytest.raises(ValueError, match="adam_update: beta2 must be < 1"):
        kernels.adam_update(p, g, p.copy(), p.copy(), step=1, beta2=1.0)
    with pytest.raises(ValueError, match="adam_update: max_exp_avg_sq is required"):
        kernels.adam_update(p, g, p.copy(), p.copy(), step=1, amsgrad=True)
    with pytest.raises(ValueError, match="adam_update: exp_avg_sq must have shape"):
        kernels.adam_update(p, g, p.copy(), np.ones(3, np.float32), step=1)
    with pytest.raises(TypeError, match="adam_update: lr must be a Python number"):
        kernels.adam_update(p, g, p.copy(), p.copy(), step=1, lr="0.1")
    with pytest.raises(ValueError, match=r"adam_update: lr given as an array must have 1 element, got shape \(2,\)"):
        kernels.adam_update(p, g, p.copy(), p.copy(), step=1, lr=np.ones(2))
    with pytest.raises(ValueError, match="adam_update: step must be a positive integer"):
        kernels.adam_update(p, g, p.copy(), p.copy(), step=np.array([2.5]))
    with pytest.raises(ValueError, match="sgd_update: lr must be >= 0.0"):
        kernels.sgd_update(p, g, lr=np.array([-0.1], np.float32))
    with pytest.raises(TypeError, match="sgd_update: lr array must hold a number"):
        kernels.sgd_update(p, g, lr=np.array([True]))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("options", ADAM_CASES, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_adam_with_step_and_lr_arrays_equals_scalar_path(options, dtype):
    """The array form (how nn.optim passes step and lr on the GPU) reads the same values on the CPU."""
    options = dict(options)
    options["decoupled_weight_decay"] = options.pop("decoupled", False)
    beta1, beta2 = options.pop("betas", (0.9, 0.999))
    lr = options.pop("lr")
    amsgrad = options.get("amsgrad", False)
    param = random_array(SHAPE, dtype, seed=4)
    state = [np.zeros_like(param) for _ in range(3)]
    expected = [param.copy()] + [s.copy() for s in state]
    step_array, lr_array = np.zeros(1, dtype), np.zeros((1, 1), np.float64)
    for step, grad in enumerate(_gradients(dtype, seed=40), start=1):
        step_array += 1
        lr_array[...] = lr * 0.7 ** step   # a schedule: the value read changes from call to call
        kernels.adam_update(param, grad, state[0], state[1], step=step_array, lr=lr_array, beta1=beta1, beta2=beta2,
                            max_exp_avg_sq=state[2] if amsgrad else None, **options)
        kernels.adam_update(expected[0], grad, expected[1], expected[2], step=step, lr=lr * 0.7 ** step,
                            beta1=beta1, beta2=beta2, max_exp_avg_sq=expected[3] if amsgrad else None, **options)
    for actual, reference in zip([param] + state, expected):
        np.testing.assert_array_equal(actual, reference)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("options", SGD_CASES, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_sgd_with_lr_array_equals_scalar_path(options, dtype):
    options = dict(options)
    lr = options.pop("lr")
    param = random_array(SHAPE, dtype, seed=5)
    buffer = np.zeros_like(param) if options.get("momentum") else None
    expected_param, expected_buffer = param.copy(), None if buffer is None else buffer.copy()
    lr_array = np.zeros(1, np.float32)
    for step, grad in enumerate(_gradients(dtype, seed=50)):
        lr_array[0] = lr * 0.5 ** step
        kernels.sgd_update(param, grad, buffer, lr=lr_array, first_step=(step == 0), **options)
        kernels.sgd_update(expected_param, grad, expected_buffer, lr=float(lr_array[0]), first_step=(step == 0),
                           **options)
    np.testing.assert_array_equal(param, expected_param)
    if buffer is not None:
        np.testing.assert_array_equal(buffer, expected_buffer)
