"""nn.LayerNorm: torch's layer over nn.functional.layer_norm (functional_layer_norm.py), for the recurrent
and CRNN models that normalise each time step's features."""
import numpy as np

from kernels.layer_norm import normalized_shape_tuple

from . import functional as F
from . import init
from .layers import _dtype, _Layer, _on_device
from .module import Parameter


class LayerNorm(_Layer):
    """torch.nn.LayerNorm: normalises over the trailing normalized_shape dims of its input; with
    elementwise_affine, a weight (ones) and, unless bias=False, a bias (zeros) of shape normalized_shape."""

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, device=None, dtype=None):
        super().__init__()
        self.normalized_shape = normalized_shape_tuple(self.label(), normalized_shape)
        self.eps, self.elementwise_affine = eps, elementwise_affine
        dtype = _dtype(dtype, self.label())
        affine = bool(elementwise_affine)
        self.register_parameter("weight", Parameter(np.empty(self.normalized_shape, dtype)) if affine else None)
        self.register_parameter("bias", Parameter(np.empty(self.normalized_shape, dtype)) if affine and bias else None)
        self.reset_parameters()
        _on_device(self, device)

    def reset_parameters(self):
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def label(self):
        return "LayerNorm"

    def extra_repr(self):
        return (f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}, "
                f"bias={self.bias is not None}")

    def forward(self, x):
        x = self._input(x)
        count = len(self.normalized_shape)
        if x.ndim < count or tuple(x.shape[x.ndim - count:]) != self.normalized_shape:
            raise ValueError(f"{self.label()}: expected input with trailing shape {self.normalized_shape}, "
                             f"got shape {tuple(x.shape)}")
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
