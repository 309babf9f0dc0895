"""Public batch normalisation (torch.nn.functional.batch_norm) and its backward.

x is (N, C), (N, C, L) or (N, C, H, W); statistics are per channel (axis 1). The forward returns
the saved statistics the backward needs: the batch mean and 1/sqrt(var + eps) in training, the
running mean and 1/sqrt(running_var + eps) in eval mode.
"""
import math

import numpy as np

from . import backend
from ._checks import check_ndim, check_out, check_shape, contiguous, empty, float_dtype
from .cpu import norm as cpu
from .cuda import norm as gpu

__all__ = ["batch_norm", "batch_norm_backward"]


def _as_ncl(x):
    """(N, C, L) view of x: the layout every path works on."""
    return x.reshape(x.shape[0], x.shape[1], -1)


def _check_channel_vectors(op, channels, **vectors):
    for name, vector in vectors.items():
        if vector is not None:
            check_shape(op, name, vector, (channels,))


ACTIVATIONS = (None, "relu")


def batch_norm(x, weight, bias, running_mean, running_var, training, momentum=0.1, eps=1e-5, activation=None):
    """Normalise x per channel; returns (y, saved_mean, saved_invstd).

    training=True uses the batch statistics and updates running_mean / running_var in place (when
    given) with PyTorch's momentum rule and the unbiased variance; eval uses the running statistics.
    activation='relu' applies ReLU to y in the same pass (NaN kept); its backward is batch_norm_backward
    with output=y.
    """
    op = "batch_norm"
    if activation not in ACTIVATIONS:
        raise ValueError(f"{op}: activation must be one of {ACTIVATIONS}, got {activation!r}")
    device = backend.device_of(op, x, weight, bias, running_mean, running_var)
    float_dtype(op, device, x=x, weight=weight, bias=bias, running_mean=running_mean, running_var=running_var)
    check_ndim(op, "x", x, 2, 3, 4)
    channels = x.shape[1]
    _check_channel_vectors(op, channels, weight=weight, bias=bias, running_mean=running_mean,
                           running_var=running_var)
    numbers = (int, float, np.integer, np.floating)
    if isinstance(momentum, bool) or not isinstance(momentum, numbers) or not 0.0 <= momentum <= 1.0:
        raise ValueError(f"{op}: momentum must be a number in [0, 1], got {momentum!r}")
    if isinstance(eps, bool) or not isinstance(eps, numbers) or not eps > 0.0 or not math.isfinite(eps):
        raise ValueError(f"{op}: eps must be a positive number, got {eps!r}")
    count = x.size // channels if channels else 0
    if training and count <= 1:
        raise ValueError(f"{op}: training needs more than 1 value per channel, got x of shape {tuple(x.shape)}")
    if not training and (running_mean is None or running_var is None):
        raise ValueError(f"{op}: eval mode (training=False) needs running_mean and running_var, got None")
    if x.size == 0:
        raise ValueError(f"{op}: x must not be empty, got shape {tuple(x.shape)}")
    if device == "cpu":
        x3 = _as_ncl(x)
        if training:
            mean, var, invstd = cpu.batch_norm_statistics(x3, eps)
            cpu.update_running_stats(running_mean, running_var, mean, var, count, momentum)
        else:
            mean = running_mean.copy()
            invstd = (1.0 / np.sqrt(running_var + eps)).astype(x.dtype)
        y = cpu.normalise(x3, mean, invstd, weight, bias, relu=activation == "relu")
        return y.reshape(x.shape), mean, invstd
    x3 = _as_ncl(contiguous(x))
    mean, invstd = empty(x, (channels,)), empty(x, (channels,))
    if training:
        gpu.batch_norm_statistics(x3, mean, invstd, running_mean, running_var, momentum, eps)
    else:
        gpu.running_statistics(contiguous(running_mean), contiguous(running_var), mean, invstd, eps)
    y = empty(x, x3.shape)
    gpu.batch_norm_forward(x3, mean, invstd, _dense(weight), _dense(bias), y, relu=activation == "relu")
    return y.reshape(x.shape), mean, invstd


def _dense(vector):
    return None if vector is None else contiguous(vector)


def batch_norm_backward(grad_out, x, weight, saved_mean, saved_invstd, training=True, output=None, *,
                        grad_weight_out=None, grad_bias_out=None):
    """Gradients (grad_x, grad_weight, grad_bias) of batch_norm; grad_weight/grad_bias are None without weight.
    output: batch_norm's y when it applied activation='relu' (grad_out then goes through ReLU's gradient,
    masked where y is not positive, in the same passes). grad_weight_out / grad_bias_out (C-contiguous (C,)
    arrays, with a weight): they receive those gradients and are returned (on the GPU the kernels write them:
    nn puts a gradient straight into an optimizer's flat gradient buffer this way)."""
    op = "batch_norm_backward"
    device = backend.device_of(op, grad_out, x, weight, saved_mean, saved_invstd, output, grad_weight_out,
                               grad_bias_out)
    float_dtype(op, device, grad_out=grad_out, x=x, weight=weight, saved_mean=saved_mean, saved_invstd=saved_invstd,
                output=output)
    check_ndim(op, "x", x, 2, 3, 4)
    check_shape(op, "grad_out", grad_out, x.shape)
    if output is not None:
        check_shape(op, "output", output, x.shape)
    channels = x.shape[1]
    if saved_mean is None or saved_invstd is None:
        raise ValueError(f"{op}: saved_mean and saved_invstd are required (from batch_norm), got None")
    _check_channel_vectors(op, channels, weight=weight, saved_mean=saved_mean, saved_invstd=saved_invstd)
    for name, out in (("grad_weight_out", grad_weight_out), ("grad_bias_out", grad_bias_out)):
        if out is not None:
            if weight is None:
                raise ValueError(f"{op}: {name} was given, but without a weight there is no such gradient")
            check_out(op, out, (channels,), x.dtype, x, name)
    if device == "cpu":
        grad_x, grad_weight, grad_bias = cpu.batch_norm_backward(
            _as_ncl(grad_out), _as_ncl(x), weight, saved_mean, saved_invstd, bool(training),
            None if output is None else _as_ncl(output))
        grad_x = grad_x.reshape(x.shape)
        for out, result in ((grad_weight_out, grad_weight), (grad_bias_out, grad_bias)):
            if out is not None:
                out[...] = result
        grad_weight = grad_weight if grad_weight_out is None else grad_weight_out
        grad_bias = grad_bias if grad_bias_out is None else grad_bias_out
    else:
        x3, grad3 = _as_ncl(contiguous(x)), _as_ncl(contiguous(grad_out))
        grad_weight = empty(x, (channels,)) if grad_weight_out is None else grad_weight_out
        grad_bias = empty(x, (channels,)) if grad_bias_out is None else grad_bias_out
        grad_x = empty(x, x3.shape)
        gpu.batch_norm_backward(grad3, x3, _dense(weight), contiguous(saved_mean), contiguous(saved_invstd),
                                bool(training), grad_x, grad_weight, grad_bias,
                                None if output is None else _as_ncl(contiguous(output)))
        grad_x = grad_x.reshape(x.shape)
    if weight is None:
        return grad_x, None, None
    return grad_x, grad_weight, grad_bias
