"""Elementwise activations and their gradients in NumPy: the reference for kernels/cuda/pointwise.py."""
import numba
import numpy as np


@numba.njit(nogil=True)
def _scale_where_not_positive(values, x, slope, out):
    """out = values where x > 0, else values * slope (flat arrays). np.where with a data-dependent
    mask runs about 30x slower (1.08 ms against 0.034 ms for a CRNN layer's 276k elements);
    as torch, a non-finite value where x <= 0 is scaled (ReLU's gradient there is exactly 0)."""
    for i in range(out.size):
        out[i] = values[i] if x[i] > 0 else values[i] * slope


@numba.njit(nogil=True)
def _zero_where_not_positive(values, x, out):
    """out = 0 where x <= 0, else values: a NaN input passes its gradient on, as in torch."""
    for i in range(out.size):
        out[i] = 0.0 if x[i] <= 0 else values[i]


def _flat(a):
    return np.ascontiguousarray(a).reshape(-1)


def relu(x):
    return np.maximum(x, x.dtype.type(0))


def relu_backward(grad_out, x):
    grad_in = np.empty(x.shape, grad_out.dtype)
    _zero_where_not_positive(_flat(grad_out), _flat(x), grad_in.reshape(-1))
    return grad_in


def leaky_relu(x, negative_slope):
    y = np.empty(x.shape, x.dtype)
    _scale_where_not_positive(_flat(x), _flat(x), x.dtype.type(negative_slope), y.reshape(-1))
    return y


def leaky_relu_backward(grad_out, x, negative_slope):
    grad_in = np.empty(x.shape, grad_out.dtype)
    _scale_where_not_positive(_flat(grad_out), _flat(x), grad_out.dtype.type(negative_slope), grad_in.reshape(-1))
    return grad_in


def sigmoid(x):
    # exp(min(x, 0)) / (1 + exp(-|x|)): exponents <= 0 only (no overflow), and no per-element branch
    # (np.where with a random mask is several times slower than two more exps).
    zero = x.dtype.type(0)
    denominator = np.abs(x)
    np.negative(denominator, out=denominator)
    np.exp(denominator, out=denominator)
    denominator += x.dtype.type(1)
    numerator = np.minimum(x, zero)
    np.exp(numerator, out=numerator)
    numerator /= denominator
    return numerator


def sigmoid_backward(grad_out, y):
    return grad_out * y * (1 - y)


def tanh(x):
    return np.tanh(x)


def tanh_backward(grad_out, y):
    return grad_out * (1 - y * y)


def bias_add(x, bias):
    return x + bias.reshape((1, bias.shape[0]) + (1,) * (x.ndim - 2))
