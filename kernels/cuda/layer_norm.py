"""Layer normalisation over rows of `features` values. Forward and input gradient: one block per row, a power of
two threads from 64 to 512 (about 4 values each; 64, not one warp, so that rows of 128 still fill an SM with its
32 resident blocks), float32 sums by shared-memory trees (no warp shuffles: the simulator has none); the row
(forward: x - x[0]; backward: grad * weight and xhat) is kept in dynamic shared memory when it fits, so each input
is read from global memory once and the forward's two-pass variance costs no second read. Weight and bias
gradients: column sums, deterministic (no atomics): per-chunk-of-rows partial sums, then a second kernel adds the
chunks in order, one thread per column in both (consecutive columns: coalesced).
"""
import math

import numpy as np
from numba import cuda, float32, int32, int64

from .. import backend
from .device import block_sum
from .jit import cached_jit
from .launch import ceil_div, launch, launch_1d

MIN_THREADS = 64
MAX_THREADS = 512              # a power of two (tree reduction); also the size of the partial-sum arrays
VALUES_PER_THREAD = 4
SHARED_ROW_FLOATS = 11 * 1024  # 44 KiB: with the <= 4 KiB of partial sums, within the 48 KiB a block gets unasked
COLUMN_THREADS = 128           # weight/bias gradients: one thread per column, consecutive columns coalesced
TARGET_COLUMN_BLOCKS = 1024    # row chunks per column block: enough blocks to fill 132 SMs a few times over
MIN_ROWS_PER_PART = 8
MAX_GRID_Y = 65535


@cached_jit
def forward_kernel(x, weight, bias, y, mean_out, rstd_out, eps, has_weight, has_bias, cache_row):
    r = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    threads = cuda.blockDim.x
    features = x.shape[1]
    partial = cuda.shared.array(MAX_THREADS, float32)
    row = cuda.shared.array(0, float32)   # `features` floats when cache_row (dynamic shared memory)
    # Sums of x - x[r, 0], not of x: exact differences for a row whose mean is large against its spread (1000 +
    # noise summed as is loses the noise to float32 rounding, and a rounded mean shifts every output).
    shift = x[r, 0]
    total = float32(0.0)
    for j in range(tid, features, threads):
        value = x[r, j] - shift
        if cache_row != 0:
            row[j] = value
        total += value
    partial[tid] = total
    offset = block_sum(partial, tid, threads) / float32(features)
    # Second pass over the centred values (two-pass variance). Each thread reads back only the entries of the
    # row it wrote itself: no barrier needed before it.
    total = float32(0.0)
    for j in range(tid, features, threads):
        d = (row[j] if cache_row != 0 else x[r, j] - shift) - offset
        total += d * d
    partial[tid] = total
    rstd = float32(1.0) / math.sqrt(block_sum(partial, tid, threads) / float32(features) + eps)
    for j in range(tid, features, threads):
        value = ((row[j] if cache_row != 0 else x[r, j] - shift) - offset) * rstd
        if has_weight != 0:
            value *= weight[j]
        if has_bias != 0:
            value += bias[j]
        y[r, j] = value
    if tid == 0:
        mean_out[r] = shift + offset
        rstd_out[r] = rstd


@cached_jit
def backward_input_kernel(grad, x, weight, mean, rstd, grad_x, has_weight, cache_row):
    """grad_x = rstd * (gw - sum(gw) / N - xhat * sum(gw * xhat) / N), gw = grad * weight, per row."""
    r = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    threads = cuda.blockDim.x
    features = x.shape[1]
    partial_grad = cuda.shared.array(MAX_THREADS, float32)
    partial_grad_xhat = cuda.shared.array(MAX_THREADS, float32)
    row = cuda.shared.array(0, float32)   # gw in [0, features), xhat in [features, 2 * features) when cache_row
    mu = mean[r]
    inverse_std = rstd[r]
    total_grad = float32(0.0)
    total_grad_xhat = float32(0.0)
    for j in range(tid, features, threads):
        g = grad[r, j]
        if has_weight != 0:
            g *= weight[j]
        xhat = (x[r, j] - mu) * inverse_std
        if cache_row != 0:
            row[j] = g
            row[features + j] = xhat
        total_grad += g
        total_grad_xhat += g * xhat
    partial_grad[tid] = total_grad
    partial_grad_xhat[tid] = total_grad_xhat
    inverse_features = float32(1.0) / float32(features)
    mean_grad = block_sum(partial_grad, tid, threads) * inverse_features
    mean_grad_xhat = block_sum(partial_grad_xhat, tid, threads) * inverse_features
    for j in range(tid, features, threads):
        if cache_row != 0:
            g = row[j]
            xhat = row[features + j]
        else:
            g = grad[r, j]
            if has_weight != 0:
                g *= weight[j]
            xhat = (x[r, j] - mu) * inverse_std
        grad_x[r, j] = inverse_std * (g - mean_grad - xhat * mean_grad_xhat)


@cached_jit
def column_partials_kernel(grad, x, mean, rstd, partial_weight, partial_bias, rows_per_part):
    """Sums of grad * xhat and of grad over one chunk of rows (blockIdx.y) for one column per thread."""
    c = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    part = cuda.blockIdx.y
    rows, features = x.shape
    if c >= features:
        return
    first = part * rows_per_part
    last = min(first + rows_per_part, rows)
    total_grad_xhat = float32(0.0)
    total_grad = float32(0.0)
    for r in range(first, last):
        g = grad[r, c]
        total_grad_xhat += g * ((x[r, c] - mean[r]) * rstd[r])
        total_grad += g
    partial_weight[part, c] = total_grad_xhat
    partial_bias[part, c] = total_grad


@cached_jit
def column_sums_kernel(partial_weight, partial_bias, grad_weight, grad_bias):
    """The chunks' partial sums added in a fixed order: the same gradients on every run (no atomics)."""
    c = cuda.grid(1)
    parts, features = partial_weight.shape
    if c >= features:
        return
    total_grad_xhat = float32(0.0)
    total_grad = float32(0.0)
    for part in range(parts):
        total_grad_xhat += partial_weight[part, c]
        total_grad += partial_bias[part, c]
    grad_weight[c] = total_grad_xhat
    grad_bias[c] = total_grad


def block_threads(features):
    """A power of two in [MIN_THREADS, MAX_THREADS] giving each thread about VALUES_PER_THREAD values."""
    wanted = ceil_div(features, VALUES_PER_THREAD)
    threads = MIN_THREADS
    while threads < wanted and threads < MAX_THREADS:
        threads *= 2
    return threads


def row_chunks(rows, features):
    """(rows_per_part, parts) for the column sums: about TARGET_COLUMN_BLOCKS blocks in all."""
    column_blocks = ceil_div(features, COLUMN_THREADS)
    rows_per_part = max(MIN_ROWS_PER_PART, ceil_div(rows, max(1, TARGET_COLUMN_BLOCKS // column_blocks)))
    rows_per_part = max(rows_per_part, ceil_div(rows, MAX_GRID_Y))
    return rows_per_part, ceil_div(rows, rows_per_part)


def layer_norm_forward(x2, weight, bias, y2, mean, rstd, eps):
    """x2, y2 (rows, features); mean, rstd (rows,); weight, bias (features,) or None. A row longer than
    SHARED_ROW_FLOATS is read again from global memory (L1/L2) instead of shared memory."""
    rows, features = x2.shape
    if rows == 0:
        return
    cache_row = features <= SHARED_ROW_FLOATS
    stand_in = mean   # read-only stand-in for an absent weight or bias (never read)
    launch(forward_kernel, rows, block_threads(features), x2, stand_in if weight is None else weight,
           stand_in if bias is None else bias, y2, mean, rstd, np.float32(eps), np.int32(weight is not None),
           np.int32(bias is not None), np.int32(cache_row), shared_bytes=4 * features if cache_row else 0)


def layer_norm_backward(grad2, x2, weight, mean, rstd, grad_x2, grad_weight, grad_bias):
    """grad_x2 (rows, features), grad_weight / grad_bias (features,): each written when not None."""
    rows, features = x2.shape
    if rows == 0:
        for out in (grad_weight, grad_bias):
            if out is not None:
                out[...] = 0
        return
    cache_row = 2 * features <= SHARED_ROW_FLOATS
    if grad_x2 is not None:
        launch(backward_input_kernel, rows, block_threads(features), grad2, x2, mean if weight is None else weight,
               mean, rstd, grad_x2, np.int32(weight is not None), np.int32(cache_row),
               shared_bytes=8 * features if cache_row else 0)
    if grad_weight is None and grad_bias is None:
        return
    rows_per_part, parts = row_chunks(rows, features)
    xp = backend.array_module(x2)
    partial_weight, partial_bias = (xp.empty((parts, features), np.float32) for _ in range(2))
    launch(column_partials_kernel, (ceil_div(features, COLUMN_THREADS), parts), COLUMN_THREADS, grad2, x2, mean,
           rstd, partial_weight, partial_bias, rows_per_part)
    # (a missing output gets a scratch vector: one kernel computes both sums)
    launch_1d(column_sums_kernel, features, partial_weight, partial_bias,
              xp.empty(features, np.float32) if grad_weight is None else grad_weight,
              xp.empty(features, np.float32) if grad_bias is None else grad_bias, threads=COLUMN_THREADS)


_vector = float32[::1]
_matrix = float32[:, ::1]
PTX_SIGNATURES = [
    ("forward", forward_kernel, (_matrix, _vector, _vector, _matrix, _vector, _vector, float32, int32, int32, int32)),
    ("backward_input", backward_input_kernel, (_matrix, _matrix, _vector, _vector, _vector, _matrix, int32, int32)),
    ("column_partials", column_partials_kernel, (_matrix, _matrix, _vector, _vector, _matrix, _matrix, int64)),
    ("column_sums", column_sums_kernel, (_matrix, _matrix, _vector, _vector)),
]
