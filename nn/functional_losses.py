"""Losses as autograd Functions (torch.nn.functional's names, arguments and reductions; re-exported by
functional): cross_entropy over the reduce family's kernels, the others from array operations that run
on either device."""
import numpy as np

import kernels
from kernels import backend

from .autograd import Function
from .functional import _tensor, log_softmax
from .tensor import Tensor


class _CrossEntropy(Function):
    def forward(self, logits, target, weight, ignore_index, label_smoothing, reduction):
        self.options = dict(weight=weight, ignore_index=ignore_index, label_smoothing=label_smoothing,
                            reduction=reduction)
        self.save_for_backward(logits, target, weight)   # (the weight too: as torch, writing it raises at backward)
        # a forward recorded into a CUDA graph cannot read the GPU's verdict on the targets: its backward checks
        self.targets_checked = not backend.is_capturing()
        return kernels.cross_entropy(logits, target, **self.options)

    def backward(self, grad):
        logits, target, _ = self.saved
        # (a forward that checked these targets spares the backward a second wait for the GPU's verdict)
        return kernels.cross_entropy_backward(grad, logits, target, **self.options,
                                              check_targets=not self.targets_checked)


_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(op, reduction):
    """One of torch's reductions; `op` names the function or loss module (losses.py uses this one too)."""
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _check_beta(op, beta):
    """smooth_l1_loss's beta (also SmoothL1Loss's): a number >= 0."""
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not beta >= 0:
        raise ValueError(f"{op}: beta must be a number >= 0, got {beta!r}")


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """Logits (N, C), (N, C, d1, ...) or unbatched (C,); target: class indices of the logits' shape without C
    ((N,), (N, d1, ...) or ()), or class probabilities of the logits' own shape; torch's options."""
    op = "cross_entropy"
    input = _tensor(input)
    _check_reduction(op, reduction)
    if tuple(getattr(target, "shape", ())) == input.shape and input.ndim:  # torch too decides by the shapes
        return _cross_entropy_with_probabilities(input, target, weight, ignore_index, reduction, label_smoothing)
    target = target.data if isinstance(target, Tensor) else target
    weight = weight.data if isinstance(weight, Tensor) else weight
    if not backend.is_array(target):
        raise TypeError(f"{op}: target must be an integer Tensor or array, got {type(target).__name__}")
    options = dict(weight=weight, ignore_index=ignore_index, label_smoothing=label_smoothing, reduction=reduction)
    if input.ndim == 1 and target.ndim == 0:  # unbatched: a batch of one, as nll_loss
        loss = cross_entropy(input.unsqueeze(0), target.reshape(1), **options)
        return loss.reshape(()) if reduction == "none" else loss
    if input.ndim < 2 or tuple(target.shape) != input.shape[:1] + input.shape[2:]:
        raise ValueError(f"{op}: expected logits (N, C, ...) with class indices (N, ...) or class probabilities "
                         f"of the logits' shape (unbatched: logits (C,) with a 0-d target or (C,) probabilities), "
                         f"got logits of shape {input.shape} and target of shape {tuple(target.shape)}")
    if input.ndim == 2:
        return _CrossEntropy.apply(input, target=target, **options)
    classes = input.shape[1]  # (N, C, d...) -> (N * d..., C): classes last, one row per position
    rows = input.permute((0,) + tuple(range(2, input.ndim)) + (1,)).reshape(-1, classes)
    loss = _CrossEntropy.apply(rows, target=target.reshape(-1), **options)
    return loss.reshape(tuple(target.shape)) if reduction == "none" else loss


def _cross_entropy_with_probabilities(input, target, weight, ignore_index, reduction, label_smoothing):
    """torch's class-probability targets: loss = -sum_c w_c t_c log_softmax(x)_c over the class dim, with t
    smoothed to t (1 - eps) + eps / C. 'mean' divides by the number of positions (N * d1 * ...), not by the
    weights as the index form does. Built from differentiable Tensor ops, so it runs on either device and the
    target gets a gradient too (as in torch)."""
    op = "cross_entropy"
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)) or ignore_index >= 0:
        raise ValueError(f"{op}: ignore_index does not apply to class-probability targets (it must stay "
                         f"negative, as torch), got {ignore_index!r}")
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float)) \
            or not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{op}: label_smoothing must be a number in [0, 1], got {label_smoothing!r}")
    if not (isinstance(target, Tensor) or backend.is_array(target)) or target.dtype.kind != "f":
        kind = getattr(target, "dtype", type(target).__name__)
        raise TypeError(f"{op}: a target of the logits' shape {input.shape} holds class probabilities and must "
                        f"be floating, got {kind}")
    target = _loss_target(op, target, input)
    class_dim = 0 if input.ndim == 1 else 1
    classes = input.shape[class_dim]
    if label_smoothing > 0:
        target = target * (1.0 - label_smoothing) + label_smoothing / classes
    products = log_softmax(input, dim=class_dim) * target
    weight = _constant(op, "weight", weight, input, shape=(classes,))
    if weight is not None:  # (C, 1, ...): broadcast along the class dim
        products = products * weight.reshape((classes,) + (1,) * (input.ndim - class_dim - 1))
    return _reduce(-products.sum(class_dim), reduction)


def mse_loss(input, target, reduction="mean", weight=None):
    """Mean (or sum, or elementwise) squared difference; input and target must have one shape; weight as
    torch 2.13's (see _weighted_reduce)."""
    input, target = _tensor(input), _tensor(target, "target")
    _check_reduction("mse_loss", reduction)
    if input.shape != target.shape:
        raise ValueError(f"mse_loss: input and target must have the same shape, got {input.shape} and {target.shape}")
    difference = input - target
    return _weighted_reduce("mse_loss", difference * difference, weight, reduction)


def _weighted_reduce(op, loss, weight, reduction):
    """torch 2.13's weight= of mse_loss and l1_loss: one weight per element (the input's shape), and 'mean'
    divides by the sum of the weights, not by the number of elements. A weight Tensor stays differentiable, as
    in torch."""
    if weight is None:
        return _reduce(loss, reduction)
    if not isinstance(weight, Tensor):
        weight = Tensor(_constant(op, "weight", weight, loss, shape=loss.shape))
    elif weight.shape != loss.shape:
        raise ValueError(f"{op}: weight must have shape {loss.shape}, got {weight.shape}")
    weighted = loss * weight
    return weighted.sum() / weight.sum() if reduction == "mean" else _reduce(weighted, reduction)


def _elementwise_operands(op, input, target, reduction):
    """(input, target) as Tensors of one shape and dtype for a loss computed element by element; the reduction
    checked."""
    input = _tensor(input)
    _check_reduction(op, reduction)
    target = _loss_target(op, target, input)
    if target.shape != input.shape:
        raise ValueError(f"{op}: target must have the input's shape {input.shape}, got {target.shape}")
    return input, target


def _loss_target(op, target, input):
    """A float target as a Tensor of the input's dtype: raw arrays are cast, Tensors must already match."""
    if isinstance(target, Tensor):
        if target.dtype != input.dtype:
            raise TypeError(f"{op}: target must have the input's dtype {input.dtype}, got {target.dtype}")
        return target
    if not backend.is_array(target) or not np.issubdtype(target.dtype, np.floating):
        kind = target.dtype if backend.is_array(target) else type(target).__name__
        raise TypeError(f"{op}: target must be a float Tensor or array, got {kind}")
    return Tensor(target.astype(input.dtype, copy=False))


def _reduce(loss, reduction):
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.mean()


def _constant(op, name, array, input, shape=None, check_shape=True, hint=""):
    """An optional weight (Tensor or array; not differentiated, as in torch) in the input's (a Tensor's or an
    array's) dtype, on its device (else an error, ending with `hint`), whose shape is `shape` or broadcasts to
    the input's (unless check_shape is False: the loss modules leave the shapes to these functions)."""
    if array is None:
        return None
    data = input.data if isinstance(input, Tensor) else input
    array = array.data if isinstance(array, Tensor) else array
    if not backend.is_array(array):
        array = np.asarray(array, dtype=data.dtype)
    if backend.is_gpu_array(array) != backend.is_gpu_array(data):
        where = {True: "cuda", False: "cpu"}
        raise ValueError(f"{op}: {name} is on {where[backend.is_gpu_array(array)]} but the input is on "
                         f"{where[backend.is_gpu_array(data)]}{hint}")
    if check_shape and shape is not None and tuple(array.shape) != shape:
        raise ValueError(f"{op}: {name} must have shape {shape}, got {tuple(array.shape)}")
    if check_shape and shape is None and not _broadcasts_to(tuple(array.shape), tuple(data.shape)):
        raise ValueError(f"{op}: {name} of shape {tuple(array.shape)} does not broadcast to the input's "
                         f"shape {tuple(data.shape)}")
    return array.astype(data.dtype, copy=False)


def _broadcasts_to(shape, target_shape):
    try:
        return np.broadcast_shapes(shape, target_shape) == target_shape
    except ValueError:
        return False


class _NLLLoss(Function):
    """loss_i = -w[t_i] * log_probs[i, t_i] on rows (M, C), 0 where t_i == ignore_index; 'mean' divides
    the sum by the sum of w[t_i] over the rows kept (nan if none is, as torch). Array-module code only,
    so it runs on either device."""

    def forward(self, log_probs, target, weight, ignore_index, reduction):
        xp = backend.array_module(log_probs)
        kept = target != ignore_index
        classes = xp.where(kept, target, 0)
        if weight is None:
            row_weight = kept.astype(log_probs.dtype)
        else:
            row_weight = xp.where(kept, weight[classes], log_probs.dtype.type(0))
        rows = xp.arange(len(target))
        self.rows, self.classes, self.shape, self.reduction = rows, classes, log_probs.shape, reduction
        # the backward reads copies, but torch's nll_loss saves these: writing them in place raises at backward
        self.save_for_backward(target, weight)
        losses = -row_weight * log_probs[rows, classes]
        if reduction == "none":
            self.row_scale = row_weight
            return losses
        if reduction == "sum":
            self.row_scale = row_weight
            return losses.sum()
        total = row_weight.sum()
        with np.errstate(invalid="ignore", divide="ignore"):  # all rows ignored: 0 / 0, nan as in torch
            # (the backward gives those rows 0, as torch does, instead of 0 * inf)
            self.row_scale = xp.where(kept, row_weight / total, log_probs.dtype.type(0))
            return losses.sum() / total

    def backward(self, grad):
        xp = backend.array_module(grad)
        grad_input = xp.zeros(self.shape, dtype=grad.dtype)
        grad_input[self.rows, self.classes] = -self.row_scale * grad
        return grad_input


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """torch.nn.functional.nll_loss: log-probabilities (C,), (N, C) or (N, C, d1, ...) and class indices
    (), (N,) or (N, d1, ...); weight (C,) per class."""
    op = "nll_loss"
    input = _tensor(input)
    target = target.data if isinstance(target, Tensor) else target
    _check_reduction(op, reduction)
    if not backend.is_array(target) or not np.issubdtype(target.dtype, np.integer):
        kind = target.dtype if backend.is_array(target) else type(target).__name__
        raise TypeError(f"nll_loss: target must be an integer Tensor or array of class indices, got {kind}")
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
        raise TypeError(f"nll_loss: ignore_index must be an int, got {ignore_index!r}")
    if input.ndim == 1 and target.ndim == 0:
        loss = nll_loss(input.unsqueeze(0), target.reshape(1), weight, ignore_index, reduction)
        return loss.reshape(()) if reduction == "none" else loss
    if input.ndim < 2 or tuple(target.shape) != input.shape[:1] + input.shape[2:]:
        raise ValueError(f"nll_loss: expected log-probabilities (N, C, ...) and target (N, ...), got input of "
                         f"shape {input.shape} and target of shape {tuple(target.shape)}")
    classes = input.shape[1]
    weight = _constant(op, "weight", weight, input, shape=(classes,))
    if backend.is_gpu_array(target) != backend.is_gpu_array(input.data):
        raise ValueError(f"nll_loss: target is on another device than the input ({input.device})")
    if not backend.is_capturing():  # (on the GPU one small device-to-host copy, the price of torch's error)
        bad = (target != ignore_index) & ((target < 0) | (target >= classes))
        if bool(bad.any()):
            raise IndexError(f"nll_loss: target holds a class index outside [0, {classes}) that is not "
                             f"ignore_index ({ignore_index})")
    rows = input
    if input.ndim > 2:  # (N, C, d...) -> (N * d..., C), one row per position
        rows = input.permute((0,) + tuple(range(2, input.ndim)) + (1,)).reshape(-1, classes)
    loss = _NLLLoss.apply(rows, target.reshape(-1), weight=weight, ignore_index=int(ignore_index),
                          reduction=reduction)
    return loss.reshape(tuple(target.shape)) if reduction == "none" else loss


class _BCEWithLogits(Function):
    """Elementwise w * [(1 - y) x + (1 + (p - 1) y) softplus(-x)], torch's stable form of
    -w [p y log(sigmoid(x)) + (1 - y) log(1 - sigmoid(x))], with softplus(z) = max(z, 0) + log1p(exp(-|z|))."""

    def forward(self, x, y, weight, pos_weight):
        xp = backend.array_module(x)
        one = x.dtype.type(1)
        softplus_negative = xp.maximum(-x, 0) + xp.log1p(xp.exp(-xp.abs(x)))
        log_weight = one if pos_weight is None else one + (pos_weight - one) * y
        self.save_for_backward(x, y, softplus_negative, weight, pos_weight)
        loss = (one - y) * x + log_weight * softplus_negative
        return loss if weight is None else loss * weight

    def backward(self, grad):
        x, y, softplus_negative, weight, pos_weight = self.saved
        xp = backend.array_module(x)
        one = x.dtype.type(1)
        if weight is not None:
            grad = grad * weight
        need_x, need_y = self.needs_input_grad
        grad_x = grad_y = None
        if need_x:  # d/dx = (1 - y) - (1 + (p - 1) y) sigmoid(-x), sigmoid(-x) = exp(-softplus(x))
            sigmoid_negative = xp.exp(-(x + softplus_negative))
            log_weight = one if pos_weight is None else one + (pos_weight - one) * y
            grad_x = grad * ((one - y) - log_weight * sigmoid_negative)
        if need_y:  # d/dy = -x + (p - 1) softplus(-x)
            grad_y = -x if pos_weight is None else -x + (pos_weight - one) * softplus_negative
            grad_y = grad * grad_y
        return grad_x, grad_y


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean", pos_weight=None):
    """torch.nn.functional.binary_cross_entropy_with_logits: logits and float targets of one shape; weight
    broadcasts to the input, pos_weight (the weight of positives, usually (C,)) too. Differentiable in
    input and target, not in the weights (as torch)."""
    op = "binary_cross_entropy_with_logits"
    input, target = _elementwise_operands(op, input, target, reduction)
    weight = _constant(op, "weight", weight, input)
    pos_weight = _constant(op, "pos_weight", pos_weight, input)
    loss = _BCEWithLogits.apply(input, target, weight=weight, pos_weight=pos_weight)
    return _reduce(loss, reduction)


def l1_loss(input, target, reduction="mean", weight=None):
    """Mean (or sum, or elementwise) absolute difference; input and target must have one shape; weight as
    mse_loss's."""
    input, target = _elementwise_operands("l1_loss", input, target, reduction)
    return _weighted_reduce("l1_loss", (input - target).abs(), weight, reduction)


class _SmoothL1(Function):
    """0.5 d^2 / beta where |d| < beta, |d| - 0.5 beta elsewhere (plain |d| for beta == 0)."""

    def forward(self, difference, beta):
        xp = backend.array_module(difference)
        self.beta = difference.dtype.type(beta)
        self.save_for_backward(difference)
        magnitude = xp.abs(difference)
        if beta == 0:
            return magnitude
        return xp.where(magnitude < self.beta, difference * difference * (0.5 / self.beta),
                        magnitude - 0.5 * self.beta)

    def backward(self, grad):
        (difference,) = self.saved
        xp = backend.array_module(difference)
        if self.beta == 0:
            return grad * xp.sign(difference)
        return grad * xp.clip(difference / self.beta, -1, 1)


def smooth_l1_loss(input, target, reduction="mean", beta=1.0):
    """torch.nn.functional.smooth_l1_loss (Huber loss divided by beta); beta >= 0."""
    _check_beta("smooth_l1_loss", beta)
    input, target = _elementwise_operands("smooth_l1_loss", input, target, reduction)
    return _reduce(_SmoothL1.apply(input - target, beta=float(beta)), reduction)
