"""torch.nn.functional.group_norm as one autograd Function over the layer_norm kernels (the nn.GroupNorm layer is in
group_norm.py). Input (N, C, *) is split into num_groups groups of C/G channels; each (sample, group) is normalised
over its C/G * spatial values, which is layer_norm without affine on the (N, G, C/G * spatial) view; then each
channel is scaled by weight[c] and shifted by bias[c].

One Function rather than a chain of Tensor ops (reshape, layer_norm, multiply, add): on a GPU every op is a launch,
and the weight and bias gradients are summed straight into a flat optimizer's buffer (out_for), as conv2d's.
"""
import math

import numpy as np

import kernels
from kernels import backend
from kernels._checks import float_dtype

from .functional import _Op, _tensor


class _GroupNorm(_Op):
    def forward(self, x, weight, bias, num_groups, eps):
        self._mark_present(x, weight, bias)
        xp = backend.array_module(x)
        n, c = x.shape[:2]
        self.shapes = (n, c, x.size // (n * c) if n * c else 0)   # (N, C, spatial)
        if x.size == 0:   # an empty batch or empty spatial dims: an empty output, as torch's
            self.save_for_backward(x, None, weight, None, None, None)
            return xp.empty(x.shape, x.dtype)
        grouped = x.reshape(n, num_groups, -1)   # (a copy when x is not contiguous: then the kernel reads it dense)
        y, mean, rstd = kernels.layer_norm(grouped, grouped.shape[2:], None, None, eps)
        channels = y.reshape(self.shapes)   # (the kernel's new array: the affine may write it in place)
        if weight is not None:
            channels *= weight.reshape(c, 1)
        if bias is not None:
            channels += bias.reshape(c, 1)
        # x for the version check (written in place before backward raises, as torch), its grouped view to compute;
        # not the bias, which no gradient reads (torch saves none: writing it in place before backward is fine)
        self.save_for_backward(x, grouped, weight, None, mean, rstd)
        return y.reshape(x.shape)

    def backward(self, grad):
        x, grouped, weight, _, mean, rstd = self.saved
        need_x, need_w, need_b = self.needs()
        c = self.shapes[1]
        out_w, out_b = self.out_for(1, need_w), self.out_for(2, need_b)
        if x.size == 0:
            return self.grads(*_empty_gradients(x, need_x, need_w, need_b, out_w, out_b))
        grad3 = grad.reshape(self.shapes)
        grad_w = grad_b = grad_x = None
        if need_b:
            grad_b = kernels.reduce_sum(grad3, axis=(0, 2), out=out_b)
        if need_w:
            normalised = (grouped - mean) * rstd   # xhat, (N, G, C/G * spatial)
            normalised = normalised.reshape(self.shapes)
            normalised *= grad3
            grad_w = kernels.reduce_sum(normalised, axis=(0, 2), out=out_w)
        if need_x:
            grad_normalised = grad3 * weight.reshape(c, 1) if weight is not None else grad3
            grad_x, _, _ = kernels.layer_norm_backward(
                grad_normalised.reshape(grouped.shape), grouped, grouped.shape[2:], mean, rstd,
                need_input=True, need_weight=False, need_bias=False)
            grad_x = grad_x.reshape(x.shape)
        return self.grads(grad_x, grad_w, grad_b)


def _empty_gradients(x, need_x, need_w, need_b, out_w, out_b):
    """An empty input's gradients: an empty input gradient, zero weight and bias gradients."""
    xp = backend.array_module(x)
    results = [xp.empty(x.shape, x.dtype) if need_x else None]
    for needed, out in ((need_w, out_w), (need_b, out_b)):
        if not needed:
            results.append(None)
        elif out is None:
            results.append(xp.zeros(x.shape[1], x.dtype))
        else:
            out[...] = 0
            results.append(out)
    return results


def check_group_norm(op, shape, num_groups):
    """torch's checks of an input `shape` against num_groups, with messages naming `op`."""
    if isinstance(num_groups, bool) or not isinstance(num_groups, (int, np.integer)) or num_groups < 1:
        raise ValueError(f"{op}: num_groups must be a positive integer, got {num_groups!r}")
    if len(shape) < 2:
        raise ValueError(f"{op}: expected input with at least 2 dims (N, C, *), got shape {tuple(shape)}")
    if shape[1] % num_groups:
        raise ValueError(f"{op}: expected the number of channels to be divisible by num_groups={num_groups}, "
                         f"got input of shape {tuple(shape)}")
    if shape[0] * (shape[1] // num_groups) * math.prod(shape[2:]) == 1:   # torch's _verify_batch_size
        raise ValueError(f"{op}: expected more than 1 value per group when training, got input of shape "
                         f"{tuple(shape)} and num_groups={num_groups}")


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5):
    """Normalise each sample's channels in num_groups groups (mean and biased variance over the group's channels
    and spatial positions), then scale by weight and shift by bias (each (C,), optional)."""
    op = "group_norm"
    input, weight, bias = _tensor(input), _tensor(weight, "weight"), _tensor(bias, "bias")
    check_group_norm(op, input.shape, num_groups)
    channels = input.shape[1]
    for name, vector in (("weight", weight), ("bias", bias)):
        if vector is not None and tuple(vector.shape) != (channels,):
            raise ValueError(f"{op}: {name} must have shape ({channels},) (one value per channel of the input of "
                             f"shape {tuple(input.shape)}), got {tuple(vector.shape)}")
    device = backend.device_of(op, *(t.data for t in (input, weight, bias) if t is not None))
    float_dtype(op, device, input=input.data, weight=None if weight is None else weight.data,
                bias=None if bias is None else bias.data)
    numbers = (int, float, np.integer, np.floating)
    if isinstance(eps, bool) or not isinstance(eps, numbers) or not eps >= 0.0 or not math.isfinite(eps):
        raise ValueError(f"{op}: eps must be a non-negative number, got {eps!r}")
    return _GroupNorm.apply(input, weight, bias, num_groups=int(num_groups), eps=float(eps))
