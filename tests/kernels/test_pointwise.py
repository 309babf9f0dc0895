import numpy as np
import pytest

import kernels
from tests.oracle import assert_close, finite_difference_gradient, random_array, torch_reference


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 9, 11)])
def test_relu_matches_torch(shape, dtype):
    x = random_array(shape, dtype, seed=1)
    grad_out = random_array(shape, dtype, seed=2)
    expected, (expected_grad,) = torch_reference(lambda t: t.relu(), x, grad_output=grad_out)
    assert_close(kernels.relu(x), expected, dtype)
    assert_close(kernels.relu_backward(grad_out, x), expected_grad, dtype)


def test_relu_gradient_by_finite_differences():
    x = random_array((4, 6), np.float64, seed=3)
    x[np.abs(x) < 1e-3] = 0.5  # keep away from the kink
    weights = random_array(x.shape, np.float64, seed=4)
    numeric = finite_difference_gradient(lambda: float((kernels.relu(x) * weights).sum()), x)
    assert_close(kernels.relu_backward(weights, x), numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_and_leaky_relu_propagate_nan_as_torch(dtype):
    """A NaN stays visible: NaN out, and the gradient passes through (leaky: scaled), as in torch."""
    x = np.array([np.nan, 1.5, -2.0, 0.0, -0.0, np.inf, -np.inf], dtype)
    grad_out = random_array(x.shape, dtype, seed=9)
    expected, (expected_grad,) = torch_reference(lambda t: t.relu(), x, grad_output=grad_out)
    np.testing.assert_array_equal(kernels.relu(x), expected)
    np.testing.assert_array_equal(kernels.relu_backward(grad_out, x), expected_grad)
    leaky = lambda t: __import__("torch").nn.functional.leaky_relu(t, 0.1)  # noqa: E731
    expected, (expected_grad,) = torch_reference(leaky, x, grad_output=grad_out)
    assert_close(kernels.leaky_relu(x, 0.1), expected, dtype)
    assert_close(kernels.leaky_relu_backward(grad_out, x, 0.1), expected_grad, dtype)


def test_relu_rejects_bad_input():
    with pytest.raises(TypeError, match="relu: x must be float32 or float64"):
        kernels.relu(np.arange(4))
    with pytest.raises(ValueError, match="relu_backward: grad_out must have shape"):
        kernels.relu_backward(np.ones(3, np.float32), np.ones(4, np.float32))
    with pytest.raises(TypeError, match="relu: expected NumPy or CuPy arrays"):
        kernels.relu([1.0, 2.0])


TORCH_ACTIVATIONS = {
    # name: (forward, backward from (grad_out, x, y), torch forward)
    "leaky_relu": (lambda x: kernels.leaky_relu(x, 0.1), lambda g, x, y: kernels.leaky_relu_backward(g, x, 0.1),
                   lambda t: __import__("torch").nn.functional.leaky_relu(t, 0.1)),
    "leaky_relu_default": (kernels.leaky_relu, lambda g, x, y: kernels.leaky_relu_backward(g, x),
                           lambda t: __import__("torch").nn.functional.leaky_relu(t)),
    "sigmoid": (kernels.sigmoid, lambda g, x, y: kernels.sigmoid_backward(g, y), lambda t: t.sigmoid()),
    "tanh": (kernels.tanh, lambda g, x, y: kernels.tanh_backward(g, y), lambda t: t.tanh()),
}


@pytest.mark.parametrize("name", sorted(TORCH_ACTIVATIONS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 9, 11)])
def test_activations_match_torch(name, shape, dtype):
    forward, backward, torch_fn = TORCH_ACTIVATIONS[name]
    x = random_array(shape, dtype, seed=11, low=-4, high=4)
    grad_out = random_array(shape, dtype, seed=12)
    expected, (expected_grad,) = torch_reference(torch_fn, x, grad_output=grad_out)
    y = forward(x)
    assert y.dtype == dtype and y.shape == shape
    assert_close(y, expected, dtype)
    assert_close(backward(grad_out, x, y), expected_grad, dtype)


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "leaky_relu"])
def test_activation_gradients_by_finite_differences(name):
    forward, backward, _ = TORCH_ACTIVATIONS[name]
    x = random_array((3, 7), np.float64, seed=13, low=-3, high=3)
    x[np.abs(x) < 1e-3] = 0.5  # leaky_relu: keep away from the kink
    weights = random_array(x.shape, np.float64, seed=14)
    numeric = finite_difference_gradient(lambda: float((forward(x) * weights).sum()), x)
    assert_close(backward(weights, x, forward(x)), numeric, rtol=1e-6, atol=1e-8)


def test_sigmoid_and_tanh_saturate_without_overflow():
    x = np.array([-1e4, -100.0, -20.0, 0.0, 20.0, 100.0, 1e4], np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = kernels.sigmoid(x)
    expected, _ = torch_reference(lambda t: t.sigmoid(), x)
    assert np.all(np.isfinite(y))
    assert_close(y, expected, np.float32)
    assert_close(kernels.tanh(x), np.tanh(x.astype(np.float64)), np.float32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 7), (3, 4, 5, 6)])
def test_bias_add_matches_torch(shape, dtype):
    x = random_array(shape, dtype, seed=15)
    bias = random_array((shape[1],), dtype, seed=16)
    grad_out = random_array(shape, dtype, seed=17)
    view = (1, shape[1]) + (1,) * (len(shape) - 2)
    expected, (grad_x, grad_bias) = torch_reference(lambda t, b: t + b.reshape(view), x, bias, grad_output=grad_out)
    out = kernels.bias_add(x, bias)
    assert out.dtype == dtype
    assert_close(out, expected, dtype)
    assert_close(grad_out, grad_x, dtype)  # the gradient w.r.t. x is grad_out itself
    # the docstring's recipe for the bias gradient
    assert_close(kernels.reduce_sum(grad_out, axis=(0,) + tuple(range(2, len(shape)))), grad_bias, dtype)


def test_bias_add_handles_non_contiguous_input():
    x = random_array((4, 6, 5), seed=18).transpose(0, 2, 1)  # (4, 5, 6), not contiguous
    bias = random_array((5,), seed=19)
    assert_close(kernels.bias_add(x, bias), x.astype(np.float64) + bias[None, :, None], np.float32)


def test_new_pointwise_ops_reject_bad_input():
    with pytest.raises(TypeError, match="sigmoid: x must be float32 or float64"):
        kernels.sigmoid(np.arange(4))
    with pytest.raises(ValueError, match="tanh_backward: grad_out must have shape"):
        kernels.tanh_backward(np.ones(3, np.float32), np.ones(4, np.float32))
    with pytest.raises(TypeError, match="sigmoid_backward: all arrays must share one dtype"):
        kernels.sigmoid_backward(np.ones(3, np.float32), np.ones(3, np.float64))
    with pytest.raises(TypeError, match="leaky_relu: negative_slope must be a real number"):
        kernels.leaky_relu(np.ones(3, np.float32), "0.1")
    with pytest.raises(ValueError, match=r"bias_add: bias must have shape \(4,\)"):
        kernels.bias_add(np.ones((2, 4, 3), np.float32), np.ones(3, np.float32))
    with pytest.raises(ValueError, match="bias_add: x must have at least 2 dims"):
        kernels.bias_add(np.ones(4, np.float32), np.ones(4, np.float32))
    with pytest.raises(TypeError, match="bias_add: all arrays must share one dtype"):
        kernels.bias_add(np.ones((2, 4), np.float32), np.ones(4, np.float64))


def test_keep_freed_memory_reports_whether_malloc_took_the_settings():
    import platform
    from kernels import backend
    kept = backend.keep_freed_memory(64 << 20)
    assert isinstance(kept, bool)
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert kept
    x = np.ones(4 << 20, np.float32)   # allocations still work afterwards
    assert float(x.sum()) == 4 << 20
