"""Tensor: a NumPy or CuPy array plus the Function that made it, for reverse-mode differentiation.

The arithmetic here is broadcasting elementwise math on the array module of the data (NumPy on
the CPU, CuPy on the GPU); the heavy ops (matmul, convolution, pooling, recurrences, losses) go
through `kernels` in nn/functional.py.
"""
import numpy as np

from kernels import backend

from . import autograd
from .tensor_functions import (Abs, Add, Concat, Div, Exp, Index, Log, Max, Mul, Permute, Pow, Reshape, Stack,
                               Sub, Sum, ToDevice, _dims)


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

    # (data, gradient view, weak reference to the owner): set by an optimizer with flat=True on its parameters
    # (nn/optim.py, _FlatGroup). While `data` is still this Tensor's, a first gradient is copied into the
    # view, not into a new array. Never copied or pickled with the Tensor (__getstate__): a copy's
    # gradients are its own.
    _grad_slot = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_grad_slot", None)
        return state

    def _accumulate(self, grad):
        if self.grad is not None:
            self.grad.data += grad
            return
        slot = self._grad_slot
        if slot is not None and slot[0] is self.data and slot[1].dtype == grad.dtype and slot[1].shape == grad.shape:
            slot[1][...] = grad
            self.grad = Tensor(slot[1])
        else:
            self.grad = Tensor(grad.copy())

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
        index = tuple(_raw(i) for i in index) if isinstance(index, tuple) else _raw(index)
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


class MaxResult(tuple):
    """(values, indices) of Tensor.max(dim), also by name, as torch returns them."""
    def __new__(cls, values, indices):
        return super().__new__(cls, (values, indices))

    values = property(lambda self: self[0])
    indices = property(lambda self: self[1])


def _raise(error):
    raise error


def _raw(x):
    return x.data if isinstance(x, Tensor) else x


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


def cat(tensors, dim=0):
    return Concat.apply(*tensors, dim=dim)


def stack(tensors, dim=0):
    return Stack.apply(*tensors, dim=dim)
