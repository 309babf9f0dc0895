"""nn.Tensor's reshaping methods (reshape/view, flatten, permute/transpose/T, unsqueeze/squeeze, contiguous,
expand/expand_as, repeat), mixed into Tensor. reshape is a view; permute and expand are copies here where torch
gives views, which `_copy_of_view` records (in-place ops refuse such a copy, since the write would not reach the
tensor it came from; contiguous() clones it so that it may be written into)."""
import numbers

from . import tensor
from .tensor_functions import Expand, Permute, Repeat, Reshape, check_dim


class ReshapeOps:
    def reshape(self, *shape):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        # (a reshape of a copy made by permute is still not the original's memory)
        return Reshape.apply(self, shape=tuple(shape))._view_of(self)

    view = reshape

    def flatten(self, start_dim=0, end_dim=-1):
        start, end = check_dim("flatten", start_dim, self.ndim), check_dim("flatten", end_dim, self.ndim)
        if self.ndim == 0:   # as torch: one element, shape (1,)
            return self.reshape(1)
        if start > end:
            raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} for a tensor of shape "
                             f"{self.shape}")
        return self.reshape(self.shape[:start] + (-1,) + self.shape[end + 1:])

    def permute(self, *dims):
        dims = dims[0] if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else dims
        # non-negative dims: the backward inverts the permutation with argsort
        dims = tuple(check_dim("permute", d, self.ndim) for d in dims)
        if sorted(dims) != list(range(self.ndim)):
            raise ValueError(f"permute: expected an ordering of each of the {self.ndim} dims of a tensor of shape "
                             f"{self.shape} once, got {dims}")
        result = Permute.apply(self, dims=dims)
        result._copy_of_view = "permute/transpose"
        return result

    def transpose(self, dim0, dim1):
        dims = list(range(self.ndim))
        dim0, dim1 = check_dim("transpose", dim0, self.ndim), check_dim("transpose", dim1, self.ndim)
        if self.ndim == 0:   # as torch: 0 and -1 are the one dim a 0-d tensor has
            return self.permute(())
        dims[dim0], dims[dim1] = dims[dim1], dims[dim0]
        return self.permute(dims)

    @property
    def T(self):
        return self.permute(tuple(reversed(range(self.ndim))))

    def unsqueeze(self, dim):
        if isinstance(dim, bool) or not isinstance(dim, numbers.Integral) or not -self.ndim - 1 <= dim <= self.ndim:
            raise IndexError(f"unsqueeze: dim {dim!r} is out of range for a tensor of {self.ndim} dims (expected an "
                             f"int in [{-self.ndim - 1}, {self.ndim}])")
        dim = int(dim) % (self.ndim + 1)
        return self.reshape(self.shape[:dim] + (1,) + self.shape[dim:])

    def squeeze(self, dim=None):
        """Without the size-1 dims among `dim` (an int or a tuple; every dim when None), as torch."""
        dims = range(self.ndim) if dim is None else \
            [check_dim("squeeze", d, self.ndim) for d in (dim if isinstance(dim, (tuple, list)) else (dim,))]
        dropped = {d for d in dims if self.ndim and self.shape[d] == 1}
        if not dropped:
            return self
        return self.reshape(tuple(size for d, size in enumerate(self.shape) if d not in dropped))

    def contiguous(self):
        """Self; a copy that permute or expand made (torch's contiguous() copies there) is cloned, so that it
        may be written into."""
        return self if self._copy_of_view is None else self.clone()

    def expand(self, *sizes):
        """Broadcast to `sizes` (-1 keeps a dim, new dims go in front), as torch; a copy here, not a view."""
        sizes = _sizes("expand", sizes)
        new = len(sizes) - self.ndim
        if new < 0:
            raise ValueError(f"expand: needs at least {self.ndim} sizes for a tensor of shape {self.shape}, got {sizes}")
        shape = []
        for i, size in enumerate(sizes):
            old = self.shape[i - new] if i >= new else None
            size = old if size == -1 and old is not None else size
            if size < 0 or old not in (None, 1, size):
                raise ValueError(f"expand: cannot expand shape {self.shape} to {sizes}: at dim {i} the size must "
                                 f"be {'>= 0 (-1 only for an existing dim)' if old is None else f'{old} (or -1)'}")
            shape.append(size)
        result = Expand.apply(self, shape=tuple(shape))
        result._copy_of_view = "expand"
        return result

    def expand_as(self, other):
        if not isinstance(other, tensor.Tensor):
            raise TypeError(f"expand_as: expected a Tensor, got {type(other).__name__}")
        return self.expand(other.shape)

    def repeat(self, *repeats):
        """Tile (torch.repeat): one count per dim at least; extra leading counts add dims."""
        repeats = _sizes("repeat", repeats)
        if len(repeats) < self.ndim or any(r < 0 for r in repeats):
            raise ValueError(f"repeat: needs at least {self.ndim} counts >= 0 for a tensor of shape {self.shape}, "
                             f"got {repeats}")
        return Repeat.apply(self, repeats=repeats)


def _sizes(op, sizes):
    """Sizes given as ints or as one tuple/list of ints."""
    sizes = tuple(sizes[0]) if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)) else sizes
    if not all(isinstance(n, numbers.Integral) and not isinstance(n, bool) for n in sizes):
        raise TypeError(f"{op}: sizes must be ints, got {sizes!r}")
    return tuple(int(n) for n in sizes)
