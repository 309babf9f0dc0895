"""CTC loss in NumPy, in log space and vectorised over the batch: the reference for kernels/cuda/ctc.py.

Every sample's targets are expanded to the extended label sequence (blank, l1, blank, l2, ..., blank)
of length 2*S_n + 1; alpha and beta are computed over it with a Python loop over time.
Targets arrive as a flat int array with per-sample offsets (padded or concatenated alike).
"""
import numpy as np


def extended_labels(targets, offsets, target_lengths, blank):
    """(N, 2*max(S_n)+1) extended labels (blank-padded) and the mask of allowed skip transitions."""
    batch = len(target_lengths)
    width = 2 * int(target_lengths.max(initial=0)) + 1
    labels = np.full((batch, width), blank, dtype=np.int64)
    for n in range(batch):
        labels[n, 1:2 * target_lengths[n]:2] = targets[offsets[n]:offsets[n] + target_lengths[n]]
    positions = np.arange(width)
    # s -> s+2 jumps over a blank only between two different labels.
    skip = np.zeros((batch, width), dtype=bool)
    skip[:, 2:] = (positions[2:] % 2 == 1) & (labels[:, 2:] != labels[:, :-2])
    return labels, skip


def _log_sum3(a, b, c):
    m = np.maximum(np.maximum(a, b), c)
    finite = np.isfinite(m)
    safe = np.where(finite, m, 0.0)
    with np.errstate(under="ignore"):
        total = np.exp(a - safe) + np.exp(b - safe) + np.exp(c - safe)
    with np.errstate(divide="ignore"):
        return np.where(finite, safe + np.log(total), m)


def ctc_alpha_beta(log_probs, labels, skip, input_lengths, target_lengths, need_beta=True):
    """Forward (alpha) and backward (beta) variables, (T, N, W) each, both including the emission at t;
    and the per-sample negative log-likelihood."""
    steps, batch, _ = log_probs.shape
    width = labels.shape[1]
    dtype = log_probs.dtype
    neg_inf = dtype.type(-np.inf)
    emissions = log_probs[:, np.arange(batch)[:, None], labels]            # (T, N, W)
    lengths = 2 * target_lengths + 1
    valid = np.arange(width)[None, :] < lengths[:, None]
    column = np.full((batch, 1), neg_inf, dtype)
    alpha = np.full((steps, batch, width), neg_inf, dtype)
    for t in range(steps):
        if t == 0:
            new = np.where(np.arange(width)[None, :] < 2, emissions[0], neg_inf)
        else:
            previous = alpha[t - 1]
            one_back = np.concatenate([column, previous[:, :-1]], axis=1)
            two_back = np.where(skip, np.concatenate([column, column, previous[:, :-2]], axis=1)[:, :width], neg_inf)
            new = _log_sum3(previous, one_back, two_back) + emissions[t]
        alpha[t] = np.where(valid & (t < input_lengths)[:, None], new, neg_inf)

    nll = np.empty(batch, dtype)
    for n in range(batch):
        if input_lengths[n] == 0:
            nll[n] = 0.0 if target_lengths[n] == 0 else np.inf
            continue
        last = alpha[input_lengths[n] - 1, n]
        end = lengths[n]
        nll[n] = -np.logaddexp(last[end - 1], last[end - 2] if end > 1 else neg_inf)
    if not need_beta:
        return alpha, None, nll

    beta = np.full((steps, batch, width), neg_inf, dtype)
    skip_ahead = np.concatenate([skip[:, 2:], np.zeros((batch, 2), bool)], axis=1)[:, :width]
    final = (np.arange(width)[None, :] >= lengths[:, None] - 2) & valid
    for t in range(steps - 1, -1, -1):
        starts = (t == input_lengths - 1)[:, None]
        inside = (t < input_lengths - 1)[:, None]
        if t + 1 < steps:
            following = beta[t + 1]
            one_ahead = np.concatenate([following[:, 1:], column], axis=1)
            two_ahead = np.where(skip_ahead, np.concatenate([following[:, 2:], column, column], axis=1)[:, :width],
                                 neg_inf)
            recursed = _log_sum3(following, one_ahead, two_ahead) + emissions[t]
        else:
            recursed = np.full((batch, width), neg_inf, dtype)
        beta[t] = np.where(starts & final, emissions[t], np.where(inside & valid, recursed, neg_inf))
    return alpha, beta, nll


def ctc_gradient(log_probs, labels, alpha, beta, nll, input_lengths, sample_scale, zero_infinity):
    """d loss / d log_probs as PyTorch defines it: (exp(lp) - exp(log occupancy + nll - lp)) * scale."""
    steps, batch, classes = log_probs.shape
    dtype = log_probs.dtype
    both = alpha + beta                                                  # (T, N, W)
    peak = both.max(axis=2, keepdims=True)
    finite_peak = np.where(np.isfinite(peak), peak, 0.0)
    with np.errstate(under="ignore"):
        weights = np.exp(both - finite_peak)                            # -inf -> 0
    one_hot = (labels[:, :, None] == np.arange(classes)[None, None, :]).astype(dtype)   # (N, W, C)
    occupancy = np.matmul(weights.transpose(1, 0, 2), one_hot).transpose(1, 0, 2)   # (T, N, C), batched BLAS
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_occupancy = np.log(occupancy) + finite_peak
        grad = np.exp(log_probs) - np.exp(log_occupancy + nll[None, :, None] - log_probs)
    grad *= sample_scale[None, :, None]
    infinite = ~np.isfinite(nll)
    if zero_infinity:
        grad[:, infinite, :] = 0.0
    else:
        grad[:, infinite, :] = np.nan   # torch: exp(-inf + inf - lp)
    grad[np.arange(steps)[:, None] >= input_lengths[None, :]] = 0.0
    return grad.astype(dtype, copy=False)
