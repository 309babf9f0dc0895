"""Loss modules with torch.nn's arguments: CrossEntropyLoss and MSELoss (CTCLoss lives in ctc.py)."""
import numpy as np

from kernels import backend

from . import functional as F
from .module import Module
from .tensor import Tensor

_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(loss, reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{loss}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")


class CrossEntropyLoss(Module):
    """Logits (N, C[, d...]) and class indices (N[, d...]); `weight` (C,) is kept as a buffer, as in torch."""

    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        super().__init__()
        _check_reduction("CrossEntropyLoss", reduction)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"CrossEntropyLoss: label_smoothing must be in [0, 1], got {label_smoothing!r}")
        if isinstance(weight, Tensor):
            weight = weight.data
        if weight is not None and not backend.is_array(weight):
            weight = np.asarray(weight, dtype=np.float32)
        self.register_buffer("weight", weight)
        self.ignore_index, self.reduction, self.label_smoothing = ignore_index, reduction, label_smoothing

    def extra_repr(self):
        return f"reduction={self.reduction!r}, ignore_index={self.ignore_index}, label_smoothing={self.label_smoothing}"

    def forward(self, input, target):
        weight = self.weight
        if weight is not None:
            input_data = input.data if isinstance(input, Tensor) else input
            if backend.is_gpu_array(weight) != backend.is_gpu_array(input_data):
                raise ValueError(f"CrossEntropyLoss: weight is on {'cuda' if backend.is_gpu_array(weight) else 'cpu'} "
                                 f"but the input is not; move the loss with .to(device)")
            if weight.dtype != input_data.dtype:
                weight = weight.astype(input_data.dtype)
        return F.cross_entropy(input, target, weight, self.ignore_index, self.reduction, self.label_smoothing)


class MSELoss(Module):
    def __init__(self, reduction="mean"):
        super().__init__()
        _check_reduction("MSELoss", reduction)
        self.reduction = reduction

    def extra_repr(self):
        return f"reduction={self.reduction!r}"

    def forward(self, input, target):
        return F.mse_loss(input, target, self.reduction)
