"""Fused cross-entropy for logits (N, C), PyTorch semantics (weight, ignore_index, label smoothing).

A row of 32 or 256 lanes per sample (8 rows or 1 row a 256-thread block, as softmax): pass 1 the
row max, pass 2 sum exp(x - max) and the smoothing term sum w_c (max - x_c) (all terms >= 0, so no
cancellation even for logits of 1e4), then lane 0 writes the loss; backward adds a third pass that
writes p * coef - onehot terms. 'mean'/'sum' finish in one 256-thread block (N values, a tree).
"""
import functools
import math

import numpy as np
from numba import cuda, float32, int32, int64

from .. import backend
from .device import device_function
from .jit import cached_jit
from .launch import ceil_div, launch

THREADS = 256
NARROW_ROW = 256                 # rows up to this long get 32 lanes, as in reduce.py
MODES = {"none": 0, "sum": 1, "mean": 2}
NEG_INF = np.float32(-np.inf)


@device_function
def _row_max(x, row, valid, lane, lanes, slot, maxima):
    m = NEG_INF
    if valid:
        for c in range(lane, x.shape[1], lanes):
            m = max(m, x[row, c])
    maxima[slot, lane] = m
    cuda.syncthreads()
    stride = lanes // 2
    while stride > 0:
        if lane < stride:
            maxima[slot, lane] = max(maxima[slot, lane], maxima[slot, lane + stride])
        cuda.syncthreads()
        stride //= 2
    return maxima[slot, 0]


@device_function
def _tree_sum(values, slot, lane, lanes):
    stride = lanes // 2
    while stride > 0:
        if lane < stride:
            values[slot, lane] += values[slot, lane + stride]
        cuda.syncthreads()
        stride //= 2


@functools.lru_cache(maxsize=None)
def forward_kernel(lanes, has_weight):
    """losses[i] and the target weight row_weights[i] (0 when ignored) of each row; error[0] = 1 on a bad class."""
    rows_per_block = THREADS // lanes

    @cached_jit
    def kernel(logits, target, weight, losses, row_weights, error, ignore_index, target_scale, smooth_scale):
        lane = cuda.threadIdx.x
        slot = cuda.threadIdx.y
        row = cuda.blockIdx.x * rows_per_block + slot
        valid = row < logits.shape[0]
        classes = logits.shape[1]
        maxima = cuda.shared.array((rows_per_block, lanes), float32)
        m = _row_max(logits, row, valid, lane, lanes, slot, maxima)
        exp_sum = float32(0.0)
        smooth = float32(0.0)
        weight_sum = float32(0.0)
        if valid:
            for c in range(lane, classes, lanes):
                value = logits[row, c]
                w = weight[c] if has_weight else float32(1.0)
                exp_sum += math.exp(value - m)
                smooth += w * (m - value)
                weight_sum += w
        sums = cuda.shared.array((rows_per_block, lanes), float32)
        smooths = cuda.shared.array((rows_per_block, lanes), float32)
        weights = cuda.shared.array((rows_per_block, lanes), float32)
        sums[slot, lane] = exp_sum
        smooths[slot, lane] = smooth
        weights[slot, lane] = weight_sum
        cuda.syncthreads()
        _tree_sum(sums, slot, lane, lanes)
        _tree_sum(smooths, slot, lane, lanes)
        _tree_sum(weights, slot, lane, lanes)
        if valid and lane == 0:
            t = target[row]
            loss = float32(0.0)
            w_t = float32(0.0)
            if t != ignore_index:
                if t < 0 or t >= classes:
                    error[0] = 1
                else:
                    w_t = weight[t] if has_weight else float32(1.0)
                    log_sum = math.log(sums[slot, 0])   # lse - max
                    # sum_c w_c (lse - x_c) = W (lse - max) + sum_c w_c (max - x_c): no cancellation
                    loss = target_scale * w_t * (log_sum + (m - logits[row, t])) + \
                        smooth_scale * (weights[slot, 0] * log_sum + smooths[slot, 0])
            losses[row] = loss
            row_weights[row] = w_t

    return kernel


@functools.lru_cache(maxsize=None)
def backward_kernel(lanes, has_weight):
    """grad[i, c] = g_i (p_ic (a w_t + b W) - a w_t [c == t] - b w_c); rows with a bad class flag error."""
    rows_per_block = THREADS // lanes

    @cached_jit
    def kernel(grad_loss, logits, target, weight, total_weight, grad, error, ignore_index, target_scale,
               smooth_scale, mode):
        lane = cuda.threadIdx.x
        slot = cuda.threadIdx.y
        row = cuda.blockIdx.x * rows_per_block + slot
        valid = row < logits.shape[0]
        classes = logits.shape[1]
        maxima = cuda.shared.array((rows_per_block, lanes), float32)
        m = _row_max(logits, row, valid, lane, lanes, slot, maxima)
        exp_sum = float32(0.0)
        weight_sum = float32(0.0)
        if valid:
            for c in range(lane, classes, lanes):
                exp_sum += math.exp(logits[row, c] - m)
                weight_sum += weight[c] if has_weight else float32(1.0)
        sums = cuda.shared.array((rows_per_block, lanes), float32)
        weights = cuda.shared.array((rows_per_block, lanes), float32)
        sums[slot, lane] = exp_sum
        weights[slot, lane] = weight_sum
        cuda.syncthreads()
        _tree_sum(sums, slot, lane, lanes)
        _tree_sum(weights, slot, lane, lanes)
        if valid:
            t = target[row]
            ignored = t == ignore_index
            if not ignored and (t < 0 or t >= classes):
                if lane == 0:
                    error[0] = 1
                ignored = True
            if mode == 0:   # MODES: a uniform branch, cheaper than a kernel variant each
                g = grad_loss[row]
            elif mode == 1:
                g = grad_loss[0]
            else:
                g = grad_loss[0] / total_weight[0]
            w_t = float32(0.0)
            if not ignored:
                w_t = weight[t] if has_weight else float32(1.0)
            else:
                g = float32(0.0)
            target_term = target_scale * w_t
            coefficient = (target_term + smooth_scale * weights[slot, 0]) / sums[slot, 0]
            for c in range(lane, classes, lanes):
                w = weight[c] if has_weight else float32(1.0)
                value = math.exp(logits[row, c] - m) * coefficient - smooth_scale * w
                if c == t:
                    value -= target_term
                grad[row, c] = g * value

    return kernel


@functools.lru_cache(maxsize=None)
def total_kernel(with_weights):
    """out[0] = sum(losses), divided by sum(row_weights) for 'mean' (0/0 = nan when all are ignored)."""

    @cached_jit
    def kernel(losses, row_weights, out):
        tid = cuda.threadIdx.x
        loss_sum = float32(0.0)
        weight_sum = float32(0.0)
        for i in range(tid, losses.shape[0], THREADS):
            loss_sum += losses[i]
            if with_weights:
                weight_sum += row_weights[i]
        loss_sums = cuda.shared.array((1, THREADS), float32)
        weight_sums = cuda.shared.array((1, THREADS), float32)
        loss_sums[0, tid] = loss_sum
        weight_sums[0, tid] = weight_sum
        cuda.syncthreads()
        _tree_sum(loss_sums, 0, tid, THREADS)
        _tree_sum(weight_sums, 0, tid, THREADS)
        if tid == 0:
            out[0] = loss_sums[0, 0] / weight_sums[0, 0] if with_weights else loss_sums[0, 0]

    return kernel


@functools.lru_cache(maxsize=None)
def target_weight_total_kernel(has_weight):
    """out[0] = sum of weight[target[i]] (1 each without weights) over rows not ignored, in range [0, classes)
    (the backward flags the rest)."""

    @cached_jit
    def kernel(target, weight, classes, ignore_index, out):
        tid = cuda.threadIdx.x
        total = float32(0.0)
        for i in range(tid, target.shape[0], THREADS):
            t = target[i]
            if t != ignore_index and 0 <= t < classes:
                total += weight[t] if has_weight else float32(1.0)
        totals = cuda.shared.array((1, THREADS), float32)
        totals[0, tid] = total
        cuda.syncthreads()
        _tree_sum(totals, 0, tid, THREADS)
        if tid == 0:
            out[0] = totals[0, 0]

    return kernel


def _lanes(classes):
    return 32 if classes <= NARROW_ROW else THREADS


def _scales(label_smoothing, classes):
    return np.float32(1.0 - label_smoothing), np.float32(label_smoothing / classes)


def cross_entropy(logits, target, weight, ignore_index, label_smoothing, reduction):
    """Returns (loss, error flag array); loss is 0-d for 'mean'/'sum', (N,) for 'none'."""
    xp = backend.array_module(logits)
    rows, classes = logits.shape
    lanes = _lanes(classes)
    losses = xp.empty(rows, np.float32)
    row_weights = xp.empty(rows, np.float32)
    error = xp.zeros(1, np.int32)
    if rows:   # (without weights the kernel never reads `weight`: any float32 vector stands in, no fill launched)
        launch(forward_kernel(lanes, weight is not None), ceil_div(rows, THREADS // lanes), (lanes, THREADS // lanes),
               logits, target, weight if weight is not None else row_weights, losses, row_weights, error,
               ignore_index, *_scales(label_smoothing, classes))
    if reduction == "none":
        return losses, error
    out = xp.empty(1, np.float32)
    launch(total_kernel(reduction == "mean"), 1, THREADS, losses, row_weights, out)
    return out.reshape(()), error


def cross_entropy_backward(grad_loss, logits, target, weight, ignore_index, label_smoothing, reduction):
    """grad_loss: (1,) for 'mean'/'sum', (N,) for 'none'. Returns (grad_logits, error flag array)."""
    xp = backend.array_module(logits)
    rows, classes = logits.shape
    lanes = _lanes(classes)
    total_weight = xp.empty(1, np.float32)   # read only for 'mean', which writes it first
    class_weight = weight if weight is not None else total_weight   # (a stand-in the kernels never read)
    if reduction == "mean":
        launch(target_weight_total_kernel(weight is not None), 1, THREADS, target, class_weight, classes,
               ignore_index, total_weight)
    grad = xp.empty((rows, classes), np.float32)
    error = xp.zeros(1, np.int32)
    if rows:
        launch(backward_kernel(lanes, weight is not None), ceil_div(rows, THREADS // lanes),
               (lanes, THREADS // lanes), grad_loss, logits, target, class_weight, total_weight, grad, error,
               ignore_index, *_scales(label_smoothing, classes), MODES[reduction])
    return grad, error


_matrix, _vector, _targets = float32[:, ::1], float32[::1], int64[::1]
PTX_SIGNATURES = [
    (f"ce_forward[{lanes},{'w' if has_weight else '-'}]", forward_kernel(lanes, has_weight),
     (_matrix, _targets, _vector, _vector, _vector, int32[::1], int64, float32, float32))
    for lanes in (32, THREADS) for has_weight in (False, True)
] + [
    (f"ce_backward[{lanes},{'w' if has_weight else '-'}]", backward_kernel(lanes, has_weight),
     (_vector, _matrix, _targets, _vector, _vector, _matrix, int32[::1], int64, float32, float32, int64))
    for lanes in (32, THREADS) for has_weight in (False, True)
] + [
    (f"ce_total[{name}]", total_kernel(name == "mean"), (_vector, _vector, _vector))
    for name in ("sum", "mean")
] + [
    (f"ce_target_weight_total[{'w' if has_weight else '-'}]", target_weight_total_kernel(has_weight),
     (_targets, _vector, int64, int64, _vector))
    for has_weight in (False, True)
]
