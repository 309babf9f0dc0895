"""Public reductions, softmax and cross-entropy (torch.nn.functional names): validate, then run
where the inputs live. CUDA runs float32; the CPU path float32 and float64."""
import numbers
import operator

import numpy as np

from . import backend
from ._checks import check_ndim, check_out, check_shape, contiguous, float_dtype
from .cpu import reduce as cpu
from .cuda import reduce as gpu

__all__ = ["reduce_sum", "softmax", "softmax_backward", "log_softmax", "log_softmax_backward",
           "cross_entropy", "cross_entropy_backward"]

REDUCTIONS = ("mean", "sum", "none")


def _axes(op, axis, ndim):
    """`axis` (None, an int or a tuple of ints, negative allowed) as a sorted tuple of distinct axes."""
    if axis is None:
        return tuple(range(ndim))
    items = axis if isinstance(axis, (tuple, list)) else (axis,)
    axes = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, np.integer)):
            raise TypeError(f"{op}: axis must be None, an int or a tuple of ints, got {axis!r}")
        if not -ndim <= item < ndim:
            raise ValueError(f"{op}: axis {item} is out of range for an array of {ndim} dims")
        axes.append(operator.index(item) % ndim)
    if len(set(axes)) != len(axes):
        raise ValueError(f"{op}: axis has repeated entries, got {axis!r}")
    return tuple(sorted(axes))


def reduce_sum(x, axis=None, keepdims=False, *, out=None):
    """Sum of `x` over `axis` (None: all axes; an int or a tuple, negative allowed), like numpy.sum.

    A full reduction returns a 0-d array. CUDA sums in float32 along a tree (each thread adds a
    short run, then the block and the partial sums are combined pairwise) for accuracy. `out` (C-contiguous,
    the result's shape and dtype, on x's device) receives the sum and is returned; on the GPU the last kernel
    writes it (nn sums a bias gradient straight into an optimizer's flat gradient buffer this way).
    """
    device = backend.device_of("reduce_sum", x, out)
    float_dtype("reduce_sum", device, x=x)
    axes = _axes("reduce_sum", axis, x.ndim)
    kept_shape = tuple(1 if d in axes else n for d, n in enumerate(x.shape)) if keepdims else \
        tuple(n for d, n in enumerate(x.shape) if d not in axes)
    if out is not None:
        check_out("reduce_sum", out, kept_shape, x.dtype, x)
    if device == "cpu":
        result = cpu.reduce_sum(x, axes, keepdims)
        if out is None:
            return result
        out[...] = result
        return out
    result = gpu.reduce_sum(x, axes, out)
    return out if out is not None else result.reshape(kept_shape)


def _dim(op, dim, x):
    if x.ndim < 1:
        raise ValueError(f"{op}: input must have at least 1 dim, got a 0-d array")
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"{op}: dim must be an int, got {dim!r}")
    if not -x.ndim <= dim < x.ndim:
        raise ValueError(f"{op}: dim {dim} is out of range for an array of {x.ndim} dims")
    return int(dim) % x.ndim


def _rows(x, dim):
    """`x` with `dim` moved last, as a contiguous (rows, length) array (the CUDA kernels' layout)."""
    xp = backend.array_module(x)
    moved = contiguous(xp.moveaxis(x, dim, -1))
    return moved.reshape(-1, x.shape[dim]), moved.shape


def _unrows(rows, moved_shape, dim):
    xp = backend.array_module(rows)
    return contiguous(xp.moveaxis(rows.reshape(moved_shape), -1, dim))


def _softmax_forward(op, x, dim, log):
    device = backend.device_of(op, x)
    float_dtype(op, device, x=x)
    dim = _dim(op, dim, x)
    if x.size == 0:   # (an empty row has no max to subtract)
        return x.copy()
    if device == "cpu":
        return (cpu.log_softmax if log else cpu.softmax)(x, dim)
    rows, moved_shape = _rows(x, dim)
    out = backend.array_module(x).empty_like(rows)
    gpu.softmax(rows, out, log)
    return _unrows(out, moved_shape, dim)


def _softmax_backward(op, grad_out, y, dim, log):
    device = backend.device_of(op, grad_out, y)
    float_dtype(op, device, grad_out=grad_out, y=y)
    check_shape(op, "grad_out", grad_out, y.shape)
    dim = _dim(op, dim, y)
    if y.size == 0:
        return y.copy()
    if device == "cpu":
        return (cpu.log_softmax_backward if log else cpu.softmax_backward)(grad_out, y, dim)
    grad_rows, moved_shape = _rows(grad_out, dim)
    y_rows, _ = _rows(y, dim)
    grad_in = backend.array_module(y).empty_like(y_rows)
    gpu.softmax_backward(grad_rows, y_rows, grad_in, log)
    return _unrows(grad_in, moved_shape, dim)


def softmax(x, dim=-1):
    """exp(x) / sum(exp(x)) along `dim`, computed with the maximum of each row subtracted first."""
    return _softmax_forward("softmax", x, dim, log=False)


def softmax_backward(grad_out, y, dim=-1):
    """Gradient of softmax from its output `y`: y * (grad_out - sum(grad_out * y, dim))."""
    return _softmax_backward("softmax_backward", grad_out, y, dim, log=False)


def log_softmax(x, dim=-1):
    """x - max - log(sum(exp(x - max))) along `dim`."""
    return _softmax_forward("log_softmax", x, dim, log=True)


def log_softmax_backward(grad_out, y, dim=-1):
    """Gradient of log_softmax from its output `y`: grad_out - exp(y) * sum(grad_out, dim)."""
    return _softmax_backward("log_softmax_backward", grad_out, y, dim, log=True)


def _check_cross_entropy(op, logits, target, weight, ignore_index, label_smoothing, reduction):
    device = backend.device_of(op, logits, target, weight)
    float_dtype(op, device, logits=logits, weight=weight)
    check_ndim(op, "logits", logits, 2)
    if not np.issubdtype(target.dtype, np.integer):
        raise TypeError(f"{op}: target must be an integer array of class indices, got {target.dtype}")
    check_shape(op, "target", target, (logits.shape[0],))
    if weight is not None:
        check_shape(op, "weight", weight, (logits.shape[1],))
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
        raise TypeError(f"{op}: ignore_index must be an int, got {ignore_index!r}")
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, numbers.Real) \
            or not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{op}: label_smoothing must be a number in [0, 1], got {label_smoothing!r}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return device, int(ignore_index), float(label_smoothing)


def _raise_bad_target(op, classes, ignore_index):
    raise ValueError(f"{op}: target holds a class index outside [0, {classes}) that is not "
                     f"ignore_index ({ignore_index})")


def _check_targets_cpu(op, target, classes, ignore_index):
    bad = (target != ignore_index) & ((target < 0) | (target >= classes))
    if bad.any():
        _raise_bad_target(op, classes, ignore_index)


def cross_entropy(logits, target, *, weight=None, ignore_index=-100, label_smoothing=0.0, reduction="mean"):
    """torch.nn.functional.cross_entropy for logits (N, C) and integer class indices target (N,).

    loss_i = w[t_i] * (1 - eps) * (lse_i - x_i,t_i) + eps / C * sum_c w[c] * (lse_i - x_i,c), 0 for rows
    with t_i == ignore_index; 'mean' divides the sum by sum of w[t_i] over the rows not ignored
    (all rows ignored gives nan, as PyTorch). Returns a 0-d array ('mean', 'sum') or (N,) ('none').
    """
    op = "cross_entropy"
    device, ignore_index, eps = _check_cross_entropy(op, logits, target, weight, ignore_index,
                                                     label_smoothing, reduction)
    classes = logits.shape[1]
    if device == "cpu":
        _check_targets_cpu(op, target, classes, ignore_index)
        return cpu.cross_entropy(logits, target, weight, ignore_index, eps, reduction)
    xp = backend.array_module(logits)
    loss, bad = gpu.cross_entropy(contiguous(logits), contiguous(target.astype(xp.int64, copy=False)),
                                  None if weight is None else contiguous(weight), ignore_index, eps, reduction)
    # one small device-to-host copy: the price of PyTorch's error on a bad class (not while a CUDA graph
    # is being recorded, where a host read is impossible; the graph's first eager run checked the targets)
    if not backend.is_capturing() and int(bad[0]):
        _raise_bad_target(op, classes, ignore_index)
    return loss


def _grad_loss(op, grad_loss, logits, reduction, device):
    xp = backend.array_module(logits)
    if isinstance(grad_loss, numbers.Real) and not isinstance(grad_loss, bool):
        grad_loss = xp.asarray(grad_loss, dtype=logits.dtype)
    if backend.device_of(op, grad_loss, logits) != device:
        raise ValueError(f"{op}: grad_loss lives on a different device than logits")
    float_dtype(op, device, grad_loss=grad_loss, logits=logits)
    expected = (logits.shape[0],) if reduction == "none" else ()
    if tuple(grad_loss.shape) != expected and not (reduction != "none" and grad_loss.size == 1):
        raise ValueError(f"{op}: grad_loss must have shape {expected} for reduction={reduction!r}, "
                         f"got {tuple(grad_loss.shape)}")
    return grad_loss


def cross_entropy_backward(grad_loss, logits, target, *, weight=None, ignore_index=-100, label_smoothing=0.0,
                           reduction="mean", check_targets=True):
    """Gradient of cross_entropy w.r.t. logits (N, C); grad_loss is 0-d ('mean', 'sum') or (N,) ('none').
    check_targets=False skips, on the GPU, the check of the class indices, which waits for a device-to-host
    copy: for callers whose forward already checked the same targets (nn's backward). Unchecked, a row with a
    bad class gets a zero gradient and no weight in 'mean'. The CPU path always checks (no wait there).

    d loss_i / d x_ic = p_ic (a w[t_i] + b sum(w)) - a w[t_i] [c == t_i] - b w[c], a = 1 - eps, b = eps / C,
    p = softmax(x); rows with ignore_index get 0; 'mean' scales by 1 / sum of w[t_i] not ignored.
    """
    op = "cross_entropy_backward"
    device, ignore_index, eps = _check_cross_entropy(op, logits, target, weight, ignore_index,
                                                     label_smoothing, reduction)
    grad_loss = _grad_loss(op, grad_loss, logits, reduction, device)
    classes = logits.shape[1]
    if device == "cpu":
        _check_targets_cpu(op, target, classes, ignore_index)
        return cpu.cross_entropy_backward(grad_loss, logits, target, weight, ignore_index, eps, reduction)
    xp = backend.array_module(logits)
    grad, bad = gpu.cross_entropy_backward(contiguous(grad_loss.reshape(-1)), contiguous(logits),
                                           contiguous(target.astype(xp.int64, copy=False)),
                                           None if weight is None else contiguous(weight),
                                           ignore_index, eps, reduction)
    if check_targets and not backend.is_capturing() and int(bad[0]):
        _raise_bad_target(op, classes, ignore_index)
    return grad
