"""CNN layers without parameters over functional_shape_ops.py: nn.Dropout2d, nn.ZeroPad2d, nn.ConstantPad2d and
nn.Upsample (mode 'nearest'), with torch's constructor arguments, attributes and repr."""
import numbers

import numpy as np

from . import functional as F
from .functional_shape_ops import INTERPOLATE_MODES, _probability, check_pad
from .layers import Dropout, _Layer


class Dropout2d(Dropout):
    """torch.nn.Dropout2d: zeroes whole channels with probability p in training, identity in eval. (A Dropout here,
    unlike torch's class tree, so that the trainer's dropout check sees it: a captured CUDA graph would replay one
    mask, nn/train.py.)"""

    def __init__(self, p=0.5, inplace=False):
        _Layer.__init__(self)
        self.p, self.inplace = _probability("Dropout2d", p), inplace

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"

    def forward(self, x):
        return F.dropout2d(self._input(x), self.p, self.training)


class ConstantPad2d(_Layer):
    """torch.nn.ConstantPad2d: pads the last two dims by (left, right, top, bottom) values `value` (negative counts
    crop); an int pads every side by as many."""

    def __init__(self, padding, value):
        super().__init__()
        name = type(self).__name__
        padding = (padding,) * 4 if isinstance(padding, (int, np.integer)) and not isinstance(padding, bool) \
            else padding
        if not isinstance(padding, (tuple, list)) or len(padding) != 4:
            raise ValueError(f"{name}: padding must be an int or a tuple of 4 ints (left, right, top, bottom), got "
                             f"{padding!r}")
        self.padding = check_pad(name, padding, 2)
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name}: value must be a real number, got {value!r}")
        self.value = value

    def label(self):
        return f"{type(self).__name__}({self.padding})"

    def extra_repr(self):
        return f"padding={self.padding}, value={self.value}"

    def forward(self, x):
        x = self._input(x)
        if x.ndim < 2:
            raise ValueError(f"{self.label()}: expected input of shape (N, C, H, W) or (C, H, W), got {x.shape}")
        return F.pad(x, self.padding, "constant", self.value)


class ZeroPad2d(ConstantPad2d):
    """torch.nn.ZeroPad2d: ConstantPad2d with value 0.0."""

    def __init__(self, padding):
        super().__init__(padding, 0.0)

    def extra_repr(self):
        return f"{self.padding}"


class Upsample(_Layer):
    """torch.nn.Upsample in mode 'nearest' on (N, C, H, W) input: to `size`, or by `scale_factor` (kept as floats,
    as torch keeps it)."""

    def __init__(self, size=None, scale_factor=None, mode="nearest", align_corners=None, recompute_scale_factor=None):
        super().__init__()
        if mode not in INTERPOLATE_MODES:
            raise ValueError(f"Upsample: mode must be one of {INTERPOLATE_MODES}, got {mode!r}")
        if mode != "nearest":
            raise ValueError(f"Upsample: mode {mode!r} is not implemented here (only 'nearest' is), got "
                             f"mode={mode!r}")
        self.size, self.mode = size, mode
        self.align_corners, self.recompute_scale_factor = align_corners, recompute_scale_factor
        if isinstance(scale_factor, tuple):
            self.scale_factor = tuple(float(factor) for factor in scale_factor)
        else:
            self.scale_factor = float(scale_factor) if scale_factor else None

    def label(self):
        return f"Upsample({self.extra_repr()})"

    def extra_repr(self):
        info = f"scale_factor={self.scale_factor!r}" if self.scale_factor is not None else f"size={self.size!r}"
        return f"{info}, mode={self.mode!r}"

    def forward(self, x):
        x = self._input(x)
        if x.ndim != 4:
            raise ValueError(f"{self.label()}: expected input of shape (N, C, H, W), got {x.shape}")
        return F.interpolate(x, self.size, self.scale_factor, self.mode, self.align_corners,
                             self.recompute_scale_factor)
