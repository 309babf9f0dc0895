"""Connectionist temporal classification loss (Graves et al. 2006) as an autograd Function and a module.

The forward-backward recursion runs in log space in kernels.ctc_loss (a CUDA kernel on the GPU, NumPy on
the CPU); its gradient with respect to the log-probabilities comes from kernels.ctc_loss_backward (the Function calls their
`_prepared` forms, with the targets laid out once by kernels.ctc.prepare_targets).
Arguments and results follow torch.nn.functional.ctc_loss and torch.nn.CTCLoss.
"""
import numpy as np

import kernels
from kernels import backend

from .autograd import Function
from .module import Module
from .tensor import Tensor

__all__ = ["ctc_loss", "CTCLoss"]

REDUCTIONS = ("none", "mean", "sum")


class CTCLossFunction(Function):
    def forward(self, log_probs, targets, input_lengths, target_lengths, blank, reduction, zero_infinity):
        # The targets and lengths are checked and laid out once, for the forward and its backward (on the GPU:
        # one read-back of device targets and one upload a step, not two). The targets are saved too, for the
        # version check (torch's ctc_loss saves them: writing them in place raises at backward); the lengths
        # are not (torch keeps them as host integers, and so does the prepared copy here).
        prepared = kernels.ctc.prepare_targets(log_probs, targets, input_lengths, target_lengths, blank)
        self.save_for_backward(log_probs, targets, prepared)   # (freed with the graph, as saved arrays are)
        self.options = (reduction, zero_infinity)
        return kernels.ctc.ctc_loss_prepared(log_probs, prepared, *self.options)

    def backward(self, grad_loss):
        log_probs, _, prepared = self.saved
        return kernels.ctc.ctc_loss_backward_prepared(grad_loss, log_probs, prepared, *self.options)


def _raw_integers(op, name, value):
    """Targets and lengths: Tensors and arrays pass as arrays; lists and tuples become int64 NumPy arrays."""
    if isinstance(value, Tensor):
        return value.data
    if backend.is_array(value):
        return value
    if isinstance(value, (list, tuple, int, np.integer)):
        return np.asarray(value, dtype=np.int64)
    raise TypeError(f"{op}: {name} must be a Tensor, an array or a list of integers, got {type(value).__name__}")


def _check_unbatched_arguments(op, targets, input_lengths, target_lengths):
    """Unbatched log_probs take the targets of one sample and one length each, as torch: flattening a batch of
    targets (or taking its first row) would silently give the loss of another target."""
    if not (targets.ndim == 1 or targets.ndim == 2 and targets.shape[0] == 1):
        raise ValueError(f"{op}: unbatched log_probs (T, C) take targets of shape (S,) or (1, S), got "
                         f"{tuple(targets.shape)}")
    for name, lengths in (("input_lengths", input_lengths), ("target_lengths", target_lengths)):
        if lengths.size != 1:
            raise ValueError(f"{op}: unbatched log_probs (T, C) take one {name[:-1]} (a scalar or one "
                             f"element), got shape {tuple(lengths.shape)}")


def ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=0, reduction="mean", zero_infinity=False):
    """torch.nn.functional.ctc_loss: log_probs (T, B, C) from log_softmax, targets (B, S) padded or 1-D
    concatenated, input_lengths and target_lengths (B,); or unbatched: log_probs (T, C), targets (S,) or
    (1, S) and one length each.

    reduction 'mean' divides each loss by its target length, then averages over the batch; impossible
    alignments (targets too long for their inputs) give inf, or 0 with a zero gradient with zero_infinity.
    """
    op = "ctc_loss"
    if not isinstance(log_probs, Tensor):
        if not backend.is_array(log_probs):
            raise TypeError(f"{op}: log_probs must be a Tensor or an array, got {type(log_probs).__name__}")
        log_probs = Tensor(log_probs)
    if reduction not in REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    targets = _raw_integers(op, "targets", targets)
    input_lengths = _raw_integers(op, "input_lengths", input_lengths)
    target_lengths = _raw_integers(op, "target_lengths", target_lengths)
    unbatched = log_probs.ndim == 2
    if unbatched:  # (T, C): a batch of one, whose targets the batched checks then read as (1, S) or (S,)
        _check_unbatched_arguments(op, targets, input_lengths, target_lengths)
        log_probs = log_probs.unsqueeze(1)
        input_lengths, target_lengths = input_lengths.reshape(1), target_lengths.reshape(1)
    loss = CTCLossFunction.apply(log_probs, targets, input_lengths, target_lengths, blank=int(blank),
                                 reduction=reduction, zero_infinity=bool(zero_infinity))
    return loss.reshape(()) if unbatched and reduction == "none" else loss


class CTCLoss(Module):
    """torch.nn.CTCLoss(blank=0, reduction='mean', zero_infinity=False);
    forward(log_probs, targets, input_lengths, target_lengths)."""

    def __init__(self, blank=0, reduction="mean", zero_infinity=False):
        super().__init__()
        if isinstance(blank, bool) or not isinstance(blank, (int, np.integer)) or blank < 0:
            raise ValueError(f"CTCLoss: blank must be a non-negative integer, got {blank!r}")
        if reduction not in REDUCTIONS:
            raise ValueError(f"CTCLoss: reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.blank, self.reduction, self.zero_infinity = int(blank), reduction, bool(zero_infinity)

    def forward(self, log_probs, targets, input_lengths, target_lengths):
        return ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=self.blank,
                        reduction=self.reduction, zero_infinity=self.zero_infinity)

    def extra_repr(self):
        return f"blank={self.blank}, reduction={self.reduction!r}, zero_infinity={self.zero_infinity}"
