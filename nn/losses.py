"""Loss modules with torch.nn's arguments: CrossEntropyLoss, NLLLoss, BCEWithLogitsLoss, MSELoss, L1Loss and
SmoothL1Loss (CTCLoss lives in ctc.py). The deprecated size_average and reduce arguments are not taken."""
import numpy as np

from kernels import backend

from . import functional as F
from .functional_losses import _check_beta, _check_reduction, _constant
from .module import Module
from .tensor import Tensor


def _as_buffer(weight):
    """A weight argument (Tensor, array, list or None) as the array kept in a buffer (lists: float32)."""
    if isinstance(weight, Tensor):
        weight = weight.data
    if weight is not None and not backend.is_array(weight):
        weight = np.asarray(weight, dtype=np.float32)
    return weight


def _buffer_for(loss, name, buffer, input):
    """A weight buffer in the input's dtype; a buffer on another device than the input is an error (the shapes
    are left to the functional losses)."""
    return _constant(loss, name, buffer, input, check_shape=False, hint="; move the loss with .to(device)")


class CrossEntropyLoss(Module):
    """Logits (N, C[, d...]) or (C,) with class indices (N[, d...]) or (), or class probabilities of the logits'
    shape (see F.cross_entropy); `weight` (C,) is kept as a buffer, as in torch."""

    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        super().__init__()
        _check_reduction("CrossEntropyLoss", reduction)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"CrossEntropyLoss: label_smoothing must be in [0, 1], got {label_smoothing!r}")
        self.register_buffer("weight", _as_buffer(weight))
        self.ignore_index, self.reduction, self.label_smoothing = ignore_index, reduction, label_smoothing

    def extra_repr(self):
        return f"reduction={self.reduction!r}, ignore_index={self.ignore_index}, label_smoothing={self.label_smoothing}"

    def forward(self, input, target):
        weight = _buffer_for("CrossEntropyLoss", "weight", self.weight, input)
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


class NLLLoss(Module):
    """Log-probabilities (N, C[, d...]) and class indices (N[, d...]); `weight` (C,) is a buffer, as in torch."""

    def __init__(self, weight=None, ignore_index=-100, reduction="mean"):
        super().__init__()
        _check_reduction("NLLLoss", reduction)
        self.register_buffer("weight", _as_buffer(weight))
        self.ignore_index, self.reduction = ignore_index, reduction

    def extra_repr(self):
        return f"reduction={self.reduction!r}, ignore_index={self.ignore_index}"

    def forward(self, input, target):
        weight = _buffer_for("NLLLoss", "weight", self.weight, input)
        return F.nll_loss(input, target, weight, self.ignore_index, self.reduction)


class BCEWithLogitsLoss(Module):
    """Logits and float targets of one shape; `weight` and `pos_weight` are buffers, as in torch."""

    def __init__(self, weight=None, reduction="mean", pos_weight=None):
        super().__init__()
        _check_reduction("BCEWithLogitsLoss", reduction)
        self.register_buffer("weight", _as_buffer(weight))
        self.register_buffer("pos_weight", _as_buffer(pos_weight))
        self.reduction = reduction

    def extra_repr(self):
        return f"reduction={self.reduction!r}"

    def forward(self, input, target):
        weight = _buffer_for("BCEWithLogitsLoss", "weight", self.weight, input)
        pos_weight = _buffer_for("BCEWithLogitsLoss", "pos_weight", self.pos_weight, input)
        return F.binary_cross_entropy_with_logits(input, target, weight, self.reduction, pos_weight)


class L1Loss(Module):
    def __init__(self, reduction="mean"):
        super().__init__()
        _check_reduction("L1Loss", reduction)
        self.reduction = reduction

    def extra_repr(self):
        return f"reduction={self.reduction!r}"

    def forward(self, input, target):
        return F.l1_loss(input, target, self.reduction)


class SmoothL1Loss(Module):
    def __init__(self, reduction="mean", beta=1.0):
        super().__init__()
        _check_reduction("SmoothL1Loss", reduction)
        _check_beta("SmoothL1Loss", beta)
        self.reduction, self.beta = reduction, beta

    def extra_repr(self):
        return f"reduction={self.reduction!r}, beta={self.beta}"

    def forward(self, input, target):
        return F.smooth_l1_loss(input, target, self.reduction, self.beta)
