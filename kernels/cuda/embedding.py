"""Embedding lookup and its weight gradient: one thread per element of the (M, D) lookup, flat, so a warp reads
and writes 32 consecutive elements of a row (coalesced along D). `launch_1d` with THREADS threads a block.
The backward scatters with float32 atomic adds into a zeroed (num_embeddings, D) gradient: one launch (two
with scale_grad_by_freq, whose counts are integer atomics first) and no sort; an index repeated r times costs
r serialised adds to one address, and the order of those adds (so the last bits) may change from run to run.
Under use_deterministic_algorithms it sorts the indices instead (a stable argsort) and the first thread of each
run of equal indices sums the run's rows in order: the same bits every run, for a sort and no atomics.
"""
import functools

import numpy as np
from numba import cuda, float32, int32, int64

from .. import backend
from .jit import cached_jit
from .launch import launch_1d

THREADS = 256


@cached_jit
def embedding_kernel(weight, indices, out, error):
    """out[m, d] = weight[indices[m], d]; an index outside [0, rows) gives a zero row and sets error[0]."""
    i = cuda.grid(1)
    dim = out.shape[1]
    if i < indices.shape[0] * dim:
        m = i // dim
        d = i - m * dim
        k = indices[m]
        if k < 0 or k >= weight.shape[0]:
            error[0] = 1
            out[m, d] = float32(0.0)
        else:
            out[m, d] = weight[k, d]


@cached_jit
def count_kernel(indices, counts):
    """counts[k] = how often k occurs in indices (counts zeroed; out-of-range indices skipped)."""
    i = cuda.grid(1)
    if i < indices.shape[0]:
        k = indices[i]
        if 0 <= k < counts.shape[0]:
            cuda.atomic.add(counts, k, int32(1))


@functools.lru_cache(maxsize=None)
def backward_kernel(scale_by_frequency):
    """grad_weight[indices[m], d] += grad[m, d] (/ counts[indices[m]]), padding_idx's row skipped."""

    @cached_jit
    def kernel(grad, indices, counts, grad_weight, error, padding_idx):
        i = cuda.grid(1)
        dim = grad.shape[1]
        if i < indices.shape[0] * dim:
            m = i // dim
            d = i - m * dim
            k = indices[m]
            if k < 0 or k >= grad_weight.shape[0]:
                if d == 0:
                    error[0] = 1
            elif k != padding_idx:
                value = grad[m, d]
                if scale_by_frequency:
                    value = value / float32(counts[k])
                cuda.atomic.add(grad_weight, (k, d), value)

    return kernel


@functools.lru_cache(maxsize=None)
def sorted_backward_kernel(scale_by_frequency):
    """The deterministic form: indices sorted, `order` their positions in grad. Thread (s, d), with s the first
    of a run of equal indices k, sums the run's grad rows in sorted (stable: original) order into
    grad_weight[k, d]; the other threads of the run return. Rows no index names stay zero."""

    @cached_jit
    def kernel(grad, sorted_indices, order, grad_weight, error, padding_idx):
        i = cuda.grid(1)
        dim = grad.shape[1]
        count = sorted_indices.shape[0]
        if i >= count * dim:
            return
        s = i // dim
        d = i - s * dim
        k = sorted_indices[s]
        if s > 0 and sorted_indices[s - 1] == k:
            return
        if k < 0 or k >= grad_weight.shape[0]:
            if d == 0:
                error[0] = 1
            return
        if k == padding_idx:
            return
        end = s + 1
        while end < count and sorted_indices[end] == k:
            end += 1
        total = float32(0.0)
        for j in range(s, end):
            value = grad[order[j], d]
            if scale_by_frequency:
                value = value / float32(end - s)
            total += value
        grad_weight[k, d] = total

    return kernel


def embedding(weight, indices, out):
    """weight (N, D), flat indices (M,), out (M, D), all contiguous. Returns the error flag array (1,)."""
    error = backend.array_module(weight).zeros(1, np.int32)
    launch_1d(embedding_kernel, out.size, weight, indices, out, error, threads=THREADS)
    return error


def embedding_backward(grad, indices, num_embeddings, padding_idx, scale_grad_by_freq, out=None):
    """grad (M, D) and flat indices (M,), contiguous; padding_idx in [0, N) or -1; out: a contiguous (N, D) array
    to add into (zeroed first), or None. Returns (grad_weight (N, D), error flag array (1,))."""
    xp = backend.array_module(grad)
    if out is None:
        grad_weight = xp.zeros((num_embeddings, grad.shape[1]), np.float32)
    else:
        grad_weight = out
        grad_weight[...] = 0
    error = xp.zeros(1, np.int32)
    if backend.are_deterministic_algorithms_enabled():
        order = xp.argsort(indices, kind="stable")
        launch_1d(sorted_backward_kernel(bool(scale_grad_by_freq)), grad.size, grad, indices[order], order,
                  grad_weight, error, int(padding_idx), threads=THREADS)
        return grad_weight, error
    counts = xp.zeros(num_embeddings if scale_grad_by_freq else 1, np.int32)   # (a stand-in, never read, without)
    if scale_grad_by_freq:
        launch_1d(count_kernel, indices.size, indices, counts, threads=THREADS)
    launch_1d(backward_kernel(bool(scale_grad_by_freq)), grad.size, grad, indices, counts, grad_weight, error,
              int(padding_idx), threads=THREADS)
    return grad_weight, error


_matrix = float32[:, ::1]
PTX_SIGNATURES = [
    (f"embedding[{index.name}]", embedding_kernel, (_matrix, index[::1], _matrix, int32[::1]))
    for index in (int32, int64)
] + [
    (f"embedding_count[{index.name}]", count_kernel, (index[::1], int32[::1]))
    for index in (int32, int64)
] + [
    (f"embedding_backward[{index.name}{',freq' if scale else ''}]", backward_kernel(scale),
     (_matrix, index[::1], int32[::1], _matrix, int32[::1], int64))
    for index in (int32, int64) for scale in (False, True)
] + [
    (f"embedding_backward_sorted[{index.name}{',freq' if scale else ''}]", sorted_backward_kernel(scale),
     (_matrix, index[::1], int64[::1], _matrix, int32[::1], int64))
    for index in (int32, int64) for scale in (False, True)
]
