"""GELU (erf and tanh forms), SiLU and ELU on the CPU path: forward and backward against PyTorch in float64
and float32, float64 finite differences, ulps, NaN/inf as torch, non-contiguous input and bad input."""
import math

import numpy as np
import pytest

import kernels
from tests.oracle import assert_close, finite_difference_gradient, random_array, torch_module, torch_reference


def _functional():
    return torch_module().nn.functional


ACTIVATIONS = {
    # name: (forward, backward from (grad_out, x), torch forward)
    "gelu": (kernels.gelu, kernels.gelu_backward, lambda t: _functional().gelu(t)),
    "gelu_tanh": (lambda x: kernels.gelu(x, approximate="tanh"),
                  lambda g, x: kernels.gelu_backward(g, x, approximate="tanh"),
                  lambda t: _functional().gelu(t, approximate="tanh")),
    "silu": (kernels.silu, kernels.silu_backward, lambda t: _functional().silu(t)),
    "elu": (kernels.elu, kernels.elu_backward, lambda t: _functional().elu(t)),
    "elu_alpha": (lambda x: kernels.elu(x, alpha=0.7), lambda g, x: kernels.elu_backward(g, x, alpha=0.7),
                  lambda t: _functional().elu(t, alpha=0.7)),
}
NAMES = sorted(ACTIVATIONS)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1,), (7,), (3, 5), (2, 3, 9, 11)])
def test_activations_match_torch(name, shape, dtype):
    forward, backward, torch_fn = ACTIVATIONS[name]
    x = random_array(shape, dtype, seed=21, low=-6, high=6)
    grad_out = random_array(shape, dtype, seed=22)
    expected, (expected_grad,) = torch_reference(torch_fn, x, grad_output=grad_out)
    y, grad_in = forward(x), backward(grad_out, x)
    assert y.dtype == dtype and y.shape == shape and grad_in.dtype == dtype and grad_in.shape == shape
    assert_close(y, expected, dtype, name=f"{name} forward")
    assert_close(grad_in, expected_grad, dtype, name=f"{name} backward")


@pytest.mark.parametrize("name", NAMES)
def test_float32_matches_torch_float32(name):
    """torch computes these in float32 (its erf, tanh, exp); ours rounds float64 once: within float32 noise."""
    torch = torch_module()
    forward, backward, torch_fn = ACTIVATIONS[name]
    x = random_array((5, 31), np.float32, seed=23, low=-8, high=8)
    grad_out = random_array(x.shape, np.float32, seed=24)
    t = torch.from_numpy(x.copy()).requires_grad_(True)
    y = torch_fn(t)
    (grad,) = torch.autograd.grad(y, t, torch.from_numpy(grad_out))
    assert_close(forward(x), y.detach().numpy(), np.float32, rtol=1e-5, atol=1e-6)
    assert_close(backward(grad_out, x), grad.numpy(), np.float32, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_by_finite_differences(name):
    forward, backward, _ = ACTIVATIONS[name]
    x = random_array((3, 7), np.float64, seed=25, low=-4, high=4)
    x[np.abs(x) < 1e-2] = 0.5   # ELU: keep away from the kink at 0
    weights = random_array(x.shape, np.float64, seed=26)
    numeric = finite_difference_gradient(lambda: float((forward(x) * weights).sum()), x)
    assert_close(backward(weights, x), numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", NAMES)
def test_non_contiguous_inputs(name):
    forward, backward, torch_fn = ACTIVATIONS[name]
    x = random_array((6, 9, 5), np.float32, seed=27, low=-5, high=5).transpose(2, 0, 1)
    grad_out = random_array((9, 5, 6), np.float32, seed=28).transpose(1, 2, 0)
    assert not x.flags.c_contiguous and not grad_out.flags.c_contiguous
    expected, (expected_grad,) = torch_reference(torch_fn, x, grad_output=grad_out)
    assert_close(forward(x), expected, np.float32)
    assert_close(backward(grad_out, x), expected_grad, np.float32)


@pytest.mark.parametrize("name", NAMES)
def test_empty_input(name):
    forward, backward, _ = ACTIVATIONS[name]
    x = np.empty((0, 3), np.float32)
    assert forward(x).shape == (0, 3) and backward(x, x).shape == (0, 3)


SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -0.0, -100.0, 100.0, -1e-3, 1e-3, -30.0, 30.0]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_and_inf_as_torch(name, dtype):
    """NaN where torch gives NaN (a NaN input: NaN out, NaN gradient, but for ELU's gradient, which passes
    grad_out on as torch's scalar path does), the same infinities, and no overflow to NaN at |x| = 100. (Torch's
    ELU gradient at a NaN input depends on its vector width: NaN in vectorised chunks, grad_out in the scalar
    tail, so there the comparison leaves NaN inputs out.)"""
    forward, backward, torch_fn = ACTIVATIONS[name]
    x = np.array(SPECIAL, dtype)
    grad_out = random_array(x.shape, dtype, seed=29)
    expected, (expected_grad,) = torch_reference(torch_fn, x, grad_output=grad_out)
    y, grad_in = forward(x), backward(grad_out, x)
    compared = ~np.isnan(x) if name.startswith("elu") else np.ones(x.shape, bool)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(expected), err_msg=f"{name}: NaN positions")
    np.testing.assert_array_equal(np.isnan(grad_in[compared]), np.isnan(expected_grad[compared]),
                                  err_msg=f"{name}: gradient NaNs")
    assert_close(y, expected, dtype)   # (equal NaNs and infinities, finite values within tolerance)
    assert_close(grad_in[compared], expected_grad[compared], dtype)
    assert np.isnan(y[0])
    if name.startswith("elu"):
        assert grad_in[0] == grad_out[0]
    else:
        assert np.isnan(grad_in[0])


def test_silu_and_gelu_tanh_do_not_overflow_for_large_inputs():
    x = np.array([-1e4, -100.0, -88.0, 88.0, 100.0, 1e4], np.float32)
    grad_out = np.ones_like(x)
    for name in ("silu", "gelu_tanh", "gelu"):
        forward, backward, torch_fn = ACTIVATIONS[name]
        expected, (expected_grad,) = torch_reference(torch_fn, x, grad_output=grad_out)
        y, grad_in = forward(x), backward(grad_out, x)
        assert np.all(np.isfinite(y)) and np.all(np.isfinite(grad_in)), name
        assert_close(y, expected, np.float32, name=name)
        assert_close(grad_in, expected_grad, np.float32, name=name)


def _ulps(actual, exact):
    """|actual - exact| in units of the float32 spacing at the exact value."""
    spacing = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    return np.abs(actual.astype(np.float64) - exact) / spacing


def test_gelu_float32_is_within_an_ulp():
    """Against float64 torch where its 1 + erf keeps the digits (|x| <= 5), and against erfc in float64 further
    out, where 1 + erf would cancel: the float32 result is the float64 one rounded once."""
    x = np.linspace(-5, 5, 4001, dtype=np.float32)
    expected, _ = torch_reference(lambda t: _functional().gelu(t), x)
    assert _ulps(kernels.gelu(x), expected).max() <= 1.0
    tail = np.linspace(-12, -5, 701, dtype=np.float32)
    exact = np.array([0.5 * v * math.erfc(-v / math.sqrt(2.0)) for v in tail.astype(np.float64)])
    assert _ulps(kernels.gelu(tail), exact).max() <= 1.0


def test_elu_is_accurate_near_zero():
    """expm1, not exp(x) - 1 (which keeps no digits of -1e-9 in float32)."""
    x = -np.logspace(-20, 0, 41).astype(np.float32)
    exact = np.array([0.5 * math.expm1(v) for v in x.astype(np.float64)])
    assert _ulps(kernels.elu(x, alpha=0.5), exact).max() <= 1.0
    expected, _ = torch_reference(lambda t: _functional().elu(t, alpha=0.5), x)
    assert_close(kernels.elu(x, alpha=0.5), expected, rtol=1e-7, atol=0)


def test_elu_kink_and_alpha_as_torch():
    """At x = 0 torch's gradient takes the x <= 0 branch (alpha), and alpha may be any real number."""
    x = np.array([0.0, -0.0, -1.0, 2.0], np.float64)
    grad_out = np.ones_like(x)
    for alpha in (1.0, 2.5, -0.5, 0):
        expected, (expected_grad,) = torch_reference(lambda t: _functional().elu(t, alpha=alpha), x,
                                                      grad_output=grad_out)
        np.testing.assert_array_equal(kernels.elu(x, alpha), expected)
        assert_close(kernels.elu_backward(grad_out, x, alpha), expected_grad)


def test_activations_reject_bad_input():
    ints, ones, ones64 = np.arange(4), np.ones(4, np.float32), np.ones(4, np.float64)
    with pytest.raises(TypeError, match="gelu: x must be float32 or float64 on cpu, got int64"):
        kernels.gelu(ints)
    with pytest.raises(TypeError, match="silu: x must be float32 or float64"):
        kernels.silu(np.ones(4, np.float16))
    with pytest.raises(TypeError, match="elu: x must be float32 or float64"):
        kernels.elu(ints)
    with pytest.raises(TypeError, match="gelu_backward: x must be float32 or float64"):
        kernels.gelu_backward(ones, ints)
    with pytest.raises(TypeError, match="silu_backward: all arrays must share one dtype"):
        kernels.silu_backward(ones, ones64)
    with pytest.raises(ValueError, match=r"elu_backward: grad_out must have shape \(3,\), got \(4,\)"):
        kernels.elu_backward(ones, np.ones(3, np.float32))
    with pytest.raises(ValueError, match="gelu: approximate must be 'none' or 'tanh', got 'erf'"):
        kernels.gelu(ones, approximate="erf")
    with pytest.raises(ValueError, match="gelu_backward: approximate must be 'none' or 'tanh', got None"):
        kernels.gelu_backward(ones, ones, approximate=None)
    with pytest.raises(TypeError, match="elu: alpha must be a real number, got '1.0'"):
        kernels.elu(ones, alpha="1.0")
    with pytest.raises(TypeError, match="elu_backward: alpha must be a real number, got True"):
        kernels.elu_backward(ones, ones, alpha=True)
    with pytest.raises(TypeError, match="silu: expected NumPy or CuPy arrays"):
        kernels.silu([1.0, 2.0])
