"""Public pooling ops (torch.nn.functional names): validate, work out the geometry, run where x lives.

Inputs are NCHW (or CHW, treated as N=1 and returned 3-D). The geometry rules (output size,
ceil_mode, padding at most half the kernel, first-max ties, divisors) are PyTorch's.
"""
import functools

import numpy as np

from . import backend
from ._checks import check_ndim, contiguous, empty, float_dtype
from .cpu import pool as cpu
from .cuda import pool as gpu

__all__ = ["max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
           "adaptive_avg_pool2d", "adaptive_avg_pool2d_backward"]


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _pair(op, name, value, minimum):
    """(int, int) from an int or a pair of ints, each at least `minimum`."""
    pair = (value, value) if _is_int(value) else value
    if isinstance(pair, (tuple, list)) and len(pair) == 1:   # (one value for both dims, as torch's)
        pair = (pair[0], pair[0])
    if not isinstance(pair, (tuple, list)) or len(pair) != 2 or not all(_is_int(v) for v in pair):
        raise ValueError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    if any(v < minimum for v in pair):
        bound = "positive" if minimum == 1 else "non-negative"
        raise ValueError(f"{op}: {name} must be {bound}, got {value!r}")
    return int(pair[0]), int(pair[1])


def pooled_size(size, kernel, stride, padding, dilation, ceil_mode):
    """PyTorch's output length: floor (or ceil) division, and with ceil_mode the last window must
    start inside the input or the left padding."""
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def _spatial_input(op, x):
    """(x as 4-D, whether it was 3-D) after rank, dtype and size checks."""
    check_ndim(op, "x", x, 3, 4)
    squeeze = x.ndim == 3
    x4 = x.reshape((1,) + tuple(x.shape)) if squeeze else x
    if any(d < 1 for d in x4.shape[1:]):
        raise ValueError(f"{op}: x must have non-empty C, H and W, got shape {tuple(x.shape)}")
    return x4, squeeze


def _input_shape(op, input_shape):
    try:
        shape = tuple(int(d) for d in input_shape)
    except TypeError:
        raise ValueError(f"{op}: input_shape must be a tuple of 3 or 4 ints, got {input_shape!r}") from None
    if len(shape) not in (3, 4) or any(d < 0 for d in shape) or any(d < 1 for d in shape[-3:]):
        raise ValueError(f"{op}: input_shape must be (C, H, W) or (N, C, H, W) with C, H, W >= 1, "
                         f"got {input_shape!r}")
    return shape


def _frozen(value):
    return tuple(value) if isinstance(value, list) else value


def _window_geometry(op, shape, kernel_size, stride, padding, dilation, ceil_mode):
    """(kernel, stride, padding, dilation, (OH, OW)) checked as torch's pool2d_shape_check does.

    Cached: the checks cost more host time than a small pooling kernel takes on a GPU."""
    arguments = (op, tuple(int(d) for d in shape), _frozen(kernel_size), _frozen(stride), _frozen(padding),
                 _frozen(dilation), bool(ceil_mode))
    try:
        hash(arguments)
    except TypeError:  # e.g. an array as kernel_size: check it uncached, for the op's own message
        return _checked_geometry.__wrapped__(*arguments)
    return _checked_geometry(*arguments)


@functools.lru_cache(maxsize=256)
def _checked_geometry(op, shape, kernel_size, stride, padding, dilation, ceil_mode):
    kernel = _pair(op, "kernel_size", kernel_size, 1)
    stride = kernel if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0) \
        else _pair(op, "stride", stride, 1)
    padding = _pair(op, "padding", padding, 0)
    dilation = _pair(op, "dilation", dilation, 1)
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(f"{op}: padding must be at most half the kernel size, got padding {padding} "
                         f"for kernel_size {kernel}")
    height, width = shape[-2:]
    out = tuple(pooled_size(size, k, s, p, d, ceil_mode)
                for size, k, s, p, d in zip((height, width), kernel, stride, padding, dilation))
    if out[0] < 1 or out[1] < 1:
        raise ValueError(f"{op}: output size {out} is too small for input shape {tuple(shape)} with "
                         f"kernel_size {kernel}, stride {stride}, padding {padding}, dilation {dilation}")
    return kernel, stride, padding, dilation, out


def _check_grad_out(op, grad_out, expected_shape):
    if tuple(grad_out.shape) != tuple(expected_shape):
        raise ValueError(f"{op}: grad_out must have shape {tuple(expected_shape)}, got {tuple(grad_out.shape)}")


def _as_4d(shape):
    return shape if len(shape) == 4 else (1,) + tuple(shape)


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Max over each window (padding counts as -inf); with return_indices also the int64 flat index
    h*W+w of each maximum in its (n, c) plane, the first one in row-major order on ties."""
    op = "max_pool2d"
    device = backend.device_of(op, x)
    float_dtype(op, device, x=x)
    x4, squeeze = _spatial_input(op, x)
    kernel, stride, padding, dilation, out_hw = _window_geometry(op, x4.shape, kernel_size, stride,
                                                                 padding, dilation, ceil_mode)
    geometry = (kernel, stride, padding, dilation, out_hw)
    if device == "cpu":
        y, indices = cpu.max_pool2d(x4, *geometry, return_indices=return_indices)
    else:
        x4 = contiguous(x4)
        y = empty(x4, x4.shape[:2] + out_hw)
        indices = empty(x4, y.shape, dtype="int64") if return_indices else None
        gpu.max_pool2d(x4, y, indices, *geometry)
    if squeeze:
        y = y.reshape(y.shape[1:])
        indices = None if indices is None else indices.reshape(indices.shape[1:])
    return (y, indices) if return_indices else y


def max_pool2d_backward(grad_out, indices, input_shape, kernel_size=None, stride=None, padding=0, dilation=1,
                        ceil_mode=False):
    """Gradient of max_pool2d: grad_out summed into the input positions its indices point at.

    The window geometry is optional. Given (the arguments of the forward call), the CUDA path runs a
    gather (each input sums the windows that can hold it: no atomics, deterministic, one write per
    element), and the CPU path stores directly where windows do not overlap; without it, the CUDA path
    zero-fills and scatters with atomics (under use_deterministic_algorithms: an error, or a warning with
    warn_only), the CPU path runs a bincount.
    """
    op = "max_pool2d_backward"
    device = backend.device_of(op, grad_out, indices)
    float_dtype(op, device, grad_out=grad_out)
    shape = _input_shape(op, input_shape)
    check_ndim(op, "grad_out", grad_out, len(shape))
    if tuple(grad_out.shape[:-2]) != shape[:-2] or any(d < 1 for d in grad_out.shape[-2:]):
        raise ValueError(f"{op}: grad_out of shape {tuple(grad_out.shape)} does not pool input_shape {shape}")
    geometry = None
    if kernel_size is not None:
        geometry = _window_geometry(op, shape, kernel_size, stride, padding, dilation, ceil_mode)
        _check_grad_out(op, grad_out, shape[:-2] + geometry[4])
    if str(indices.dtype) != "int64":
        raise TypeError(f"{op}: indices must be int64, got {indices.dtype}")
    if tuple(indices.shape) != tuple(grad_out.shape):
        raise ValueError(f"{op}: indices must have grad_out's shape {tuple(grad_out.shape)}, "
                         f"got {tuple(indices.shape)}")
    shape4 = _as_4d(shape)
    grad4 = grad_out.reshape(_as_4d(grad_out.shape))
    indices4 = indices.reshape(grad4.shape)
    if device == "cpu":
        plane = shape4[2] * shape4[3]
        if indices4.size and (indices4.min() < 0 or indices4.max() >= plane):
            raise ValueError(f"{op}: indices must lie in [0, {plane}) for input_shape {shape}, "
                             f"got values in [{indices4.min()}, {indices4.max()}]")
        grad_in = cpu.max_pool2d_backward(grad4, indices4, shape4, None if geometry is None else geometry[:4])
    else:
        if geometry is None:
            backend.alert_not_deterministic(f"{op} without the window geometry (kernel_size, ...): atomic adds")
        grad4, indices4 = contiguous(grad4), contiguous(indices4)
        grad_in = empty(grad4, shape4)
        gpu.max_pool2d_backward(grad4, indices4, grad_in, None if geometry is None else geometry[:4])
    return grad_in.reshape(shape)


def _avg_geometry(op, shape, kernel_size, stride, padding, ceil_mode, divisor_override):
    if divisor_override is not None and (not _is_int(divisor_override) or divisor_override == 0):
        raise ValueError(f"{op}: divisor_override must be a non-zero int or None, got {divisor_override!r}")
    kernel, stride, padding, _, out_hw = _window_geometry(op, shape, kernel_size, stride, padding, 1, ceil_mode)
    return kernel, stride, padding, out_hw


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """Mean over each window; the divisor is PyTorch's (padding counted or not, or divisor_override)."""
    op = "avg_pool2d"
    device = backend.device_of(op, x)
    float_dtype(op, device, x=x)
    x4, squeeze = _spatial_input(op, x)
    kernel, stride, padding, out_hw = _avg_geometry(op, x4.shape, kernel_size, stride, padding, ceil_mode,
                                                    divisor_override)
    options = (bool(count_include_pad), None if divisor_override is None else int(divisor_override))
    if device == "cpu":
        y = cpu.avg_pool2d(x4, kernel, stride, padding, out_hw, *options)
    else:
        x4 = contiguous(x4)
        y = empty(x4, x4.shape[:2] + out_hw)
        gpu.avg_pool2d(x4, y, kernel, stride, padding, *options)
    return y.reshape(y.shape[1:]) if squeeze else y


def avg_pool2d_backward(grad_out, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None):
    """Gradient of avg_pool2d with the same arguments: each window's grad / divisor spread over it."""
    op = "avg_pool2d_backward"
    device = backend.device_of(op, grad_out)
    float_dtype(op, device, grad_out=grad_out)
    shape = _input_shape(op, input_shape)
    kernel, stride, padding, out_hw = _avg_geometry(op, shape, kernel_size, stride, padding, ceil_mode,
                                                    divisor_override)
    _check_grad_out(op, grad_out, shape[:-2] + out_hw)
    options = (bool(count_include_pad), None if divisor_override is None else int(divisor_override))
    shape4 = _as_4d(shape)
    grad4 = grad_out.reshape(shape4[:2] + out_hw)
    if device == "cpu":
        grad_in = cpu.avg_pool2d_backward(grad4, shape4, kernel, stride, padding, *options)
    else:
        grad4 = contiguous(grad4)
        grad_in = empty(grad4, shape4)
        gpu.avg_pool2d_backward(grad4, grad_in, kernel, stride, padding, *options)
    return grad_in.reshape(shape)


def _adaptive_size(op, output_size, shape):
    sizes = (output_size, output_size) if output_size is None or _is_int(output_size) else output_size
    if not isinstance(sizes, (tuple, list)) or len(sizes) != 2 or \
            not all(s is None or _is_int(s) for s in sizes):
        raise ValueError(f"{op}: output_size must be an int, None or a pair of them, got {output_size!r}")
    out = tuple(int(shape[i]) if s is None else int(s) for i, s in zip((-2, -1), sizes))
    if out[0] < 0 or out[1] < 0:   # 0 is allowed, as in torch: an empty output
        raise ValueError(f"{op}: output_size must be non-negative, got {output_size!r}")
    return out


def adaptive_avg_pool2d(x, output_size):
    """Mean over PyTorch's adaptive windows [floor(o*I/O), ceil((o+1)*I/O)); (1, 1) is global pooling."""
    op = "adaptive_avg_pool2d"
    device = backend.device_of(op, x)
    float_dtype(op, device, x=x)
    x4, squeeze = _spatial_input(op, x)
    out_hw = _adaptive_size(op, output_size, x4.shape)
    if 0 in out_hw:
        y = empty(x4, x4.shape[:2] + out_hw)
    elif device == "cpu":
        y = cpu.adaptive_avg_pool2d(x4, out_hw)
    else:
        x4 = contiguous(x4)
        y = empty(x4, x4.shape[:2] + out_hw)
        gpu.adaptive_avg_pool2d(x4, y)
    return y.reshape(y.shape[1:]) if squeeze else y


def adaptive_avg_pool2d_backward(grad_out, input_shape):
    """Gradient of adaptive_avg_pool2d; the output size is read from grad_out's last two dims."""
    op = "adaptive_avg_pool2d_backward"
    device = backend.device_of(op, grad_out)
    float_dtype(op, device, grad_out=grad_out)
    shape = _input_shape(op, input_shape)
    check_ndim(op, "grad_out", grad_out, len(shape))
    if tuple(grad_out.shape[:-2]) != shape[:-2]:
        raise ValueError(f"{op}: grad_out of shape {tuple(grad_out.shape)} does not match input_shape {shape}")
    shape4 = _as_4d(shape)
    grad4 = grad_out.reshape(shape4[:2] + tuple(grad_out.shape[-2:]))
    if grad4.size == 0:   # an empty output (or batch): no window reads anything
        grad_in = backend.array_module(grad4).zeros(shape4, grad4.dtype)
    elif device == "cpu":
        grad_in = cpu.adaptive_avg_pool2d_backward(grad4, shape4)
    else:
        grad4 = contiguous(grad4)
        grad_in = empty(grad4, shape4)
        gpu.adaptive_avg_pool2d_backward(grad4, grad_in)
    return grad_in.reshape(shape)
