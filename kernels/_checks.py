"""Argument checks shared by the public ops: every message names the op, what it expected, what it got."""

import numpy as np

from . import backend


def float_dtype(op, device, **arrays):
    """The common float dtype of the given arrays (None entries skipped).

    CUDA kernels take float32; the CPU path also takes float64 (for gradient checks).
    """
    allowed = (np.float32,) if device == "cuda" else (np.float32, np.float64)
    dtype = None
    for name, x in arrays.items():
        if x is None:
            continue
        if x.dtype.type not in allowed:
            names = " or ".join(np.dtype(t).name for t in allowed)
            raise TypeError(f"{op}: {name} must be {names} on {device}, got {x.dtype}")
        if dtype is None:
            dtype = x.dtype
        elif x.dtype != dtype:
            raise TypeError(f"{op}: all arrays must share one dtype, got {dtype} and {x.dtype} ({name})")
    return dtype


def check_ndim(op, name, x, *ndims):
    if x.ndim not in ndims:
        expected = " or ".join(f"{n}-D" for n in ndims)
        raise ValueError(f"{op}: {name} must be {expected}, got shape {tuple(x.shape)}")


def check_shape(op, name, x, expected):
    if tuple(x.shape) != tuple(expected):
        raise ValueError(f"{op}: {name} must have shape {tuple(expected)}, got {tuple(x.shape)}")


def check_out(op, out, shape, dtype, like, name="out"):
    """Validate a caller-provided `out` array (shape, dtype, device, contiguity)."""
    if backend.is_gpu_array(out) != backend.is_gpu_array(like):
        raise ValueError(f"{op}: {name} lives on a different device than the inputs")
    if tuple(out.shape) != tuple(shape) or out.dtype != dtype:
        raise ValueError(f"{op}: {name} must be {tuple(shape)} {np.dtype(dtype).name}, "
                         f"got {tuple(out.shape)} {out.dtype}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{op}: {name} must be C-contiguous")


def positive_int(op, name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{op}: {name} must be a positive integer, got {value!r}")
    return int(value)


def contiguous(x):
    """C-contiguous version of `x` (no copy when it already is): kernels index dense rows."""
    return x if x.flags.c_contiguous else backend.array_module(x).ascontiguousarray(x)


def empty(like, shape, dtype=None):
    """An uninitialised array on the same device as `like`."""
    return backend.array_module(like).empty(shape, dtype=like.dtype if dtype is None else dtype)


_constants = {}   # (device, dtype, value) -> the longest 1-D array of that value made so far
_outgrown = []    # the ones it replaced: never freed, as a captured CUDA graph may still read them


def constant(like, shape, dtype, value):
    """An array full of `value` on `like`'s device, a view of one kept 1-D array per device, dtype and value
    (grown by doubling), so that an op which only reads it launches no fill a call (on a GPU each fill is a
    kernel launch) and sizes that vary (sequence lengths) keep one array, not one each. Callers must never
    write to it. Not kept while a CUDA graph is being captured: there the fill would run only when the graph
    does. Never freed: a graph captured with a view of it reads it at every replay."""
    key = (backend.device_id(like), np.dtype(dtype), value)
    size = int(np.prod(shape, dtype=np.int64))
    kept = _constants.get(key)
    if kept is None or kept.size < size:
        length = max(size, 2 * kept.size if kept is not None else 0, 1)
        with backend.on_device_of(like):
            kept = backend.array_module(like).full(length, value, dtype)
        if not backend.is_capturing():
            if key in _constants:   # (growth by doubling: what is kept stays under twice the largest)
                _outgrown.append(_constants[key])
            _constants[key] = kept
    return kept[:size].reshape(shape)

