"""nn.Tensor's in-place ops (zero_, fill_, copy_, x[i] = v, add_/sub_/mul_/div_, +=), mixed into Tensor.

torch's rule: no in-place op on a leaf that requires grad (nor, here, on any tensor autograd records, nor
from a source that requires grad) while grad is enabled; under no_grad they write into the array, which is
how initialisation, EMA and hand-written updates change parameters. Indexing with ints and slices gives
views, so `x[i] += v` and `x[0].zero_()` reach x; a tensor that is a copy where torch would give a view
(permute, expand, and reshapes of those) refuses them: the write would not reach the tensor it came from.
"""
import numbers

from kernels import backend

from . import autograd, tensor


class InPlaceOps:
    def zero_(self):
        return self._write("zero_", Ellipsis, 0)

    def fill_(self, value):
        if isinstance(value, tensor.Tensor) and value.ndim != 0:
            raise ValueError(f"fill_: the value must be a number or a 0-dim tensor, got shape {value.shape}")
        return self._write("fill_", Ellipsis, value)

    def copy_(self, src):
        if not (isinstance(src, tensor.Tensor) or backend.is_array(src)):
            raise TypeError(f"copy_: src must be a Tensor or an array, got {type(src).__name__}")
        return self._write("copy_", Ellipsis, src)

    def masked_fill_(self, mask, value):
        """Write `value` (a number or a 0-dim tensor) where the bool `mask`, broadcast to self's shape, is true."""
        from .tensor_methods import _condition
        mask = _condition("masked_fill_", "mask", mask, self)
        if isinstance(value, tensor.Tensor) and value.ndim != 0:
            raise ValueError(f"masked_fill_: the value must be a number or a 0-dim tensor, got shape {value.shape}")
        try:
            mask = self.xp.broadcast_to(mask, self.shape)
        except ValueError:
            raise ValueError(f"masked_fill_: a mask of shape {tuple(mask.shape)} does not broadcast to the tensor's "
                             f"shape {self.shape}") from None
        return self._write("masked_fill_", mask, value)

    def __setitem__(self, index, value):
        self._write("__setitem__", tensor._index(index), value)

    def add_(self, other, alpha=1):
        return self._update("add_", "add", other, alpha)

    def sub_(self, other, alpha=1):
        return self._update("sub_", "subtract", other, alpha)

    def mul_(self, other):
        return self._update("mul_", "multiply", other)

    def div_(self, other):
        return self._update("div_", "divide", other)

    # x += y is in place as add_, except where autograd records x + y: then, as Python does without
    # __iadd__, x becomes a new tensor (torch records the in-place op: the same values and gradients). On a view
    # (x = z[1:], a reshape, a split) the new values are also written into the view's memory, so z has torch's
    # values; z's recorded history does not know of the write, so z is marked stale: a recorded op on it raises
    # (autograd.Function.apply) where its gradient would miss the change. Reading z's values is fine.
    def __iadd__(self, other):
        return self._augmented("+=", other, lambda t: t + other, self.add_)

    def __isub__(self, other):
        return self._augmented("-=", other, lambda t: t - other, self.sub_)

    def __imul__(self, other):
        return self._augmented("*=", other, lambda t: t * other, self.mul_)

    def __itruediv__(self, other):
        return self._augmented("/=", other, lambda t: t / other, self.div_)

    def _augmented(self, op, other, out_of_place, in_place):
        other_requires_grad = isinstance(other, tensor.Tensor) and other.requires_grad
        records = autograd.grad_enabled() and (self.requires_grad or other_requires_grad) and \
            not (self.requires_grad and self.is_leaf)
        if not records:
            return in_place(other)
        if not self._is_view:
            return out_of_place(self)
        viewed = [self]   # the tensors whose memory this is: up the view ops that made it (or a previous op= here)
        while viewed[-1]._is_view and viewed[-1]._creator is not None:
            earlier = viewed[-1].__dict__.get("_written_views")
            if earlier is not None:
                viewed.extend(earlier)
                break
            viewed.append(viewed[-1]._creator[0].inputs[0])
        if viewed[-1].requires_grad and viewed[-1].is_leaf:
            raise RuntimeError(f"{op}: a view of a leaf Variable that requires grad is being used in an in-place "
                               f"operation (change parameters under nn.no_grad())")
        result = out_of_place(self.clone())   # (on a copy: what the op saves for its gradient is not overwritten)
        self.data[...] = result.data   # the viewed tensors see the values, as torch's
        autograd.note_in_place(self.data)
        for stale in viewed:
            autograd.mark_stale(stale, op)
        # the result is the view from now on (its memory, so a second x op= y writes through again)
        result.data, result._is_view, result._written_views = self.data, True, viewed
        return result

    def _check_in_place(self, op, source):
        if self._copy_of_view is not None:   # torch would write through a view into the tensor it came from
            raise RuntimeError(f"{op}: this tensor is a copy made by {self._copy_of_view} (a view in torch), so "
                               f"writing into it would not change the tensor it came from; write into that tensor, "
                               f"or take .clone() to work on a copy")
        if not autograd.grad_enabled():
            return
        if self.requires_grad and self.is_leaf:
            raise RuntimeError(f"{op}: a leaf Variable that requires grad is being used in an in-place operation "
                               f"(change parameters under nn.no_grad())")
        if self.requires_grad:
            raise RuntimeError(f"{op}: in-place operations on a tensor of a recorded graph are not supported; "
                               f"use the out-of-place op")
        if isinstance(source, tensor.Tensor) and source.requires_grad:
            raise RuntimeError(f"{op}: the source requires grad, and in-place operations are not recorded; "
                               f"use the out-of-place op, or write source.detach()")

    def _source(self, op, value):
        """A number as is, a Tensor's or array's data on this tensor's device."""
        value = tensor._raw(value)
        if backend.is_array(value):
            return backend.to_device(value, self.device)
        if isinstance(value, numbers.Number):
            return value
        raise TypeError(f"{op}: expected a Tensor, an array or a number, got {type(value).__name__}")

    def _write(self, op, index, value):
        self._check_in_place(op, value)
        value = self._source(op, value)
        try:
            self.data[index] = value
        except ValueError as error:  # shapes that do not broadcast, a read-only array
            raise ValueError(f"{op}: {error} (tensor of shape {self.shape})") from None
        autograd.note_in_place(self.data)
        return self

    def _update(self, op, ufunc, other, alpha=1):
        self._check_in_place(op, other)
        raw = tensor._raw(other)
        if backend.is_array(raw) and backend.is_gpu_array(raw) != backend.is_gpu_array(self.data):
            # as the out-of-place ops (and torch's in-place ones): no silent copy across devices; copy_ copies
            other_device = "cuda" if backend.is_gpu_array(raw) else "cpu"
            raise ValueError(f"{op}: the other operand is on {other_device} but this tensor is on {self.device}; "
                             f"move it with .to({self.device!r}) first")
        other = self._source(op, other)
        other = other if alpha == 1 else other * alpha
        try:
            getattr(self.xp, ufunc)(self.data, other, out=self.data)
        except (TypeError, ValueError) as error:  # a result that does not fit self's shape or dtype
            kind = ValueError if isinstance(error, ValueError) else TypeError
            raise kind(f"{op}: {error} (tensor of shape {self.shape}, dtype {self.dtype})") from None
        autograd.note_in_place(self.data)
        return self
