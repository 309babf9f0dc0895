"""The Functions behind Tensor's flip, roll, chunk/split/unbind, gather and index_select (nn/tensor_shape.py;
sort and topk read their values with Gather): forward on the raw arrays of either device, backward moving the gradient back to
where each value came from, repeated positions adding up."""
from kernels import backend

from .autograd import Function
from .tensor_functions import scatter_add


class Flip(Function):
    def forward(self, a, dims):
        self.dims = dims
        xp = backend.array_module(a)
        return xp.ascontiguousarray(xp.flip(a, dims))

    def backward(self, grad):
        xp = backend.array_module(grad)
        return xp.ascontiguousarray(xp.flip(grad, self.dims))


class Roll(Function):
    """Elements shifted along `dims` (wrapping round), or along the flattened tensor when dims is None."""
    def forward(self, a, shifts, dims):
        self.shifts, self.dims = shifts, dims
        return backend.array_module(a).roll(a, shifts, axis=dims)

    def backward(self, grad):
        back = -self.shifts if isinstance(self.shifts, int) else tuple(-s for s in self.shifts)
        return backend.array_module(grad).roll(grad, back, axis=self.dims)


class Split(Function):
    """Views of `a` along `dim` at each of `positions` (slices for chunk and split, ints for unbind), as torch's:
    in-place writes into one reach a. One node for all the parts, so the backward fills one gradient array (a
    node per part would each make an array of a's size)."""
    def forward(self, a, dim, positions):
        self.shape, self.dtype, self.dim, self.positions = a.shape, a.dtype, dim, positions
        return tuple(a[(slice(None),) * dim + (position, Ellipsis)] for position in positions)

    def backward(self, *grads):
        xp = backend.array_module(next(g for g in grads if g is not None))
        full = xp.zeros(self.shape, dtype=self.dtype)
        for position, grad in zip(self.positions, grads):
            if grad is not None:
                full[(slice(None),) * self.dim + (position,)] = grad
        return full


class Gather(Function):
    """out[..., i, ...] = a[..., index[..., i, ...], ...] along `dim` (torch.gather): index has a's number of
    dims and at most a's sizes on the other dims; out has index's shape."""
    def forward(self, a, index, dim):
        self.shape, self.dim = a.shape, dim
        self.save_for_backward(index)
        part = a[tuple(slice(None) if d == dim else slice(0, n) for d, n in enumerate(index.shape))]
        return backend.array_module(a).take_along_axis(part, index, axis=dim)

    def backward(self, grad):
        (index,) = self.saved
        xp = backend.array_module(grad)
        full = xp.zeros(self.shape, dtype=grad.dtype)
        positions = tuple(index if d == self.dim else
                          xp.arange(n).reshape([-1 if e == d else 1 for e in range(index.ndim)])
                          for d, n in enumerate(index.shape))
        scatter_add(full, positions, grad)
        return full


class IndexSelect(Function):
    """The slices at the positions of a 1-D `index` along `dim` (torch.index_select)."""
    def forward(self, a, index, dim):
        self.shape, self.dim = a.shape, dim
        self.save_for_backward(index)
        return backend.array_module(a).take(a, index, axis=dim)

    def backward(self, grad):
        (index,) = self.saved
        full = backend.array_module(grad).zeros(self.shape, dtype=grad.dtype)
        scatter_add(full, (slice(None),) * self.dim + (index,), grad)
        return full
