"""torch.nn.functional's softplus, relu6, hardtanh, prelu, softsign, mish, hardswish and hardsigmoid (re-exported
by functional through functional_extra.py; the layers are in layers_extra.py). No kernels of their own: each is
array-module code on either device (NumPy or CuPy) in a small Function whose backward is torch's derivative,
kinks included (hardtanh passes no gradient at its bounds, hardswish has slope 0 at -3 and 1 at 3), or a
composition of Tensor ops where autograd already gives torch's gradient (prelu, softsign). Each Function saves
its input, as torch's do, so writing it in place before backward raises."""
import numbers

import numpy as np

from kernels import backend

from .autograd import Function
from .functional import _tensor
from .tensor_methods import where


def _floating(op, input):
    """input as a float32/float64 Tensor (arrays wrapped), else a TypeError naming `op`."""
    input = _tensor(input, f"{op}: input", optional=False)
    if input.dtype not in (np.float32, np.float64):
        raise TypeError(f"{op}: input must be float32 or float64, got {input.dtype}")
    return input


def _real(op, name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{op}: {name} must be a real number, got {value!r}")
    return float(value)


class _Softplus(Function):
    """log(1 + exp(beta x)) / beta, and x itself where beta x > threshold (torch's linear tail)."""

    def forward(self, x, beta, threshold):
        xp = backend.array_module(x)
        self.beta, self.threshold = x.dtype.type(beta), x.dtype.type(threshold)
        self.save_for_backward(x)
        scaled = x * self.beta
        linear = scaled > self.threshold
        with np.errstate(over="ignore"):   # (exp overflows only where the linear tail is taken)
            return xp.where(linear, x, xp.log1p(xp.exp(xp.where(linear, x.dtype.type(0), scaled))) / self.beta)

    def backward(self, grad):
        (x,) = self.saved
        xp = backend.array_module(x)
        scaled = x * self.beta
        linear = scaled > self.threshold
        z = xp.exp(xp.where(linear, x.dtype.type(0), scaled))
        return xp.where(linear, grad, grad * z / (z + 1))


class _Hardtanh(Function):
    """x clamped to [low, high] (NaN kept: maximum and minimum propagate it); as torch, no gradient at or beyond
    the bounds, and (torch's test is x <= low or x >= high) the gradient passes at NaN."""

    def forward(self, x, low, high):
        xp = backend.array_module(x)
        self.low, self.high = x.dtype.type(low), x.dtype.type(high)
        self.save_for_backward(x)
        return xp.minimum(xp.maximum(x, self.low), self.high)

    def backward(self, grad):
        (x,) = self.saved
        outside = (x <= self.low) | (x >= self.high)
        return backend.array_module(x).where(outside, grad.dtype.type(0), grad)


class _Mish(Function):
    """x tanh(softplus(x)), softplus in its overflow-free form max(x, 0) + log1p(exp(-|x|))."""

    def forward(self, x):
        self.save_for_backward(x)
        return x * _tanh_softplus(x)

    def backward(self, grad):
        (x,) = self.saved
        xp = backend.array_module(x)
        one = x.dtype.type(1)
        tanh_softplus = _tanh_softplus(x)
        decay = xp.exp(-xp.abs(x))   # sigmoid from exp(-|x|): no overflow at large |x| in float32
        sigmoid = xp.where(x >= 0, one, decay) / (one + decay)
        return grad * (tanh_softplus + x * sigmoid * (one - tanh_softplus * tanh_softplus))


def _tanh_softplus(x):
    xp = backend.array_module(x)
    return xp.tanh(xp.maximum(x, x.dtype.type(0)) + xp.log1p(xp.exp(-xp.abs(x))))


class _Hardswish(Function):
    """x relu6(x + 3) / 6; torch's gradient: 0 up to -3, x / 3 + 1/2 strictly inside (-3, 3), 1 from 3 on."""

    def forward(self, x):
        xp = backend.array_module(x)
        self.save_for_backward(x)
        three, six = x.dtype.type(3), x.dtype.type(6)
        return x * xp.minimum(xp.maximum(x + three, x.dtype.type(0)), six) / six

    def backward(self, grad):
        (x,) = self.saved
        xp = backend.array_module(x)
        three, zero = x.dtype.type(3), x.dtype.type(0)
        slope = xp.where(x <= -three, zero, xp.where(x < three, x / three + x.dtype.type(0.5), x.dtype.type(1)))
        return grad * slope


class _Hardsigmoid(Function):
    """relu6(x + 3) / 6; torch's gradient: 1/6 (a float32 constant there, in every dtype) strictly inside (-3, 3),
    0 elsewhere."""

    def forward(self, x):
        xp = backend.array_module(x)
        self.save_for_backward(x)
        three, six = x.dtype.type(3), x.dtype.type(6)
        return xp.minimum(xp.maximum(x + three, x.dtype.type(0)), six) / six

    def backward(self, grad):
        (x,) = self.saved
        three = x.dtype.type(3)
        inside = (x > -three) & (x < three)
        return backend.array_module(x).where(inside, grad * grad.dtype.type(np.float32(1 / 6)), grad.dtype.type(0))


def softplus(input, beta=1.0, threshold=20.0):
    """log(1 + exp(beta x)) / beta, reverting to x where beta x > threshold."""
    beta, threshold = _real("softplus", "beta", beta), _real("softplus", "threshold", threshold)
    return _Softplus.apply(_floating("softplus", input), beta=beta, threshold=threshold)


def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False):
    """x clamped to [min_val, max_val]; no gradient at or beyond the bounds (torch's choice at the kinks)."""
    low, high = _real("hardtanh", "min_val", min_val), _real("hardtanh", "max_val", max_val)
    if low > high:
        raise ValueError(f"hardtanh: min_val must not be greater than max_val, got min_val={min_val} and "
                         f"max_val={max_val}")
    return _Hardtanh.apply(_floating("hardtanh", input), low=low, high=high)


def relu6(input, inplace=False):
    """min(max(x, 0), 6): hardtanh(x, 0, 6), so no gradient at 0 or 6, as torch's."""
    return _Hardtanh.apply(_floating("relu6", input), low=0.0, high=6.0)


def prelu(input, weight):
    """x where x > 0, else weight * x; weight has 1 element or one per channel (dim 1 of the input)."""
    input = _floating("prelu", input)
    weight = _tensor(weight, "prelu: weight", optional=False)
    if weight.ndim > 1:
        raise ValueError(f"prelu: weight must be a scalar or 1-D, got shape {weight.shape}")
    if weight.dtype != input.dtype:
        raise TypeError(f"prelu: weight must have the input's dtype {input.dtype}, got {weight.dtype}")
    channels = input.shape[1] if input.ndim >= 2 else 1
    count = int(np.prod(weight.shape))
    if count != 1 and count != channels:
        raise ValueError(f"prelu: weight must have 1 element or one per input channel (dim 1 of the input, "
                         f"{channels}), got {count} for input of shape {input.shape}")
    if count == 1:
        weight = weight.reshape(())
    else:   # (C,) -> (C, 1, ...): broadcast over dim 1
        weight = weight.reshape((channels,) + (1,) * (input.ndim - 2))
    # (Where sends x > 0 to the first branch, so x == 0 takes the weight's side, as torch's derivative does)
    # (the weight's branch sees 0 where x > 0, so an infinite x gives its gradient 0, not 0 * inf = NaN, as torch)
    positive = input > 0
    return where(positive, input, weight * where(positive, 0.0, input))


def softsign(input):
    """x / (1 + |x|)."""
    input = _floating("softsign", input)
    return input / (input.abs() + 1)


def mish(input, inplace=False):
    """x tanh(softplus(x))."""
    return _Mish.apply(_floating("mish", input))


def hardswish(input, inplace=False):
    """x relu6(x + 3) / 6."""
    return _Hardswish.apply(_floating("hardswish", input))


def hardsigmoid(input, inplace=False):
    """relu6(x + 3) / 6."""
    return _Hardsigmoid.apply(_floating("hardsigmoid", input))
