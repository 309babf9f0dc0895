"""Public 2-D convolution ops (torch.nn.functional.conv2d semantics, NCHW): validate, then run where the inputs live.

Geometry is resolved here once: stride/dilation to (h, w) pairs, padding to (top, bottom, left, right)
(PyTorch's 'same' puts the odd extra row/column at the bottom/right), output size (P, Q).
"""
from collections import namedtuple

from . import backend
from ._checks import check_ndim, check_out, check_shape, contiguous, empty, float_dtype, positive_int
from .cpu import conv as cpu
from .cuda import conv as gpu
from .gemm import matmul

__all__ = ["conv2d", "conv2d_backward", "conv2d_backward_input", "conv2d_backward_weight",
           "conv2d_backward_bias", "conv2d_output_shape"]

Geometry = namedtuple("Geometry", "stride padding dilation groups out_hw")
GEMM_FOR_1X1 = True   # on the GPU, 1x1 stride-1 unpadded ungrouped filters run as kernels.matmul GEMMs


def _plain_1x1(weight_shape, geometry):
    """A 1x1 filter at stride 1 without padding or groups: y[n] = W (K x C) @ x[n] (C x H*W), a plain GEMM."""
    return (GEMM_FOR_1X1 and tuple(weight_shape[2:]) == (1, 1) and geometry.stride == (1, 1)
            and geometry.padding == (0, 0, 0, 0) and geometry.groups == 1)


def _pair(op, name, value, check):
    values = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(values) == 1:   # (a one-element sequence stands for both dims, as torch's)
        values = values * 2
    if len(values) != 2:
        raise ValueError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    return tuple(check(op, name, v) for v in values)


def _non_negative_int(op, name, value):
    if isinstance(value, bool) or not hasattr(value, "__index__") or int(value) < 0:
        raise ValueError(f"{op}: {name} must be a non-negative integer, got {value!r}")
    return int(value)


_geometries = {}   # (shapes, arguments) -> Geometry: every training step asks again for the same layers
GEOMETRIES_KEPT = 1024


def _geometry(op, input_shape, weight_shape, stride, padding, dilation, groups):
    """Check shapes and arguments together; every message names the op and both shapes. A result is
    remembered by its arguments (the op's name only matters to the errors, which are never remembered)."""
    input_shape, weight_shape = tuple(input_shape), tuple(weight_shape)
    arguments = (input_shape, weight_shape, stride, padding, dilation, groups)
    # Only plain ints, tuples of ints and strings are remembered: True or 1.0 equal 1 as keys, yet are errors (or,
    # in a shape, would leave floats in the remembered output size).
    key = geometry = None
    if all(type(v) in (int, str) or (type(v) is tuple and all(type(i) is int for i in v)) for v in arguments):
        key = arguments
        geometry = _geometries.get(key)
    if geometry is None:
        geometry = _checked_geometry(op, input_shape, weight_shape, stride, padding, dilation, groups)
        if key is not None:
            if len(_geometries) >= GEOMETRIES_KEPT:
                _geometries.clear()
            _geometries[key] = geometry
    return geometry


def check_channels(op, input_shape, weight_shape, groups, channel_axis=1):
    """The channel and kernel checks every convolution shares, for any number of spatial dims (nn's conv1d
    calls it with its 1-D shapes, unbatched too: channel_axis=-2): input channels at channel_axis, weight
    (K, C/groups, ...); returns groups as an int."""
    shapes = f"input {tuple(input_shape)}, weight {tuple(weight_shape)}"
    groups = positive_int(op, "groups", groups)
    c, (k, c_group) = input_shape[channel_axis], weight_shape[:2]
    if c % groups or k % groups:
        raise ValueError(f"{op}: groups={groups} must divide both the input channels and the output "
                         f"channels ({shapes})")
    if c_group * groups != c:
        raise ValueError(f"{op}: input has {c} channels but weight expects {c_group} x groups={groups} "
                         f"= {c_group * groups} ({shapes})")
    if min(weight_shape[2:]) < 1:
        raise ValueError(f"{op}: weight must have a non-empty kernel ({shapes})")
    return groups


def _checked_geometry(op, input_shape, weight_shape, stride, padding, dilation, groups):
    shapes = f"input {tuple(input_shape)}, weight {tuple(weight_shape)}"
    groups = check_channels(op, input_shape, weight_shape, groups)
    stride = _pair(op, "stride", stride, positive_int)
    dilation = _pair(op, "dilation", dilation, positive_int)
    n, c, h, w = input_shape
    k, c_group, r, s = weight_shape
    if isinstance(padding, str):
        if padding == "valid":
            pads = (0, 0, 0, 0)
        elif padding == "same":
            if stride != (1, 1):
                raise ValueError(f"{op}: padding='same' needs stride 1, got stride {stride} ({shapes})")
            total_h, total_w = dilation[0] * (r - 1), dilation[1] * (s - 1)
            pads = (total_h // 2, total_h - total_h // 2, total_w // 2, total_w - total_w // 2)
        else:
            raise ValueError(f"{op}: padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
    else:
        pad_h, pad_w = _pair(op, "padding", padding, _non_negative_int)
        pads = (pad_h, pad_h, pad_w, pad_w)
    padded_h, padded_w = h + pads[0] + pads[1], w + pads[2] + pads[3]
    extent_h, extent_w = dilation[0] * (r - 1) + 1, dilation[1] * (s - 1) + 1
    if extent_h > padded_h or extent_w > padded_w:
        raise ValueError(f"{op}: kernel {r}x{s} (dilated {extent_h}x{extent_w}) is larger than the padded "
                         f"input {padded_h}x{padded_w} ({shapes}, padding {pads})")
    out_hw = ((padded_h - extent_h) // stride[0] + 1, (padded_w - extent_w) // stride[1] + 1)
    return Geometry(stride, pads, dilation, groups, out_hw)


def _check_input_shape(op, input_shape, name="input_shape", first_may_be_zero=True):
    """4 ints, all positive except possibly the batch size (an empty batch has empty gradients)."""
    shape = tuple(input_shape)
    lowest = (0 if first_may_be_zero else 1, 1, 1, 1)
    if len(shape) != 4 or any(isinstance(v, bool) or not hasattr(v, "__index__") or v < low
                              for v, low in zip(shape, lowest)):
        raise ValueError(f"{op}: {name} must be 4 positive ints, got {input_shape!r}")
    return tuple(int(v) for v in shape)


def _zeros(like, shape):
    """Result of a call with an empty batch (no kernel launches a grid of zero blocks)."""
    return backend.array_module(like).zeros(shape, like.dtype)


def conv2d_output_shape(input_shape, weight_shape, stride=1, padding=0, dilation=1, groups=1):
    """(N, K, P, Q) of conv2d for these shapes and arguments (raises like conv2d on bad ones)."""
    geometry = _geometry("conv2d", input_shape, weight_shape, stride, padding, dilation, groups)
    return (input_shape[0], weight_shape[0]) + geometry.out_hw


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Cross-correlation of x (N, C, H, W) with weight (K, C/groups, R, S), plus bias (K,): (N, K, P, Q)."""
    op = "conv2d"
    device = backend.device_of(op, x, weight, bias)
    float_dtype(op, device, x=x, weight=weight, bias=bias)
    check_ndim(op, "x", x, 4)
    check_ndim(op, "weight", weight, 4)
    geometry = _geometry(op, x.shape, weight.shape, stride, padding, dilation, groups)
    if bias is not None:
        check_shape(op, "bias", bias, (weight.shape[0],))
    if x.shape[0] == 0:
        return _zeros(x, (0, weight.shape[0]) + geometry.out_hw)
    if device == "cpu":
        return cpu.conv2d(x, weight, bias, *geometry[:4])
    x, weight = contiguous(x), contiguous(weight)
    bias = None if bias is None else contiguous(bias)
    y = empty(x, (x.shape[0], weight.shape[0]) + geometry.out_hw)
    if _plain_1x1(weight.shape, geometry):
        n, k = y.shape[:2]
        y_batched = y.reshape(n, k, -1)
        if bias is not None:
            y_batched[...] = bias[None, :, None]  # read back as C (beta = 1): the bias rides in the GEMM
        matmul(weight.reshape(k, -1), x.reshape(n, x.shape[1], -1), beta=0.0 if bias is None else 1.0,
               out=y_batched)
        return y
    gpu.conv2d(x, weight, bias, y, *geometry[:4])
    return y


def _check_grad_out(op, grad_out, expected):
    check_ndim(op, "grad_out", grad_out, 4)
    check_shape(op, "grad_out", grad_out, expected)


def conv2d_backward_input(grad_out, weight, input_shape, stride=1, padding=0, dilation=1, groups=1):
    """Gradient of conv2d with respect to its input, of shape `input_shape`."""
    op = "conv2d_backward_input"
    device = backend.device_of(op, grad_out, weight)
    float_dtype(op, device, grad_out=grad_out, weight=weight)
    check_ndim(op, "weight", weight, 4)
    input_shape = _check_input_shape(op, input_shape)
    geometry = _geometry(op, input_shape, weight.shape, stride, padding, dilation, groups)
    _check_grad_out(op, grad_out, (input_shape[0], weight.shape[0]) + geometry.out_hw)
    return _input_gradient(device, grad_out, weight, input_shape, geometry)


def _input_gradient(device, grad_out, weight, input_shape, geometry):
    if input_shape[0] == 0:
        return _zeros(grad_out, input_shape)
    if device == "cpu":
        return cpu.conv2d_backward_input(grad_out, weight, input_shape, *geometry[:4])
    grad_out, weight = contiguous(grad_out), contiguous(weight)
    grad_x = empty(grad_out, input_shape)
    if _plain_1x1(weight.shape, geometry):
        n, c = input_shape[:2]
        matmul(weight.reshape(weight.shape[0], c), grad_out.reshape(n, weight.shape[0], -1), trans_a=True,
               out=grad_x.reshape(n, c, -1))
        return grad_x
    gpu.conv2d_backward_input(grad_out, weight, grad_x, *geometry[:4])
    return grad_x


def conv2d_backward_weight(grad_out, x, weight_shape, stride=1, padding=0, dilation=1, groups=1):
    """Gradient of conv2d with respect to its weight, of shape `weight_shape`."""
    op = "conv2d_backward_weight"
    device = backend.device_of(op, grad_out, x)
    float_dtype(op, device, grad_out=grad_out, x=x)
    check_ndim(op, "x", x, 4)
    weight_shape = _check_input_shape(op, weight_shape, "weight_shape", first_may_be_zero=False)
    geometry = _geometry(op, x.shape, weight_shape, stride, padding, dilation, groups)
    _check_grad_out(op, grad_out, (x.shape[0], weight_shape[0]) + geometry.out_hw)
    return _weight_gradient(device, grad_out, x, weight_shape, geometry)


def _weight_gradient(device, grad_out, x, weight_shape, geometry, out=None):
    if x.shape[0] == 0 or device == "cpu":
        result = _zeros(x, weight_shape) if x.shape[0] == 0 else \
            cpu.conv2d_backward_weight(grad_out, x, weight_shape, *geometry[:4])
        return result if out is None else _copied_into(out, result)
    grad_out, x = contiguous(grad_out), contiguous(x)
    grad_weight = empty(x, weight_shape) if out is None else out
    gpu.conv2d_backward_weight(grad_out, x, grad_weight, *geometry[:4])
    return grad_weight


def _copied_into(out, result):
    out[...] = result
    return out


def conv2d_backward_bias(grad_out):
    """Gradient of conv2d with respect to its bias: grad_out summed over N, P, Q."""
    op = "conv2d_backward_bias"
    device = backend.device_of(op, grad_out)
    float_dtype(op, device, grad_out=grad_out)
    check_ndim(op, "grad_out", grad_out, 4)
    return _bias_gradient(device, grad_out)


def _bias_gradient(device, grad_out, out=None):
    if grad_out.size == 0 or device == "cpu":
        result = _zeros(grad_out, (grad_out.shape[1],)) if grad_out.size == 0 else cpu.conv2d_backward_bias(grad_out)
        return result if out is None else _copied_into(out, result)
    grad_out = contiguous(grad_out)
    grad_bias = empty(grad_out, (grad_out.shape[1],)) if out is None else out
    gpu.conv2d_backward_bias(grad_out, grad_bias)
    return grad_bias


def conv2d_backward(grad_out, x, weight, stride=1, padding=0, dilation=1, groups=1, *,
                    need_input=True, need_weight=True, need_bias=True, grad_weight_out=None, grad_bias_out=None):
    """(grad_x, grad_weight, grad_bias) of conv2d; each is None when not asked for. Checked once here
    (each training step's call), not again by each of the three gradients. grad_weight_out / grad_bias_out
    (C-contiguous, on x's device): arrays that receive those gradients and are returned (on the GPU the
    kernels write them: nn puts a gradient straight into an optimizer's flat gradient buffer this way)."""
    op = "conv2d_backward"
    device = backend.device_of(op, grad_out, x, weight, grad_weight_out, grad_bias_out)
    float_dtype(op, device, grad_out=grad_out, x=x, weight=weight)
    check_ndim(op, "x", x, 4)
    check_ndim(op, "weight", weight, 4)
    _check_input_shape(op, weight.shape, "weight's shape", first_may_be_zero=False)
    geometry = _geometry(op, x.shape, weight.shape, stride, padding, dilation, groups)
    _check_grad_out(op, grad_out, (x.shape[0], weight.shape[0]) + geometry.out_hw)
    if grad_weight_out is not None:
        check_out(op, grad_weight_out, weight.shape, weight.dtype, x, "grad_weight_out")
    if grad_bias_out is not None:
        check_out(op, grad_bias_out, (weight.shape[0],), weight.dtype, x, "grad_bias_out")
    grad_x = _input_gradient(device, grad_out, weight, x.shape, geometry) if need_input else None
    grad_weight = _weight_gradient(device, grad_out, x, weight.shape, geometry, grad_weight_out) if need_weight \
        else None
    grad_bias = _bias_gradient(device, grad_out, grad_bias_out) if need_bias else None
    return grad_x, grad_weight, grad_bias
