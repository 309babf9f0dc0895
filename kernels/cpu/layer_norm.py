"""Layer normalisation in NumPy: the reference for kernels/cuda/layer_norm.py.

Inputs arrive as (rows, features) views: each row is normalised over its `features` values with a
two-pass (centred) biased variance of shifted values, like the CUDA kernels; statistics are in the input's dtype.
"""
import numpy as np


def layer_norm_forward(x2, weight, bias, eps):
    """(y (rows, features), mean (rows,), rstd (rows,)) of x2; weight, bias flat (features,) vectors or None.

    As the CUDA kernel, the row's first value is subtracted before anything is summed: the differences are
    exact (values within a factor 2 of each other) for a row whose mean is large against its spread, where
    x - mean with a rounded mean is not. One temporary, updated in place (the passes are memory-bound).
    """
    features = x2.shape[1]
    centred = x2 - x2[:, :1]
    offset = centred.mean(axis=1)
    mean = x2[:, 0] + offset
    centred -= offset[:, None]
    var = np.einsum("ij,ij->i", centred, centred, dtype=np.float64) / features   # (einsum sums serially: in float64)
    rstd = (1.0 / np.sqrt(var + eps)).astype(x2.dtype)
    centred *= rstd[:, None]
    if weight is not None:
        centred *= weight[None, :]
    if bias is not None:
        centred += bias[None, :]
    return centred, mean, rstd


def layer_norm_backward(grad2, x2, weight, mean, rstd, need_input=True, need_columns=True):
    """(grad_x (rows, features), column sums of grad * xhat, column sums of grad); None for grad_x without
    need_input, and for both sums without need_columns.

    With xhat = (x - mean) * rstd and gw = grad * weight, the input gradient of each row is
    rstd * (gw - mean(gw) - xhat * mean(gw * xhat)): only two row sums depend on the whole row.
    """
    features = x2.shape[1]
    xhat = x2 - mean[:, None]
    xhat *= rstd[:, None]
    grad_weight, grad_bias = (np.einsum("ij,ij->j", grad2, xhat), grad2.sum(axis=0)) if need_columns else (None, None)
    if not need_input:
        return None, grad_weight, grad_bias
    grad_x = grad2 * weight[None, :] if weight is not None else grad2.copy()   # gw, becoming grad_x in place
    mean_grad = grad_x.sum(axis=1) / features
    mean_grad_xhat = np.einsum("ij,ij->i", grad_x, xhat) / features
    grad_x -= mean_grad[:, None]
    xhat *= mean_grad_xhat[:, None]
    grad_x -= xhat
    grad_x *= rstd[:, None]
    return grad_x, grad_weight, grad_bias
