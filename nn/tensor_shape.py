"""nn.Tensor's torch shape and selection methods (view_as, t/mT, flip, roll, chunk/split/unbind, gather,
index_select, sort/argsort, topk), mixed into Tensor. chunk, split and unbind are slices of self (views, as
torch's: in-place writes into them reach self); sort and topk read their values with Gather, so the gradient goes
back to the positions the indices name. Indices are int64 and carry no gradient, as torch's."""
import math
import numbers

import numpy as np

from kernels import backend

from . import tensor
from .tensor_functions import check_dim
from .tensor_functions_shape import Flip, Gather, IndexSelect, Roll, Split
from .tensor_maths import MaxResult


class ShapeOps:
    def view_as(self, other):
        if not isinstance(other, tensor.Tensor):
            raise TypeError(f"view_as: expected a Tensor, got {type(other).__name__}")
        return self.view(other.shape)

    def t(self):
        """The transpose of a tensor of at most 2 dims (1-D and 0-D ones as they are)."""
        if self.ndim > 2:
            raise ValueError(f"t: expects a tensor with at most 2 dims, got shape {self.shape} (use transpose or mT)")
        return self.transpose(0, 1) if self.ndim == 2 else self.view(self.shape)

    @property
    def mT(self):
        """The last two dims swapped (a batch of matrices transposed)."""
        if self.ndim < 2:
            raise ValueError(f"mT: needs a tensor with at least 2 dims, got shape {self.shape}")
        return self.transpose(-2, -1)

    def flip(self, *dims):
        """A copy reversed along `dims` (ints, or one tuple or list of them)."""
        dims = _dim_list("flip", dims, self.ndim)
        return self.clone() if self.ndim == 0 else Flip.apply(self, dims=dims)

    def roll(self, shifts, dims=None):
        """Elements shifted by `shifts` along `dims`, wrapping round; with dims None along the flattened tensor."""
        single = isinstance(shifts, numbers.Integral)
        if not single and not (isinstance(shifts, (tuple, list)) and
                               all(isinstance(s, numbers.Integral) for s in shifts)):
            raise TypeError(f"roll: shifts must be an int or a tuple of ints, got {shifts!r}")
        shifts = (int(shifts),) if single else tuple(int(s) for s in shifts)
        if dims is None:
            if len(shifts) != 1:
                raise ValueError(f"roll: with dims=None give one shift, got {shifts}")
            return Roll.apply(self, shifts=shifts[0], dims=None)
        dims = _dim_list("roll", (dims,), self.ndim)
        if len(dims) != len(shifts):
            raise ValueError(f"roll: shifts and dims must have the same length, got {len(shifts)} and {len(dims)}")
        return self.clone() if self.ndim == 0 else Roll.apply(self, shifts=shifts, dims=dims)

    def chunk(self, chunks, dim=0):
        """At most `chunks` slices along `dim`, each ceil(size / chunks) long but the last (views, as torch's)."""
        if isinstance(chunks, bool) or not isinstance(chunks, numbers.Integral) or chunks <= 0:
            raise ValueError(f"chunk: chunks must be an int > 0, got {chunks!r}")
        dim = self._split_dim("chunk", dim)
        size = self.shape[dim]
        if size == 0:
            return self._parts(dim, [slice(0, 0)] * chunks)
        return self.split(math.ceil(size / chunks), dim)

    def split(self, split_size_or_sections, dim=0):
        """Slices along `dim`: of one length (the last may be shorter), or of the lengths listed (views)."""
        dim = self._split_dim("split", dim)
        size, sections = self.shape[dim], split_size_or_sections
        if isinstance(sections, numbers.Integral) and not isinstance(sections, bool):
            if sections <= 0 and not (sections == 0 and size == 0):
                raise ValueError(f"split: the split size must be an int > 0, got {sections}")
            sections = [min(sections, size - start) for start in range(0, size, sections)] if size else [0]
        elif not (isinstance(sections, (list, tuple)) and all(isinstance(n, numbers.Integral) and n >= 0
                                                              for n in sections)):
            raise TypeError(f"split: expected an int or a list of ints >= 0, got {split_size_or_sections!r}")
        elif sum(sections) != size:
            raise ValueError(f"split: the sizes {list(sections)} must add up to {size}, the size of dim {dim} "
                             f"(shape {self.shape})")
        starts = np.cumsum([0] + list(sections[:-1]))
        return self._parts(dim, [slice(int(start), int(start + n)) for start, n in zip(starts, sections)])

    def unbind(self, dim=0):
        """The slices at each position of `dim`, that dim removed (views, as torch's)."""
        dim = self._split_dim("unbind", dim)
        return self._parts(dim, list(range(self.shape[dim])))

    def _split_dim(self, op, dim):
        if self.ndim == 0:
            raise ValueError(f"{op}: needs a tensor with at least 1 dim, got a 0-dim tensor")
        return check_dim(op, dim, self.ndim)

    def _parts(self, dim, positions):
        parts = Split.apply(self, dim=dim, positions=positions)
        for part in parts:
            part._view_of(self)   # (a view of a copy made by permute is still not the original's memory)
        return parts

    def gather(self, dim, index):
        """Values along `dim` at the positions `index` holds (torch.gather): index is an int64 or int32 tensor with
        as many dims as self and at most self's sizes on the other dims; the result has index's shape."""
        dim = self._split_dim("gather", dim)
        index = _index_array("gather", index, self)
        if index.ndim != self.ndim or any(n > m for d, (n, m) in enumerate(zip(index.shape, self.shape))
                                          if d != dim):
            raise ValueError(f"gather: index must have {self.ndim} dims with sizes at most {self.shape} except at "
                             f"dim {dim}, got shape {tuple(index.shape)}")
        _check_bounds("gather", index, dim, self.shape[dim])
        return Gather.apply(self, index=index, dim=dim)

    def index_select(self, dim, index):
        """The slices of `dim` at the positions of a 1-D (or 0-D) int64 or int32 `index`, in its order."""
        dim = self._split_dim("index_select", dim)
        index = _index_array("index_select", index, self)
        if index.ndim > 1:
            raise ValueError(f"index_select: index must be 1-D (or 0-D), got shape {tuple(index.shape)}")
        index = index.reshape(-1)
        _check_bounds("index_select", index, dim, self.shape[dim])
        return IndexSelect.apply(self, index=index, dim=dim)

    def sort(self, dim=-1, descending=False, stable=False):
        """(values, indices) sorted along `dim`; NaN counts as the largest value (last ascending, first
        descending), as torch. The sort is always stable here (torch's stable=False leaves ties' order open)."""
        if self.ndim == 0:
            check_dim("sort", dim, 0)
            return MaxResult(self.clone(), tensor.Tensor(self.xp.zeros((), dtype=np.int64)))
        dim = check_dim("sort", dim, self.ndim)
        indices = _argsort(self.data, dim, descending)
        return MaxResult(Gather.apply(self, index=indices, dim=dim), tensor.Tensor(indices))

    def argsort(self, dim=-1, descending=False, stable=False):
        return self.sort(dim, descending, stable).indices

    def topk(self, k, dim=-1, largest=True, sorted=True):
        """(values, indices) of the k largest (or smallest) along `dim`, in order (also for sorted=False, which
        leaves the order open in torch); NaN counts as the largest value."""
        size = self.shape[check_dim("topk", dim, self.ndim)] if self.ndim else 1
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 0 <= k <= size:
            raise ValueError(f"topk: k must be an int from 0 to {size} (the size of dim {dim}), got {k!r}")
        if self.ndim == 0:
            return self.sort()
        dim = check_dim("topk", dim, self.ndim)
        order = _argsort(self.data, dim, descending=largest)
        indices = self.xp.ascontiguousarray(order[(slice(None),) * dim + (slice(0, k),)])
        return MaxResult(Gather.apply(self, index=indices, dim=dim), tensor.Tensor(indices))


def _dim_list(op, dims, ndim):
    """Dims given as ints or one tuple/list of ints, each checked and made non-negative, none twice."""
    dims = tuple(dims[0]) if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else dims
    checked = tuple(check_dim(op, d, ndim) for d in dims)
    if len(set(checked)) != len(checked):
        raise ValueError(f"{op}: a dim appears more than once in {dims}")
    return checked


def _index_array(op, index, like):
    """The raw int64/int32 array of an index Tensor (or array), on `like`'s device."""
    raw = tensor._raw(index)
    if not backend.is_array(raw):
        raise TypeError(f"{op}: index must be an int64 Tensor, got {type(index).__name__}")
    if raw.dtype not in (np.int64, np.int32):
        raise TypeError(f"{op}: index must be an int64 or int32 tensor, got dtype {raw.dtype}")
    if backend.is_gpu_array(raw) != backend.is_gpu_array(like.data):
        raise ValueError(f"{op}: index is on {'cuda' if backend.is_gpu_array(raw) else 'cpu'} but the tensor is on "
                         f"{like.device}; move it with .to({like.device!r}) first")
    return raw


def _check_bounds(op, index, dim, size):
    """Every position within [0, size), as torch (no negative positions). Reads the index on the host: skipped
    while a CUDA graph is being captured (no synchronisation allowed there)."""
    if index.size == 0 or backend.is_capturing():
        return
    low, high = int(index.min()), int(index.max())
    if low < 0 or high >= size:
        raise IndexError(f"{op}: index {low if low < 0 else high} is out of bounds for dim {dim} of size {size}")


def _argsort(array, dim, descending):
    """Stable argsort along dim; descending keeps equal values in their order too, by sorting the reversed array
    ascending and reading it backwards. NaNs sort last ascending (NumPy's and CuPy's rule), so first descending."""
    xp = backend.array_module(array)
    kind = {"kind": "stable"} if xp is np else {}   # CuPy's sort is always stable
    if xp is not np and array.ndim == 1:
        # (CuPy sorts a 1-D array by bits, radix-style: a NaN with its sign bit set, as x86's 0/0 makes, would come
        # first; its multi-dimensional sort compares with NaNs last, like NumPy)
        return _argsort(array.reshape(1, -1), 1, descending).reshape(-1)
    if not descending:
        return xp.argsort(array, axis=dim, **kind)
    order = xp.argsort(xp.flip(array, dim), axis=dim, **kind)
    return xp.ascontiguousarray((array.shape[dim] - 1) - xp.flip(order, dim))
