"""The one oracle helper: random inputs, comparisons, PyTorch (float64, CPU) and finite differences.

Every op is checked against an independent reference: PyTorch on the CPU where it has the op,
NumPy in float64 otherwise, and central finite differences in float64 for gradients.
"""
import numpy as np

from kernels import backend

# (rtol, atol) for comparing an op computed in this dtype with a float64 reference.
TOLERANCE = {np.dtype(np.float32): (2e-4, 2e-5), np.dtype(np.float64): (1e-9, 1e-11)}


def random_array(shape, dtype=np.float32, seed=0, low=-1.0, high=1.0):
    """Uniform random values (never zeros) of the given shape and dtype, on the CPU."""
    rng = np.random.default_rng(seed)
    return rng.uniform(low, high, size=shape).astype(dtype)


def to_numpy(x):
    return backend.to_numpy(x)


def assert_close(actual, expected, dtype=None, rtol=None, atol=None, scale=1.0, name="result"):
    """Compare `actual` (NumPy or CuPy) with `expected`; tolerances default to those of `dtype`.

    `scale` widens the tolerance for long reductions (e.g. sqrt(K) for a K-long dot product).
    """
    actual, expected = to_numpy(actual), to_numpy(expected)
    default_rtol, default_atol = TOLERANCE[np.dtype(dtype or actual.dtype)]
    rtol = default_rtol * scale if rtol is None else rtol
    atol = default_atol * scale if atol is None else atol
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != expected {expected.shape}"
    np.testing.assert_allclose(actual.astype(np.float64), np.asarray(expected, np.float64),
                               rtol=rtol, atol=atol, err_msg=name)


def assert_adam_runs_agree(actual, expected, second_expected, lr, steps, factor=3.0, floor=0.02, name="result"):
    """Weights of two runs of the same Adam steps (`actual`, `expected`) that should differ only in the
    rounding of atomic sums, judged against a second run of `expected`'s own path (`second_expected`).
    Adam divides each gradient by its own RMS, so a weight whose gradient is mostly rounding noise moves
    by up to lr a step in either direction: every weight must be within 2 * steps * lr, and the mean
    difference at most `factor` times that of the two runs of one path plus `floor` * lr. (H100, 2026-11-27:
    after seven CRNN steps, two eager runs had up to 1.4% of a conv layer's weights more than (1e-3, 1e-4)
    apart, over the 1% a fixed count allowed, and a captured against an eager run 7% and 20% in two calls
    on another machine; the mean difference of a tensor between two eager runs reached 0.0124 lr. On the
    CPU, which has no such noise, a 2% larger lr over three steps moves every CRNN tensor's mean by
    0.03-0.04 lr; a stale batch or a wrong update moves it by a good part of lr.)"""
    actual, expected, second_expected = (to_numpy(a).astype(np.float64) for a in (actual, expected, second_expected))
    assert actual.shape == expected.shape == second_expected.shape, \
        f"{name}: shapes {actual.shape}, {expected.shape}, {second_expected.shape} differ"
    difference = np.abs(actual - expected)
    bound = 2 * steps * lr
    assert difference.max() <= bound, f"{name}: moved {difference.max():.3g} apart, more than 2 x {steps} x lr {lr}"
    noise = float(np.abs(second_expected - expected).mean())
    allowed = factor * noise + floor * lr
    assert difference.mean() <= allowed, f"{name}: mean difference {difference.mean():.3g} " \
        f"({difference.mean() / lr:.4f} lr), more than {factor} x the run-to-run {noise:.3g} + {floor} lr"


def torch_module():
    import torch
    torch.set_num_threads(2)
    return torch


def torch_reference(fn, *arrays, grad_output=None, grad_of=None):
    """Run `fn(*tensors)` in float64 PyTorch on the CPU.

    Returns (output as float64 NumPy, gradients of sum(output * grad_output) with respect to the
    arrays at the positions in `grad_of`, or an empty list when no grad_output is given).
    """
    torch = torch_module()
    grad_of = range(len(arrays)) if grad_of is None else grad_of
    tensors = []
    for index, array in enumerate(arrays):
        value = to_numpy(array)
        if np.issubdtype(value.dtype, np.floating):
            tensor = torch.tensor(value, dtype=torch.float64, requires_grad=(grad_output is not None and index in grad_of))
        else:
            tensor = torch.tensor(value)
        tensors.append(tensor)
    output = fn(*tensors)
    grads = []
    if grad_output is not None:
        output.backward(torch.tensor(to_numpy(grad_output), dtype=torch.float64))
        grads = [tensors[i].grad.numpy() for i in grad_of]
    return output.detach().numpy(), grads


def finite_difference_gradient(scalar_fn, x, eps=1e-6):
    """Central differences of scalar_fn at the float64 array `x` (perturbed in place, then restored)."""
    assert x.dtype == np.float64, "finite differences need float64"
    grad = np.zeros_like(x)
    flat, flat_grad = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        saved = flat[i]
        flat[i] = saved + eps
        plus = scalar_fn()
        flat[i] = saved - eps
        minus = scalar_fn()
        flat[i] = saved
        flat_grad[i] = (plus - minus) / (2 * eps)
    return grad
