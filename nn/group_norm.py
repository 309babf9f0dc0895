"""nn.GroupNorm: torch's layer over nn.functional.group_norm (functional_group_norm.py), the batch-size-independent
normalisation of small-batch CNNs (detection, segmentation, diffusion U-Nets)."""
import numpy as np

from kernels._checks import positive_int

from . import functional as F
from . import init
from .layers import _dtype, _Layer, _on_device
from .module import Parameter


class GroupNorm(_Layer):
    """torch.nn.GroupNorm: normalises each sample's num_channels channels in num_groups groups; with affine, a
    per-channel weight (ones) and, unless bias=False, bias (zeros)."""

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True, device=None, dtype=None, *, bias=True):
        super().__init__()
        self.num_groups = positive_int("GroupNorm", "num_groups", num_groups)
        self.num_channels = positive_int("GroupNorm", "num_channels", num_channels)
        if num_channels % num_groups:
            raise ValueError(f"GroupNorm: num_channels ({num_channels}) must be divisible by num_groups "
                             f"({num_groups})")
        self.eps, self.affine = eps, affine
        dtype = _dtype(dtype, self.label())
        self.register_parameter("weight", Parameter(np.empty(num_channels, dtype)) if affine else None)
        self.register_parameter("bias", Parameter(np.empty(num_channels, dtype)) if affine and bias else None)
        self.reset_parameters()
        _on_device(self, device)

    def reset_parameters(self):
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def label(self):
        return f"GroupNorm({self.num_groups}, {self.num_channels})"

    def extra_repr(self):
        return (f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}, "
                f"bias={self.bias is not None}")

    def forward(self, x):
        x = self._input(x)
        # (torch checks the channel count through the weight: without affine any multiple of num_groups passes)
        if x.ndim < 2 or (self.weight is not None and x.shape[1] != self.num_channels):
            raise ValueError(f"{self.label()}: expected input of shape (N, {self.num_channels}, *), got {x.shape}")
        return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
