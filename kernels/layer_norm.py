"""Public layer normalisation (torch.nn.functional.layer_norm) and its backward.

x (*, *normalized_shape) is normalised over its trailing len(normalized_shape) dims: rows = the product of
the leading dims, each of features = prod(normalized_shape) values, biased variance, optional elementwise
weight/bias of shape normalized_shape. The forward also returns what the backward needs, the per-row mean
and rstd = 1/sqrt(var + eps), shaped as torch.native_layer_norm's (leading dims, then a 1 per normalised
dim, so that they broadcast against x).
"""
import math

import numpy as np

from . import backend
from ._checks import check_out, check_shape, contiguous, empty, float_dtype, positive_int
from .cpu import layer_norm as cpu
from .cuda import layer_norm as gpu

__all__ = ["layer_norm", "layer_norm_backward"]


def normalized_shape_tuple(op, normalized_shape):
    """normalized_shape as a tuple of positive ints (an int is a 1-tuple, as torch)."""
    if isinstance(normalized_shape, (int, np.integer)) and not isinstance(normalized_shape, bool):
        normalized_shape = (normalized_shape,)
    if not isinstance(normalized_shape, (tuple, list)) or not normalized_shape:
        raise TypeError(f"{op}: normalized_shape must be an int or a non-empty tuple of ints, got {normalized_shape!r}")
    return tuple(positive_int(op, "normalized_shape", size) for size in normalized_shape)


def _check_x(op, name, x, shape):
    """x must end with `shape`; returns (rows, features)."""
    if x.ndim < len(shape) or tuple(x.shape[x.ndim - len(shape):]) != shape:
        raise ValueError(f"{op}: {name} must have trailing shape {shape} (normalized_shape), "
                         f"got shape {tuple(x.shape)}")
    features = math.prod(shape)
    return x.size // features, features


def _statistics_shape(x, shape):
    return tuple(x.shape[:x.ndim - len(shape)]) + (1,) * len(shape)


def _flat(vector):
    return None if vector is None else contiguous(vector).reshape(-1)


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalise x over its trailing normalized_shape dims; returns (y, mean, rstd)."""
    op = "layer_norm"
    device = backend.device_of(op, x, weight, bias)
    float_dtype(op, device, x=x, weight=weight, bias=bias)
    shape = normalized_shape_tuple(op, normalized_shape)
    rows, features = _check_x(op, "x", x, shape)
    for name, vector in (("weight", weight), ("bias", bias)):
        if vector is not None:
            check_shape(op, name, vector, shape)
    numbers = (int, float, np.integer, np.floating)
    if isinstance(eps, bool) or not isinstance(eps, numbers) or not eps >= 0.0 or not math.isfinite(eps):
        raise ValueError(f"{op}: eps must be a non-negative number, got {eps!r}")
    statistics_shape = _statistics_shape(x, shape)
    if device == "cpu":
        y, mean, rstd = cpu.layer_norm_forward(x.reshape(rows, features), _flat(weight), _flat(bias), eps)
        return y.reshape(x.shape), mean.reshape(statistics_shape), rstd.reshape(statistics_shape)
    x2 = contiguous(x).reshape(rows, features)
    y, mean, rstd = empty(x, (rows, features)), empty(x, (rows,)), empty(x, (rows,))
    gpu.layer_norm_forward(x2, _flat(weight), _flat(bias), y, mean, rstd, eps)
    return y.reshape(x.shape), mean.reshape(statistics_shape), rstd.reshape(statistics_shape)


def layer_norm_backward(grad_out, x, normalized_shape, mean, rstd, weight=None, bias=None, *, need_input=True,
                        need_weight=True, need_bias=True, grad_weight_out=None, grad_bias_out=None):
    """Gradients (grad_x, grad_weight, grad_bias) of layer_norm from its saved mean and rstd.

    grad_weight is None without weight, grad_bias None without bias (bias itself is not read: as in
    torch.native_layer_norm_backward, it says whether its gradient is wanted); need_*=False skips that
    gradient (None in its place, as conv2d_backward's: a frozen layer or an input that needs none).
    grad_weight_out / grad_bias_out (C-contiguous, normalized_shape): arrays that receive those gradients and
    are returned (on the GPU the kernel writes them: nn puts them straight into a flat optimizer's buffer).
    """
    op = "layer_norm_backward"
    device = backend.device_of(op, grad_out, x, mean, rstd, weight, bias, grad_weight_out, grad_bias_out)
    float_dtype(op, device, grad_out=grad_out, x=x, mean=mean, rstd=rstd, weight=weight, bias=bias)
    shape = normalized_shape_tuple(op, normalized_shape)
    rows, features = _check_x(op, "x", x, shape)
    check_shape(op, "grad_out", grad_out, x.shape)
    if mean is None or rstd is None:
        raise ValueError(f"{op}: mean and rstd are required (from layer_norm), got None")
    statistics_shape = _statistics_shape(x, shape)
    check_shape(op, "mean", mean, statistics_shape)
    check_shape(op, "rstd", rstd, statistics_shape)
    for name, vector, out in (("weight", weight, grad_weight_out), ("bias", bias, grad_bias_out)):
        if vector is not None:
            check_shape(op, name, vector, shape)
        if out is not None:
            if vector is None:
                raise ValueError(f"{op}: grad_{name}_out was given, but without a {name} there is no such gradient")
            check_out(op, out, shape, x.dtype, x, f"grad_{name}_out")
    need_weight = need_weight and weight is not None
    need_bias = need_bias and bias is not None
    if device == "cpu":
        grad_x, grad_weight, grad_bias = cpu.layer_norm_backward(
            grad_out.reshape(rows, features), x.reshape(rows, features), _flat(weight), mean.reshape(rows),
            rstd.reshape(rows), need_input, need_weight or need_bias)
        for out, values, needed in ((grad_weight_out, grad_weight, need_weight), (grad_bias_out, grad_bias, need_bias)):
            if out is not None and needed:   # (an out of a gradient not asked for is left as it is, as on the GPU)
                out.reshape(features)[...] = values
    else:
        grad_x = empty(x, (rows, features)) if need_input else None
        grad_weight = _flat_out(grad_weight_out, x, features) if need_weight else None
        grad_bias = _flat_out(grad_bias_out, x, features) if need_bias else None
        gpu.layer_norm_backward(contiguous(grad_out).reshape(rows, features), contiguous(x).reshape(rows, features),
                                _flat(weight), _flat(mean), _flat(rstd), grad_x, grad_weight, grad_bias)
    grad_weight = _shaped(grad_weight, grad_weight_out, shape) if need_weight else None
    grad_bias = _shaped(grad_bias, grad_bias_out, shape) if need_bias else None
    return grad_x.reshape(x.shape) if need_input else None, grad_weight, grad_bias


def _shaped(gradient, out, shape):
    """The gradient as normalized_shape: `out` itself where it was given (it holds the values already)."""
    return gradient.reshape(shape) if out is None else out


def _flat_out(out, like, features):
    """A (features,) array for the kernel to write: a view of `out` (C-contiguous), or a new one."""
    return empty(like, (features,)) if out is None else out.reshape(features)
