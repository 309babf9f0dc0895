"""torch.nn.functional's dropout2d, pad (constant mode) and interpolate (mode 'nearest', 4-D input) as autograd
Functions on array operations of the input's module (NumPy or CuPy: each a few elementwise or indexing kernels on a
GPU; no Numba kernel is needed for a mask product, a padded copy or a gather), re-exported by functional.

- dropout2d zeroes whole channels: one draw per (sample, channel) from the generator F.dropout uses (nn.manual_seed's
  on the CPU and in the simulator, CuPy's on a GPU), kept channels scaled by 1/(1-p); the gradient is the same mask.
- pad copies the input into a new array filled with `value`; negative pads crop, as torch's. Its gradient is the
  matching slice of the output gradient.
- interpolate gathers rows and columns at torch's nearest indices, min(floor(dst * scale), in - 1) in float32 (scale
  = 1 / scale_factor where one is given, in / out otherwise); its gradient scatter-adds the output gradient back
  (integer factors: a broadcast copy forward, a block sum backward, no index arrays).
"""
import math
import numbers
import warnings

import numpy as np

from kernels import backend
from kernels._checks import float_dtype

from .autograd import Function
from .functional import _tensor, dropout_mask


def _probability(op, p):
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= p <= 1.0:
        raise ValueError(f"{op}: p must be a probability in [0, 1], got {p!r}")
    return float(p)


# ---- dropout2d ----------------------------------------------------------------------------------

class _FeatureDropout(Function):
    def forward(self, x, p):
        mask = dropout_mask(x, x.shape[:2], p).reshape(x.shape[:2] + (1,) * (x.ndim - 2))   # a draw a channel
        self.save_for_backward(mask)
        return x * mask

    def backward(self, grad):
        return grad * self.saved[0]


def dropout2d(input, p=0.5, training=True, inplace=False):
    """Zero each channel (input[n, c], a whole feature map) with probability p and scale the others by 1/(1-p);
    identity when not training. As torch's: a 3-D input is taken as (N, C, L) (with torch's warning), and other
    ranks than 3 and 4 warn and drop per (dim 0, dim 1) entry; fewer than 2 dims raise. `inplace` is accepted and
    a new Tensor returned."""
    p = _probability("dropout2d", p)
    input = _tensor(input)
    if input.ndim < 2:
        raise ValueError(f"dropout2d: expected an input of at least 2 dims (N, C, *), got shape {input.shape}")
    if input.ndim not in (3, 4):
        warnings.warn(f"dropout2d: Received a {input.ndim}-D input to dropout2d, which is deprecated and will "
                      f"result in an error in a future release. To retain the behavior and silence this warning, "
                      f"please use dropout instead. Note that dropout2d exists to provide channel-wise dropout on "
                      f"inputs with 2 spatial dimensions, a channel dimension, and an optional batch dimension "
                      f"(i.e. 3D or 4D inputs).", UserWarning, stacklevel=2)
    if input.ndim == 3:
        warnings.warn("dropout2d: Received a 3D input to dropout2d and assuming that channel-wise 1D dropout "
                      "behavior is desired - input is interpreted as shape (N, C, L), where C is the channel dim. "
                      "This behavior will change in a future release to interpret the input as one without a batch "
                      "dimension, i.e. shape (C, H, W). To maintain the 1D channel-wise dropout behavior, please "
                      "switch to using dropout1d instead.", UserWarning, stacklevel=2)
    if not training or p == 0.0:
        return input
    if p == 1.0:
        return input * 0.0
    return _FeatureDropout.apply(input, p=p)


# ---- pad ----------------------------------------------------------------------------------------

PAD_MODES = ("constant", "reflect", "replicate", "circular")


def _pad_regions(op, shape, pad):
    """(output shape, source slices in the input, destination slices in the output) of a constant pad."""
    out_shape, source, destination = list(shape), [slice(None)] * len(shape), [slice(None)] * len(shape)
    for pair in range(len(pad) // 2):
        dim = len(shape) - 1 - pair   # pad's first pair is the last dim's, as torch's
        before, after = pad[2 * pair], pad[2 * pair + 1]
        size = shape[dim] + before + after
        if size < 0:
            raise ValueError(f"{op}: padding ({before}, {after}) of dim {dim} (size {shape[dim]}) gives a negative "
                             f"size {size}")
        if max(-before, 0) + max(-after, 0) > shape[dim]:   # (torch's narrow() refuses a crop past the dim)
            raise ValueError(f"{op}: padding ({before}, {after}) of dim {dim} (size {shape[dim]}) crops more than "
                             f"the dim holds")
        start, stop = max(-before, 0), shape[dim] - max(-after, 0)
        kept = stop - start
        out_shape[dim] = size
        source[dim] = slice(start, start + kept)
        destination[dim] = slice(max(before, 0), max(before, 0) + kept)
    return tuple(out_shape), tuple(source), tuple(destination)


class _ConstantPad(Function):
    def forward(self, x, pad, value):
        xp = backend.array_module(x)
        out_shape, self.source, self.destination = _pad_regions("pad", x.shape, pad)
        self.input_shape, self.cropped = x.shape, any(p < 0 for p in pad)
        out = xp.full(out_shape, value, x.dtype)
        out[self.destination] = x[self.source]
        return out

    def backward(self, grad):
        xp = backend.array_module(grad)
        if not self.cropped:   # every input value reached the output
            return xp.ascontiguousarray(grad[self.destination])
        grad_x = xp.zeros(self.input_shape, grad.dtype)
        grad_x[self.source] = grad[self.destination]
        return grad_x


def check_pad(op, pad, ndim):
    """pad as a tuple of ints, checked as torch checks it against an input of `ndim` dims."""
    if not isinstance(pad, (tuple, list)) or any(
            isinstance(p, bool) or not isinstance(p, (int, np.integer)) for p in pad):
        raise TypeError(f"{op}: pad must be a tuple of ints, got {pad!r}")
    if len(pad) % 2:
        raise ValueError(f"{op}: padding length must be divisible by 2, got {len(pad)} values {tuple(pad)}")
    if len(pad) > 2 * ndim:
        raise ValueError(f"{op}: padding length must be at most twice the input's dims, got {len(pad)} values for "
                         f"an input of {ndim} dims")
    return tuple(int(p) for p in pad)


def pad(input, pad, mode="constant", value=None):
    """torch.nn.functional.pad in mode 'constant': pad = (last dim's before, after, the dim before's before, after,
    ...), each count of `value` (0 by default) values added at that side; negative counts crop."""
    input = _tensor(input)
    if mode not in PAD_MODES:
        raise ValueError(f"pad: mode must be one of {PAD_MODES}, got {mode!r}")
    if mode != "constant":
        raise ValueError(f"pad: mode {mode!r} is not implemented here (only 'constant' is), got mode={mode!r}")
    pad = check_pad("pad", pad, input.ndim)
    value = 0.0 if value is None else value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"pad: value must be a real number, got {value!r}")
    device = backend.device_of("pad", input.data)
    if input.dtype.kind not in "biu":   # integer and bool tensors (token ids, masks) pad too, as torch's
        float_dtype("pad", device, input=input.data)
        value = float(value)
    _pad_regions("pad", input.shape, pad)   # (a negative size raises before anything is recorded)
    return _ConstantPad.apply(input, pad=pad, value=value)


# ---- interpolate (nearest) ----------------------------------------------------------------------

INTERPOLATE_MODES = ("nearest", "linear", "bilinear", "bicubic", "trilinear", "area", "nearest-exact")
_indices = {}   # (device, input size, output size, scale) -> index array on that device: never dropped, as a
                # CUDA graph captured with one reads it at every replay (a few bytes an output position)


def nearest_indices(in_size, out_size, scale=None):
    """torch's 'nearest' source index of each output position (NumPy int64): min(floor(dst * s), in - 1) with the
    float32 s = 1/scale where a scale is given, in/out otherwise; out == in and out == 2 in are exact shortcuts.
    The float32 rule in every dtype: torch's CPU float64 forward computes s in float64 and picks other rows at
    some sizes above about 35 (its float64 backward uses the float32 rule, as here)."""
    dst = np.arange(out_size)
    if out_size == in_size:
        return dst
    if out_size == 2 * in_size:
        return dst >> 1
    s = np.float32(1.0 / scale) if scale is not None and scale > 0 else np.float32(in_size) / np.float32(out_size)
    return np.minimum(np.floor(dst.astype(np.float32) * s).astype(np.int64), in_size - 1)


def _device_indices(like, in_size, out_size, scale):
    """nearest_indices on `like`'s device, made once per sizes (on a GPU a host-to-device copy: kept, so that a
    captured step replays no copy)."""
    key = (backend.device_id(like), in_size, out_size, scale)
    indices = _indices.get(key)
    if indices is None:
        with backend.on_device_of(like):
            indices = _indices[key] = backend.array_module(like).asarray(nearest_indices(in_size, out_size, scale))
    return indices


def _repeat_factor(in_size, out_size, scale):
    """k when the nearest map is each input position repeated k times (an integer upscale), else None."""
    if out_size % in_size:
        return None
    factor = out_size // in_size
    expected = np.arange(out_size) // factor
    return factor if np.array_equal(nearest_indices(in_size, out_size, scale), expected) else None


class _UpsampleNearest2d(Function):
    def forward(self, x, size, scales):
        xp = backend.array_module(x)
        n, c, h, w = x.shape
        self.input_shape = x.shape
        factors = [_repeat_factor(i, o, s) for i, o, s in zip((h, w), size, scales)]
        if None not in factors:   # each value repeated kh x kw times: one broadcast copy
            self.factors = tuple(factors)
            kh, kw = factors
            return xp.ascontiguousarray(xp.broadcast_to(x[:, :, :, None, :, None], (n, c, h, kh, w, kw))).reshape(
                n, c, h * kh, w * kw)
        self.factors = None
        self.rows = _device_indices(x, h, size[0], scales[0])[:, None]
        self.columns = _device_indices(x, w, size[1], scales[1])[None, :]
        return x[:, :, self.rows, self.columns]

    def backward(self, grad):
        xp = backend.array_module(grad)
        n, c, h, w = self.input_shape
        if self.factors is not None:   # the sum of each kh x kw block
            kh, kw = self.factors
            return grad.reshape(n, c, h, kh, w, kw).sum(axis=(3, 5))
        grad_x = xp.zeros(self.input_shape, grad.dtype)
        xp.add.at(grad_x, (slice(None), slice(None), self.rows, self.columns), grad)   # (indices repeat: add.at)
        return grad_x


def _pair(op, name, value, kind):
    """value (one number or a sequence of two) as a 2-tuple of `kind` (int or float), checked as torch's."""
    values = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(values) != 2:
        raise ValueError(f"{op}: {name} must have one value per spatial dim of the 4-D input (2), got {value!r}")
    allowed = (int, np.integer) if kind is int else numbers.Real
    if any(isinstance(v, bool) or not isinstance(v, allowed) for v in values):
        raise TypeError(f"{op}: {name} must be {'an int' if kind is int else 'a number'} or a pair of them, got "
                        f"{value!r}")
    return tuple(kind(v) for v in values)


def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None, antialias=False):
    """torch.nn.functional.interpolate for a 4-D (N, C, H, W) input in mode 'nearest': the output (N, C, H', W')
    of `size`, or of floor(H * scale_factor) x floor(W * scale_factor), takes each value from torch's nearest
    source position (see nearest_indices)."""
    op = "interpolate"
    input = _tensor(input)
    if mode not in INTERPOLATE_MODES:
        raise ValueError(f"{op}: mode must be one of {INTERPOLATE_MODES}, got {mode!r}")
    if mode != "nearest":
        raise ValueError(f"{op}: mode {mode!r} is not implemented here (only 'nearest' is), got mode={mode!r}")
    if align_corners is not None:
        raise ValueError(f"{op}: align_corners can only be set with the interpolating modes (linear, bilinear, "
                         f"bicubic, trilinear), got align_corners={align_corners!r} for mode 'nearest'")
    if antialias:
        raise ValueError(f"{op}: antialias is only for the modes 'bilinear' and 'bicubic', got antialias=True for "
                         f"mode 'nearest'")
    if input.ndim != 4:
        raise ValueError(f"{op}: expected a 4-D input (N, C, H, W) for mode 'nearest', got shape {input.shape}")
    if (size is None) == (scale_factor is None):
        raise ValueError(f"{op}: exactly one of size and scale_factor must be given, got size={size!r} and "
                         f"scale_factor={scale_factor!r}")
    in_sizes = input.shape[2:]
    if size is not None:
        if recompute_scale_factor:
            raise ValueError(f"{op}: recompute_scale_factor is not meaningful with an explicit size, got size={size!r}")
        out_sizes, scales = _pair(op, "size", size, int), (None, None)
    else:
        factors = _pair(op, "scale_factor", scale_factor, float)
        if not all(math.isfinite(f) and f > 0 for f in factors):
            raise ValueError(f"{op}: scale_factor must be finite and positive, got {scale_factor!r}")
        out_sizes = tuple(math.floor(float(i) * f) for i, f in zip(in_sizes, factors))
        scales = (None, None) if recompute_scale_factor else factors
    if min(in_sizes) < 1 or min(out_sizes) < 1:
        raise ValueError(f"{op}: input and output sizes must be greater than 0, got input (H: {in_sizes[0]}, W: "
                         f"{in_sizes[1]}) and output (H: {out_sizes[0]}, W: {out_sizes[1]})")
    float_dtype(op, backend.device_of(op, input.data), input=input.data)
    return _UpsampleNearest2d.apply(input, size=out_sizes, scales=scales)
