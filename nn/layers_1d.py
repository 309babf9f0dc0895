"""1-D layers for sequence CNNs and CRNNs: nn.Conv1d, nn.MaxPool1d, nn.AvgPool1d, nn.AdaptiveAvgPool1d, with
torch's constructor arguments, attributes (kernel_size etc. as torch keeps them), state-dict keys, repr and
default initialisation, over nn.functional's 1-D ops (functional_1d.py). Inputs are (N, C, L) or unbatched
(C, L); a wrong rank or channel count raises a ValueError naming the layer, what it expected and what it got.
"""
from . import functional as F
from .functional_1d import single
from .layers import _ConvNd, _Layer, _MaxPoolArguments


def _single(value):
    """torch's _single: a tuple stays, anything else becomes a 1-tuple."""
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


class _Sequence1d(_Layer):
    def _sequence(self, x, channels=None):
        """x as a Tensor of shape (N, C, L) or (C, L), with `channels` channels where given."""
        x = self._input(x)
        c = "C" if channels is None else channels
        if x.ndim not in (2, 3):
            raise ValueError(f"{self.label()}: expected input of shape (N, {c}, L) or ({c}, L), got {x.shape}")
        if channels is not None and x.shape[-2] != channels:
            raise ValueError(f"{self.label()}: expected {channels} input channels, got {x.shape[-2]} (input shape "
                             f"{x.shape})")
        return x


class Conv1d(_ConvNd, _Sequence1d):
    """torch.nn.Conv1d: weight (out_channels, in_channels / groups, kernel_size), bias (out_channels,), both
    initialised as torch's (kaiming-uniform weight, bias uniform in +-1/sqrt(fan_in)). Only
    padding_mode='zeros' is supported, as in nn.Conv2d."""
    dims = 1

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, device, dtype)

    def _tuple(self, label, name, value, positive):
        return (single(label, name, value, 1 if positive else 0),)

    def forward(self, x):
        x = self._sequence(x, self.in_channels)
        return F.conv1d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class MaxPool1d(_MaxPoolArguments, _Sequence1d):
    """torch.nn.MaxPool1d: arguments kept as given (stride defaults to kernel_size)."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False):
        super().__init__()
        self._keep_arguments(kernel_size, stride, padding, dilation, return_indices, ceil_mode)

    def forward(self, x):
        return F.max_pool1d(self._sequence(x), self.kernel_size, self.stride, self.padding, self.dilation,
                            self.ceil_mode, self.return_indices)


class AvgPool1d(_Sequence1d):
    """torch.nn.AvgPool1d: kernel_size, stride (default kernel_size) and padding kept as 1-tuples."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
        super().__init__()
        self.kernel_size = _single(kernel_size)
        self.stride = _single(stride if stride is not None else kernel_size)
        self.padding = _single(padding)
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"

    def forward(self, x):
        return F.avg_pool1d(self._sequence(x), self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad)


class AdaptiveAvgPool1d(_Sequence1d):
    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def extra_repr(self):
        return f"output_size={self.output_size}"

    def forward(self, x):
        return F.adaptive_avg_pool1d(self._sequence(x), self.output_size)
