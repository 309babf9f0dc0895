"""Sums over axes and row softmax / log_softmax (cross-entropy lives in cross_entropy.py).

reduce_sum views x as (A, K, B), reducing A and B: a block per (output k, split s) walks whole
contiguous runs of B (coalesced); runs shorter than a block (A > 1) are first summed over A by
warps reading 32 adjacent columns of (A, K*B); partial sums of splits go through the same kernels. Softmax: a row of 32 or 256
lanes (8 rows or 1 row a 256-thread block) per row of (rows, n), the row made contiguous first.
"""
import functools
import math

import numpy as np
from numba import cuda, float32, int64

from .. import backend
from . import cross_entropy as _ce
from .device import device_function
from .jit import cached_jit
from .launch import ceil_div, launch

THREADS = 256          # threads a block, a power of two (shared-memory trees)
TARGET_BLOCKS = 1024   # about 8 resident 256-thread blocks on each of ~132 SMs: fills an H100/H200
MIN_PER_THREAD = 8     # never split so finely that a thread adds fewer values than this
SHORT_RUN = 32         # rows shorter than a warp, with no A left to reduce, get a thread each
COLUMN_LANES = 32      # column kernel: a warp over 32 adjacent outputs (one 128-byte load a row)
COLUMN_ROWS = 8        # ... times 8 rows of the reduced axis, combined in shared memory
NARROW_ROW = 256       # softmax rows up to this long get 32 lanes (8 rows a block), longer get 256
NEG_INF = np.float32(-np.inf)


@cached_jit
def sum_chunks_kernel(x, partial, chunks_per_run, chunk):
    """partial[k, s] = sum of x[a, k, b] over split s of the (a, chunk of b) items, for x (A, K, B)."""
    splits = partial.shape[1]
    k = cuda.blockIdx.x // splits
    s = cuda.blockIdx.x - k * splits
    tid = cuda.threadIdx.x
    run = x.shape[2]
    total = float32(0.0)
    for item in range(s, x.shape[0] * chunks_per_run, splits):
        a = item // chunks_per_run
        b = (item - a * chunks_per_run) * chunk + tid
        stop = min(b - tid + chunk, run)
        # four independent loads in flight a thread (latency hiding), added pairwise
        while b + 3 * THREADS < stop:
            total += (x[a, k, b] + x[a, k, b + THREADS]) + (x[a, k, b + 2 * THREADS] + x[a, k, b + 3 * THREADS])
            b += 4 * THREADS
        while b < stop:
            total += x[a, k, b]
            b += THREADS
    values = cuda.shared.array(THREADS, float32)
    values[tid] = total
    cuda.syncthreads()
    stride = THREADS // 2
    while stride > 0:   # pairwise tree: error grows with log2(THREADS), not THREADS
        if tid < stride:
            values[tid] += values[tid + stride]
        cuda.syncthreads()
        stride //= 2
    if tid == 0:
        partial[k, s] = values[0]


@cached_jit
def sum_columns_kernel(x, partial):
    """partial[s, j] = sum of x[a, j] over the rows a of split s, for x (A, M)."""
    lane = cuda.threadIdx.x
    row = cuda.threadIdx.y
    column = cuda.blockIdx.x * COLUMN_LANES + lane
    s = cuda.blockIdx.y
    step = cuda.gridDim.y * COLUMN_ROWS
    total = float32(0.0)
    if column < x.shape[1]:
        a = s * COLUMN_ROWS + row
        rows = x.shape[0]
        while a + 3 * step < rows:   # four loads in flight, as in sum_chunks_kernel
            total += (x[a, column] + x[a + step, column]) + (x[a + 2 * step, column] + x[a + 3 * step, column])
            a += 4 * step
        while a < rows:
            total += x[a, column]
            a += step
    values = cuda.shared.array((COLUMN_ROWS, COLUMN_LANES), float32)
    values[row, lane] = total
    cuda.syncthreads()
    stride = COLUMN_ROWS // 2
    while stride > 0:
        if row < stride:
            values[row, lane] += values[row + stride, lane]
        cuda.syncthreads()
        stride //= 2
    if row == 0 and column < x.shape[1]:
        partial[s, column] = values[0, lane]


@cached_jit
def sum_short_rows_kernel(x, out):
    """out[k] = sum of x[k, :] for rows shorter than SHORT_RUN: one thread a row."""
    k = cuda.grid(1)
    if k < x.shape[0]:
        total = float32(0.0)
        for b in range(x.shape[1]):
            total += x[k, b]
        out[k] = total


def _groups(shape, axes):
    """Adjacent dims merged into [size, reduced] runs, size-1 dims dropped."""
    groups = []
    for d, n in enumerate(shape):
        if n == 1:
            continue
        reduced = d in axes
        if groups and groups[-1][1] == reduced:
            groups[-1][0] *= n
        else:
            groups.append([n, reduced])
    return groups


def _chunk_plan(outer, kept, run):
    """(splits, chunks_per_run, chunk) so that about TARGET_BLOCKS blocks share the work."""
    wanted = max(1, min(TARGET_BLOCKS // kept, outer * run // (THREADS * MIN_PER_THREAD)))
    chunks_per_run = max(1, min(ceil_div(run, THREADS * MIN_PER_THREAD), ceil_div(wanted, outer)))
    chunk = ceil_div(run, chunks_per_run)
    chunks_per_run = ceil_div(run, chunk)
    return min(wanted, outer * chunks_per_run), chunks_per_run, chunk


def _column_splits(rows, columns):
    column_blocks = ceil_div(columns, COLUMN_LANES)
    return max(1, min(TARGET_BLOCKS // column_blocks, rows // (COLUMN_ROWS * MIN_PER_THREAD), 65535))


def _sum_3d(x, xp, out=None):
    """Sum of the contiguous (A, K, B) array x over A and B: a (K,) array (`out`, when given: (K,) contiguous,
    written by the last kernel, so no copy follows)."""
    outer, kept, run = x.shape
    if run >= THREADS or (outer == 1 and run >= SHORT_RUN):
        splits, chunks_per_run, chunk = _chunk_plan(outer, kept, run)
        partial = out.reshape(kept, 1) if splits == 1 and out is not None else xp.empty((kept, splits), np.float32)
        launch(sum_chunks_kernel, kept * splits, THREADS, x, partial, chunks_per_run, chunk)
        return partial.reshape(kept) if splits == 1 else _sum_3d(partial.reshape(1, kept, splits), xp, out)
    if outer > 1:
        columns = x.reshape(outer, kept * run)
        while columns.shape[0] > 1:
            splits = _column_splits(columns.shape[0], columns.shape[1])
            last = splits == 1 and run == 1 and out is not None
            partial = out.reshape(1, kept) if last else xp.empty((splits, columns.shape[1]), np.float32)
            launch(sum_columns_kernel, (ceil_div(columns.shape[1], COLUMN_LANES), splits),
                   (COLUMN_LANES, COLUMN_ROWS), columns, partial)
            columns = partial
        if run == 1:
            return columns.reshape(kept)
        return _sum_3d(columns.reshape(1, kept, run), xp, out)
    if out is None:
        out = xp.empty(kept, np.float32)
    launch(sum_short_rows_kernel, ceil_div(kept, THREADS), THREADS, x.reshape(kept, run), out)
    return out


def reduce_sum(x, axes, out=None):
    """Sum of float32 x over the sorted tuple `axes`; returns the kept dims' shape (keepdims off). `out`: a
    contiguous array of the kept dims' size that receives the sum (and is returned, reshaped)."""
    xp = backend.array_module(x)
    kept_shape = tuple(n for d, n in enumerate(x.shape) if d not in axes)
    flat_out = None if out is None else out.reshape(-1)
    if x.size == 0:
        if flat_out is None:
            return xp.zeros(kept_shape, np.float32)
        flat_out[...] = 0
        return flat_out.reshape(kept_shape)
    groups = _groups(x.shape, axes)
    kinds = tuple(reduced for _, reduced in groups)
    if kinds in ((), (True,), (False,), (False, True), (True, False), (True, False, True)):
        sizes = [1, 1, 1]   # (A, K, B)
        slot = 0
        for size, reduced in groups:
            slot = (0 if slot == 0 else 2) if reduced else 1
            sizes[slot] = size
        if kinds == (True,):
            sizes = [1, 1, groups[0][0]]   # one long run: split it by chunks
        x3 = xp.ascontiguousarray(x).reshape(sizes)
    else:
        # Interleaved kept/reduced dims: one transposing copy to (kept, reduced), then row sums.
        kept_axes = [d for d in range(x.ndim) if d not in axes]
        moved = xp.ascontiguousarray(x.transpose(kept_axes + list(axes)))
        x3 = moved.reshape(1, int(np.prod(kept_shape)), -1)
    return _sum_3d(x3, xp, flat_out).reshape(kept_shape)


# ---- softmax / log_softmax -------------------------------------------------------------------------

@device_function
def _rescaled_sum(m1, s1, m2, s2):
    """s1 * exp(m1 - m) + s2 * exp(m2 - m) with m = max(m1, m2): two online-softmax partials merged."""
    m = max(m1, m2)
    if m == NEG_INF:   # both partials empty (or all -inf): nothing to rescale, avoids -inf - -inf
        return s1 + s2
    return s1 * math.exp(m1 - m) + s2 * math.exp(m2 - m)


@functools.lru_cache(maxsize=None)
def softmax_kernel(lanes, log):
    """Kernel for rows of `lanes` threads: y = softmax(x) (or log_softmax) of each row of x (rows, n)."""
    rows_per_block = THREADS // lanes

    @cached_jit
    def kernel(x, y):
        lane = cuda.threadIdx.x
        slot = cuda.threadIdx.y
        row = cuda.blockIdx.x * rows_per_block + slot
        n = x.shape[1]
        # One read: each lane keeps a running max m and the sum s of exp(value - m).
        m = NEG_INF
        s = float32(0.0)
        if row < x.shape[0]:
            for c in range(lane, n, lanes):
                value = x[row, c]
                if value > m:
                    s = s * math.exp(m - value) + float32(1.0)
                    m = value
                elif value > NEG_INF:
                    s += math.exp(value - m)
                elif value != value:   # NaN: carried in the sum (the max would skip it), so the row is NaN as torch's
                    s = value
        maxima = cuda.shared.array((rows_per_block, lanes), float32)
        sums = cuda.shared.array((rows_per_block, lanes), float32)
        maxima[slot, lane] = m
        sums[slot, lane] = s
        cuda.syncthreads()
        stride = lanes // 2
        while stride > 0:
            if lane < stride:
                m1 = maxima[slot, lane]
                m2 = maxima[slot, lane + stride]
                sums[slot, lane] = _rescaled_sum(m1, sums[slot, lane], m2, sums[slot, lane + stride])
                maxima[slot, lane] = max(m1, m2)
            cuda.syncthreads()
            stride //= 2
        if row < x.shape[0]:
            m = maxima[slot, 0]
            if log:
                log_sum = math.log(sums[slot, 0])
                for c in range(lane, n, lanes):
                    y[row, c] = (x[row, c] - m) - log_sum
            else:
                inverse = float32(1.0) / sums[slot, 0]
                for c in range(lane, n, lanes):
                    y[row, c] = math.exp(x[row, c] - m) * inverse

    return kernel


@functools.lru_cache(maxsize=None)
def softmax_backward_kernel(lanes, log):
    """softmax: g_in = y * (g - sum(g * y)); log_softmax: g_in = g - exp(y) * sum(g), per row."""
    rows_per_block = THREADS // lanes

    @cached_jit
    def kernel(grad_out, y, grad_in):
        lane = cuda.threadIdx.x
        slot = cuda.threadIdx.y
        row = cuda.blockIdx.x * rows_per_block + slot
        n = y.shape[1]
        total = float32(0.0)
        if row < y.shape[0]:
            for c in range(lane, n, lanes):
                total += grad_out[row, c] if log else grad_out[row, c] * y[row, c]
        sums = cuda.shared.array((rows_per_block, lanes), float32)
        sums[slot, lane] = total
        cuda.syncthreads()
        stride = lanes // 2
        while stride > 0:
            if lane < stride:
                sums[slot, lane] += sums[slot, lane + stride]
            cuda.syncthreads()
            stride //= 2
        if row < y.shape[0]:
            total = sums[slot, 0]
            for c in range(lane, n, lanes):
                if log:
                    grad_in[row, c] = grad_out[row, c] - math.exp(y[row, c]) * total
                else:
                    grad_in[row, c] = y[row, c] * (grad_out[row, c] - total)

    return kernel


def row_lanes(n):
    return 32 if n <= NARROW_ROW else THREADS


def _row_launch(kernel_factory, log, rows, *arrays):
    lanes = row_lanes(rows.shape[1])
    launch(kernel_factory(lanes, log), ceil_div(rows.shape[0], THREADS // lanes), (lanes, THREADS // lanes),
           *arrays)


def softmax(x, out, log):
    """x, out: contiguous (rows, n) float32."""
    _row_launch(softmax_kernel, log, x, x, out)


def softmax_backward(grad_out, y, grad_in, log):
    _row_launch(softmax_backward_kernel, log, y, grad_out, y, grad_in)


cross_entropy = _ce.cross_entropy
cross_entropy_backward = _ce.cross_entropy_backward

_matrix = float32[:, ::1]
PTX_SIGNATURES = [
    ("sum_chunks", sum_chunks_kernel, (float32[:, :, ::1], _matrix, int64, int64)),
    ("sum_columns", sum_columns_kernel, (_matrix, _matrix)),
    ("sum_short_rows", sum_short_rows_kernel, (_matrix, float32[::1])),
] + [
    (f"{'log_' if log else ''}softmax{suffix}[lanes={lanes}]", factory(lanes, log), signature)
    for lanes in (32, THREADS) for log in (False, True)
    for suffix, factory, signature in (("", softmax_kernel, (_matrix, _matrix)),
                                       ("_backward", softmax_backward_kernel, (_matrix, _matrix, _matrix)))
] + _ce.PTX_SIGNATURES
