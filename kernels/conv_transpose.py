"""Public 2-D transposed convolution (torch.nn.functional.conv_transpose2d semantics, NCHW), built on the conv2d
ops with no kernels of its own, so it runs on the CPU, the GPU and the simulator, where its inputs live.

A transposed convolution of x (N, C_in, H, W) with weight (C_in, C_out/groups, kH, kW) is the input gradient of
the convolution that maps its output (N, C_out, H_out, W_out) back to x's shape with the same weight, which is
conv2d's weight layout (K = C_in, C/groups = C_out/groups). So its forward is conv2d_backward_input with x as
grad_out, its input gradient is conv2d of grad_out, and its weight gradient is conv2d's weight gradient with x
and grad_out in each other's places. H_out = (H - 1) * stride - 2 * padding + dilation * (kH - 1) +
output_padding + 1. When output_padding >= stride (torch allows it while output_padding < dilation) that
convolution gives more than H rows: x is extended with zero rows (they add nothing) and grad_x is cut back.
"""
from collections import namedtuple

from . import backend
from ._checks import check_ndim, check_out, check_shape, contiguous, float_dtype, positive_int
from .conv import _bias_gradient, _geometry, _input_gradient, _non_negative_int, _pair, _weight_gradient, conv2d

__all__ = ["conv_transpose2d", "conv_transpose2d_backward", "conv_transpose2d_output_shape"]

# output_shape: (N, C_out, H_out, W_out); conv: the Geometry of the convolution whose input gradient this is
TransposedGeometry = namedtuple("TransposedGeometry", "output_shape conv")

_geometries = {}   # (shapes, arguments) -> TransposedGeometry, as kernels.conv keeps its geometries
GEOMETRIES_KEPT = 1024


def _transposed_geometry(op, input_shape, weight_shape, stride, padding, output_padding, groups, dilation):
    """Check shapes and arguments together (messages name `op` and both shapes); remembered by its arguments."""
    input_shape, weight_shape = tuple(input_shape), tuple(weight_shape)
    arguments = (input_shape, weight_shape, stride, padding, output_padding, groups, dilation)
    key = geometry = None
    # only plain ints and tuples of ints are remembered: True or 1.0 equal 1 as keys, yet are errors
    if all(type(v) is int or (type(v) is tuple and all(type(i) is int for i in v)) for v in arguments):
        key = arguments
        geometry = _geometries.get(key)
    if geometry is None:
        geometry = _checked_geometry(op, input_shape, weight_shape, stride, padding, output_padding, groups,
                                     dilation)
        if key is not None:
            if len(_geometries) >= GEOMETRIES_KEPT:
                _geometries.clear()
            _geometries[key] = geometry
    return geometry


def _checked_geometry(op, input_shape, weight_shape, stride, padding, output_padding, groups, dilation):
    shapes = f"input {input_shape}, weight {weight_shape}"
    groups = positive_int(op, "groups", groups)
    n, c_in, h, w = input_shape
    c_weight, c_out_group, kernel_h, kernel_w = weight_shape
    if c_weight != c_in:
        raise ValueError(f"{op}: input has {c_in} channels but weight expects {c_weight} (weight is (in_channels, "
                         f"out_channels / groups, kH, kW); {shapes})")
    if c_in % groups:
        raise ValueError(f"{op}: groups={groups} must divide the input channels ({shapes})")
    if min(c_in, c_out_group, kernel_h, kernel_w, h, w) < 1:
        raise ValueError(f"{op}: input and weight must have non-empty channels and spatial dims ({shapes})")
    if isinstance(padding, str):
        raise ValueError(f"{op}: padding must be an int or a pair of ints, got {padding!r}")
    stride = _pair(op, "stride", stride, positive_int)
    dilation = _pair(op, "dilation", dilation, positive_int)
    pads = _pair(op, "padding", padding, _non_negative_int)
    extra = _pair(op, "output_padding", output_padding, _non_negative_int)
    if any(e >= s and e >= d for e, s, d in zip(extra, stride, dilation)):
        raise ValueError(f"{op}: output_padding must be smaller than either stride or dilation, got output_padding "
                         f"{extra}, stride {stride}, dilation {dilation}")
    out_hw = tuple((size - 1) * s - 2 * p + d * (k - 1) + e + 1 for size, s, p, d, k, e in
                   zip((h, w), stride, pads, dilation, (kernel_h, kernel_w), extra))
    if min(out_hw) < 1:
        raise ValueError(f"{op}: output size {out_hw[0]}x{out_hw[1]} is too small ({shapes}, stride {stride}, "
                         f"padding {pads}, dilation {dilation}, output_padding {extra})")
    output_shape = (n, c_out_group * groups) + out_hw
    return TransposedGeometry(output_shape, _geometry(op, output_shape, weight_shape, stride, pads, dilation, groups))


def conv_transpose2d_output_shape(input_shape, weight_shape, stride=1, padding=0, output_padding=0, groups=1,
                                  dilation=1):
    """(N, C_out, H_out, W_out) of conv_transpose2d for these shapes and arguments (raises like it on bad ones)."""
    op = "conv_transpose2d"
    if len(input_shape) != 4 or len(weight_shape) != 4:
        raise ValueError(f"{op}: input and weight shapes must have 4 dims, got {tuple(input_shape)} and "
                         f"{tuple(weight_shape)}")
    return _transposed_geometry(op, input_shape, weight_shape, stride, padding, output_padding, groups,
                                dilation).output_shape


def _arguments(geometry):
    """stride, padding, dilation, groups of the convolution, as conv2d takes them (padding symmetric here)."""
    stride, pads, dilation, groups, _ = geometry.conv
    return stride, (pads[0], pads[2]), dilation, groups


def _extended(x, conv_hw):
    """x with zero rows/columns appended up to the convolution's output size (only when output_padding >=
    stride leaves that convolution rows that no input reaches)."""
    if tuple(x.shape[2:]) == tuple(conv_hw):
        return x
    extended = backend.array_module(x).zeros(x.shape[:2] + tuple(conv_hw), x.dtype)
    extended[:, :, :x.shape[2], :x.shape[3]] = x
    return extended


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Transposed convolution of x (N, C_in, H, W) with weight (C_in, C_out/groups, kH, kW), plus bias
    (C_out,): (N, C_out, H_out, W_out), torch's conv_transpose2d."""
    op = "conv_transpose2d"
    device = backend.device_of(op, x, weight, bias)
    float_dtype(op, device, x=x, weight=weight, bias=bias)
    check_ndim(op, "x", x, 4)
    check_ndim(op, "weight", weight, 4)
    geometry = _transposed_geometry(op, x.shape, weight.shape, stride, padding, output_padding, groups, dilation)
    if bias is not None:
        check_shape(op, "bias", bias, geometry.output_shape[1:2])
    y = _input_gradient(device, _extended(x, geometry.conv.out_hw), weight, geometry.output_shape, geometry.conv)
    if bias is not None and x.shape[0]:   # added in place: no second output-sized array
        y += bias.reshape(1, -1, 1, 1)
    return y


def conv_transpose2d_backward(grad_out, x, weight, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                              need_input=True, need_weight=True, need_bias=True, grad_weight_out=None,
                              grad_bias_out=None):
    """(grad_x, grad_weight, grad_bias) of conv_transpose2d; each is None when not asked for. grad_weight_out /
    grad_bias_out (C-contiguous, on x's device): arrays that receive those gradients and are returned, as in
    conv2d_backward (nn puts a gradient straight into an optimizer's flat gradient buffer this way)."""
    op = "conv_transpose2d_backward"
    device = backend.device_of(op, grad_out, x, weight, grad_weight_out, grad_bias_out)
    float_dtype(op, device, grad_out=grad_out, x=x, weight=weight)
    check_ndim(op, "x", x, 4)
    check_ndim(op, "weight", weight, 4)
    geometry = _transposed_geometry(op, x.shape, weight.shape, stride, padding, output_padding, groups, dilation)
    check_ndim(op, "grad_out", grad_out, 4)
    check_shape(op, "grad_out", grad_out, geometry.output_shape)
    if grad_weight_out is not None:
        check_out(op, grad_weight_out, weight.shape, weight.dtype, x, "grad_weight_out")
    if grad_bias_out is not None:
        check_out(op, grad_bias_out, geometry.output_shape[1:2], weight.dtype, x, "grad_bias_out")
    grad_x = grad_weight = grad_bias = None
    if need_input:
        if x.shape[0] == 0:
            grad_x = backend.array_module(x).zeros(x.shape, x.dtype)
        else:  # the convolution's forward of grad_out, cut back to x's size where output_padding >= stride
            grad_x = conv2d(grad_out, weight, None, *_arguments(geometry))
            if grad_x.shape != x.shape:
                grad_x = contiguous(grad_x[:, :, :x.shape[2], :x.shape[3]])
    if need_weight:
        grad_weight = _weight_gradient(device, _extended(x, geometry.conv.out_hw), grad_out, weight.shape,
                                       geometry.conv, grad_weight_out)
    if need_bias:
        grad_bias = _bias_gradient(device, grad_out, grad_bias_out)
    return grad_x, grad_weight, grad_bias
