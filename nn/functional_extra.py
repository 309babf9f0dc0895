"""torch.nn.functional's one_hot, normalize, binary_cross_entropy, kl_div and huber_loss (re-exported by
functional, with the activations of functional_activations_extra.py; the modules are in layers_extra.py).
No kernels of their own: compositions of Tensor ops, or small Functions of array-module code (either device)
where torch's derivative needs its own form (binary_cross_entropy's clamps, a p-norm's zero rows)."""
import warnings

import numpy as np

from kernels import backend

from .autograd import Function
from .functional import _tensor
from .functional_activations_extra import (hardsigmoid, hardswish, hardtanh, mish, prelu,  # noqa: F401
                                           relu6, softplus, softsign)
from .functional_losses import _SmoothL1, _constant, _elementwise_operands, _loss_target, _reduce
from .tensor import Tensor
from .tensor_functions import check_dim
from .tensor_methods import where

__all__ = ["one_hot", "normalize", "binary_cross_entropy", "kl_div", "huber_loss", "softplus", "relu6",
           "hardtanh", "prelu", "softsign", "mish", "hardswish", "hardsigmoid"]

LOG_FLOOR = -100.0     # torch's binary_cross_entropy clamps each log at -100, so p = 0 or 1 gives a finite loss
BCE_EPSILON = np.float32(1e-12)   # and floors x (1 - x) at this (a float constant there) in its gradient


def one_hot(tensor, num_classes=-1):
    """int64 (..., num_classes) with a 1 at each class index; num_classes=-1 takes the largest index + 1."""
    data = tensor.data if isinstance(tensor, Tensor) else tensor
    if not backend.is_array(data):
        raise TypeError(f"one_hot: tensor must be an int64 Tensor or array, got {type(tensor).__name__}")
    if data.dtype != np.int64:
        raise TypeError(f"one_hot: tensor must be int64 (torch's LongTensor), got {data.dtype}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < -1:
        raise ValueError(f"one_hot: num_classes must be -1 or an int >= 0, got {num_classes!r}")
    xp = backend.array_module(data)
    capturing = backend.is_capturing()
    if num_classes == 0 and data.size == 0:   # (torch refuses it too)
        raise ValueError("one_hot: cannot infer the number of classes from an empty tensor with num_classes=0")
    if num_classes == -1:
        if data.size == 0:
            raise ValueError(f"one_hot: cannot infer the number of classes from an empty tensor (shape "
                             f"{tuple(data.shape)}); give num_classes")
        if capturing:
            raise ValueError("one_hot: num_classes=-1 needs the largest class read back to the host, which a CUDA "
                             "graph capture cannot do; give num_classes")
        num_classes = int(data.max()) + 1
    if data.size and not capturing:   # (on the GPU one small device-to-host copy, the price of torch's errors)
        smallest, largest = int(data.min()), int(data.max())
        if smallest < 0:
            raise ValueError(f"one_hot: class values must be non-negative, got {smallest}")
        if largest >= num_classes:
            raise ValueError(f"one_hot: class values must be smaller than num_classes ({num_classes}), got {largest}")
    return Tensor((data[..., None] == xp.arange(num_classes)).astype(np.int64))


class _PNorm(Function):
    """The p-norm over one dim, kept (p not 1 or 2: those are Tensor ops); torch's derivative, 0 where the norm
    is 0; p = +-inf shares the gradient evenly among the elements at the extreme, p = 0 (a count) has none."""

    def forward(self, x, p, dim):
        xp = backend.array_module(x)
        self.p, self.dim = p, dim
        magnitude = xp.abs(x)
        if p == float("inf"):
            norm = magnitude.max(axis=dim, keepdims=True)
        elif p == float("-inf"):
            norm = magnitude.min(axis=dim, keepdims=True)
        elif p == 0:
            norm = (x != 0).sum(axis=dim, keepdims=True).astype(x.dtype)
        else:   # (a negative p over a zero element: 0 ** p is inf, the norm 0, as torch's)
            with np.errstate(divide="ignore"):
                norm = (magnitude ** x.dtype.type(p)).sum(axis=dim, keepdims=True) ** x.dtype.type(1.0 / p)
        self.save_for_backward(x, norm)
        return norm

    def backward(self, grad):
        x, norm = self.saved
        xp = backend.array_module(x)
        zero = x.dtype.type(0)
        if self.p == 0:
            return xp.zeros_like(x)
        if self.p in (float("inf"), float("-inf")):
            extreme = (xp.abs(x) == norm).astype(x.dtype)
            return xp.sign(x) * extreme / extreme.sum(axis=self.dim, keepdims=True) * grad
        p = self.p
        with np.errstate(divide="ignore", invalid="ignore"):
            if p < 1:   # sign(x) |x|^(p-1) grows without bound at 0: as torch, 0 there, and the scale by norm^(1-p)
                slope = xp.where(x == 0, zero, xp.sign(x) * xp.abs(x) ** x.dtype.type(p - 1))
                return slope * (grad * norm ** x.dtype.type(1 - p))
            # (below 2, |x|^(p-2) is infinite at 0: sign(x) |x|^(p-1) instead, 0 there, as torch's)
            slope = xp.sign(x) * xp.abs(x) ** x.dtype.type(p - 1) if p < 2 else x * xp.abs(x) ** x.dtype.type(p - 2)
            return slope * xp.where(norm == 0, zero, grad / norm ** x.dtype.type(p - 1))


def normalize(input, p=2.0, dim=1, eps=1e-12, out=None):
    """input / max(||input||_p over dim, eps), as torch (so a zero vector stays zero)."""
    input = _tensor(input, "normalize: input", optional=False)
    if input.dtype not in (np.float32, np.float64):
        raise TypeError(f"normalize: input must be float32 or float64, got {input.dtype}")
    if out is not None:
        raise ValueError("normalize: out= is not supported here; use the returned tensor")
    if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)):
        raise TypeError(f"normalize: p must be a real number, got {p!r}")
    dim = check_dim("normalize", dim, input.ndim)
    if p == 2:
        norm = input.norm(2, dim, keepdim=True)
    elif p == 1:
        norm = input.abs().sum(dim, keepdim=True)
    else:
        norm = _PNorm.apply(input, p=float(p), dim=dim)
    return input / norm.clamp(min=eps)


class _BinaryCrossEntropy(Function):
    """-w [y max(log x, -100) + (1 - y) max(log(1 - x), -100)]; torch's derivatives: w (x - y) / max(x (1 - x),
    1e-12) for x, w (log(1 - x) - log x) (unclamped: +-inf at 0 and 1) for y."""

    def forward(self, x, y, weight):
        xp = backend.array_module(x)
        floor = x.dtype.type(LOG_FLOOR)
        self.save_for_backward(x, y, weight)
        with np.errstate(divide="ignore"):
            loss = (y - 1) * xp.maximum(xp.log1p(-x), floor) - y * xp.maximum(xp.log(x), floor)
        return loss if weight is None else loss * weight

    def backward(self, grad):
        x, y, weight = self.saved
        xp = backend.array_module(x)
        if weight is not None:
            grad = grad * weight
        need_x, need_y = self.needs_input_grad
        grad_x = grad_y = None
        if need_x:
            grad_x = grad * (x - y) / xp.maximum((1 - x) * x, x.dtype.type(BCE_EPSILON))
        if need_y:
            with np.errstate(divide="ignore"):
                grad_y = grad * (xp.log1p(-x) - xp.log(x))
        return grad_x, grad_y


def binary_cross_entropy(input, target, weight=None, reduction="mean"):
    """Probabilities in [0, 1] and float targets in [0, 1] of one shape; weight broadcasts to the input and is not
    differentiated. Differentiable in input and target, as torch's."""
    op = "binary_cross_entropy"
    input, target = _elementwise_operands(op, input, target, reduction)
    weight = _constant(op, "weight", weight, input)
    if not backend.is_capturing():   # (on the GPU a small device-to-host copy, the price of torch's errors)
        for name, values in (("input", input.data), ("target", target.data)):
            if values.size and not bool(((values >= 0) & (values <= 1)).all()):
                raise ValueError(f"{op}: all elements of {name} should be between 0 and 1, got values in "
                                 f"[{float(values.min())}, {float(values.max())}]")
    return _reduce(_BinaryCrossEntropy.apply(input, target, weight=weight), reduction)


KL_DIV_MEAN_WARNING = ("reduction: 'mean' divides the total loss by both the batch size and the support size."
                       "'batchmean' divides only by the batch size, and aligns with the KL div math definition."
                       "'mean' will be changed to behave the same as 'batchmean' in the next major release.")


def kl_div(input, target, reduction="mean", log_target=False):
    """Pointwise target (log target - input) with input log-probabilities (target as probabilities, or as
    log-probabilities when log_target); 'batchmean' divides the sum by the batch size (dim 0), the KL divergence,
    and 'mean' (by every element) warns as torch's does. input and target broadcast together. Where a target
    (not log_target) is 0, its gradient here is finite where torch's is NaN (0/0 in xlogy's derivative)."""
    op = "kl_div"
    input = _tensor(input, f"{op}: input", optional=False)
    if reduction not in ("mean", "batchmean", "sum", "none"):
        raise ValueError(f"{op}: reduction must be one of ('mean', 'batchmean', 'sum', 'none'), got {reduction!r}")
    target = _loss_target(op, target, input)
    try:
        np.broadcast_shapes(input.shape, target.shape)
    except ValueError:
        raise ValueError(f"{op}: input of shape {input.shape} and target of shape {target.shape} do not "
                         f"broadcast together") from None
    if log_target:
        loss = target.exp() * (target - input)
    else:   # xlogy(target, target) - target * input: 0 log 0 counts as 0 (log(1) put in where target == 0)
        loss = target * where(target == 0, 1.0, target).log() - target * input
    if reduction == "mean":
        warnings.warn(KL_DIV_MEAN_WARNING, UserWarning, stacklevel=2)
    if reduction == "batchmean":
        total = loss.sum()
        return total / input.shape[0] if input.ndim else total
    return _reduce(loss, reduction)


def huber_loss(input, target, reduction="mean", delta=1.0, weight=None):
    """0.5 d^2 where |d| < delta, delta (|d| - 0.5 delta) elsewhere (d = input - target): delta times
    smooth_l1_loss with beta = delta. weight (the input's shape, as torch requires; not differentiated) scales
    each element before the reduction, as torch's."""
    op = "huber_loss"
    if isinstance(delta, bool) or not isinstance(delta, (int, float, np.integer, np.floating)) or not delta > 0:
        raise ValueError(f"{op}: delta must be a positive number, got {delta!r}")
    input, target = _elementwise_operands(op, input, target, reduction)
    weight = _constant(op, "weight", weight, input, shape=input.shape)
    loss = _SmoothL1.apply(input - target, beta=float(delta))
    if delta != 1:
        loss = loss * float(delta)
    if weight is not None:
        loss = loss * Tensor(weight)
    return _reduce(loss, reduction)

