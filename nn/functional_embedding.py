"""torch.nn.functional.embedding as an autograd Function over the embedding family's kernels (re-exported
by functional): a lookup of weight rows by integer indices, whose gradient sums into the rows looked up."""
import math

import numpy as np

import kernels
from kernels import backend
from kernels.embedding import is_index_dtype

from .autograd import Function, note_in_place
from .functional import _tensor
from .tensor import Tensor


class _Embedding(Function):
    def forward(self, weight, indices, padding_idx, scale_grad_by_freq):
        self.num_embeddings = weight.shape[0]
        self.options = dict(padding_idx=padding_idx, scale_grad_by_freq=scale_grad_by_freq)
        self.save_for_backward(indices)
        # a forward recorded into a CUDA graph cannot read the GPU's verdict on the indices: its backward checks
        self.indices_checked = not backend.is_capturing()
        return kernels.embedding(weight, indices, padding_idx)

    def backward(self, grad):
        # (a forward that checked these indices spares the backward a second wait for the GPU's verdict)
        # (the weight's gradient goes straight into a flat optimizer's buffer where it has one: no copy)
        return kernels.embedding_backward(grad, self.saved[0], self.num_embeddings, **self.options,
                                          check_indices=not self.indices_checked,
                                          grad_weight_out=self.gradient_out(0) if self.needs_input_grad[0] else None)


def _row_norms(rows, norm_type):
    """torch.norm(row, p) of each row, in float64 (as torch's renorm computes it)."""
    xp = backend.array_module(rows)
    magnitudes = xp.abs(rows.astype(np.float64))
    if norm_type == math.inf:
        return magnitudes.max(axis=1)
    if norm_type == -math.inf:
        return magnitudes.min(axis=1)
    if norm_type == 0:
        return (magnitudes != 0).sum(axis=1).astype(np.float64)
    if norm_type == 2:
        return xp.sqrt((magnitudes * magnitudes).sum(axis=1))
    return (magnitudes ** norm_type).sum(axis=1) ** (1.0 / norm_type)


def _renorm_rows(weight, indices, max_norm, norm_type):
    """torch's embedding_renorm_: each row that `indices` looks up whose norm exceeds max_norm is scaled, in place,
    by max_norm / (norm + 1e-7). Out-of-range indices change nothing here (the lookup then raises). It reads the
    unique indices on the host: not for use while a CUDA graph is being captured."""
    backend.device_of("embedding", weight.data, indices)   # (raises for arrays on two devices)
    if not is_index_dtype(indices.dtype):
        return
    xp = backend.array_module(indices)
    rows = xp.unique(indices.reshape(-1))
    if rows.size == 0 or int(rows[0]) < 0 or int(rows[-1]) >= weight.shape[0]:
        return
    norms = _row_norms(weight.data[rows], float(norm_type))
    over = norms > max_norm
    if bool(over.any()):
        scale = max_norm / (norms[over] + 1e-7)
        weight.data[rows[over]] *= scale[:, None].astype(weight.dtype)   # (the array itself: outside autograd)
        note_in_place(weight.data)   # a backward recorded before this (the weight saved) then raises, as torch's


def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,
              sparse=False):
    """weight[input]: integer indices (int32 or int64) of any shape -> input.shape + (embedding_dim,).

    padding_idx's row gets no gradient; max_norm renormalises the rows looked up, in place under no_grad (as
    torch, it changes `weight`); scale_grad_by_freq divides each row's gradient by its count in `input`.
    """
    if sparse:
        raise NotImplementedError("embedding: sparse=True (sparse gradients) is not supported; use sparse=False "
                                  "(dense gradients)")
    indices = input.data if isinstance(input, Tensor) else input
    if not backend.is_array(indices):
        raise TypeError(f"embedding: input must be an integer Tensor or array, got {type(input).__name__}")
    weight = _tensor(weight, "weight")
    if weight.ndim != 2:
        raise ValueError(f"embedding: weight must be 2-D (num_embeddings, embedding_dim), got shape {weight.shape}")
    if padding_idx is not None and not isinstance(padding_idx, bool) and isinstance(padding_idx, (int, np.integer)):
        if not -weight.shape[0] <= padding_idx < weight.shape[0]:
            raise ValueError(f"embedding: padding_idx must be within num_embeddings ({weight.shape[0]}), "
                             f"got {padding_idx}")
        padding_idx = int(padding_idx) % weight.shape[0]
    if max_norm is not None:
        _renorm_rows(weight, indices, float(max_norm), norm_type)
    return _Embedding.apply(weight, indices=indices, padding_idx=padding_idx,
                            scale_grad_by_freq=bool(scale_grad_by_freq))
