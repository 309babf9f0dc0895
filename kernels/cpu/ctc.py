"""CTC loss on the CPU in log space: the reference for kernels/cuda/ctc.py, with the same loops.

Per sample: alpha and beta over the extended label sequence (blank, l1, blank, ..., blank) of length
2*S_n + 1, both including the emission at t; the gradient scatters alpha+beta onto the classes with
log-sum-exp, as PyTorch does. Numba-CPU: the recursion over time cannot be vectorised in NumPy
(a batch-vectorised NumPy version ran 7x slower than torch's CPU kernel).
Targets arrive as a flat int64 array with per-sample offsets (padded or concatenated alike).
"""
import math

import numpy as np
from numba import njit

NEG_INF = -np.inf


@njit(cache=True, error_model="numpy", inline="always")
def _log_add(a, b):
    """log(exp(a) + exp(b)); NaN in, NaN out, as torch (max and min alone would drop a NaN operand and turn a
    diverged network's loss into a finite one)."""
    if a != a or b != b:
        return a + b
    m = max(a, b)
    if m == NEG_INF:
        return m
    return m + math.log1p(math.exp(min(a, b) - m))


@njit(cache=True, error_model="numpy", inline="always")
def _label(targets, offset, s, blank):
    """Extended label at position s: blank at even s, the (s//2)-th target at odd s."""
    if s % 2 == 0:
        return blank
    return targets[offset + s // 2]


@njit(cache=True, error_model="numpy")
def _alpha(log_probs, n, targets, offset, input_length, length, blank, alpha):
    for t in range(input_length):
        for s in range(length):
            label = _label(targets, offset, s, blank)
            emission = log_probs[t, n, label]
            if t == 0:
                value = emission if s < 2 else NEG_INF
            else:
                value = alpha[t - 1, s]
                if s >= 1:
                    value = _log_add(value, alpha[t - 1, s - 1])
                # Skip the blank between two labels only when they differ.
                if s >= 3 and s % 2 == 1 and label != targets[offset + s // 2 - 1]:
                    value = _log_add(value, alpha[t - 1, s - 2])
                value += emission
            alpha[t, s] = value


@njit(cache=True, error_model="numpy")
def _nll(alpha, input_length, target_length):
    if input_length == 0:
        return 0.0 if target_length == 0 else np.inf
    length = 2 * target_length + 1
    log_likelihood = alpha[input_length - 1, length - 1]
    if length > 1:
        log_likelihood = _log_add(log_likelihood, alpha[input_length - 1, length - 2])
    return -log_likelihood


@njit(cache=True, error_model="numpy")
def _beta(log_probs, n, targets, offset, input_length, length, blank, beta):
    for t in range(input_length - 1, -1, -1):
        for s in range(length):
            label = _label(targets, offset, s, blank)
            emission = log_probs[t, n, label]
            if t == input_length - 1:
                value = emission if s >= length - 2 else NEG_INF
            else:
                value = beta[t + 1, s]
                if s + 1 < length:
                    value = _log_add(value, beta[t + 1, s + 1])
                if s + 2 < length and s % 2 == 1 and label != targets[offset + s // 2 + 1]:
                    value = _log_add(value, beta[t + 1, s + 2])
                value += emission
            beta[t, s] = value


@njit(cache=True, error_model="numpy")
def _scratch_width(target_lengths):
    width = 1
    for n in range(target_lengths.shape[0]):
        width = max(width, 2 * target_lengths[n] + 1)
    return width


@njit(cache=True, error_model="numpy")
def ctc_loss(log_probs, targets, offsets, input_lengths, target_lengths, blank):
    """Per-sample negative log-likelihood (N,): inf where no alignment exists."""
    steps, batch, _ = log_probs.shape
    alpha = np.empty((steps, _scratch_width(target_lengths)), dtype=log_probs.dtype)
    nll = np.empty(batch, dtype=log_probs.dtype)
    for n in range(batch):
        _alpha(log_probs, n, targets, offsets[n], input_lengths[n], 2 * target_lengths[n] + 1, blank, alpha)
        nll[n] = _nll(alpha, input_lengths[n], target_lengths[n])
    return nll


@njit(cache=True, error_model="numpy")
def ctc_loss_backward(log_probs, targets, offsets, input_lengths, target_lengths, blank, sample_scale,
                      zero_infinity):
    """d loss / d log_probs as PyTorch defines it: (exp(lp) - exp(log occupancy + nll - lp)) * scale.

    An impossible sample gives NaN for t < input_length (torch's exp(-inf + inf)), or zeros with
    zero_infinity; t >= input_length gives zeros.
    """
    steps, batch, classes = log_probs.shape
    width = _scratch_width(target_lengths)
    alpha = np.empty((steps, width), dtype=log_probs.dtype)
    beta = np.empty((steps, width), dtype=log_probs.dtype)
    occupancy = np.empty(classes, dtype=log_probs.dtype)
    grad = np.zeros_like(log_probs)
    for n in range(batch):
        input_length = input_lengths[n]
        length = 2 * target_lengths[n] + 1
        _alpha(log_probs, n, targets, offsets[n], input_length, length, blank, alpha)
        nll = _nll(alpha, input_length, target_lengths[n])
        if zero_infinity and nll == np.inf:
            continue
        _beta(log_probs, n, targets, offsets[n], input_length, length, blank, beta)
        scale = sample_scale[n]
        for t in range(input_length):
            occupancy[:] = NEG_INF
            for s in range(length):
                label = _label(targets, offsets[n], s, blank)
                occupancy[label] = _log_add(occupancy[label], alpha[t, s] + beta[t, s])
            for c in range(classes):
                lp = log_probs[t, n, c]
                grad[t, n, c] = (math.exp(lp) - math.exp(occupancy[c] + nll - lp)) * scale
    return grad
