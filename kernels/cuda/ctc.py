"""CTC loss and its gradient in log space: one block per sample, threads over the extended labels.

Launch: grid = N, block = the extended length 2*max(S)+1 rounded up to a warp (at least
MIN_THREADS, so the gradient phase has threads for the T*C outputs). alpha/beta live in global
scratch (N, T, 2S+1); __syncthreads between time steps makes a step's writes visible to the block.
"""
import math

import numpy as np
from numba import cuda, float32, int32

from .. import backend
from .device import device_function
from .jit import cached_jit
from .launch import launch

NEG_INF = np.float32(-np.inf)
POS_INF = np.float32(np.inf)
NAN = np.float32(np.nan)
MIN_THREADS = 128
MAX_THREADS = 512   # 64 registers a thread (ptxas: 58) x 1024 would sit at the 64K-register limit
WARP = 32


@device_function
def _log_add(a, b):
    """log(exp(a) + exp(b)); NaN in, NaN out, as torch (max and min alone would drop a NaN operand and turn a
    diverged network's loss into a finite one)."""
    if a != a or b != b:
        return a + b
    m = max(a, b)
    if m == NEG_INF:
        return NEG_INF
    return m + math.log1p(math.exp(min(a, b) - m))


@device_function
def _label(targets, offset, s, blank):
    """Extended label at position s: blank at even s, the (s//2)-th target at odd s."""
    if s % 2 == 0:
        return blank
    return targets[offset + s // 2]


@device_function
def _forward_variables(log_probs, targets, offset, n, input_length, length, blank, alpha):
    tid = cuda.threadIdx.x
    threads = cuda.blockDim.x
    for t in range(input_length):
        for s in range(tid, length, threads):
            label = _label(targets, offset, s, blank)
            emission = log_probs[t, n, label]
            if t == 0:
                value = emission if s < 2 else NEG_INF
            else:
                value = alpha[n, t - 1, s]
                if s >= 1:
                    value = _log_add(value, alpha[n, t - 1, s - 1])
                # Skip the blank between two labels only when they differ.
                if s >= 3 and s % 2 == 1 and label != targets[offset + s // 2 - 1]:
                    value = _log_add(value, alpha[n, t - 1, s - 2])
                value += emission
            alpha[n, t, s] = value
        cuda.syncthreads()


@device_function
def _negative_log_likelihood(alpha, n, input_length, target_length):
    if input_length == 0:
        return float32(0.0) if target_length == 0 else POS_INF
    length = 2 * target_length + 1
    log_likelihood = alpha[n, input_length - 1, length - 1]
    if length > 1:
        log_likelihood = _log_add(log_likelihood, alpha[n, input_length - 1, length - 2])
    return -log_likelihood


@cached_jit
def ctc_loss_kernel(log_probs, targets, target_offsets, input_lengths, target_lengths, blank, zero_infinity,
                    alpha, nll_out):
    n = cuda.blockIdx.x
    input_length = input_lengths[n]
    target_length = target_lengths[n]
    _forward_variables(log_probs, targets, target_offsets[n], n, input_length, 2 * target_length + 1, blank,
                       alpha)
    if cuda.threadIdx.x == 0:
        nll = _negative_log_likelihood(alpha, n, input_length, target_length)
        if zero_infinity != 0 and nll == POS_INF:
            nll = float32(0.0)
        nll_out[n] = nll


@cached_jit
def ctc_gradient_kernel(log_probs, targets, target_offsets, input_lengths, target_lengths, blank, zero_infinity,
                        sample_scale, alpha, beta, grad):
    n = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    threads = cuda.blockDim.x
    input_length = input_lengths[n]
    target_length = target_lengths[n]
    offset = target_offsets[n]
    length = 2 * target_length + 1
    _forward_variables(log_probs, targets, offset, n, input_length, length, blank, alpha)
    nll = _negative_log_likelihood(alpha, n, input_length, target_length)

    for step in range(input_length):
        t = input_length - 1 - step
        for s in range(tid, length, threads):
            label = _label(targets, offset, s, blank)
            emission = log_probs[t, n, label]
            if t == input_length - 1:
                value = emission if s >= length - 2 else NEG_INF
            else:
                value = beta[n, t + 1, s]
                if s + 1 < length:
                    value = _log_add(value, beta[n, t + 1, s + 1])
                if s + 2 < length and s % 2 == 1 and label != targets[offset + s // 2 + 1]:
                    value = _log_add(value, beta[n, t + 1, s + 2])
                value += emission
            beta[n, t, s] = value
        cuda.syncthreads()

    # Per (t, class): gather alpha+beta over the positions carrying that class (blank: even s).
    steps = log_probs.shape[0]
    classes = log_probs.shape[2]
    scale = sample_scale[n]
    infinite = nll == POS_INF
    for index in range(tid, steps * classes, threads):
        t = index // classes
        c = index - t * classes
        g = float32(0.0)
        if t < input_length and ((infinite and zero_infinity == 0) or nll != nll):
            g = NAN   # torch: exp(-inf + inf - lp), or a NaN loss (a NaN log-probability) in every term
        elif t < input_length and not infinite:
            peak = NEG_INF
            if c == blank:
                for s in range(0, length, 2):
                    peak = max(peak, alpha[n, t, s] + beta[n, t, s])
            else:
                for k in range(target_length):
                    if targets[offset + k] == c:
                        peak = max(peak, alpha[n, t, 2 * k + 1] + beta[n, t, 2 * k + 1])
            lp = log_probs[t, n, c]
            g = math.exp(lp)
            if peak != NEG_INF:
                total = float32(0.0)
                if c == blank:
                    for s in range(0, length, 2):
                        total += math.exp(alpha[n, t, s] + beta[n, t, s] - peak)
                else:
                    for k in range(target_length):
                        if targets[offset + k] == c:
                            total += math.exp(alpha[n, t, 2 * k + 1] + beta[n, t, 2 * k + 1] - peak)
                g -= math.exp(peak + math.log(total) + nll - lp)
            g *= scale
        grad[t, n, c] = g


def upload_indices(host_arrays, like):
    """The host index arrays (targets, offsets, lengths, and any more int32 arrays) as int32 views on the device
    of `like`: one copy for all."""
    parts = [np.asarray(a) for a in host_arrays]
    if len(parts[0]) == 0:
        parts[0] = np.zeros(1, np.int32)   # every target empty: never read, but the kernel needs an array
    packed = backend.array_module(like).asarray(np.concatenate(parts).astype(np.int32))
    bounds = np.cumsum([0] + [len(a) for a in parts])
    return [packed[bounds[i]:bounds[i + 1]] for i in range(len(parts))]


def _threads(width):
    # Wider than MAX_THREADS: the positions loop strides by blockDim.
    return min(MAX_THREADS, max(MIN_THREADS, -(-width // WARP) * WARP))


def ctc_loss(log_probs, indices, width, blank, zero_infinity, nll_out):
    """indices: int32 device arrays (flat targets, target offsets, input lengths, target lengths);
    width: an upper bound of 2*S_n + 1 (the scratch row length)."""
    steps, batch, _ = log_probs.shape
    if batch == 0:
        return
    alpha = backend.array_module(log_probs).empty((batch, steps, width), dtype=np.float32)
    launch(ctc_loss_kernel, batch, _threads(width), log_probs, *indices, np.int32(blank), np.int32(zero_infinity),
           alpha, nll_out)


def ctc_loss_backward(log_probs, indices, width, blank, zero_infinity, sample_scale, grad):
    steps, batch, _ = log_probs.shape
    if batch == 0:
        return
    xp = backend.array_module(log_probs)
    alpha = xp.empty((batch, steps, width), dtype=np.float32)
    beta = xp.empty_like(alpha)
    launch(ctc_gradient_kernel, batch, _threads(width), log_probs, *indices, np.int32(blank),
           np.int32(zero_infinity), sample_scale, alpha, beta, grad)


_ints = int32[::1]
_tnc = float32[:, :, ::1]
PTX_SIGNATURES = [
    ("loss", ctc_loss_kernel, (_tnc, _ints, _ints, _ints, _ints, int32, int32, _tnc, float32[::1])),
    ("gradient", ctc_gradient_kernel, (_tnc, _ints, _ints, _ints, _ints, int32, int32, float32[::1], _tnc, _tnc,
                                       _tnc)),
]
