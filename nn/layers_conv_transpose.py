"""nn.ConvTranspose2d (the up-sampling layer of decoders, GAN generators and U-Nets) with torch's constructor
arguments, attributes (kernel_size, stride, padding, output_padding, dilation as pairs), weight layout
(in_channels, out_channels / groups, kH, kW), state-dict keys, repr and default initialisation, over
nn.functional.conv_transpose2d. forward(input, output_size=None) picks output_padding from output_size as torch
does. Inputs are (N, C, H, W) or unbatched (C, H, W).
"""
import numpy as np

from . import functional as F
from .layers import _ConvNd


class ConvTranspose2d(_ConvNd):
    """torch.nn.ConvTranspose2d: weight (in_channels, out_channels / groups, kH, kW), bias (out_channels,), both
    initialised as torch's (kaiming-uniform weight with a = sqrt(5), whose fan_in torch takes from the weight's
    second dim: out_channels / groups * kH * kW; bias uniform in +-1/sqrt(that fan_in)). Only padding_mode='zeros',
    as torch."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, groups=1,
                 bias=True, dilation=1, padding_mode="zeros", device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, device, dtype, transposed=True, output_padding=output_padding)

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
