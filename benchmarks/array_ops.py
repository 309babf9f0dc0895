"""Counting the array operations of an eager step that would each run a CuPy kernel (or read a value back) on
a GPU, without one: used by `python -m benchmarks.host_proxy MODEL --array-ops`.

On the H100 an eager step of ours is bound by host work, and our own launches (counted by host_proxy) are not
all of it: every CuPy call that runs a kernel (a fill, a copy, an elementwise op, a reduction) costs a launch
too, and every value read back to the host waits for the device. In the host proxy the arrays are NumPy
arrays; here they become `CountedArray`s, a NumPy subclass that counts, by the line of our code that asked,
each operation CuPy would do with a kernel: ufunc calls and reductions, fills (`zeros`, `ones`, `full`,
`fill`, `__setitem__`), copies (`copy`, `astype`, `ascontiguousarray` of a strided array, `concatenate`...),
gathers by index arrays, and read-backs (`float()`, `int()`, `bool()`, `item()`, `tolist()`). Views
(reshape, transpose, slices) and `empty` are free on a GPU too and are not counted. It is an estimate: code
that branches on CuPy (`is_gpu_array`) takes its NumPy branch here, and NumPy's `mean` counts as two (a sum,
then a division), where CuPy's is one kernel.
"""
import collections
import os
import sys

import numpy as np

_counts = collections.Counter()       # (kind, name, where) -> calls
_enabled = [False]
_OWN_FILES = (os.path.dirname(np.__file__), __file__)
_CREATORS = {"empty", "zeros", "ones", "full", "empty_like", "zeros_like", "ones_like", "full_like", "arange",
             "array", "asarray", "ascontiguousarray"}
_FILLS = {"zeros", "ones", "full", "zeros_like", "ones_like", "full_like", "arange", "array"}
_VIEWS = {"reshape", "transpose", "broadcast_to", "squeeze", "expand_dims", "moveaxis", "swapaxes", "ndim",
          "shape", "size", "result_type", "may_share_memory", "shares_memory", "atleast_1d", "atleast_2d",
          "broadcast_arrays", "split", "array_split", "iscomplexobj", "isrealobj", "empty_like", "can_cast",
          "asarray"}


def _where():
    """file:line of the first caller outside NumPy and this module."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith(_OWN_FILES):
        frame = frame.f_back
    if frame is None:
        return "?"
    path = os.path.relpath(frame.f_code.co_filename)
    return f"{path}:{frame.f_lineno} {frame.f_code.co_name}"


def _note(kind, name):
    if _enabled[0]:
        _counts[kind, name, _where()] += 1


def _plain(value):
    return value.view(np.ndarray) if isinstance(value, CountedArray) else value


def _counted(value):
    """value as CountedArrays; NumPy's scalars become 0-d ones, as CuPy's reductions and elements are 0-d
    device arrays (so what is then done with them is counted, and reading them back too)."""
    if isinstance(value, np.generic):
        value = np.asarray(value)
    if isinstance(value, np.ndarray) and not isinstance(value, CountedArray):
        return value.view(CountedArray)
    if isinstance(value, tuple):
        return tuple(_counted(v) for v in value)
    return value


class CountedArray(np.ndarray):
    """A NumPy array standing in for a CuPy array: see the module docstring."""

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        _note("kernel", ufunc.__name__ if method == "__call__" else f"{ufunc.__name__}.{method}")
        if out is not None:
            kwargs["out"] = tuple(_plain(o) for o in out)
        result = getattr(ufunc, method)(*(_plain(i) for i in inputs), **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _counted(result)

    def __array_function__(self, func, types, args, kwargs):
        name = func.__name__
        if name == "ascontiguousarray":
            if not args[0].flags.c_contiguous:
                _note("copy", name)
        elif name not in _VIEWS:
            _note("copy" if name in ("copy", "concatenate", "stack", "copyto", "take", "tile") else "kernel", name)
        _enabled[0], was = False, _enabled[0]   # (what the function does inside is its one kernel)
        try:
            result = super().__array_function__(func, types, args, kwargs)
        finally:
            _enabled[0] = was
        return _counted(result)

    def __getitem__(self, index):
        parts = index if isinstance(index, tuple) else (index,)
        if any(isinstance(p, (np.ndarray, list)) for p in parts):
            _note("copy", "gather")
        return _counted(super().__getitem__(index))

    def __setitem__(self, index, value):
        _note("fill" if np.isscalar(value) else "copy", "setitem")
        super().__setitem__(index, _plain(value))

    def copy(self, *args, **kwargs):
        _note("copy", "copy")
        return _counted(super().copy(*args, **kwargs))

    def astype(self, dtype, *args, copy=True, **kwargs):
        if copy or np.dtype(dtype) != self.dtype:
            _note("copy", "astype")
        return _counted(super().astype(dtype, *args, copy=copy, **kwargs))

    def fill(self, value):
        _note("fill", "fill")
        super().fill(value)

    def _read_back(self, name):
        _note("read-back", name)

    def __float__(self):
        self._read_back("float")
        return float(self.view(np.ndarray))

    def __int__(self):
        self._read_back("int")
        return int(self.view(np.ndarray))

    def __bool__(self):
        self._read_back("bool")
        return bool(self.view(np.ndarray))

    def __index__(self):
        self._read_back("index")
        return self.view(np.ndarray).__index__()

    def item(self, *args):
        self._read_back("item")
        return self.view(np.ndarray).item(*args)

    def tolist(self):
        self._read_back("tolist")
        return self.view(np.ndarray).tolist()


class _CountingNumpy:
    """What `backend.array_module` returns for a CountedArray: numpy, with its array creators returning
    CountedArrays and counting the fills among them. Host code that calls numpy directly (`np.arange` on CTC's
    host targets) is not counted, as it runs on the host on a GPU too."""

    def __getattr__(self, name):
        if name == "random":
            return _CountingRandom()
        original = getattr(np, name)
        if name not in _CREATORS:
            return original

        def creator(*args, **kwargs):
            if name in _FILLS:
                _note("fill", name)
            elif name in ("asarray", "ascontiguousarray") and not isinstance(args[0], (CountedArray, np.generic)):
                _note("copy", "upload")   # a host array (or list) copied to the device
            elif name == "ascontiguousarray" and not args[0].flags.c_contiguous:
                _note("copy", name)
            _enabled[0], was = False, _enabled[0]
            try:
                return _counted(original(*args, **kwargs))
            finally:
                _enabled[0] = was
        return creator


class _CountingRandom:
    """`xp.random` for CountedArrays: CuPy's draws take a dtype (dropout's masks), NumPy's do not."""

    def __getattr__(self, name):
        def draw(*args, dtype=None, **kwargs):
            _note("kernel", f"random.{name}")
            values = getattr(np.random, name)(*args, **kwargs)
            return _counted(values if dtype is None else np.asarray(values).astype(dtype))
        return draw


def install(model, *arrays):
    """Make the model's parameters and buffers and `arrays` CountedArrays (returned), and make
    `backend.array_module` answer `_CountingNumpy` for CountedArrays, for good."""
    from kernels import backend
    counting_numpy, original = _CountingNumpy(), backend.array_module

    def array_module(x):
        return counting_numpy if isinstance(x, CountedArray) else original(x)
    backend.array_module = array_module
    for module in model.modules():
        for tensor in module._parameters.values():
            if tensor is not None:
                tensor.data = tensor.data.view(CountedArray)
        for name, buffer in module._buffers.items():
            if buffer is not None:
                module._buffers[name] = buffer.view(CountedArray)
    return tuple(a.view(CountedArray) for a in arrays)


def counting(on):
    _enabled[0] = on


def reset():
    _counts.clear()


def report(steps, top=25):
    """Per-step totals by kind, then the busiest call sites; returns the totals."""
    totals = collections.Counter()
    for (kind, _, _), calls in _counts.items():
        totals[kind] += calls
    lines = ["array operations a step (each a CuPy kernel or read-back on a GPU): " +
             ", ".join(f"{kind} {calls / steps:g}" for kind, calls in sorted(totals.items()))]
    for (kind, name, where), calls in _counts.most_common(top):
        lines.append(f"  {calls / steps:6g}  {kind:9s} {name:18s} {where}")
    print("\n".join(lines))
    return {kind: calls / steps for kind, calls in totals.items()}
