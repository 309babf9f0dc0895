"""The Functions behind Tensor's arithmetic and shape methods (nn/tensor.py): forward on the raw
arrays of either device, backward returning one gradient per input (broadcasting undone)."""
import numpy as np

from kernels import backend

from .autograd import Function


def _dims(dim):
    return (dim,) if isinstance(dim, int) else tuple(dim)


def reduced_axes(op, dim, ndim):
    """A reduction's `dim` as a tuple of non-negative axes, or None for every axis: None, () and [] (as torch),
    and any dim of a 0-d tensor."""
    if dim is None:
        return None
    axes = tuple(check_dim(op, d, ndim) for d in (dim if isinstance(dim, (tuple, list)) else (dim,)))
    if len(set(axes)) != len(axes):
        raise ValueError(f"{op}: a dim appears more than once in {dim!r}")
    return axes if axes and ndim else None


def check_dim(op, dim, ndim):
    """`dim` as a non-negative int for a tensor of `ndim` dims (a 0-dim tensor takes 0 and -1, as torch)."""
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"{op}: dim must be an int, got {type(dim).__name__}")
    bound = max(ndim, 1)
    if not -bound <= dim < bound:
        raise IndexError(f"{op}: dim {dim} is out of range for a tensor of {ndim} dims "
                         f"(expected in [{-bound}, {bound - 1}])")
    return int(dim) % bound


def scatter_add(full, index, values):
    """full[index] += values, with repeated positions adding up (NumPy's add.at, CuPy's scatter_add)."""
    if backend.is_gpu_array(full):
        import cupyx
        backend.alert_not_deterministic("scatter_add (the backward of indexing with integer arrays, index_select, "
                                        "gather): atomic adds")
        cupyx.scatter_add(full, index, values)
    else:
        np.add.at(full, index, values)


def unbroadcast(grad, shape):
    """Sum `grad` down to `shape`, undoing NumPy broadcasting."""
    if grad.shape == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, size in enumerate(shape) if size == 1 and grad.shape[i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad


class Add(Function):
    def forward(self, a, b):
        self.shapes = (a.shape, b.shape)
        return a + b

    def backward(self, grad):
        return unbroadcast(grad, self.shapes[0]), unbroadcast(grad, self.shapes[1])


class Sub(Function):
    def forward(self, a, b):
        self.shapes = (a.shape, b.shape)
        return a - b

    def backward(self, grad):
        return unbroadcast(grad, self.shapes[0]), unbroadcast(-grad, self.shapes[1])


class Mul(Function):
    """Each operand is kept only for the other's gradient, as torch keeps them."""

    def forward(self, a, b):
        need_a, need_b = self.needs_input_grad
        self.shapes = (a.shape, b.shape)
        self.save_for_backward(a if need_b else None, b if need_a else None)
        return a * b

    def backward(self, grad):
        (a, b), (need_a, need_b) = self.saved, self.needs_input_grad
        return (unbroadcast(grad * b, self.shapes[0]) if need_a else None,
                unbroadcast(grad * a, self.shapes[1]) if need_b else None)


class Div(Function):
    def forward(self, a, b):
        need_a, need_b = self.needs_input_grad
        self.shapes = (a.shape, b.shape)
        self.save_for_backward(a if need_b else None, b if need_a or need_b else None)
        return a / b

    def backward(self, grad):
        (a, b), (need_a, need_b) = self.saved, self.needs_input_grad
        return (unbroadcast(grad / b, self.shapes[0]) if need_a else None,
                unbroadcast(-grad * a / (b * b), self.shapes[1]) if need_b else None)


class Pow(Function):
    def forward(self, a, exponent):
        self.exponent = exponent
        self.save_for_backward(a)
        return a ** a.dtype.type(exponent)

    def backward(self, grad):
        (a,) = self.saved
        if self.exponent == 0:  # torch: zero, also where a ** -1 is infinite
            return backend.array_module(grad).zeros_like(grad)
        return grad * a.dtype.type(self.exponent) * a ** a.dtype.type(self.exponent - 1)


class PowTensor(Function):
    """a ** b with a tensor exponent (and base ** x through Tensor.__rpow__), broadcasting. As torch, a zero
    exponent gives a no gradient and a zero base with a non-negative exponent gives b none (not 0 * log 0)."""
    def forward(self, a, b):
        out = backend.array_module(a).power(a, b)
        self.save_for_backward(a, b, out)
        return out

    def backward(self, grad):
        a, b, out = self.saved
        xp, zero = backend.array_module(grad), grad.dtype.type(0)
        grad_a = grad_b = None
        with np.errstate(divide="ignore", invalid="ignore"):  # log(0), log(negative): as torch, -inf and NaN
            if self.needs_input_grad[0]:
                grad_a = unbroadcast(xp.where(b == 0, zero, grad * b * xp.power(a, b - 1)), a.shape)
            if self.needs_input_grad[1]:
                grad_b = unbroadcast(xp.where((a == 0) & (b >= 0), zero, grad * out * xp.log(a)), b.shape)
        return grad_a, grad_b


class Exp(Function):
    def forward(self, a):
        out = backend.array_module(a).exp(a)
        self.save_for_backward(out)
        return out

    def backward(self, grad):
        return grad * self.saved[0]


class Log(Function):
    def forward(self, a):
        self.save_for_backward(a)
        return backend.array_module(a).log(a)

    def backward(self, grad):
        return grad / self.saved[0]


class Abs(Function):
    def forward(self, a):
        self.save_for_backward(a)
        return backend.array_module(a).abs(a)

    def backward(self, grad):
        a, xp = self.saved[0], backend.array_module(grad)
        return xp.where(xp.isnan(a), grad.dtype.type(0), grad * xp.sign(a))   # as torch: no gradient at NaN


class Sum(Function):
    def forward(self, a, dim, keepdim):
        self.shape = a.shape
        self.axes = reduced_axes("sum", dim, a.ndim)
        return a.sum(axis=self.axes, keepdims=keepdim)

    def backward(self, grad):
        xp = backend.array_module(grad)
        if self.axes is not None:
            grad = xp.expand_dims(grad, self.axes) if grad.ndim < len(self.shape) else grad
        return xp.broadcast_to(grad, self.shape).copy()


class Max(Function):
    """The maximum of all elements (its gradient shared evenly by the ties, NaNs tying with a NaN result, as
    torch's max()) or along `dim` (its gradient to the element argmax picks: the first, as torch's max(dim))."""
    reduce, pick = "max", "argmax"

    def forward(self, a, dim, keepdim):
        xp = backend.array_module(a)
        self.dim, self.keepdim = dim, keepdim
        if dim is None:
            out = getattr(a, self.reduce)()
            self.save_for_backward((a == out) | (xp.isnan(a) & xp.isnan(out)))
            return out
        self.dim = dim % a.ndim
        picked = xp.expand_dims(getattr(xp, self.pick)(a, axis=self.dim), self.dim)
        positions = xp.arange(a.shape[self.dim]).reshape([-1 if d == self.dim else 1 for d in range(a.ndim)])
        self.save_for_backward(positions == picked)
        return getattr(a, self.reduce)(axis=self.dim, keepdims=keepdim)

    def backward(self, grad):
        (chosen,) = self.saved
        xp = backend.array_module(grad)
        if self.dim is None:
            grad = grad / chosen.sum().astype(grad.dtype)
        elif not self.keepdim:
            grad = xp.expand_dims(grad, self.dim)
        return xp.where(chosen, grad, grad.dtype.type(0))


class Min(Max):
    reduce, pick = "min", "argmin"


class Reshape(Function):
    def forward(self, a, shape):
        self.shape = a.shape
        return a.reshape(shape)

    def backward(self, grad):
        return grad.reshape(self.shape)


class Permute(Function):
    def forward(self, a, dims):
        self.dims = dims   # non-negative (Tensor.permute): argsort inverts them
        return a.transpose(dims).copy()   # (ascontiguousarray would make a 0-d array 1-d)

    def backward(self, grad):
        inverse = tuple(np.argsort(self.dims))
        return grad.transpose(inverse).copy()


class Index(Function):
    def forward(self, a, index):
        self.shape, self.dtype = a.shape, a.dtype
        self.index = index  # Tensors in it were unwrapped by Tensor.__getitem__
        out = a[self.index]   # ints and slices: a view, as torch's; masks and positions: a copy
        if not backend.is_array(out):   # NumPy gives a scalar for one element: a[i, j, ...] is its 0-d view
            out = a[(self.index if isinstance(self.index, tuple) else (self.index,)) + (Ellipsis,)]
        return out

    def backward(self, grad):
        full = backend.array_module(grad).zeros(self.shape, dtype=self.dtype)
        parts = self.index if isinstance(self.index, tuple) else (self.index,)
        if all(isinstance(p, (slice, type(None), type(Ellipsis))) or
               isinstance(p, (int, np.integer)) and not isinstance(p, bool) or
               backend.is_array(p) and p.dtype == bool for p in parts):
            full[self.index] = grad   # ints, slices and masks reach each element once: no scatter needed
        else:
            scatter_add(full, self.index, grad)
        return full


class Concat(Function):
    def forward(self, *arrays, dim):
        self.sizes = [a.shape[dim] for a in arrays]
        self.dim = dim
        return backend.array_module(arrays[0]).concatenate(arrays, axis=dim)

    def backward(self, grad):
        xp = backend.array_module(grad)
        edges = np.cumsum(self.sizes)[:-1]
        return tuple(xp.ascontiguousarray(part) for part in xp.split(grad, edges, axis=self.dim))


class Stack(Function):
    def forward(self, *arrays, dim):
        self.dim = dim
        return backend.array_module(arrays[0]).stack(arrays, axis=dim)

    def backward(self, grad):
        xp = backend.array_module(grad)
        count = grad.shape[self.dim]
        return tuple(xp.take(grad, i, axis=self.dim) for i in range(count))   # (take copies; a 0-d part stays 0-d)


class ToDevice(Function):
    def forward(self, a, device):
        self.source = "cuda" if backend.is_gpu_array(a) else "cpu"
        return backend.to_device(a, device)

    def backward(self, grad):
        return backend.to_device(grad, self.source)


class Clone(Function):
    def forward(self, a):
        return a.copy()

    def backward(self, grad):
        return grad


class Cast(Function):
    """A copy in another floating dtype; the gradient goes back in the source's dtype."""
    def forward(self, a, dtype):
        self.source = a.dtype
        return a.astype(dtype)

    def backward(self, grad):
        return grad.astype(self.source)


class Clamp(Function):
    """min(max(a, low), high), NaN kept; the gradient passes where low <= a <= high (bounds included, NaN not),
    as torch's clamp: where low > high every element is high and nothing passes."""
    def forward(self, a, low, high):
        xp = backend.array_module(a)
        out, passes = a, True
        if low is not None:
            out, passes = xp.maximum(out, a.dtype.type(low)), a >= a.dtype.type(low)
        if high is not None:
            out, passes = xp.minimum(out, a.dtype.type(high)), passes & (a <= a.dtype.type(high))
        self.save_for_backward(passes)
        return out

    def backward(self, grad):
        return backend.array_module(grad).where(self.saved[0], grad, grad.dtype.type(0))


class Expand(Function):
    """Broadcast to `shape` (a contiguous copy: nn's arrays are contiguous); the gradient sums the copies."""
    def forward(self, a, shape):
        self.shape = a.shape
        xp = backend.array_module(a)
        return xp.broadcast_to(a, shape).copy()   # (ascontiguousarray would make a 0-d array 1-d)

    def backward(self, grad):
        return unbroadcast(grad, self.shape)


class Repeat(Function):
    """Tile by `repeats` (at least one count per dim, leading extras add dims), as torch's repeat."""
    def forward(self, a, repeats):
        self.shape, self.repeats = a.shape, repeats
        return backend.array_module(a).tile(a, repeats)

    def backward(self, grad):
        sizes = (1,) * (len(self.repeats) - len(self.shape)) + self.shape
        split = [n for pair in zip(self.repeats, sizes) for n in pair]  # (r0, s0, r1, s1, ...)
        summed = grad.reshape(split).sum(axis=tuple(range(0, len(split), 2)))
        return summed.reshape(self.shape)


class Var(Function):
    """Sum of squared deviations from the mean over `dim`, divided by max(0, N - correction), as torch."""
    def forward(self, a, dim, correction, keepdim):
        self.axes = reduced_axes(type(self).__name__.lower(), dim, a.ndim)
        self.keepdim = keepdim
        count = a.size if self.axes is None else int(np.prod([a.shape[d] for d in self.axes]))
        self.divisor = a.dtype.type(max(0, count - correction))
        deviation = a - a.mean(axis=self.axes, keepdims=True)
        self.save_for_backward(deviation)
        with np.errstate(divide="ignore", invalid="ignore"):  # no degrees of freedom: NaN, as torch
            return (deviation * deviation).sum(axis=self.axes, keepdims=keepdim) / self.divisor

    def backward(self, grad):
        deviation = self.saved[0]
        if self.axes is not None and not self.keepdim:
            grad = backend.array_module(grad).expand_dims(grad, self.axes)
        with np.errstate(divide="ignore", invalid="ignore"):
            return grad * deviation * (2 / self.divisor)


class Std(Var):
    """sqrt(var); as torch, no gradient where the deviation is zero (not 0 * inf)."""
    def forward(self, a, dim, correction, keepdim):
        out = backend.array_module(a).sqrt(super().forward(a, dim, correction, keepdim))
        self.save_for_backward(self.saved[0], out)
        return out

    def backward(self, grad):
        xp, out = backend.array_module(grad), self.saved[1]
        with np.errstate(divide="ignore", invalid="ignore"):
            grad = xp.where(out == 0, grad.dtype.type(0), grad / (2 * out))
        return super().backward(grad)


class Norm(Function):
    """The 2-norm over `dim` (all elements when None); as torch, no gradient where the norm is zero."""
    def forward(self, a, dim, keepdim):
        self.axes = reduced_axes("norm", dim, a.ndim)
        self.keepdim = keepdim
        out = backend.array_module(a).sqrt((a * a).sum(axis=self.axes, keepdims=keepdim))
        self.save_for_backward(a, out)
        return out

    def backward(self, grad):
        a, out = self.saved
        xp = backend.array_module(grad)
        if self.axes is not None and not self.keepdim:
            grad, out = xp.expand_dims(grad, self.axes), xp.expand_dims(out, self.axes)
        with np.errstate(divide="ignore", invalid="ignore"):
            return a * xp.where(out == 0, grad.dtype.type(0), grad / out)
