"""1-D convolution and pooling (torch.nn.functional's conv1d, max_pool1d, avg_pool1d, adaptive_avg_pool1d)
for sequence CNNs and CRNNs over audio or text: each is the 2-D op's Function of functional_conv.py (under a 1-D
name) on a map of height 1, input (N, C, L) viewed as (N, C, 1, L) and the result viewed back, so the gradients,
the CPU path, the simulator and the GPU come with the 2-D op (both reshapes are views: a unit axis never needs
a copy).

The arguments are checked here, as torch checks them, so that an error names the 1-D op and the 1-D shapes,
never the 2-D op it runs on. Inputs may be batched (N, C, L) or unbatched (C, L), as in torch.
"""
import numpy as np

from kernels import backend
from kernels._checks import float_dtype
from kernels.conv import check_channels
from kernels.pool import pooled_size

from .functional import _tensor
from .functional_conv import _AdaptiveAvgPool2d, _AvgPool2d, _Conv2d, _MaxPool2d
from .tensor import Tensor


# The 2-D Functions under the 1-D ops' names: autograd's messages (an input written in place before backward,
# a second backward) name the Function, and a user of conv1d should read conv1d there.
class Conv1dFunction(_Conv2d):
    """Takes the 3-D weight (K, C/groups, R) itself and views it as (K, C/groups, 1, R) inside, rather than
    through a reshape Function before it: so its gradient is written straight into a flat optimizer's buffer
    (a view of it, as conv2d's), not made as a new array and then copied there."""

    def forward(self, x, weight, bias, stride, padding, dilation, groups):
        return super().forward(x, weight[:, :, None, :], bias, stride, padding, dilation, groups)

    def out_for(self, position, needed=True):
        out = super().out_for(position, needed)
        if position != 1 or out is None:
            return out
        self.weight_slot = out, out[:, :, None, :]   # the 3-D slot, and the 4-D view the kernels write
        return self.weight_slot[1]

    def grads(self, grad_x, grad_weight, grad_bias):
        slot = getattr(self, "weight_slot", None)
        if slot is not None and grad_weight is slot[1]:
            grad_weight = slot[0]   # the slot itself: Tensor._accumulate then keeps it, no copy
        elif grad_weight is not None:
            grad_weight = grad_weight.reshape(grad_weight.shape[0], grad_weight.shape[1], grad_weight.shape[3])
        return super().grads(grad_x, grad_weight, grad_bias)


class MaxPool1dFunction(_MaxPool2d):
    pass


class AvgPool1dFunction(_AvgPool2d):
    pass


class AdaptiveAvgPool1dFunction(_AdaptiveAvgPool2d):
    pass


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def single(op, name, value, minimum):
    """An int from an int or a one-element tuple/list of an int (torch's _single), at least `minimum`."""
    item = value[0] if isinstance(value, (tuple, list)) and len(value) == 1 else value
    if not _is_int(item):
        raise ValueError(f"{op}: {name} must be an int or a 1-tuple of ints, got {value!r}")
    if item < minimum:
        bound = "positive" if minimum == 1 else "non-negative"
        raise ValueError(f"{op}: {name} must be {bound}, got {value!r}")
    return int(item)


def _sequence(op, input, name="input"):
    """input as a Tensor of shape (N, C, L) or (C, L) with C, L >= 1, and whether it was unbatched."""
    input = _tensor(input, f"{op}: {name}", optional=False)
    if input.ndim not in (2, 3) or input.shape[-1] < 1 or input.shape[-2] < 1:
        raise ValueError(f"{op}: {name} must be 2-D (C, L) or 3-D (N, C, L) with C, L >= 1, got shape {input.shape}")
    return input, input.ndim == 2


def _as_map(x):
    """(N, C, L) or (C, L) -> (N, C, 1, L): a view."""
    n = x.shape[0] if x.ndim == 3 else 1
    return x.reshape(n, x.shape[-2], 1, x.shape[-1])


def _as_sequence(y, unbatched):
    """(N, C, 1, L') -> (N, C, L'), or (C, L') for an unbatched input: a view."""
    return y.reshape(y.shape[1], y.shape[3]) if unbatched else y.reshape(y.shape[0], y.shape[1], y.shape[3])


def _checked_arrays(op, **tensors):
    """Device and dtype checks on the arrays (those of the 2-D op would name it)."""
    arrays = {name: None if t is None else t.data for name, t in tensors.items()}
    float_dtype(op, backend.device_of(op, *arrays.values()), **arrays)


def conv_padding(op, padding, stride, extent):
    """(left, right) padding for an int, a 1-tuple, 'valid' or 'same' (the odd extra column on the right)."""
    if isinstance(padding, str):
        if padding == "valid":
            return 0, 0
        if padding == "same":
            if stride != 1:
                raise ValueError(f"{op}: padding='same' needs stride 1, got stride {stride}")
            total = extent - 1
            return total // 2, total - total // 2
        raise ValueError(f"{op}: padding must be an int, a 1-tuple, 'same' or 'valid', got {padding!r}")
    pad = single(op, "padding", padding, 0)
    return pad, pad


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """1-D cross-correlation of input (N, C, L) or (C, L) with weight (K, C/groups, R), plus bias (K,):
    (N, K, L') or (K, L'). padding: an int, 'valid' or 'same' (stride 1)."""
    op = "conv1d"
    input, unbatched = _sequence(op, input)
    weight, bias = _tensor(weight, f"{op}: weight", optional=False), _tensor(bias, f"{op}: bias")
    if weight.ndim != 3:
        raise ValueError(f"{op}: weight must be 3-D (out_channels, in_channels / groups, kernel_size), "
                         f"got shape {weight.shape}")
    _checked_arrays(op, input=input, weight=weight, bias=bias)
    shapes = f"input {input.shape}, weight {weight.shape}"
    out_channels, group_channels, kernel = weight.shape
    if bias is not None and bias.shape != (out_channels,):
        raise ValueError(f"{op}: bias must have shape ({out_channels},), got {bias.shape}")
    groups = check_channels(op, input.shape, weight.shape, groups, channel_axis=-2)
    stride = single(op, "stride", stride, 1)
    dilation = single(op, "dilation", dilation, 1)
    length = input.shape[-1]
    extent = dilation * (kernel - 1) + 1
    left, right = conv_padding(op, padding, stride, extent)
    if extent > length + left + right:
        raise ValueError(f"{op}: kernel size {kernel} (dilated {extent}) is larger than the padded input length "
                         f"{length + left + right} ({shapes}, padding ({left}, {right}))")
    padding_2d = padding if isinstance(padding, str) else (0, left)
    y = Conv1dFunction.apply(_as_map(input), weight, bias,
                             stride=(1, stride), padding=padding_2d, dilation=(1, dilation), groups=groups)
    return _as_sequence(y, unbatched)


def _window(op, input, kernel_size, stride, padding, dilation, ceil_mode):
    """(kernel, stride, padding, dilation) as ints, checked as torch's pooling checks them."""
    kernel = single(op, "kernel_size", kernel_size, 1)
    no_stride = stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0)
    stride = kernel if no_stride else single(op, "stride", stride, 1)
    padding = single(op, "padding", padding, 0)
    dilation = single(op, "dilation", dilation, 1)
    if padding > kernel // 2:
        raise ValueError(f"{op}: padding must be at most half the kernel size, got padding {padding} for "
                         f"kernel_size {kernel}")
    length = pooled_size(input.shape[-1], kernel, stride, padding, dilation, ceil_mode)
    if length < 1:
        raise ValueError(f"{op}: output length {length} is too small for input shape {input.shape} with kernel_size {kernel}, stride {stride}, "
                         f"padding {padding}, dilation {dilation}")
    return kernel, stride, padding, dilation


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Window maxima over the last axis (padding counts as -inf); with return_indices also the int64
    position in L of each maximum, as torch's (the first one on ties)."""
    op = "max_pool1d"
    input, unbatched = _sequence(op, input)
    _checked_arrays(op, input=input)
    kernel, stride, padding, dilation = _window(op, input, kernel_size, stride, padding, dilation, ceil_mode)
    result = MaxPool1dFunction.apply(_as_map(input), kernel_size=(1, kernel), stride=(1, stride), padding=(0, padding),
                                     dilation=(1, dilation), ceil_mode=bool(ceil_mode),
                                     return_indices=bool(return_indices))
    if not return_indices:
        return _as_sequence(result, unbatched)
    values, indices = result   # on a map of height 1 the 2-D flat index h*L+l is l
    return _as_sequence(values, unbatched), Tensor(_as_sequence(indices, unbatched).data)   # not in the graph


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Window means over the last axis; the divisor counts the zero padding unless count_include_pad=False."""
    op = "avg_pool1d"
    input, unbatched = _sequence(op, input)
    _checked_arrays(op, input=input)
    kernel, stride, padding, _ = _window(op, input, kernel_size, stride, padding, 1, ceil_mode)
    y = AvgPool1dFunction.apply(_as_map(input), kernel_size=(1, kernel), stride=(1, stride), padding=(0, padding),
                                ceil_mode=bool(ceil_mode), count_include_pad=bool(count_include_pad),
                                divisor_override=None)
    return _as_sequence(y, unbatched)


def adaptive_avg_pool1d(input, output_size):
    """Means over torch's adaptive windows of the last axis: output length output_size (an int or a 1-tuple),
    window i covering [floor(i * L / out), ceil((i + 1) * L / out))."""
    op = "adaptive_avg_pool1d"
    input, unbatched = _sequence(op, input)
    _checked_arrays(op, input=input)
    size = single(op, "output_size", output_size, 0)
    return _as_sequence(AdaptiveAvgPool1dFunction.apply(_as_map(input), output_size=(1, size)), unbatched)
