"""Public CTC loss (torch.nn.functional.ctc_loss) and its gradient with respect to log_probs.

log_probs: (T, N, C) log-softmax outputs. targets: (N, S) padded or 1-D concatenated (length
sum(target_lengths)), integers on either device; the lengths are integer arrays or sequences of
shape (N,). The targets and lengths are small and are checked on the host, as PyTorch does.
The gradient matches PyTorch's: d/d log_probs = exp(log_probs) - occupancy / p, scaled per sample.
"""
import numbers

import numpy as np

from . import backend
from ._checks import check_ndim, constant, contiguous, empty, float_dtype
from .cpu import ctc as cpu
from .cuda import ctc as gpu

__all__ = ["ctc_loss", "ctc_loss_backward"]

REDUCTIONS = ("none", "sum", "mean")


def _lengths(op, name, value, batch):
    if backend.is_array(value):
        value = backend.to_numpy(value)
    array = np.asarray(value)
    if array.dtype.kind not in "iu" and not (array.size == 0 and array.dtype.kind == "f"):
        raise TypeError(f"{op}: {name} must hold integers, got dtype {array.dtype}")
    if array.shape != (batch,):
        raise ValueError(f"{op}: {name} must have shape ({batch},), got {array.shape}")
    return array.astype(np.int64)


def _check_log_probs(op, log_probs, blank, reduction):
    """Checks of log_probs and the scalars; returns the device."""
    device = backend.device_of(op, log_probs)
    float_dtype(op, device, log_probs=log_probs)
    check_ndim(op, "log_probs", log_probs, 3)
    classes = log_probs.shape[2]
    if reduction not in REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if isinstance(blank, bool) or not isinstance(blank, (int, np.integer)) or not 0 <= blank < classes:
        raise ValueError(f"{op}: blank must be an integer in [0, {classes}), got {blank!r}")
    return device


def _check_targets(op, log_probs, targets):
    """Checks of what the host already knows of the targets (type, dtype, shape)."""
    if not backend.is_array(targets):
        raise TypeError(f"{op}: targets must be a NumPy or CuPy integer array, got {type(targets).__name__}")
    if targets.dtype.kind not in "iu":
        raise TypeError(f"{op}: targets must hold integers, got dtype {targets.dtype}")
    if targets.ndim not in (1, 2):
        raise ValueError(f"{op}: targets must be 2-D (N, S) padded or 1-D concatenated, got shape "
                         f"{tuple(targets.shape)}")
    if targets.ndim == 2 and targets.shape[0] != log_probs.shape[1]:
        raise ValueError(f"{op}: padded targets must have shape ({log_probs.shape[1]}, S), got "
                         f"{tuple(targets.shape)}")


def _host_indices(op, log_probs, targets, input_lengths, target_lengths, blank):
    """Validated host int64 arrays (flat targets, offsets, input_lengths, target_lengths) and the
    extended-sequence width 2*max(S_n)+1. Reads device targets back, so never while capturing."""
    steps, batch, classes = log_probs.shape
    input_lengths = _lengths(op, "input_lengths", input_lengths, batch)
    target_lengths = _lengths(op, "target_lengths", target_lengths, batch)
    if batch and (input_lengths.min() < 0 or input_lengths.max() > steps):
        raise ValueError(f"{op}: input_lengths must lie in [0, {steps}] (T), got {input_lengths.tolist()}")
    if batch and target_lengths.min() < 0:
        raise ValueError(f"{op}: target_lengths must be >= 0, got {target_lengths.tolist()}")
    host_targets = backend.to_numpy(targets).astype(np.int64)
    if host_targets.ndim == 2:
        width = host_targets.shape[1]
        if batch and target_lengths.max() > width:
            raise ValueError(f"{op}: target_lengths must be at most S={width} for padded targets, "
                             f"got {target_lengths.tolist()}")
        offsets = np.arange(batch, dtype=np.int64) * width
        flat = host_targets.reshape(-1)
        # The labels within the lengths (padding may hold anything, as in torch).
        used = host_targets[np.arange(width) < target_lengths[:, None]]
    else:
        if host_targets.shape[0] != target_lengths.sum():
            raise ValueError(f"{op}: concatenated targets must have sum(target_lengths)="
                             f"{int(target_lengths.sum())} entries, got {host_targets.shape[0]}")
        offsets = np.concatenate([[0], np.cumsum(target_lengths)[:-1]]).astype(np.int64)
        flat = used = host_targets
    bad = (used < 0) | (used >= classes) | (used == blank)
    if bad.any():
        raise ValueError(f"{op}: target labels must lie in [0, {classes}) and differ from blank={blank}, "
                         f"got {used[bad][:5].tolist()}")
    return (flat, offsets, input_lengths, target_lengths), 2 * int(target_lengths.max(initial=0)) + 1


def _captured_indices(op, log_probs, targets, input_lengths, target_lengths):
    """While a CUDA graph is captured (nn.capture): int32 index arrays made on the device, no value
    checks (they would read the device back) and no host copies; the width is bounded from shapes."""
    batch = log_probs.shape[1]
    for name, value in (("targets", targets), ("input_lengths", input_lengths), ("target_lengths", target_lengths)):
        if not (backend.is_gpu_array(value) or backend.SIMULATOR and isinstance(value, np.ndarray)):
            raise ValueError(f"{op}: while capturing a CUDA graph, {name} must be a CuPy array (a host-to-device "
                             f"copy cannot be captured), got {type(value).__name__}")
        if value.dtype.kind not in "iu":
            raise TypeError(f"{op}: {name} must hold integers, got dtype {value.dtype}")
    for name, value in (("input_lengths", input_lengths), ("target_lengths", target_lengths)):
        if tuple(value.shape) != (batch,):
            raise ValueError(f"{op}: {name} must have shape ({batch},), got {tuple(value.shape)}")
    xp = backend.array_module(log_probs)
    target_lengths = target_lengths.astype(np.int32)
    if targets.ndim == 2:
        offsets = xp.arange(batch, dtype=np.int32) * np.int32(targets.shape[1])
        longest = targets.shape[1]
    else:
        offsets = (xp.cumsum(target_lengths) - target_lengths).astype(np.int32)
        longest = targets.shape[0]
    flat = targets.reshape(-1).astype(np.int32) if targets.size else xp.zeros(1, dtype=np.int32)
    return (flat, offsets, input_lengths.astype(np.int32), target_lengths), 2 * longest + 1


def _device_indices(op, log_probs, targets, input_lengths, target_lengths, blank):
    """(int32 index arrays on the GPU, width, the divisors of reduction='mean': max(target_lengths, 1) as
    float32 on the GPU). Uploaded as one copy: the divisors travel as their int32 bits beside the indices."""
    if backend.is_capturing():
        indices, width = _captured_indices(op, log_probs, targets, input_lengths, target_lengths)
        return indices, width, backend.array_module(log_probs).maximum(indices[3], 1).astype(np.float32)
    host, width = _host_indices(op, log_probs, targets, input_lengths, target_lengths, blank)
    divisor_bits = np.maximum(host[3], 1).astype(np.float32).view(np.int32)
    *indices, divisors = gpu.upload_indices(host + (divisor_bits,), log_probs)
    return indices, width, divisors.view(np.float32)


def _sample_scale(reduction, divisors, batch, dtype):
    """d reduced loss / d per-sample loss, on the device of divisors (prepared.divisors); never written."""
    if reduction == "mean":
        return dtype.type(1.0) / (divisors * dtype.type(batch))
    return constant(divisors, (batch,), dtype, 1)


class PreparedTargets:
    """Targets and lengths checked and laid out for the kernels (host int64 arrays on the CPU, int32 arrays
    on the GPU), for log_probs of one shape: made once by prepare_targets, read by a forward and its
    backward (nn's CTC loss), so the checks, the read-back of device targets and the upload happen once a
    step. The layout is a copy: writing the caller's lengths afterwards changes nothing. `divisors`:
    max(target_lengths, 1) in log_probs' dtype on its device, what reduction='mean' divides by."""

    def __init__(self, device, shape, blank, indices, width, divisors):
        self.device, self.shape, self.blank = device, shape, blank
        self.indices, self.width, self.divisors = indices, width, divisors


def prepare_targets(log_probs, targets, input_lengths, target_lengths, blank=0, op="ctc_loss"):
    """The PreparedTargets of these arguments for log_probs (T, N, C); raises as ctc_loss does."""
    device = _check_log_probs(op, log_probs, blank, "mean")
    _check_targets(op, log_probs, targets)
    # The divisors are made here once a step, not in the forward and again in the backward (on a GPU each
    # operation is a launch or a copy).
    if device == "cpu":
        indices, width = _host_indices(op, log_probs, targets, input_lengths, target_lengths, blank)
        divisors = np.maximum(indices[3], 1).astype(log_probs.dtype)
    else:
        indices, width, divisors = _device_indices(op, log_probs, targets, input_lengths, target_lengths, blank)
    return PreparedTargets(device, tuple(log_probs.shape), int(blank), indices, width, divisors)


def _check_prepared(op, log_probs, prepared, reduction):
    if not isinstance(prepared, PreparedTargets):
        raise TypeError(f"{op}: prepared must come from prepare_targets, got {type(prepared).__name__}")
    device = _check_log_probs(op, log_probs, prepared.blank, reduction)
    if (device, tuple(log_probs.shape)) != (prepared.device, prepared.shape):
        raise ValueError(f"{op}: the targets were prepared for log_probs {prepared.shape} on {prepared.device}, "
                         f"got {tuple(log_probs.shape)} on {device}")


def ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=0, reduction="mean", zero_infinity=False):
    """Connectionist temporal classification loss, as torch.nn.functional.ctc_loss.

    Impossible alignments give inf (0 with zero_infinity). 'mean' divides each loss by its target
    length (at least 1) and averages over the batch.
    """
    _check_log_probs("ctc_loss", log_probs, blank, reduction)
    prepared = prepare_targets(log_probs, targets, input_lengths, target_lengths, blank)
    return ctc_loss_prepared(log_probs, prepared, reduction, zero_infinity)


def ctc_loss_prepared(log_probs, prepared, reduction="mean", zero_infinity=False):
    """ctc_loss with its targets and lengths given as prepare_targets' result."""
    op = "ctc_loss"
    _check_prepared(op, log_probs, prepared, reduction)
    indices, blank = prepared.indices, prepared.blank
    if prepared.device == "cpu":
        nll = cpu.ctc_loss(np.ascontiguousarray(log_probs), *indices, blank)
        if zero_infinity:
            nll = np.where(np.isinf(nll), nll.dtype.type(0), nll)
    else:
        nll = empty(log_probs, (log_probs.shape[1],))
        gpu.ctc_loss(contiguous(log_probs), indices, prepared.width, blank, bool(zero_infinity), nll)
    return _reduce(nll, prepared.divisors, reduction)


def _reduce(nll, divisors, reduction):
    if reduction == "none":
        return nll
    xp = backend.array_module(nll)
    if reduction == "sum":
        return xp.asarray(nll.sum())
    if nll.size == 0:   # an empty batch: nan, without NumPy's 'Mean of empty slice' warning
        return xp.full((), np.nan, nll.dtype)
    return xp.asarray((nll / divisors.astype(nll.dtype, copy=False)).mean())   # (prepared for another dtype)


def ctc_loss_backward(grad_loss, log_probs, targets, input_lengths, target_lengths, blank=0, reduction="mean",
                      zero_infinity=False):
    """Gradient of ctc_loss with respect to log_probs (T, N, C), computed from the arguments alone.

    grad_loss: (N,) for reduction='none', a scalar (number or 0-d/1-element array) otherwise.
    Time steps at or beyond a sample's input length get zero gradient.
    """
    op = "ctc_loss_backward"
    _check_log_probs(op, log_probs, blank, reduction)
    prepared = prepare_targets(log_probs, targets, input_lengths, target_lengths, blank, op=op)
    return ctc_loss_backward_prepared(grad_loss, log_probs, prepared, reduction, zero_infinity)


def ctc_loss_backward_prepared(grad_loss, log_probs, prepared, reduction="mean", zero_infinity=False):
    """ctc_loss_backward with its targets and lengths given as prepare_targets' result."""
    op = "ctc_loss_backward"
    _check_prepared(op, log_probs, prepared, reduction)
    batch = log_probs.shape[1]
    if backend.is_array(grad_loss):
        if backend.is_gpu_array(grad_loss) != backend.is_gpu_array(log_probs):
            grad_loss = backend.to_device(grad_loss, "cuda" if backend.is_gpu_array(log_probs) else "cpu")
        expected = (batch,) if reduction == "none" else ()
        if tuple(grad_loss.shape) != expected and not (reduction != "none" and grad_loss.size == 1):
            raise ValueError(f"{op}: grad_loss must have shape {expected} for reduction={reduction!r}, "
                             f"got {tuple(grad_loss.shape)}")
        grad_loss = grad_loss.reshape(expected)
    elif reduction == "none" or isinstance(grad_loss, bool) or not isinstance(grad_loss, numbers.Real):
        raise TypeError(f"{op}: grad_loss must be an array of shape (N,) for reduction='none' or a number, "
                        f"got {type(grad_loss).__name__}")
    dtype = log_probs.dtype
    indices, blank = prepared.indices, prepared.blank
    # A Python number multiplies on the device without a host copy (capturable).
    sample_scale = (_sample_scale(reduction, prepared.divisors, batch, dtype) * grad_loss).astype(dtype, copy=False)
    if prepared.device == "cpu":
        return cpu.ctc_loss_backward(np.ascontiguousarray(log_probs), *indices, blank, sample_scale,
                                     bool(zero_infinity))
    grad = empty(log_probs, log_probs.shape)
    gpu.ctc_loss_backward(contiguous(log_probs), indices, prepared.width, blank, bool(zero_infinity), sample_scale,
                          grad)
    return grad
