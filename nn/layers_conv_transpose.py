"""nn.ConvTranspose2d (the up-sampling layer of decoders, GAN generators and U-Nets) with torch's constructor
arguments, attributes (kernel_size, stride, padding, output_padding, dilation as pairs), weight layout
(in_channels, out_channels / groups, kH, kW), state-dict keys, repr and default initialisation, over
nn.functional.conv_transpose2d. forward(input, output_size=None) picks output_padding from output_size as torch
does. Inputs are (N, C, H, W) or unbatched (C, H, W).
"""
import numpy as np

from kernels._checks import positive_int
from kernels.conv import _non_negative_int, _pair

from . import functional as F
from . import init
from .layers import _dtype, _Layer
from .module import Parameter


class ConvTranspose2d(_Layer):
    """torch.nn.ConvTranspose2d: weight (in_channels, out_channels / groups, kH, kW), bias (out_channels,), both
    initialised as torch's (kaiming-uniform weight with a = sqrt(5), whose fan_in torch takes from the weight's
    second dim: out_channels / groups * kH * kW; bias uniform in +-1/sqrt(that fan_in)). Only padding_mode='zeros',
    as torch."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, groups=1,
                 bias=True, dilation=1, padding_mode="zeros", device=None, dtype=None):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        label = self.label()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
            positive_int(label, name, value)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{label}: in_channels and out_channels must be divisible by groups, got groups={groups}")
        if padding_mode != "zeros":
            raise ValueError(f"{label}: only padding_mode='zeros' is supported, got {padding_mode!r}")
        self.kernel_size = _pair(label, "kernel_size", kernel_size, positive_int)
        self.stride = _pair(label, "stride", stride, positive_int)
        self.padding = _pair(label, "padding", padding, _non_negative_int)
        self.output_padding = _pair(label, "output_padding", output_padding, _non_negative_int)
        self.dilation = _pair(label, "dilation", dilation, positive_int)
        self.groups, self.padding_mode, self.transposed = groups, padding_mode, True
        dtype = _dtype(dtype, label)
        self.weight = Parameter(np.empty((in_channels, out_channels // groups) + self.kernel_size, dtype))
        self.register_parameter("bias", Parameter(np.empty(out_channels, dtype)) if bias else None)
        self.reset_parameters()
        if device is not None:
            self.to(device)

    def reset_parameters(self):
        init.default_weight_and_bias_(self.weight, self.bias)

    def label(self):
        return f"ConvTranspose2d({self.in_channels}, {self.out_channels})"

    def extra_repr(self):
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.output_padding != (0, 0):
            text += f", output_padding={self.output_padding}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        return text

    def forward(self, input, output_size=None):
        x = self._input(input)
        if x.ndim not in (3, 4) or x.shape[-3] != self.in_channels:
            c = self.in_channels
            raise ValueError(f"{self.label()}: expected input of shape (N, {c}, H, W) or ({c}, H, W), got {x.shape}")
        output_padding = self.output_padding if output_size is None else self._output_padding(x, output_size)
        return F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding, output_padding,
                                  self.groups, self.dilation)

    def _output_padding(self, x, output_size):
        """The output_padding that gives `output_size` ((H, W), or the whole output shape), as torch picks it:
        each size between the smallest output (output_padding 0) and that plus stride - 1."""
        sizes = tuple(output_size)
        if len(sizes) == x.ndim:
            sizes = sizes[-2:]
        if len(sizes) != 2:
            raise ValueError(f"{self.label()}: for {x.ndim}-D input, output_size must have 2 or {x.ndim} elements, "
                             f"got {output_size!r}")
        if not all(isinstance(size, (int, np.integer)) and not isinstance(size, bool) for size in sizes):
            raise TypeError(f"{self.label()}: output_size must hold ints, got {output_size!r}")
        smallest = tuple((size - 1) * s - 2 * p + d * (k - 1) + 1 for size, s, p, d, k in
                         zip(x.shape[-2:], self.stride, self.padding, self.dilation, self.kernel_size))
        largest = tuple(low + s - 1 for low, s in zip(smallest, self.stride))
        if any(not low <= size <= high for size, low, high in zip(sizes, smallest, largest)):
            raise ValueError(f"{self.label()}: requested an output size of {tuple(sizes)}, but valid sizes range "
                             f"from {smallest} to {largest} (for an input of {x.shape[-2:]})")
        return tuple(int(size) - low for size, low in zip(sizes, smallest))
