"""Reductions, softmax and cross-entropy in NumPy: the reference for kernels/cuda/reduce.py.

Everything is computed in the input's dtype, in the numerically stable forms (the row max is
subtracted before exponentiating), so float64 results serve as the gradient-check reference.
"""
import numpy as np


def reduce_sum(x, axes, keepdims):
    # np.sum sums contiguous runs pairwise, which keeps float32 errors small.
    return np.asarray(np.sum(x, axis=axes, keepdims=keepdims, dtype=x.dtype))


def softmax(x, dim):
    shifted = x - np.max(x, axis=dim, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=dim, keepdims=True)


def softmax_backward(grad_out, y, dim):
    return y * (grad_out - np.sum(grad_out * y, axis=dim, keepdims=True))


def log_softmax(x, dim):
    shifted = x - np.max(x, axis=dim, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=dim, keepdims=True))


def log_softmax_backward(grad_out, y, dim):
    return grad_out - np.exp(y) * np.sum(grad_out, axis=dim, keepdims=True)


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


def cross_entropy(logits, target, weight, ignore_index, label_smoothing, reduction):
    dtype = logits.dtype
    n, classes = logits.shape
    log_p = log_softmax(logits, 1)
    target_weight, ignored, safe = _target_weights(target, weight, ignore_index, dtype)
    nll = -target_weight * log_p[np.arange(n), safe]
    loss = nll
    if label_smoothing > 0:
        class_weight = np.ones(classes, dtype) if weight is None else weight
        smooth = -(log_p * class_weight).sum(axis=1)
        smooth = np.where(ignored, dtype.type(0), smooth)
        loss = (1 - label_smoothing) * nll + (label_smoothing / classes) * smooth
    loss = loss.astype(dtype, copy=False)
    if reduction == "none":
        return loss
    total = loss.sum(dtype=dtype)
    if reduction == "sum":
        return np.asarray(total, dtype)
    with np.errstate(invalid="ignore", divide="ignore"):  # every row ignored: 0/0 = nan, as PyTorch
        return np.asarray(total / target_weight.sum(dtype=dtype), dtype)


def cross_entropy_backward(grad_loss, logits, target, weight, ignore_index, label_smoothing, reduction):
    """d loss_i / d logits_ic = p_ic (a w_t + b W) - a w_t [c == t] - b w_c, a = 1 - eps, b = eps / C."""
    dtype = logits.dtype
    n, classes = logits.shape
    p = softmax(logits, 1)
    target_weight, ignored, safe = _target_weights(target, weight, ignore_index, dtype)
    class_weight = np.ones(classes, dtype) if weight is None else weight
    a, b = 1 - label_smoothing, label_smoothing / classes
    grad = p * (a * target_weight + b * class_weight.sum() * (~ignored))[:, None]
    grad[np.arange(n), safe] -= a * target_weight
    grad -= (b * class_weight)[None, :] * (~ignored)[:, None]
    if reduction == "none":
        scale = np.asarray(grad_loss, dtype).reshape(n)
    elif reduction == "sum":
        scale = np.full(n, np.asarray(grad_loss, dtype).reshape(()), dtype)
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            scale = np.full(n, np.asarray(grad_loss, dtype).reshape(()) / target_weight.sum(dtype=dtype), dtype)
    return (grad * scale[:, None]).astype(dtype, copy=False)
