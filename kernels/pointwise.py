"""Public elementwise ops (torch.nn.functional names): validate, then run where the inputs live."""
import numbers

import numpy as np

from . import backend
from ._checks import contiguous, empty, float_dtype, check_shape
from .cpu import pointwise as cpu
from .cuda import pointwise as gpu

__all__ = ["relu", "relu_backward", "leaky_relu", "leaky_relu_backward", "sigmoid", "sigmoid_backward",
           "tanh", "tanh_backward", "gelu", "gelu_backward", "silu", "silu_backward", "elu", "elu_backward",
           "bias_add"]


def relu(x):
    """max(x, 0), elementwise."""
    device = backend.device_of("relu", x)
    float_dtype("relu", device, x=x)
    if device == "cpu":
        return np.asarray(cpu.relu(x))   # (NumPy makes a 0-d result a scalar)
    x = contiguous(x)
    out = empty(x, x.shape)
    gpu.relu(x, out)
    return out


def relu_backward(grad_out, x):
    """Gradient of relu at `x`: grad_out where x > 0, else 0."""
    device = backend.device_of("relu_backward", grad_out, x)
    float_dtype("relu_backward", device, grad_out=grad_out, x=x)
    check_shape("relu_backward", "grad_out", grad_out, x.shape)
    if device == "cpu":
        return np.asarray(cpu.relu_backward(grad_out, x))
    grad_out, x = contiguous(grad_out), contiguous(x)
    grad_in = empty(x, x.shape)
    gpu.relu_backward(grad_out, x, grad_in)
    return grad_in


def _real(op, name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{op}: {name} must be a real number, got {value!r}")
    return float(value)


def leaky_relu(x, negative_slope=0.01):
    """x where x > 0, else negative_slope * x, elementwise."""
    device = backend.device_of("leaky_relu", x)
    float_dtype("leaky_relu", device, x=x)
    slope = _real("leaky_relu", "negative_slope", negative_slope)
    if device == "cpu":
        return np.asarray(cpu.leaky_relu(x, slope))
    x = contiguous(x)
    out = empty(x, x.shape)
    gpu.leaky_relu(x, out, slope)
    return out


def leaky_relu_backward(grad_out, x, negative_slope=0.01):
    """Gradient of leaky_relu at `x`: grad_out where x > 0, else negative_slope * grad_out."""
    device = backend.device_of("leaky_relu_backward", grad_out, x)
    float_dtype("leaky_relu_backward", device, grad_out=grad_out, x=x)
    check_shape("leaky_relu_backward", "grad_out", grad_out, x.shape)
    slope = _real("leaky_relu_backward", "negative_slope", negative_slope)
    if device == "cpu":
        return np.asarray(cpu.leaky_relu_backward(grad_out, x, slope))
    grad_out, x = contiguous(grad_out), contiguous(x)
    grad_in = empty(x, x.shape)
    gpu.leaky_relu_backward(grad_out, x, grad_in, slope)
    return grad_in


def _unary(op, cpu_fn, gpu_fn, x, *options):
    """An elementwise op of `x`; `options` (checked scalars) follow the arrays in both paths' calls."""
    device = backend.device_of(op, x)
    float_dtype(op, device, x=x)
    if device == "cpu":
        return np.asarray(cpu_fn(x, *options))   # (NumPy makes a 0-d result a scalar)
    x = contiguous(x)
    out = empty(x, x.shape)
    gpu_fn(x, out, *options)
    return out


def _unary_backward(op, cpu_fn, gpu_fn, grad_out, y, *options, saved="y"):
    """The gradient of an elementwise op from what its forward saved (`saved` names it in errors: y or x)."""
    device = backend.device_of(op, grad_out, y)
    float_dtype(op, device, grad_out=grad_out, **{saved: y})
    check_shape(op, "grad_out", grad_out, y.shape)
    if device == "cpu":
        return np.asarray(cpu_fn(grad_out, y, *options))
    grad_out, y = contiguous(grad_out), contiguous(y)
    grad_in = empty(y, y.shape)
    gpu_fn(grad_out, y, grad_in, *options)
    return grad_in


def sigmoid(x):
    """1 / (1 + exp(-x)), elementwise (no overflow for large |x|)."""
    return _unary("sigmoid", cpu.sigmoid, gpu.sigmoid, x)


def sigmoid_backward(grad_out, y):
    """Gradient of sigmoid from its output `y = sigmoid(x)`: grad_out * y * (1 - y)."""
    return _unary_backward("sigmoid_backward", cpu.sigmoid_backward, gpu.sigmoid_backward, grad_out, y)


def tanh(x):
    """tanh(x), elementwise."""
    return _unary("tanh", cpu.tanh, gpu.tanh, x)


def tanh_backward(grad_out, y):
    """Gradient of tanh from its output `y = tanh(x)`: grad_out * (1 - y * y)."""
    return _unary_backward("tanh_backward", cpu.tanh_backward, gpu.tanh_backward, grad_out, y)


GELU_APPROXIMATIONS = ("none", "tanh")


def _approximate(op, approximate):
    if not isinstance(approximate, str) or approximate not in GELU_APPROXIMATIONS:
        raise ValueError(f"{op}: approximate must be 'none' or 'tanh', got {approximate!r}")
    return approximate


def gelu(x, approximate="none"):
    """x * Phi(x), Phi the standard normal CDF, elementwise; approximate='tanh' uses
    0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), as torch."""
    approximate = _approximate("gelu", approximate)
    return _unary("gelu", cpu.gelu, gpu.gelu, x, approximate)


def gelu_backward(grad_out, x, approximate="none"):
    """Gradient of gelu at `x`: grad_out * (Phi(x) + x phi(x)), or the tanh form's derivative."""
    approximate = _approximate("gelu_backward", approximate)
    return _unary_backward("gelu_backward", cpu.gelu_backward, gpu.gelu_backward, grad_out, x, approximate, saved="x")


def silu(x):
    """x * sigmoid(x), elementwise (no overflow for large |x|)."""
    return _unary("silu", cpu.silu, gpu.silu, x)


def silu_backward(grad_out, x):
    """Gradient of silu at `x`: grad_out * s (1 + x (1 - s)), s = sigmoid(x)."""
    return _unary_backward("silu_backward", cpu.silu_backward, gpu.silu_backward, grad_out, x, saved="x")


def elu(x, alpha=1.0):
    """x where x > 0, else alpha * (exp(x) - 1) (computed as expm1: accurate near 0), elementwise."""
    return _unary("elu", cpu.elu, gpu.elu, x, _real("elu", "alpha", alpha))


def elu_backward(grad_out, x, alpha=1.0):
    """Gradient of elu at `x`: grad_out where x > 0 (or x is NaN, as torch), else grad_out * alpha * exp(x)."""
    alpha = _real("elu_backward", "alpha", alpha)
    return _unary_backward("elu_backward", cpu.elu_backward, gpu.elu_backward, grad_out, x, alpha, saved="x")


def bias_add(x, bias):
    """x + bias along axis 1 (the channel/feature axis of PyTorch layouts): x (N, C, ...) or (N, C), bias (C,).

    Gradients: w.r.t. x it is grad_out itself; w.r.t. bias it is
    `reduce_sum(grad_out, axis=(0, 2, 3, ...))`, the sum over every axis but 1.
    """
    device = backend.device_of("bias_add", x, bias)
    float_dtype("bias_add", device, x=x, bias=bias)
    if x.ndim < 2:
        raise ValueError(f"bias_add: x must have at least 2 dims (N, C, ...), got shape {tuple(x.shape)}")
    check_shape("bias_add", "bias", bias, (x.shape[1],))
    if device == "cpu":
        return cpu.bias_add(x, bias)
    x, bias = contiguous(x), contiguous(bias)
    out = empty(x, x.shape)
    gpu.bias_add(x, bias, out)
    return out
