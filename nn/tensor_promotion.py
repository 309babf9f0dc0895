"""How nn.Tensor's operands meet, as torch's type promotion: a Python number takes the tensor's dtype (an integer
tensor with a float number is float32), a 0-d tensor with a dimensioned one is like a number within its category,
an integer with a floating tensor takes the floating dtype; true division of integers is float32. Anything else as
NumPy promotes (int32 + int64, float32 + float64)."""
import functools
import numbers

import numpy as np

from kernels import backend

from . import tensor


def _operands(first, other, op="arithmetic"):
    """(first, other as a Tensor), promoted as torch promotes them: an integer or bool tensor with a float number
    is float32 first, a bool tensor with an int number int64 (the number would otherwise be cast to the tensor's
    dtype); two tensors take _result_dtype."""
    if isinstance(other, (float, np.floating)) and first.dtype.kind in "biu":
        first = first.float()
    elif isinstance(other, (int, np.integer)) and not isinstance(other, (bool, np.bool_)) and first.dtype.kind == "b":
        first = first.long()   # torch: bool with an int number is int64 (not the number cast to bool)
    other = _as_tensor(other, first, op)
    if first.data.dtype != other.data.dtype:
        dtype = _result_dtype(first, other)
        first, other = first._cast(dtype), other._cast(dtype)
    return first, other


_CATEGORY = {"b": 0, "u": 1, "i": 1, "f": 2, "c": 3}   # torch's dtype categories: bool < integer < floating


def _result_dtype(a, b):
    """torch.result_type of two Tensors of different dtypes: a 0-d tensor with a dimensioned one of its category or
    a higher one is like a number (float32[3] * 0-d float64 is float32); an integer or bool with a floating dtype
    takes that dtype (NumPy would give float64 for int32 + float32); else NumPy's promotion (int32 + int64)."""
    if (a.ndim == 0) != (b.ndim == 0):
        dimensioned, zero_dim = (b, a) if a.ndim == 0 else (a, b)
        if _CATEGORY[zero_dim.dtype.kind] <= _CATEGORY[dimensioned.dtype.kind]:
            return dimensioned.dtype
    return _promote_types(a.dtype, b.dtype)


def _promote_types(a, b):
    if (a.kind == "f") != (b.kind == "f"):
        return a if a.kind == "f" else b
    return np.promote_types(a, b)


def _compared(first, other):
    """The two arrays of a comparison, in torch's common dtype when other is a Tensor of another dtype (float32
    [0.1] == 0-d float64 0.1 compares in float32: true, as torch)."""
    if isinstance(other, tensor.Tensor) and other.data.dtype != first.data.dtype:
        dtype = _result_dtype(first, other)
        return first.data.astype(dtype, copy=False), other.data.astype(dtype, copy=False)
    return first.data, tensor._raw(other)


def _same_dtype(tensors):
    """cat's and stack's inputs in the dtype torch gives their result (int64 with float32: float32); the cast of a
    floating input is differentiable."""
    tensors = list(tensors)
    dtypes = {t.dtype for t in tensors}
    if len(dtypes) < 2:
        return tensors
    dtype = functools.reduce(_promote_types, dtypes)
    return [(t if isinstance(t, tensor.Tensor) else tensor.Tensor(t))._cast(dtype) for t in tensors]


def _true_division(a, b):
    """a / b as torch divides: an integer or bool operand becomes the other's floating dtype, or float32 (torch's
    default dtype) when both are integers (NumPy would give float64)."""
    floating = [t.dtype for t in (a, b) if t.dtype.kind == "f"]
    dtype = floating[0] if len(floating) == 1 else np.float32
    return tuple(t._cast(dtype) if t.dtype.kind in "biu" else t for t in (a, b))


def _as_tensor(value, like, op="arithmetic"):
    """Python numbers become constant Tensors on `like`'s device, in its dtype; arrays, Tensors."""
    if isinstance(value, tensor.Tensor):
        return value
    if backend.is_array(value):
        if backend.is_gpu_array(value) != backend.is_gpu_array(like.data):
            raise ValueError(f"{op}: an array on another device than the tensor ({like.device})")
        return tensor.Tensor(value)
    if not isinstance(value, (numbers.Number, np.generic)):   # a list would be cast to the tensor's dtype: [0.5] is 0
        raise TypeError(f"unsupported operand type(s) for {op}: 'Tensor' and '{type(value).__name__}' (expected a "
                        f"number, a Tensor or an array)")
    return tensor.Tensor(like.xp.asarray(value, dtype=like.dtype))
