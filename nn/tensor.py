"""Tensor: a NumPy or CuPy array plus the Function that made it, for reverse-mode differentiation.

The arithmetic here is broadcasting elementwise math on the array module of the data (NumPy on
the CPU, CuPy on the GPU); the heavy ops (matmul, convolution, pooling, recurrences, losses) go
through `kernels` in nn/functional.py.
"""
import numbers

import numpy as np

from kernels import backend

from .autograd import backward_number, note_accumulated, note_in_place
from .hooks import TensorHooks
from .tensor_in_place import InPlaceOps
from .tensor_maths import MathOps, MaxResult  # noqa: F401  (MaxResult: torch's name, importable here)
from .tensor_methods import TensorMethods
from .tensor_promotion import _as_tensor, _compared, _operands, _same_dtype, _true_division
from .tensor_reshape import ReshapeOps, _sizes  # noqa: F401  (_sizes: tensor_methods uses tensor._sizes)
from .tensor_shape import ShapeOps
from .tensor_functions import Add, Cast, Clone, Concat, Div, Index, Mul, Pow, PowTensor, Stack, Sub, ToDevice


class Tensor(ReshapeOps, MathOps, TensorMethods, ShapeOps, InPlaceOps, TensorHooks):
    __array_priority__ = 1000  # so that ndarray + Tensor defers to Tensor.__radd__

    def __init__(self, data, requires_grad=False):
        if isinstance(data, Tensor):
            data = data.data
        if isinstance(data, np.generic):  # NumPy reductions return scalars: keep their dtype
            data = np.asarray(data)
        elif not backend.is_array(data):
            data = np.asarray(data, dtype=np.float32)
        self.data = data
        if requires_grad:
            _check_can_require_grad(type(self).__name__, data.dtype)
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

    def dim(self):
        return self.ndim

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
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        """As torch: an integer (or bool) tensor of one element is an index (`items[x.argmax()]`), a float one not."""
        if self.dtype.kind not in "biu" or self.data.size != 1:
            raise TypeError(f"__index__: only integer tensors of a single element can be converted to an index, "
                            f"got dtype {self.dtype} and shape {self.shape}")
        return int(self.item())

    def __array__(self, dtype=None, copy=None):
        """np.asarray(x): the values (a host copy from the GPU); refused, as torch, while x requires grad."""
        if self.requires_grad:
            raise RuntimeError("__array__: Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() "
                               "instead.")
        array = backend.to_numpy(self.data)
        array = array if dtype is None else array.astype(dtype, copy=False)
        return array.copy() if copy else array

    def item(self):
        """The one value as a Python float, int or bool (by dtype, as torch)."""
        return backend.to_numpy(self.data).reshape(-1)[0].item() if self.data.size == 1 else \
            _raise(ValueError(f"item: tensor of shape {self.shape} has more than one element"))

    def __bool__(self):  # `if loss > 10:`; without it a tensor of any value was true
        if self.data.size != 1:
            raise ValueError(f"bool: the truth of a tensor of shape {self.shape} is ambiguous (use .any() or .all())")
        return bool(self.item())

    def to(self, *args, device=None, dtype=None, non_blocking=False, copy=False):
        """to(device), to(dtype), to(device, dtype), to(other Tensor) or by keyword, as torch.Tensor.to: self
        when already there and so (unless copy=True), else a new tensor, differentiable (gradients flow back
        to this device and dtype) between floating dtypes. Copies are synchronous: non_blocking is accepted
        and changes nothing."""
        from .module import _device_and_dtype
        if len(args) == 1 and isinstance(args[0], Tensor) and device is None and dtype is None:
            device, dtype, args = args[0].device, args[0].dtype, ()
        device, dtype = _device_and_dtype("Tensor", args, device, dtype, floating_only=False)
        result = self
        if device is not None and device != self.device:
            result = ToDevice.apply(result, device=device)
        if dtype is not None:
            result = result._cast(dtype)
        return result.clone() if copy and result is self else result

    def tolist(self):
        return backend.to_numpy(self.data).tolist()

    def clone(self):
        """A copy that stays in the graph: its gradient flows back to this tensor."""
        return Clone.apply(self)

    def float(self):
        return self._cast(np.float32)

    def double(self):
        return self._cast(np.float64)

    def long(self):
        return self._cast(np.int64)

    def type_as(self, other):
        if not isinstance(other, Tensor):
            raise TypeError(f"type_as: expected a Tensor, got {type(other).__name__}")
        return self._cast(other.dtype)

    def _cast(self, dtype):
        """Self when already `dtype` (as torch); differentiable between floating dtypes, a plain copy otherwise."""
        dtype = np.dtype(dtype)
        if dtype == self.dtype:
            return self
        if dtype.kind == "f" and self.dtype.kind == "f":
            return Cast.apply(self, dtype=dtype)
        return Tensor(self.data.astype(dtype))

    def detach(self):
        return Tensor(self.data)._view_of(self)

    def requires_grad_(self, flag=True):
        """Set requires_grad (in place); only floating-point tensors can require gradients, as in torch."""
        if flag:
            _check_can_require_grad("requires_grad_", self.dtype)
        self.requires_grad = bool(flag)
        return self

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        """torch's Tensor.backward (nn/gradients.py's backward)."""
        from .gradients import backward
        backward(self, gradient, retain_graph, create_graph, inputs)

    # (data, gradient view, weak reference to the owner): set by an optimizer with flat=True on its parameters
    # (nn/optim.py, _FlatGroup). While `data` is still this Tensor's, a first gradient is copied into the
    # view, not into a new array. Never copied or pickled with the Tensor (__getstate__): a copy's
    # gradients are its own (nor are its hooks copied, as torch's).
    _grad_slot = None
    _copy_of_view = None   # what made this tensor a copy where torch gives a view (permute, expand): in-place
                           # ops refuse it, since the write would not reach the tensor it came from

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_grad_slot", None)
        state.pop("_hooks", None)   # as torch: a copied or pickled tensor has no gradient hooks (nn/hooks.py)
        return state

    _grad_made_in = None   # the backward (autograd.backward_number) that made .grad
    _is_view = False       # its data is (part of) another Tensor's (indexing, reshape, split, detach, as torch's
                           # views): x += y may not make a new tensor there (nn/tensor_in_place.py)

    def _view_of(self, source):
        """Self, made from `source` by a view op: it keeps what source is a copy of, and notes whether it shares
        source's memory (basic indexing does, a mask or positions copy)."""
        self._copy_of_view = source._copy_of_view
        self._is_view = self.data is source.data or self.data.base is not None and \
            backend.array_module(self.data).may_share_memory(self.data, source.data)
        return self

    def _accumulate(self, grad):
        if self.grad is not None:
            self.grad.data += grad
            if self._grad_made_in != backward_number():   # in place, as torch's: a .grad from before this
                note_in_place(self.grad.data)               # backward may be saved by a graph, which then raises
            return
        slot = self._grad_slot
        if slot is not None and slot[0] is self.data and slot[1].dtype == grad.dtype and slot[1].shape == grad.shape:
            if grad is not slot[1]:   # (a Function's gradient_out: written there already)
                slot[1][...] = grad
            self.grad = Tensor(slot[1])
            note_accumulated(slot[1])   # (the last step's .grad: noted when this backward ends)
        else:
            self.grad = Tensor(grad.copy())
        self._grad_made_in = backward_number()

    # ---- arithmetic --------------------------------------------------------------------------
    def __add__(self, other):
        return Add.apply(*_operands(self, other, "+"))

    def __radd__(self, other):
        return Add.apply(*_operands(self, other, "+")[::-1])

    def __sub__(self, other):
        return Sub.apply(*_operands(self, other, "-"))

    def __rsub__(self, other):
        return Sub.apply(*_operands(self, other, "-")[::-1])

    def __mul__(self, other):
        return Mul.apply(*_operands(self, other, "*"))

    def __rmul__(self, other):
        return Mul.apply(*_operands(self, other, "*")[::-1])

    def __truediv__(self, other):
        return Div.apply(*_true_division(*_operands(self, other, "/")))

    def __rtruediv__(self, other):
        return Div.apply(*_true_division(*_operands(self, other, "/")[::-1]))

    def __neg__(self):
        if self.dtype.kind == "b":   # -1 cast to bool is True: x * True would silently be x
            raise TypeError("neg: negation of a bool tensor is not supported (as in torch): use ~x or x.logical_not()")
        return Mul.apply(self, _as_tensor(-1.0, self))

    def __pow__(self, exponent):
        if isinstance(exponent, Tensor) or backend.is_array(exponent):
            return PowTensor.apply(*_operands(self, exponent, "**"))
        if not isinstance(exponent, numbers.Real):
            raise TypeError(f"pow: the exponent must be a number or a Tensor, got {type(exponent).__name__}")
        return Pow.apply(_operands(self, exponent, "**")[0], exponent=exponent)

    def __rpow__(self, base):
        """base ** self for a number base: its gradient is log(base) * base ** self (an integer tensor with a
        float base gives float32, as torch)."""
        if not (isinstance(base, numbers.Real) or backend.is_array(base)):
            return NotImplemented
        return PowTensor.apply(*_operands(self, base, "**")[::-1])

    def __matmul__(self, other):
        from . import functional
        return functional.matmul(self, other)

    def __getitem__(self, index):
        """Ints and slices give a view (in-place ops on it reach this tensor, as torch's); masks and position
        arrays a copy (as torch's)."""
        return Index.apply(self, index=_index(index))._view_of(self)

    # comparisons give plain (non-differentiable) tensors
    def __eq__(self, other):
        a, b = _compared(self, other)
        return Tensor(a == b)

    def __ne__(self, other):
        a, b = _compared(self, other)
        return Tensor(a != b)

    def __lt__(self, other):
        a, b = _compared(self, other)
        return Tensor(a < b)

    def __gt__(self, other):
        a, b = _compared(self, other)
        return Tensor(a > b)

    def __le__(self, other):
        a, b = _compared(self, other)
        return Tensor(a <= b)

    def __ge__(self, other):
        a, b = _compared(self, other)
        return Tensor(a >= b)

    def any(self, dim=None, keepdim=False):
        return Tensor(self.xp.asarray(self.data.any(axis=dim, keepdims=keepdim)))

    def all(self, dim=None, keepdim=False):
        return Tensor(self.xp.asarray(self.data.all(axis=dim, keepdims=keepdim)))

    __hash__ = object.__hash__


def _raise(error):
    raise error


def _check_can_require_grad(op, dtype):
    """torch's rule: only floating-point (and complex) tensors can require gradients."""
    if dtype.kind not in "fc":
        raise RuntimeError(f"{op}: only Tensors of floating point dtype can require gradients, got {dtype} "
                           f"(cast first, e.g. .float())")


def _raw(x):
    return x.data if isinstance(x, Tensor) else x


def _index(index):
    """An index with its Tensors (masks, positions) unwrapped to arrays; a 0-d integer NumPy array is an int, as
    torch takes a 0-d integer tensor (a view, not advanced indexing's copy)."""
    return tuple(_index_part(i) for i in index) if isinstance(index, tuple) else _index_part(index)


def _index_part(part):
    part = _raw(part)
    if isinstance(part, np.ndarray) and part.ndim == 0 and part.dtype.kind in "iu":
        return int(part)
    return part


def tensor(data, requires_grad=False, dtype=np.float32, device="cpu"):
    """Build a Tensor from a Python/NumPy value on a device; only a floating one may require grad (as torch)."""
    array = np.asarray(data, dtype=dtype) if not backend.is_array(data) else data
    if requires_grad:
        _check_can_require_grad("tensor", array.dtype)
    return Tensor(backend.to_device(array, device), requires_grad=requires_grad)


def cat(tensors, dim=0):
    return Concat.apply(*_same_dtype(tensors), dim=dim)


def stack(tensors, dim=0):
    return Stack.apply(*_same_dtype(tensors), dim=dim)
