"""The Functions behind Tensor's arithmetic and shape methods (nn/tensor.py): forward on the raw
arrays of either device, backward returning one gradient per input (broadcasting undone)."""
import numpy as np

from kernels import backend

from .autograd import Function


def _dims(dim):
    return (dim,) if isinstance(dim, int) else tuple(dim)


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
    def forward(self, a, b):
        self.save_for_backward(a, b)
        return a * b

    def backward(self, grad):
        a, b = self.saved
        return unbroadcast(grad * b, a.shape), unbroadcast(grad * a, b.shape)


class Div(Function):
    def forward(self, a, b):
        self.save_for_backward(a, b)
        return a / b

    def backward(self, grad):
        a, b = self.saved
        return unbroadcast(grad / b, a.shape), unbroadcast(-grad * a / (b * b), b.shape)


class Pow(Function):
    def forward(self, a, exponent):
        self.exponent = exponent
        self.save_for_backward(a)
        return a ** a.dtype.type(exponent)

    def backward(self, grad):
        (a,) = self.saved
        return grad * a.dtype.type(self.exponent) * a ** a.dtype.type(self.exponent - 1)


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
        return grad * backend.array_module(grad).sign(self.saved[0])


class Sum(Function):
    def forward(self, a, dim, keepdim):
        self.shape = a.shape
        self.axes = None if dim is None else tuple(d % a.ndim for d in _dims(dim))
        return a.sum(axis=self.axes, keepdims=keepdim)

    def backward(self, grad):
        xp = backend.array_module(grad)
        if self.axes is not None:
            grad = xp.expand_dims(grad, self.axes) if grad.ndim < len(self.shape) else grad
        return xp.broadcast_to(grad, self.shape).copy()


class Max(Function):
    def forward(self, a, dim, keepdim):
        xp = backend.array_module(a)
        self.shape, self.dim, self.keepdim = a.shape, dim, keepdim
        if dim is None:
            first = xp.zeros(a.size, dtype=bool)
            first[int(xp.argmax(a))] = True  # the gradient goes to the first maximum, as in PyTorch
            self.save_for_backward(first.reshape(a.shape))
            return a.max()
        self.dim = dim % a.ndim
        positions = xp.arange(a.shape[self.dim]).reshape([-1 if d == self.dim else 1 for d in range(a.ndim)])
        self.save_for_backward(positions == xp.expand_dims(xp.argmax(a, axis=self.dim), self.dim))
        return a.max(axis=self.dim, keepdims=keepdim)

    def backward(self, grad):
        (first,) = self.saved
        xp = backend.array_module(grad)
        if self.dim is not None and not self.keepdim:
            grad = xp.expand_dims(grad, self.dim)
        return xp.where(first, grad, grad.dtype.type(0))


class Reshape(Function):
    def forward(self, a, shape):
        self.shape = a.shape
        return a.reshape(shape)

    def backward(self, grad):
        return grad.reshape(self.shape)


class Permute(Function):
    def forward(self, a, dims):
        self.dims = dims
        return backend.array_module(a).ascontiguousarray(a.transpose(dims))

    def backward(self, grad):
        inverse = tuple(np.argsort(self.dims))
        return backend.array_module(grad).ascontiguousarray(grad.transpose(inverse))


class Index(Function):
    def forward(self, a, index):
        self.shape, self.dtype = a.shape, a.dtype
        self.index = index  # Tensors in it were unwrapped by Tensor.__getitem__
        out = a[self.index]
        return backend.array_module(a).ascontiguousarray(out)

    def backward(self, grad):
        xp = backend.array_module(grad)
        full = xp.zeros(self.shape, dtype=self.dtype)
        if xp is np:
            np.add.at(full, self.index, grad)  # repeated indices accumulate
        else:
            import cupyx
            cupyx.scatter_add(full, self.index, grad)
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
        return tuple(xp.ascontiguousarray(xp.take(grad, i, axis=self.dim)) for i in range(count))


class ToDevice(Function):
    def forward(self, a, device):
        self.source = "cuda" if backend.is_gpu_array(a) else "cpu"
        return backend.to_device(a, device)

    def backward(self, grad):
        return backend.to_device(grad, self.source)
