"""nn.Tensor's everyday torch methods that are spellings of what Tensor already does (device and dtype moves,
new_* constructors, add/sub/mul/div/neg/matmul/pow and the comparisons as methods) plus maximum/minimum, where
and masked_fill, mixed into Tensor; and nn.where, torch.where's function form."""
import numbers

import numpy as np

from kernels import backend

from . import tensor
from .tensor_functions_maths import MaskedFill, Maximum, Minimum, Where


class TensorMethods:
    # ---- device and dtype ----------------------------------------------------------------------------
    @property
    def is_cuda(self):
        return self.device == "cuda"

    def cpu(self):
        return self.to("cpu")

    def cuda(self, device=None, non_blocking=False):
        """As .to('cuda'): one GPU here, so device may only name it (None, 0, 'cuda' or 'cuda:0')."""
        if device not in (None, 0, "cuda", "cuda:0"):
            raise ValueError(f"cuda: only one GPU is used here (device None, 0, 'cuda' or 'cuda:0'), got {device!r}")
        return self.to("cuda")

    def int(self):
        return self._cast(np.int32)

    def bool(self):
        return self._cast(np.bool_)

    def new_zeros(self, *size, dtype=None, device=None, requires_grad=False):
        return self._new("new_zeros", tensor._sizes("new_zeros", size), 0, dtype, device, requires_grad)

    def new_ones(self, *size, dtype=None, device=None, requires_grad=False):
        return self._new("new_ones", tensor._sizes("new_ones", size), 1, dtype, device, requires_grad)

    def new_full(self, size, fill_value, *, dtype=None, device=None, requires_grad=False):
        if not isinstance(fill_value, numbers.Number):
            raise TypeError(f"new_full: fill_value must be a number, got {type(fill_value).__name__}")
        return self._new("new_full", tensor._sizes("new_full", (size,)), fill_value, dtype, device, requires_grad)

    def new_tensor(self, data, dtype=None, device=None, requires_grad=False):
        """A copy of `data` (a number, list, array or Tensor) as a new leaf, in self's dtype and on self's device
        unless given."""
        return self._new("new_tensor", None, tensor._raw(data), dtype, device, requires_grad)

    def _new(self, op, shape, value, dtype, device, requires_grad):
        """A new leaf of `shape` filled with `value` (or a copy of `value` when shape is None)."""
        device = backend.device_name(op, device)
        dtype = self.dtype if dtype is None else np.dtype(dtype)
        device = self.device if device is None else device
        xp = self.xp if device == self.device else np
        if shape is None:
            same_device = backend.is_array(value) and backend.is_gpu_array(value) == (device == "cuda")
            array = xp.array(value if same_device else backend.to_numpy(value) if backend.is_array(value) else value,
                             dtype=dtype, copy=True)
        else:
            array = xp.full(shape, value, dtype=dtype)
        return tensor.Tensor(backend.to_device(array, device), requires_grad=requires_grad)

    # ---- arithmetic and comparisons as methods ---------------------------------------------------------
    def add(self, other, *, alpha=1):
        """self + alpha * other."""
        return self + self._scaled("add", other, alpha)

    def sub(self, other, *, alpha=1):
        """self - alpha * other."""
        return self - self._scaled("sub", other, alpha)

    def mul(self, other):
        return self * other

    def div(self, other, *, rounding_mode=None):
        """True division (as `/`); torch's rounding modes 'trunc' and 'floor' are not implemented."""
        if rounding_mode is not None:
            raise ValueError(f"div: only rounding_mode=None (true division) is supported here, got {rounding_mode!r}")
        return self / other

    def neg(self):
        return -self

    def matmul(self, other):
        return self @ other

    def pow(self, exponent):
        return self ** exponent

    def _scaled(self, op, other, alpha):
        """alpha * other, refusing (as torch) a floating alpha where both operands are integers or bools."""
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
            raise TypeError(f"{op}: alpha must be a number, got {type(alpha).__name__}")
        if alpha == 1 and not isinstance(alpha, float):
            return other
        raw = tensor._raw(other)
        other_kind = raw.dtype.kind if backend.is_array(raw) else "f" if isinstance(raw, (float, np.floating)) else "i"
        if isinstance(alpha, (float, np.floating)) and self.dtype.kind in "biu" and other_kind in "biu":
            raise TypeError(f"{op}: for integer tensors alpha must be an int (not a floating-point number), "
                            f"got {alpha!r}")
        return other * alpha

    def eq(self, other):
        return self == other

    def ne(self, other):
        return self != other

    def lt(self, other):
        return self < other

    def le(self, other):
        return self <= other

    def gt(self, other):
        return self > other

    def ge(self, other):
        return self >= other

    def maximum(self, other):
        """Elementwise maximum with another tensor (NaN wins); ties share the gradient in halves, as torch."""
        return Maximum.apply(*tensor._operands(self, _tensor_operand("maximum", other)))

    def minimum(self, other):
        return Minimum.apply(*tensor._operands(self, _tensor_operand("minimum", other)))

    def where(self, condition, other):
        """self where condition is true, else other (torch's x.where(condition, y))."""
        return where(condition, self, other)

    def masked_fill(self, mask, value):
        """A copy with `value` (a number or a 0-dim tensor) where the bool `mask` (broadcasting) is true, in
        self's dtype; differentiable with respect to self and a tensor value."""
        mask = _condition("masked_fill", "mask", mask, self)
        if isinstance(value, tensor.Tensor):
            if value.ndim != 0:
                raise ValueError(f"masked_fill: the value must be a number or a 0-dim tensor, got shape {value.shape}")
            value = value._cast(self.dtype) if value.dtype.kind == self.dtype.kind == "f" else value
            return MaskedFill.apply(self, value, mask=mask)
        if not isinstance(value, numbers.Number):
            raise TypeError(f"masked_fill: the value must be a number or a 0-dim tensor, got {type(value).__name__}")
        return MaskedFill.apply(self, mask=mask, fill=value)


def where(condition, input, other):
    """torch.where(condition, input, other): input where the bool condition is true, else other, all three
    broadcasting; input and other are Tensors or numbers, promoted together as in arithmetic."""
    if isinstance(input, tensor.Tensor):
        a, b = tensor._operands(input, other)
    elif isinstance(other, tensor.Tensor):
        b, a = tensor._operands(other, input)
    else:   # two numbers: torch's default dtypes, on the condition's device
        for name, value in (("input", input), ("other", other)):
            if not isinstance(value, numbers.Number):
                raise TypeError(f"where: {name} must be a Tensor or a number, got {type(value).__name__}")
        dtype = np.float32 if isinstance(input, float) or isinstance(other, float) else \
            np.bool_ if isinstance(input, bool) and isinstance(other, bool) else np.int64
        xp = backend.array_module(tensor._raw(condition))
        a, b = tensor.Tensor(xp.asarray(input, dtype=dtype)), tensor.Tensor(xp.asarray(other, dtype=dtype))
    return Where.apply(a, b, condition=_condition("where", "condition", condition, a))


def _tensor_operand(op, other):
    if not isinstance(other, tensor.Tensor):
        raise TypeError(f"{op}: other must be a Tensor, got {type(other).__name__} (for a number use "
                        f"clamp({'min' if op == 'maximum' else 'max'}=...))")
    return other


def _condition(op, name, condition, like):
    """The raw bool array of a condition or mask (a Tensor or an array), on `like`'s device."""
    raw = tensor._raw(condition)
    if not backend.is_array(raw):
        raise TypeError(f"{op}: {name} must be a bool Tensor, got {type(condition).__name__}")
    if raw.dtype != np.bool_:
        raise TypeError(f"{op}: {name} must be a bool tensor, got dtype {raw.dtype}")
    if backend.is_gpu_array(raw) != backend.is_gpu_array(like.data):
        raise ValueError(f"{op}: {name} is on {'cuda' if backend.is_gpu_array(raw) else 'cpu'} but the tensor is on "
                         f"{like.device}; move it with .to({like.device!r}) first")
    return raw
