"""The Functions behind Tensor's elementwise maths and reductions added in nn/tensor_methods.py and
nn/tensor_maths.py (maximum/minimum, where, masked_fill, sin/cos/log1p/expm1, the rounding family, prod, cumsum,
amax/amin): forward on the raw arrays of either device, backward as torch's derivative formulas."""
import numpy as np

from kernels import backend

from .autograd import Function
from .tensor_functions import unbroadcast


class Maximum(Function):
    """Elementwise maximum of two broadcasting arrays; as torch, ties share the gradient in halves, and where
    either is NaN (the result NaN) both get all of it."""
    name, other_wins = "maximum", "less"

    def forward(self, a, b):
        self.save_for_backward(a, b)
        return getattr(backend.array_module(a), self.name)(a, b)

    def backward(self, grad):
        a, b = self.saved
        xp, zero = backend.array_module(grad), grad.dtype.type(0)
        shared, other_wins = xp.where(a == b, grad / grad.dtype.type(2), grad), getattr(xp, self.other_wins)
        grad_a = xp.where(other_wins(a, b), zero, shared) if self.needs_input_grad[0] else None
        grad_b = xp.where(other_wins(b, a), zero, shared) if self.needs_input_grad[1] else None
        return (None if grad_a is None else unbroadcast(grad_a, a.shape),
                None if grad_b is None else unbroadcast(grad_b, b.shape))


class Minimum(Maximum):
    name, other_wins = "minimum", "greater"


class Where(Function):
    """condition ? a : b, broadcasting the three; the gradient goes to the side each element came from."""
    def forward(self, a, b, condition):
        self.shapes = (a.shape, b.shape)
        self.save_for_backward(condition)
        return backend.array_module(a).where(condition, a, b)

    def backward(self, grad):
        xp, zero, (condition,) = backend.array_module(grad), grad.dtype.type(0), self.saved
        return (unbroadcast(xp.where(condition, grad, zero), self.shapes[0]) if self.needs_input_grad[0] else None,
                unbroadcast(xp.where(condition, zero, grad), self.shapes[1]) if self.needs_input_grad[1] else None)


class MaskedFill(Function):
    """a with `fill` (a number, or a 0-dim array input) where mask is true, in a's dtype; a's gradient where the
    mask is false, the fill's the sum of the rest (torch's masked_fill)."""
    def forward(self, a, *value, mask, fill=None):
        xp = backend.array_module(a)
        self.shape = a.shape
        self.save_for_backward(mask)
        fill = value[0] if value else fill
        return xp.where(mask, xp.asarray(fill, dtype=a.dtype), a)

    def backward(self, grad):
        xp, zero, (mask,) = backend.array_module(grad), grad.dtype.type(0), self.saved
        grad_a = unbroadcast(xp.where(mask, zero, grad), self.shape) if self.needs_input_grad[0] else None
        if len(self.needs_input_grad) == 1:
            return grad_a
        grad_fill = xp.where(mask, grad, zero).sum().astype(grad.dtype) if self.needs_input_grad[1] else None
        return grad_a, grad_fill


class Sin(Function):
    def forward(self, a):
        self.save_for_backward(a)
        return backend.array_module(a).sin(a)

    def backward(self, grad):
        return grad * backend.array_module(grad).cos(self.saved[0])


class Cos(Function):
    def forward(self, a):
        self.save_for_backward(a)
        return backend.array_module(a).cos(a)

    def backward(self, grad):
        return -grad * backend.array_module(grad).sin(self.saved[0])


class Sqrt(Function):
    """As torch's: the gradient grad / (2 sqrt(a)), so -inf at -0. and NaN at -inf (a ** 0.5's is inf and 0)."""
    def forward(self, a):
        out = backend.array_module(a).sqrt(a)
        self.save_for_backward(out)
        return out

    def backward(self, grad):
        return grad / (grad.dtype.type(2) * self.saved[0])


class Rsqrt(Function):
    """1 / sqrt(a), as torch's: -inf at -0. and NaN at -inf (a ** -0.5 gives inf and 0); gradient -out**3 / 2."""
    def forward(self, a):
        out = 1 / backend.array_module(a).sqrt(a)
        self.save_for_backward(out)
        return out

    def backward(self, grad):
        out = self.saved[0]
        return grad * out * out * out * grad.dtype.type(-0.5)


class Log1p(Function):
    def forward(self, a):
        self.save_for_backward(a)
        return backend.array_module(a).log1p(a)

    def backward(self, grad):
        return grad / (self.saved[0] + grad.dtype.type(1))


class Expm1(Function):
    def forward(self, a):
        out = backend.array_module(a).expm1(a)
        self.save_for_backward(out)
        return out

    def backward(self, grad):
        return grad * (self.saved[0] + grad.dtype.type(1))


class Rounding(Function):
    """sign, floor, ceil, trunc, round (half to even, optionally to `decimals`) of a floating array: piecewise
    constant, so the gradient is zero everywhere, as torch's (not None: the result still requires grad).
    round(decimals) scales in the array's own dtype, as torch and NumPy do (CuPy's round scales float32 in
    float64, which rounds 0.35 to 0.3 where torch gives 0.4); sign of NaN is 0, as torch's."""
    def forward(self, a, how, decimals=0):
        xp = backend.array_module(a)
        if how == "round":
            if decimals == 0:
                return xp.rint(a)
            scale = a.dtype.type(10.0 ** abs(decimals))
            return xp.rint(a * scale) / scale if decimals > 0 else xp.rint(a / scale) * scale
        if how == "sign" and a.dtype.kind == "f":
            return xp.where(xp.isnan(a), a.dtype.type(0), xp.sign(a))
        return getattr(xp, how)(a)

    def backward(self, grad):
        return backend.array_module(grad).zeros_like(grad)


class Prod(Function):
    """The product over `dim` (all elements when None). Each element's gradient is the product of the others,
    from the products to its left and to its right, so zeros need no division (torch gives the same values)."""
    def forward(self, a, dim, keepdim):
        self.dim, self.keepdim = dim, keepdim
        self.save_for_backward(a)
        return a.prod(axis=dim, keepdims=keepdim)

    def backward(self, grad):
        (a,) = self.saved
        xp = backend.array_module(grad)
        axis = -1 if self.dim is None else self.dim
        rows = xp.moveaxis(a.reshape(-1) if self.dim is None else a, axis, -1)
        if rows.shape[-1] == 0:
            return xp.zeros_like(a)
        ones = xp.ones(rows.shape[:-1] + (1,), dtype=a.dtype)
        left = xp.concatenate([ones, xp.cumprod(rows[..., :-1], axis=-1)], axis=-1)
        right = xp.flip(xp.concatenate([ones, xp.cumprod(xp.flip(rows, -1)[..., :-1], axis=-1)], axis=-1), -1)
        others = xp.moveaxis(left * right, -1, axis).reshape(a.shape)
        if self.dim is not None and not self.keepdim:
            grad = xp.expand_dims(grad, self.dim)
        return grad * others


class Cumsum(Function):
    def forward(self, a, dim):
        self.dim = dim
        return backend.array_module(a).cumsum(a, axis=dim)

    def backward(self, grad):
        xp = backend.array_module(grad)
        return xp.ascontiguousarray(xp.flip(xp.cumsum(xp.flip(grad, self.dim), axis=self.dim), self.dim))


class Amax(Function):
    """The maximum over `axes` (a tuple; None for all); as torch's amax, the gradient is shared evenly by the
    elements equal to their slice's result, and a slice whose result is NaN gets NaN (no element equals it)."""
    reduce = "max"

    def forward(self, a, axes, keepdim):
        self.axes, self.keepdim = axes, keepdim
        out = getattr(a, self.reduce)(axis=axes, keepdims=True)
        self.save_for_backward(a == out)
        return out if keepdim else out.reshape([n for d, n in enumerate(out.shape)
                                                if axes is not None and d not in axes])

    def backward(self, grad):
        (chosen,) = self.saved
        if not self.keepdim:
            grad = grad.reshape([1 if self.axes is None or d in self.axes else n for d, n in enumerate(chosen.shape)])
        count = chosen.sum(axis=self.axes, keepdims=True).astype(grad.dtype)
        with np.errstate(divide="ignore", invalid="ignore"):
            return (grad / count) * chosen


class Amin(Amax):
    reduce = "min"
