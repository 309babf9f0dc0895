"""Reductions, softmax and cross-entropy in NumPy: the reference for kernels/cuda/reduce.py.

Everything is computed in the input's dtype, in the numerically stable forms (the row max is
subtracted before exponentiating), so float64 results serve as the gradient-check reference.
Infinite logits (inf - inf) and 'mean' over rows of total weight 0 (0 / 0) give nan as PyTorch and the CUDA
kernels do, silently: each function below ignores NumPy's invalid and divide warnings (`_nan_as_torch`).
"""
import numpy as np


def _nan_as_torch():
    return np.errstate(invalid="ignore", divide="ignore")


def reduce_sum(x, axes, keepdims):
    # np.sum sums contiguous runs pairwise, which keeps float32 errors small.
    return np.asarray(np.sum(x, axis=axes, keepdims=keepdims, dtype=x.dtype))


@_nan_as_torch()
def softmax(x, dim):
    y = x - np.max(x, axis=dim, keepdims=True)   # in place from here: one temporary in all
    np.exp(y, out=y)
    y /= np.sum(y, axis=dim, keepdims=True)
    return y


@_nan_as_torch()
def softmax_backward(grad_out, y, dim):
    grad_in = grad_out * y
    dot = np.sum(grad_in, axis=dim, keepdims=True)
    grad_in -= y * dot
    return grad_in


@_nan_as_torch()
def log_softmax(x, dim):
    y = x - np.max(x, axis=dim, keepdims=True)
    y -= np.log(np.sum(np.exp(y), axis=dim, keepdims=True))
    return y


@_nan_as_torch()
def log_softmax_backward(grad_out, y, dim):
    grad_in = np.exp(y)
    grad_in *= -np.sum(grad_out, axis=dim, keepdims=True)
    grad_in += grad_out
    return grad_in


def _target_weights(target, weight, ignore_index, dtype):
    """(w[target] with 0 for ignored rows, the mask of ignored rows, targets safe to index with)."""
    ignored = target == ignore_index
    safe = np.where(ignored, 0, target)
    if weight is None:
        target_weight = np.ones(target.shape, dtype)
    else:
        target_weight = weight[safe].astype(dtype, copy=False)
    target_weight = np.where(ignored, dtype.type(0), target_weight)
    return target_weight, ignored, safe


@_nan_as_torch()
def cross_entropy(logits, target, weight, ignore_index, label_smoothing, reduction):
    dtype = logits.dtype
    n, classes = logits.shape
    shifted = logits - np.max(logits, axis=1, keepdims=True)            # <= 0
    log_sum = np.log(np.sum(np.exp(shifted), axis=1))                     # lse - max, >= 0
    target_weight, ignored, safe = _target_weights(target, weight, ignore_index, dtype)
    loss = target_weight * (log_sum - shifted[np.arange(n), safe])
    if label_smoothing > 0:
        # sum_c w_c (lse - x_c) = W (lse - max) - sum_c w_c (x_c - max): two terms >= 0, no cancellation
        class_weight = np.ones(classes, dtype) if weight is None else weight
        smooth = class_weight.sum() * log_sum - shifted @ class_weight
        smooth = np.where(ignored, dtype.type(0), smooth)
        loss = (1 - label_smoothing) * loss + (label_smoothing / classes) * smooth
    loss = loss.astype(dtype, copy=False)
    if reduction == "none":
        return loss
    total = loss.sum(dtype=dtype)
    if reduction == "sum":
        return np.asarray(total, dtype)
    return np.asarray(total / target_weight.sum(dtype=dtype), dtype)   # every row ignored: 0/0 = nan


@_nan_as_torch()
def cross_entropy_backward(grad_loss, logits, target, weight, ignore_index, label_smoothing, reduction):
    """d loss_i / d logits_ic = p_ic (a w_t + b W) - a w_t [c == t] - b w_c, a = 1 - eps, b = eps / C."""
    dtype = logits.dtype
    n, classes = logits.shape
    target_weight, ignored, safe = _target_weights(target, weight, ignore_index, dtype)
    if reduction == "none":
        scale = np.asarray(grad_loss, dtype).reshape(n)
    else:
        scale = np.full(n, np.asarray(grad_loss, dtype).reshape(()), dtype)
        if reduction == "mean":
            scale /= target_weight.sum(dtype=dtype)
    scale = np.where(ignored, dtype.type(0), scale)
    a, b = 1 - label_smoothing, label_smoothing / classes
    grad = softmax(logits, 1)
    coefficient = a * target_weight
    if b:
        class_weight = np.ones(classes, dtype) if weight is None else weight
        coefficient = coefficient + b * class_weight.sum()
    grad *= (coefficient * scale).astype(dtype, copy=False)[:, None]
    grad[np.arange(n), safe] -= (a * target_weight * scale).astype(dtype, copy=False)
    if b:
        grad -= (b * class_weight)[None, :] * scale[:, None]
    return grad
