"""nn.Embedding: torch's lookup-table layer over nn.functional's embedding (functional_embedding.py), with torch's
constructor arguments, from_pretrained, parameter name, default initialisation and repr."""
import numpy as np

from kernels import backend

from . import functional as F
from . import init
from .layers import _dtype, _Layer, _on_device
from .module import Parameter
from .tensor import Tensor


class Embedding(_Layer):
    """A lookup table of num_embeddings rows of embedding_dim values, indexed by integer Tensors or arrays (int32
    or int64) of any shape: output input.shape + (embedding_dim,). torch's arguments and defaults: the weight is
    drawn from N(0, 1) with the padding_idx row zeroed (that row also gets no gradient); max_norm renormalises
    the rows looked up in place; sparse gradients are not supported."""

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, max_norm=None, norm_type=2.0,
                 scale_grad_by_freq=False, sparse=False, _weight=None, _freeze=False, device=None, dtype=None):
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        for name, value in (("num_embeddings", num_embeddings), ("embedding_dim", embedding_dim)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"{self.label()}: {name} must be an integer >= 0, got {type(value).__name__} {value!r}")
            if value < 0:
                raise ValueError(f"{self.label()}: {name} must be an integer >= 0, got {value}")
        if padding_idx is not None:
            if isinstance(padding_idx, bool) or not isinstance(padding_idx, (int, np.integer)):
                raise TypeError(f"{self.label()}: padding_idx must be an integer row index or None, got "
                                f"{type(padding_idx).__name__} {padding_idx!r}")
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(f"{self.label()}: padding_idx must be within [-{num_embeddings}, {num_embeddings}) "
                                 f"(num_embeddings), got {padding_idx}")
            padding_idx = padding_idx % num_embeddings
        if sparse:
            raise NotImplementedError(f"{self.label()}: sparse=True (sparse gradients) is not supported; use "
                                      f"sparse=False (dense gradients)")
        self.padding_idx, self.max_norm, self.norm_type = padding_idx, max_norm, norm_type
        self.scale_grad_by_freq, self.sparse = scale_grad_by_freq, sparse
        if _weight is None:
            self.weight = Parameter(np.empty((num_embeddings, embedding_dim), _dtype(dtype)), requires_grad=not _freeze)
            self.reset_parameters()
            _on_device(self, device)   # (a given _weight stays where it is, as torch's)
        else:
            weight = _weight.data if isinstance(_weight, Tensor) else _weight
            if not backend.is_array(weight) or tuple(weight.shape) != (num_embeddings, embedding_dim):
                shape = tuple(weight.shape) if backend.is_array(weight) else type(weight).__name__
                raise ValueError(f"{self.label()}: _weight must be an array of shape ({num_embeddings}, "
                                 f"{embedding_dim}), got {shape}")
            _dtype(weight.dtype)
            self.weight = Parameter(weight, requires_grad=not _freeze)   # the same memory, as torch's Parameter

    def reset_parameters(self):
        init.normal_(self.weight)
        if self.padding_idx is not None:
            self.weight.data[self.padding_idx] = 0

    @classmethod
    def from_pretrained(cls, embeddings, freeze=True, padding_idx=None, max_norm=None, norm_type=2.0,
                        scale_grad_by_freq=False, sparse=False):
        """An Embedding whose weight is `embeddings` (2-D, memory shared), frozen unless freeze=False; the padding
        row is kept as given."""
        if not (isinstance(embeddings, Tensor) or backend.is_array(embeddings)) or embeddings.ndim != 2:
            shape = embeddings.shape if hasattr(embeddings, "shape") else type(embeddings).__name__
            raise ValueError(f"Embedding.from_pretrained: embeddings must be a 2-D Tensor or array, got {shape}")
        rows, columns = embeddings.shape
        return cls(rows, columns, _weight=embeddings, _freeze=freeze, padding_idx=padding_idx, max_norm=max_norm,
                   norm_type=norm_type, scale_grad_by_freq=scale_grad_by_freq, sparse=sparse)

    def label(self):
        return f"Embedding({self.num_embeddings}, {self.embedding_dim})"

    def extra_repr(self):
        text = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            text += f", padding_idx={self.padding_idx}"
        if self.max_norm is not None:
            text += f", max_norm={self.max_norm}"
        if self.norm_type != 2:
            text += f", norm_type={self.norm_type}"
        if self.scale_grad_by_freq is not False:
            text += f", scale_grad_by_freq={self.scale_grad_by_freq}"
        if self.sparse is not False:
            text += ", sparse=True"
        return text

    def forward(self, input):
        return F.embedding(self._input(input), self.weight, self.padding_idx, self.max_norm, self.norm_type,
                           self.scale_grad_by_freq, self.sparse)
