"""Tensor: a NumPy or CuPy array plus the Function that made it, for reverse-mode differentiation.

The arithmetic here is broadcasting elementwise math on the array module of the data (NumPy on
the CPU, CuPy on the GPU); the heavy ops (matmul, convolution, pooling, recurrences, losses) go
through `kernels` in nn/functional.py.
"""
import numpy as np

from kernels import backend

from . import autograd
from .autograd import Function


class Tensor:
    __array_priority__ = 1000  # so that ndarray + Tensor defers to Tensor.__radd__

    def __init__(self, data, requires_grad=False):
        if isinstance(data, Tensor):
            data = data.data
        if isinstance(data, np.generic):  # NumPy reductions return scalars: keep their dtype
            data = np.asarray(data)
        elif not backend.is_array(data):
            data = np.asarray(data, dtype=np.float32)
        self.data = data
        self.requires_grad = bool(requires_grad)
        self.grad = None
        self._creator = None  # (Function instance, output index) for non-leaves

    # ---- facts -------------------------------------------------------------------------------
    @property
    def shape(self):
        return tuple(self.data.shape)

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def device(self):
        return "cuda" if backend.is_gpu_array(self.data) else "cpu"

    @property
    def xp(self):
        return backend.array_module(self.data)

    @property
    def is_leaf(self):
        return self._creator is None

    def size(self, dim=None):
        return self.shape if dim is None else self.shape[dim]

    def numel(self):
        return int(self.data.size)

    def __len__(self):
        return self.shape[0]

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor(shape={self.shape}, dtype={self.dtype}, device={self.device}{grad})"

    # ---- conversion --------------------------------------------------------------------------
    def numpy(self):
        """A NumPy copy (from either device)."""
        return np.array(backend.to_numpy(self.data), copy=True)

    def __float__(self):
        return self.item()

    def item(self):
        return float(backend.to_numpy(self.data).reshape(-1)[0]) if self.data.size == 1 else \
            _raise(ValueError(f"item: tensor of shape {self.shape} has more than one element"))

    def to(self, device):
        """The same values on 'cpu' or 'cuda' (differentiable: gradients flow back to this device)."""
        if device == self.device:
            return self
        return ToDevice.apply(self, device=device)

    def detach(self):
        return Tensor(self.data)

    def requires_grad_(self, flag=True):
        self.requires_grad = flag
        return self

    def backward(self, grad=None, retain_graph=False):
        autograd.backward(self, grad, retain_graph=retain_graph)

    def _accumulate(self, grad):
        if self.grad is None:
            self.grad = Tensor(grad.copy())
        else:
            self.grad.data += grad

    # ---- arithmetic --------------------------------------------------------------------------
    def __add__(self, other):
        return Add.apply(self, _as_tensor(other, self))

    def __radd__(self, other):
        return Add.apply(_as_tensor(other, self), self)

    def __sub__(self, other):
        return Sub.apply(self, _as_tensor(other, self))

    def __rsub__(self, other):
        return Sub.apply(_as_tensor(other, self), self)

    def __mul__(self, other):
        return Mul.apply(self, _as_tensor(other, self))

    def __rmul__(self, other):
        return Mul.apply(_as_tensor(other, self), self)

    def __truediv__(self, other):
        return Div.apply(self, _as_tensor(other, self))

    def __rtruediv__(self, other):
        return Div.apply(_as_tensor(other, self), self)

    def __neg__(self):
        return Mul.apply(self, _as_tensor(-1.0, self))

    def __pow__(self, exponent):
        if not isinstance(exponent, (int, float)):
            raise TypeError(f"pow: only a Python number exponent is supported, got {type(exponent).__name__}")
        return Pow.apply(self, exponent=exponent)

    def __matmul__(self, other):
        from . import functional
        return functional.matmul(self, other)

    def __getitem__(self, index):
        return Index.apply(self, index=index)

    # ---- shape -------------------------------------------------------------------------------
    def reshape(self, *shape):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return Reshape.apply(self, shape=tuple(shape))

    view = reshape

    def flatten(self, start_dim=0, end_dim=-1):
        end = end_dim % self.ndim
        shape = self.shape[:start_dim] + (-1,) + self.shape[end + 1:]
        return self.reshape(shape)

    def permute(self, *dims):
        dims = dims[0] if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else dims
        return Permute.apply(self, dims=tuple(dims))

    def transpose(self, dim0, dim1):
        dims = list(range(self.ndim))
        dims[dim0], dims[dim1] = dims[dim1], dims[dim0]
        return self.permute(dims)

    @property
    def T(self):
        return self.permute(tuple(reversed(range(self.ndim))))

    def unsqueeze(self, dim):
        dim = dim % (self.ndim + 1)
        return self.reshape(self.shape[:dim] + (1,) + self.shape[dim:])

    def squeeze(self, dim):
        if self.shape[dim] != 1:
            return self
        dim = dim % self.ndim
        return self.reshape(self.shape[:dim] + self.shape[dim + 1:])

    def contiguous(self):
        return self

    # ---- reductions and maths ----------------------------------------------------------------
    def sum(self, dim=None, keepdim=False):
        return Sum.apply(self, dim=dim, keepdim=keepdim)

    def mean(self, dim=None, keepdim=False):
        count = self.data.size if dim is None else int(np.prod([self.shape[d] for d in _dims(dim)]))
        return self.sum(dim, keepdim) * (1.0 / count)

    def exp(self):
        return Exp.apply(self)

    def log(self):
        return Log.apply(self)

    def sqrt(self):
        return self ** 0.5

    def abs(self):
        return Abs.apply(self)

    def max(self, dim=None, keepdim=False):
        """Like torch: the maximum, or with `dim` a (values, indices) pair."""
        values = Max.apply(self, dim=dim, keepdim=keepdim)
        if dim is None:
            return values
        indices = self.xp.argmax(self.data, axis=dim)
        return MaxResult(values, Tensor(self.xp.expand_dims(indices, dim) if keepdim else indices))

    def argmax(self, dim=None):
        return Tensor(self.xp.argmax(self.data, axis=dim))

    def relu(self):
        from . import functional
        return functional.relu(self)

    def sigmoid(self):
        from . import functional
        return functional.sigmoid(self)

    def tanh(self):
        from . import functional
        return functional.tanh(self)

    def softmax(self, dim=-1):
        from . import functional
        return functional.softmax(self, dim)

    def log_softmax(self, dim=-1):
        from . import functional
        return functional.log_softmax(self, dim)

    # comparisons give plain (non-differentiable) tensors
    def __eq__(self, other):
        return Tensor(self.data == _raw(other))

    def __ne__(self, other):
        return Tensor(self.data != _raw(other))

    def __lt__(self, other):
        return Tensor(self.data < _raw(other))

    def __gt__(self, other):
        return Tensor(self.data > _raw(other))

    __hash__ = object.__hash__


def _raise(error):
    raise error


def _raw(x):
    return x.data if isinstance(x, Tensor) else x


def _dims(dim):
    return (dim,) if isinstance(dim, int) else tuple(dim)


def _as_tensor(value, like):
    """Python numbers and arrays become constant Tensors on `like`'s device, in its dtype."""
    if isinstance(value, Tensor):
        return value
    if backend.is_array(value):
        if backend.is_gpu_array(value) != backend.is_gpu_array(like.data):
            raise ValueError(f"arithmetic: an array on another device than the tensor ({like.device})")
        return Tensor(value)
    return Tensor(like.xp.asarray(value, dtype=like.dtype))


def tensor(data, requires_grad=False, dtype=np.float32, device="cpu"):
    """Build a Tensor from a Python/NumPy value on a device."""
    array = np.asarray(data, dtype=dtype) if not backend.is_array(data) else data
    return Tensor(backend.to_device(array, device), requires_grad=requires_grad)


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


class MaxResult(tuple):
    def __new__(cls, values, indices):
        return super().__new__(cls, (values, indices))

    values = property(lambda self: self[0])
    indices = property(lambda self: self[1])


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
        self.index = tuple(i.data if isinstance(i, Tensor) else i for i in index) if isinstance(index, tuple) \
            else (index.data if isinstance(index, Tensor) else index)
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


def cat(tensors, dim=0):
    return Concat.apply(*tensors, dim=dim)


def stack(tensors, dim=0):
    return Stack.apply(*tensors, dim=dim)
