"""nn.Tensor's reductions and maths (sum, mean, max/min and their indices, var/std, norm, clamp, exp/log, the
activations), mixed into Tensor. Each differentiable one is a Function of tensor_functions.py."""
import numbers

import numpy as np

from . import tensor
from .tensor_functions import Abs, Clamp, Exp, Log, Max, Min, Norm, Std, Sum, Var, _dims, check_dim, reduced_axes
from .tensor_functions_maths import Amax, Amin, Cos, Cumsum, Expm1, Log1p, Prod, Rounding, Rsqrt, Sin, Sqrt


class MathOps:
    def sum(self, dim=None, keepdim=False):
        return Sum.apply(self, dim=dim, keepdim=keepdim)

    def mean(self, dim=None, keepdim=False):
        """The sum divided by the count; nan over no elements (an empty tensor or dim), as torch."""
        axes = reduced_axes("mean", dim, self.ndim)
        count = self.data.size if axes is None else int(np.prod([self.shape[d] for d in axes]))
        return self.sum(axes, keepdim) * (1.0 / count if count else float("nan"))

    def exp(self):
        return Exp.apply(_floating(self))

    def log(self):
        return Log.apply(_floating(self))

    def sqrt(self):
        return Sqrt.apply(_floating(self))

    def abs(self):
        return Abs.apply(self)

    __abs__ = abs

    def square(self):
        return self ** 2

    def rsqrt(self):
        return Rsqrt.apply(_floating(self))

    def reciprocal(self):
        return 1 / self

    # integer inputs give float32, as torch's
    def sin(self):
        return Sin.apply(_floating(self))

    def cos(self):
        return Cos.apply(_floating(self))

    def log1p(self):
        return Log1p.apply(_floating(self))

    def expm1(self):
        return Expm1.apply(_floating(self))

    def isnan(self):
        return tensor.Tensor(self.xp.isnan(self.data))

    def __invert__(self):
        """~x: logical not of a bool tensor, bitwise not of an integer one (no gradient), as torch."""
        if self.dtype.kind not in "biu":
            raise TypeError(f"invert: ~ takes bool or integer tensors, got {self.dtype}")
        return tensor.Tensor(self.xp.invert(self.data))

    # bitwise on bool and integer tensors (logical for bool), no gradient, as torch
    def __and__(self, other):
        return self._bitwise("&", "bitwise_and", other)

    def __or__(self, other):
        return self._bitwise("|", "bitwise_or", other)

    def __xor__(self, other):
        return self._bitwise("^", "bitwise_xor", other)

    __rand__, __ror__, __rxor__ = __and__, __or__, __xor__

    def _bitwise(self, op, ufunc, other):
        a, b = tensor._operands(self, other, op)
        if a.dtype.kind not in "biu" or b.dtype.kind not in "biu":
            raise TypeError(f"{op}: bitwise ops take bool or integer tensors and numbers (as torch), got "
                            f"{self.dtype} and {getattr(other, 'dtype', type(other).__name__)}")
        return tensor.Tensor(getattr(self.xp, ufunc)(a.data, b.data))

    def logical_not(self):
        return tensor.Tensor(self.xp.logical_not(self.data))

    # piecewise constant: a zero gradient, as torch's
    def sign(self):
        return tensor.Tensor(self.data.copy()) if self.dtype.kind == "b" else Rounding.apply(self, how="sign")

    def floor(self):
        return self._rounded("floor")

    def ceil(self):
        return self._rounded("ceil")

    def trunc(self):
        return self._rounded("trunc")

    def round(self, *, decimals=0):
        """Half to even, as torch (and to `decimals` places: x * 10**decimals rounded, divided back)."""
        return self._rounded("round", decimals)

    def _rounded(self, how, decimals=0):
        if self.dtype.kind == "b":
            raise TypeError(f"{how}: not supported for bool tensors (as in torch)")
        if self.dtype.kind in "iu":   # already whole: a copy, as torch (which has no integer round to decimals)
            if decimals:
                raise TypeError(f"round: decimals={decimals} needs a floating-point tensor, got {self.dtype}")
            return tensor.Tensor(self.data.copy())
        return Rounding.apply(self, how=how, decimals=decimals)

    def prod(self, dim=None, keepdim=False):
        """The product of all elements, or over one int `dim`; integer and bool tensors give int64, as torch."""
        if dim is not None:
            dim = check_dim("prod", dim, self.ndim)
            if self.ndim == 0:
                return self.clone() if self.dtype.kind == "f" else tensor.Tensor(self.data.astype(np.int64))
        return Prod.apply(self, dim=dim, keepdim=keepdim)

    def cumsum(self, dim):
        """Running sums along `dim` (integer and bool tensors give int64, as torch)."""
        dim = check_dim("cumsum", dim, self.ndim)
        if self.ndim == 0:
            return self.reshape(1).cumsum(0).reshape(())
        return Cumsum.apply(self, dim=dim)

    def amax(self, dim=(), keepdim=False):
        """The maximum over `dim` (an int or a tuple; () for all), the gradient shared evenly by the ties."""
        return self._amax(Amax, "amax", dim, keepdim)

    def amin(self, dim=(), keepdim=False):
        return self._amax(Amin, "amin", dim, keepdim)

    def _amax(self, function, name, dim, keepdim):
        if dim is None:   # (torch: every dim)
            dim = ()
        if not isinstance(dim, (int, np.integer, tuple, list)) or isinstance(dim, bool):
            raise TypeError(f"{name}: dim must be an int or a tuple of ints, got {dim!r}")
        dim = int(dim) if isinstance(dim, np.integer) else dim
        axes = tuple(check_dim(name, d, self.ndim) for d in _dims(dim))
        if len(set(axes)) != len(axes):
            raise ValueError(f"{name}: a dim appears more than once in {dim!r}")
        if self.ndim == 0:
            return function.apply(self, axes=None, keepdim=False)
        empty = [d for d in (axes or range(self.ndim)) if self.shape[d] == 0]
        if empty:
            raise ValueError(f"{name}: cannot reduce over dim {empty[0]} of size 0 (shape {self.shape}); "
                             f"there is no maximum or minimum of no elements")
        return function.apply(self, axes=axes or None, keepdim=keepdim)

    def max(self, dim=None, keepdim=False):
        """Like torch: the maximum, or with `dim` a (values, indices) pair."""
        return self._extremum(Max, dim, keepdim)

    def min(self, dim=None, keepdim=False):
        """Like torch: the minimum, or with `dim` a (values, indices) pair."""
        return self._extremum(Min, dim, keepdim)

    def argmax(self, dim=None, keepdim=False):
        return self._pick("argmax", dim, keepdim)

    def argmin(self, dim=None, keepdim=False):
        return self._pick("argmin", dim, keepdim)

    def _extremum(self, function, dim, keepdim):
        if dim is not None and not isinstance(dim, numbers.Integral):
            raise TypeError(f"{function.reduce}: dim must be an int or None (no elementwise form), "
                            f"got {type(dim).__name__}")
        values = function.apply(self, dim=dim, keepdim=keepdim)
        return values if dim is None else MaxResult(values, self._pick(function.pick, dim, keepdim))

    def _pick(self, name, dim, keepdim):
        indices = getattr(self.xp, name)(self.data, axis=dim)
        if keepdim and self.ndim:   # as torch: without a dim every dim is kept, as size 1
            indices = self.xp.reshape(indices, (1,) * self.ndim) if dim is None else self.xp.expand_dims(indices, dim)
        return tensor.Tensor(indices)

    def var(self, dim=None, unbiased=None, keepdim=False, *, correction=None):
        """Like torch.var: divides by N - correction (1 by default; unbiased=False means 0)."""
        return self._spread(Var, "var", dim, unbiased, keepdim, correction)

    def std(self, dim=None, unbiased=None, keepdim=False, *, correction=None):
        return self._spread(Std, "std", dim, unbiased, keepdim, correction)

    def _spread(self, function, name, dim, unbiased, keepdim, correction):
        if isinstance(dim, bool):  # torch's var(unbiased) overload: x.var(False)
            dim, unbiased = None, dim
        if self.dtype.kind != "f":
            raise TypeError(f"{name}: needs a floating-point tensor, got {self.dtype}")
        if unbiased is not None and correction is not None:
            raise ValueError(f"{name}: give unbiased or correction, not both")
        correction = (0 if unbiased is False else 1) if correction is None else correction
        return function.apply(self, dim=dim, correction=correction, keepdim=keepdim)

    def norm(self, p="fro", dim=None, keepdim=False):
        """The 2-norm (p=2 or 'fro') or 1-norm over `dim` (all elements when None)."""
        if self.dtype.kind != "f":
            raise TypeError(f"norm: needs a floating-point tensor, got {self.dtype}")
        if p == 1:
            return self.abs().sum(dim, keepdim)
        if p in (2, "fro"):
            return Norm.apply(self, dim=dim, keepdim=keepdim)
        raise ValueError(f"norm: p must be 1, 2 or 'fro', got {p!r}")

    def clamp(self, min=None, max=None):
        """Like torch.clamp with number bounds (NaN stays NaN); the gradient passes where min <= x <= max."""
        for name, bound in (("min", min), ("max", max)):
            if bound is not None and (isinstance(bound, bool) or not isinstance(bound, numbers.Real)):
                raise TypeError(f"clamp: {name} must be a number or None (no tensor bounds), got {type(bound).__name__}")
        if min is None and max is None:
            raise ValueError("clamp: at least one of min or max must be given")
        float_bound = any(isinstance(bound, (float, np.floating)) for bound in (min, max))
        source = self.float() if self.dtype.kind != "f" and float_bound else self  # torch: int by float is float32
        source = source.long() if source.dtype.kind == "b" else source            # torch: bool by int is int64
        if source.dtype.kind in "iu":
            min, max = (None if bound is None else _integer_bound("clamp", name, bound, source.dtype)
                        for name, bound in (("min", min), ("max", max)))
        return Clamp.apply(source, low=min, high=max)

    clip = clamp

    def clamp_min(self, min):
        return self.clamp(min=min)

    def clamp_max(self, max):
        return self.clamp(max=max)

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


def _floating(x):
    return x.float() if x.dtype.kind in "biu" else x


class MaxResult(tuple):
    """(values, indices) of Tensor.max(dim) or min(dim), also by name, as torch returns them."""
    def __new__(cls, values, indices):
        return super().__new__(cls, (values, indices))

    values = property(lambda self: self[0])
    indices = property(lambda self: self[1])


def _integer_bound(op, name, bound, dtype):
    """An int bound in an integer tensor's dtype, as torch converts it: out of the dtype's range is an error,
    except that an unsigned dtype takes a negative bound down to -max in two's complement (uint8: -1 is 255)."""
    info, value = np.iinfo(dtype), int(bound)
    if info.min == 0 and -int(info.max) <= value < 0:
        return value + int(info.max) + 1
    if not info.min <= value <= info.max:
        raise ValueError(f"{op}: {name}={bound} cannot be converted to the tensor's dtype {dtype} without overflow "
                         f"(torch raises too); cast the tensor first, e.g. .long()")
    return value
