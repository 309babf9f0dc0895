"""Batch normalisation in NumPy: the reference for kernels/cuda/norm.py.

Inputs arrive as (N, C, L) views (L = product of the spatial sizes, 1 for 2-D input); statistics are
per channel over the N*L values, with a two-pass variance like the CUDA kernels.
"""
import numpy as np


def batch_norm_statistics(x3, eps):
    """Per-channel batch mean, biased variance and 1/sqrt(var + eps) of x3 (N, C, L)."""
    mean = x3.mean(axis=(0, 2))
    centred = x3 - mean[None, :, None]
    var = (centred * centred).mean(axis=(0, 2))
    return mean, var, (1.0 / np.sqrt(var + eps)).astype(x3.dtype)


def update_running_stats(running_mean, running_var, mean, var, count, momentum):
    """PyTorch's rule: running = (1 - momentum) * running + momentum * batch (unbiased variance)."""
    if running_mean is not None:
        running_mean *= 1.0 - momentum
        running_mean += momentum * mean
    if running_var is not None:
        running_var *= 1.0 - momentum
        running_var += momentum * var * (count / (count - 1))


def normalise(x3, mean, invstd, weight, bias):
    scale = invstd if weight is None else invstd * weight
    y = (x3 - mean[None, :, None]) * scale[None, :, None]
    if bias is not None:
        y += bias[None, :, None]
    return y


def batch_norm_backward(grad3, x3, weight, mean, invstd, training):
    """(grad_x (N, C, L), sum of grad * xhat per channel, sum of grad per channel). (A fused ReLU's mask is
    applied to grad3 by the caller, kernels/norm.py.)"""
    xhat = (x3 - mean[None, :, None]) * invstd[None, :, None]
    sum_grad = grad3.sum(axis=(0, 2))
    sum_grad_xhat = (grad3 * xhat).sum(axis=(0, 2))
    scale = invstd if weight is None else invstd * weight
    if training:
        count = x3.shape[0] * x3.shape[2]
        grad_x = scale[None, :, None] * (grad3 - (sum_grad / count)[None, :, None]
                                         - xhat * (sum_grad_xhat / count)[None, :, None])
    else:
        grad_x = grad3 * scale[None, :, None]
    return grad_x, sum_grad_xhat, sum_grad
