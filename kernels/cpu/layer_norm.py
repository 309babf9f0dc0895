"""Layer normalisation in NumPy: the reference for kernels/cuda/layer_norm.py.

Inputs arrive as (rows, features) views: each row is normalised over its `features` values with a
two-pass (centred) biased variance of shifted values, like the CUDA kernels; statistics are in the input's dtype.
"""
import numpy as np


def layer_norm_forward(x2, weight, bias, eps):
    """(y (rows, features), mean (rows,), rstd (rows,)) of x2; weight, bias flat (features,) vectors or None.

    As the CUDA kernel, the row's first value is subtracted before anything is summed: the differences are
    exact (values within a factor 2 of each other) for a row whose mean is large against its spread, where
    x - mean with a rounded mean is not.
    """
    shift = x2[:, :1]
    shifted = x2 - shift
    offset = shifted.mean(axis=1, keepdims=True)
    centred = shifted - offset
    var = (centred * centred).mean(axis=1)
    rstd = (1.0 / np.sqrt(var + eps)).astype(x2.dtype)
    y = centred * rstd[:, None]
    if weight is not None:
        y *= weight[None, :]
    if bias is not None:
        y += bias[None, :]
    return y, (shift + offset)[:, 0], rstd


def layer_norm_backward(grad2, x2, weight, mean, rstd):
    """(grad_x (rows, features), column sums of grad * xhat, column sums of grad).

    With xhat = (x - mean) * rstd and gw = grad * weight, the input gradient of each row is
    rstd * (gw - mean(gw) - xhat * mean(gw * xhat)): only two row sums depend on the whole row.
    """
    features = x2.shape[1]
    xhat = (x2 - mean[:, None]) * rstd[:, None]
    grad_weighted = grad2 if weight is None else grad2 * weight[None, :]
    sum_grad = grad_weighted.sum(axis=1)
    sum_grad_xhat = (grad_weighted * xhat).sum(axis=1)
    grad_x = rstd[:, None] * (grad_weighted - (sum_grad / features)[:, None]
                              - xhat * (sum_grad_xhat / features)[:, None])
    return grad_x, (grad2 * xhat).sum(axis=0), grad2.sum(axis=0)
