"""Batch normalisation on the CPU: the reference for kernels/cuda/norm.py.

Inputs arrive as (N, C, L) views (L = product of the spatial sizes, 1 for 2-D input); statistics are
per channel over the N*L values, with a two-pass variance like the CUDA kernels. Numba-CPU loops, one
pass per sweep over x: NumPy needed a temporary and a pass for each term (4-5x slower at a CRNN's
shapes). Sums are accumulated in float64 (as a float32 value's square or product is exact there).
"""
import numpy as np
from numba import njit

# The sums may be reordered (so that LLVM vectorises them); everything else keeps IEEE order and NaN/inf
# semantics (no nnan/ninf flags: a NaN in x must still reach the mean).
_REDUCE = dict(cache=True, error_model="numpy", fastmath={"reassoc"})
_ELEMENTWISE = dict(cache=True, error_model="numpy")


def _ncl(a):
    return np.ascontiguousarray(a)


def batch_norm_statistics(x3, eps):
    """Per-channel batch mean, biased variance and 1/sqrt(var + eps) of x3 (N, C, L), in x3's dtype."""
    channels = x3.shape[1]
    mean, var = np.empty(channels), np.empty(channels)
    _channel_mean_and_variance(_ncl(x3), mean, var)
    return mean.astype(x3.dtype), var.astype(x3.dtype), (1.0 / np.sqrt(var + eps)).astype(x3.dtype)


@njit(**_REDUCE)
def _channel_mean_and_variance(x, mean, var):
    batch, channels, length = x.shape
    count = batch * length
    mean[:] = 0.0
    for b in range(batch):
        for c in range(channels):
            total = 0.0
            for k in range(length):
                total += x[b, c, k]
            mean[c] += total
    mean /= count
    var[:] = 0.0
    for b in range(batch):
        for c in range(channels):
            centre = mean[c]
            total = 0.0
            for k in range(length):
                d = x[b, c, k] - centre
                total += d * d
            var[c] += total
    var /= count


def update_running_stats(running_mean, running_var, mean, var, count, momentum):
    """PyTorch's rule: running = (1 - momentum) * running + momentum * batch (unbiased variance)."""
    if running_mean is not None:
        running_mean *= 1.0 - momentum
        running_mean += momentum * mean
    if running_var is not None:
        running_var *= 1.0 - momentum
        running_var += momentum * var * (count / (count - 1))


def normalise(x3, mean, invstd, weight, bias, relu=False):
    """(x - mean) * (invstd * weight) + bias per channel, in x3's dtype; relu=True: then max(y, 0), a NaN
    kept (as cpu.pointwise.relu)."""
    dtype = x3.dtype
    scale = invstd if weight is None else invstd * weight
    shift = np.zeros(x3.shape[1], dtype) if bias is None else bias
    y = np.empty(x3.shape, dtype)
    _normalise(_ncl(x3), _ncl(mean.astype(dtype, copy=False)), _ncl(scale.astype(dtype, copy=False)),
               _ncl(shift.astype(dtype, copy=False)), bias is not None, relu, y)
    return y


@njit(**_ELEMENTWISE)
def _normalise(x, mean, scale, shift, with_shift, relu, y):
    batch, channels, length = x.shape
    zero = y.dtype.type(0)
    for b in range(batch):
        for c in range(channels):
            centre, factor, offset = mean[c], scale[c], shift[c]
            for k in range(length):
                value = (x[b, c, k] - centre) * factor
                if with_shift:
                    value += offset
                if relu:
                    value = value if not value < zero else zero   # (a NaN stays NaN, as np.maximum)
                y[b, c, k] = value


def batch_norm_backward(grad3, x3, weight, mean, invstd, training, output=None):
    """(grad_x (N, C, L), sum of grad * xhat per channel, sum of grad per channel). output: batch_norm's
    y when it applied ReLU (grad3 is then taken as 0 where output <= 0, as cpu.pointwise.relu_backward)."""
    dtype = grad3.dtype
    channels = x3.shape[1]
    x, grad = _ncl(x3), _ncl(grad3)
    mask = grad if output is None else _ncl(output.reshape(x3.shape))
    sum_grad, sum_grad_centred = np.empty(channels), np.empty(channels)
    _channel_grad_sums(grad, x, mean.astype(np.float64), mask, output is not None, sum_grad, sum_grad_centred)
    sum_grad_xhat = sum_grad_centred * invstd
    scale = invstd if weight is None else invstd * weight
    count = x3.shape[0] * x3.shape[2]
    grad_x = np.empty(x3.shape, dtype)
    _grad_input(grad, x, mask, output is not None, training, _ncl(mean.astype(dtype, copy=False)),
                _ncl(invstd.astype(dtype, copy=False)), _ncl(scale.astype(dtype, copy=False)),
                (sum_grad / count).astype(dtype), (sum_grad_xhat / count).astype(dtype), grad_x)
    return grad_x, sum_grad_xhat.astype(dtype), sum_grad.astype(dtype)


@njit(**_REDUCE)
def _channel_grad_sums(grad, x, mean, mask, masked, sum_grad, sum_grad_centred):
    """Per channel: sum of grad and of grad * (x - mean) (grad zeroed where masked and mask <= 0)."""
    batch, channels, length = x.shape
    sum_grad[:] = 0.0
    sum_grad_centred[:] = 0.0
    for b in range(batch):
        for c in range(channels):
            centre = mean[c]
            total, total_centred = 0.0, 0.0
            for k in range(length):
                g = grad[b, c, k]
                if masked and mask[b, c, k] <= 0:
                    g = 0.0
                total += g
                total_centred += g * (x[b, c, k] - centre)
            sum_grad[c] += total
            sum_grad_centred[c] += total_centred


@njit(**_ELEMENTWISE)
def _grad_input(grad, x, mask, masked, training, mean, invstd, scale, mean_grad, mean_grad_xhat, grad_x):
    """scale * (grad - mean(grad) - xhat * mean(grad * xhat)) in training, scale * grad in eval."""
    batch, channels, length = x.shape
    zero = grad_x.dtype.type(0)
    for b in range(batch):
        for c in range(channels):
            centre, inverse, factor = mean[c], invstd[c], scale[c]
            shift, slope = mean_grad[c], mean_grad_xhat[c]
            for k in range(length):
                g = grad[b, c, k]
                if masked and mask[b, c, k] <= 0:
                    g = zero
                if training:
                    xhat = (x[b, c, k] - centre) * inverse
                    grad_x[b, c, k] = factor * (g - shift - xhat * slope)
                else:
                    grad_x[b, c, k] = g * factor
