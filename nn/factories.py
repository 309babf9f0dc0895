"""torch's tensor factories: zeros/ones/full/empty and their *_like, rand/randn/randint and rand_like/randn_like,
arange, linspace, eye, from_numpy, and the dtype aliases nn.float32, nn.int64, nn.bool, ...

Each is made where it will live: NumPy on 'cpu', CuPy on 'cuda' (nothing is built on the host and copied over).
Random draws come from the generators nn.manual_seed seeds: nn.init.default_generator() on the CPU, CuPy's
global generator on the GPU; floating draws are made in the requested dtype (float32 draws in float32).
Defaults as torch's: dtype float32 (int64 for randint and an all-integer arange, the fill value's kind for
full), device 'cpu', requires_grad False (floating dtypes only).
"""
import builtins  # this module defines nn.bool (torch.bool): Python's bool is builtins.bool here
import math
import numbers

import numpy as np

from kernels import backend

from . import init
from .tensor import Tensor, _check_can_require_grad

__all__ = ["arange", "bool", "double", "empty", "empty_like", "eye", "float16", "float32", "float64", "from_numpy",
           "full", "full_like", "half", "int8", "int16", "int32", "int64", "linspace", "long", "ones", "ones_like",
           "rand", "rand_like", "randint", "randn", "randn_like", "uint8", "zeros", "zeros_like"]

DEFAULT_DTYPE = np.dtype(np.float32)   # torch.get_default_dtype()
_FROM_NUMPY_KINDS = "biufc"


# ---- argument checks -----------------------------------------------------------------------------------
def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, (builtins.bool, np.bool_))


def _size(op, sizes, size=None, sequence_only=False):
    """The shape from ints or one tuple/list/torch.Size-like (or a size= keyword), as a tuple of ints >= 0."""
    if size is not None:
        if sizes:
            raise TypeError(f"{op}: give the size either positionally or as size=, got both {sizes!r} and {size!r}")
        sizes = (size,)
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        sizes = tuple(sizes[0])
    elif not sizes:
        raise TypeError(f"{op}: missing the size (ints or a tuple of ints)")
    elif sequence_only:
        raise TypeError(f"{op}: size must be a tuple of ints, got {sizes[0]!r}")
    if not all(_is_int(n) for n in sizes):
        raise TypeError(f"{op}: size must be a tuple of ints, got {tuple(sizes)!r}")
    sizes = tuple(int(n) for n in sizes)
    if any(n < 0 for n in sizes):
        raise ValueError(f"{op}: sizes must be non-negative, got {sizes}")
    return sizes


def _dtype(op, dtype, default, floating_only=False):
    if dtype is None:
        return np.dtype(default)
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{op}: expected a dtype (nn.float32, nn.int64, ...), got {dtype!r}") from None
    allowed = _FLOATING if floating_only else _FLOATING + _INTEGRAL
    if dtype not in allowed:   # (not longdouble, uint64, ...: what the draws and kernels here cannot make)
        expected = "a floating dtype" if floating_only else "a bool, integer or floating dtype"
        raise TypeError(f"{op}: expected {expected}, got {dtype} (one of {', '.join(str(d) for d in allowed)})")
    return dtype


_FLOATING = tuple(np.dtype(d) for d in (np.float16, np.float32, np.float64))
_INTEGRAL = tuple(np.dtype(d) for d in (np.bool_, np.uint8, np.int8, np.int16, np.int32, np.int64))


def _check_fits(op, value, dtype):
    """torch's "value cannot be converted to type ... without overflow": a fill or bound that the dtype cannot
    hold is an error, not a silent wrap or inf."""
    if dtype.kind == "b":
        return
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        fits = math.isfinite(value) and info.min <= value <= info.max
    else:
        fits = not math.isfinite(value) or abs(value) <= float(np.finfo(dtype).max)
    if not fits:
        raise ValueError(f"{op}: value {value!r} cannot be converted to {dtype} without overflow")


def _array_module(op, device):
    """numpy for 'cpu' (and None, as torch), cupy for 'cuda' (or 'cuda:0', a torch.device)."""
    device = backend.device_name(op, device)
    if device is None or device == "cpu":
        return np
    if device == "cuda":
        cupy = backend.cupy_module()
        if cupy is None:
            raise RuntimeError(f"{op}: device 'cuda' requested but no usable GPU/CuPy was found (see `numbanet info`)")
        return cupy


def _leaf(op, array, requires_grad):
    if requires_grad:
        _check_can_require_grad(op, array.dtype)
    return Tensor(array, requires_grad=requires_grad)


def _fill_dtype(op, fill_value):
    """torch.full's dtype from the fill value: bool for a bool, int64 for an integer, the default dtype for a float."""
    if isinstance(fill_value, (builtins.bool, np.bool_)):
        return np.dtype(np.bool_)
    if _is_int(fill_value):
        return np.dtype(np.int64)
    if isinstance(fill_value, numbers.Real):
        return DEFAULT_DTYPE
    raise TypeError(f"{op}: fill_value must be a bool, int or float, got {fill_value!r}")


# ---- constant fills ------------------------------------------------------------------------------------
def _filled(op, kind, sizes, size, dtype, device, requires_grad):
    """xp.zeros, xp.ones or xp.empty (`kind`) on the device, as a leaf; errors name `op`."""
    xp = _array_module(op, device)
    return _leaf(op, getattr(xp, kind)(_size(op, sizes, size), _dtype(op, dtype, DEFAULT_DTYPE)), requires_grad)


def zeros(*sizes, size=None, dtype=None, device=None, requires_grad=False):
    return _filled("zeros", "zeros", sizes, size, dtype, device, requires_grad)


def ones(*sizes, size=None, dtype=None, device=None, requires_grad=False):
    return _filled("ones", "ones", sizes, size, dtype, device, requires_grad)


def empty(*sizes, size=None, dtype=None, device=None, requires_grad=False):
    """Uninitialised memory, as torch.empty: the values are whatever was there."""
    return _filled("empty", "empty", sizes, size, dtype, device, requires_grad)


def full(size, fill_value, *, dtype=None, device=None, requires_grad=False):
    return _full("full", size, fill_value, dtype, device, requires_grad)


def _full(op, size, fill_value, dtype, device, requires_grad):
    xp = _array_module(op, device)
    shape = _size(op, (size,), sequence_only=True)
    dtype = _dtype(op, dtype, _fill_dtype(op, fill_value))
    _check_fits(op, fill_value, dtype)
    return _leaf(op, xp.full(shape, fill_value, dtype=dtype), requires_grad)


def _like(op, input, dtype, device):
    """The input's (shape, dtype, device), with a given dtype or device in place of its own."""
    if not isinstance(input, Tensor):
        raise TypeError(f"{op}: input must be a Tensor, got {type(input).__name__}")
    # not `dtype or input.dtype`: a NumPy dtype is falsy (its len() is its number of fields)
    return input.shape, input.dtype if dtype is None else dtype, input.device if device is None else device


def zeros_like(input, *, dtype=None, device=None, requires_grad=False):
    shape, dtype, device = _like("zeros_like", input, dtype, device)
    return _filled("zeros_like", "zeros", (shape,), None, dtype, device, requires_grad)


def ones_like(input, *, dtype=None, device=None, requires_grad=False):
    shape, dtype, device = _like("ones_like", input, dtype, device)
    return _filled("ones_like", "ones", (shape,), None, dtype, device, requires_grad)


def empty_like(input, *, dtype=None, device=None, requires_grad=False):
    shape, dtype, device = _like("empty_like", input, dtype, device)
    return _filled("empty_like", "empty", (shape,), None, dtype, device, requires_grad)


def full_like(input, fill_value, *, dtype=None, device=None, requires_grad=False):
    """The input's dtype unless given (not the fill value's, as torch)."""
    shape, dtype, device = _like("full_like", input, dtype, device)
    _fill_dtype("full_like", fill_value)
    return _full("full_like", shape, fill_value, dtype, device, requires_grad)


# ---- random draws --------------------------------------------------------------------------------------
def _generator(op, xp, generator):
    """The NumPy Generator to draw from on the CPU (a given one, else nn.manual_seed's); None on the GPU, where
    the draws come from CuPy's global generator (nn.manual_seed seeds it too)."""
    if xp is np:
        if generator is not None and not isinstance(generator, np.random.Generator):
            raise TypeError(f"{op}: generator must be a numpy.random.Generator, got {type(generator).__name__}")
        return init.default_generator() if generator is None else generator
    if generator is not None:
        raise ValueError(f"{op}: generator= is for CPU draws (a numpy.random.Generator); on 'cuda' the draws come "
                         f"from CuPy's generator, seeded by nn.manual_seed")
    return None


def _uniform(xp, rng, shape, dtype):
    """U[0, 1) in `dtype`. float16 from float32 draws floored to multiples of 2**-11, so that none rounds up to 1."""
    draw_dtype = np.float32 if dtype == np.float16 else dtype
    values = rng.random(shape, dtype=draw_dtype) if rng is not None else xp.random.random_sample(shape, draw_dtype)
    if dtype == np.float16:
        values = xp.floor(values * 2048) / 2048
    return xp.asarray(values, dtype=dtype)


def _normal(xp, rng, shape, dtype):
    draw_dtype = np.float32 if dtype == np.float16 else dtype
    values = rng.standard_normal(shape, dtype=draw_dtype) if rng is not None else \
        xp.random.standard_normal(shape, draw_dtype)
    return xp.asarray(values, dtype=dtype)


def _drawn(op, draw, sizes, size, generator, dtype, device, requires_grad):
    """_uniform or _normal draws on the device, as a leaf; errors name `op`."""
    xp = _array_module(op, device)
    shape, dtype = _size(op, sizes, size), _dtype(op, dtype, DEFAULT_DTYPE, floating_only=True)
    return _leaf(op, draw(xp, _generator(op, xp, generator), shape, dtype), requires_grad)


def rand(*sizes, size=None, generator=None, dtype=None, device=None, requires_grad=False):
    """Uniform on [0, 1)."""
    return _drawn("rand", _uniform, sizes, size, generator, dtype, device, requires_grad)


def randn(*sizes, size=None, generator=None, dtype=None, device=None, requires_grad=False):
    """Standard normal."""
    return _drawn("randn", _normal, sizes, size, generator, dtype, device, requires_grad)


def rand_like(input, *, dtype=None, device=None, requires_grad=False):
    shape, dtype, device = _like("rand_like", input, dtype, device)
    return _drawn("rand_like", _uniform, (shape,), None, None, dtype, device, requires_grad)


def randn_like(input, *, dtype=None, device=None, requires_grad=False):
    shape, dtype, device = _like("randn_like", input, dtype, device)
    return _drawn("randn_like", _normal, (shape,), None, None, dtype, device, requires_grad)


def _randint_arguments(args, low, high, size):
    """torch.randint's forms: (high, size), (low, high, size), and any of them by keyword."""
    args = list(args)
    if size is None:
        if not args:
            raise TypeError("randint: missing the size argument (a tuple of ints)")
        size = args.pop()
    if high is None:
        if not args:
            raise TypeError("randint: missing the high argument")
        high = args.pop()
    if low is None:
        low = args.pop() if args else 0
    if args:
        raise TypeError("randint: expected (high, size) or (low, high, size), got more arguments")
    if not (_is_int(low) and _is_int(high)):
        raise TypeError(f"randint: low and high must be ints, got low={low!r}, high={high!r}")
    return int(low), int(high), size


def randint(*args, low=None, high=None, size=None, generator=None, dtype=None, device=None, requires_grad=False):
    """randint(high, size) or randint(low=0, high, size): integers uniform on [low, high), int64 unless dtype says."""
    low, high, size = _randint_arguments(args, low, high, size)
    xp = _array_module("randint", device)
    shape, dtype = _size("randint", (size,), sequence_only=True), _dtype("randint", dtype, np.int64)
    if high <= low:
        raise ValueError(f"randint: expected low < high, got low={low} >= high={high}")
    if dtype.kind in "iu" and (low < np.iinfo(dtype).min or high - 1 > np.iinfo(dtype).max) or \
            dtype.kind == "b" and (low < 0 or high > 2) or \
            dtype.kind == "f" and max(abs(low), abs(high - 1)) > float(np.finfo(dtype).max):
        raise ValueError(f"randint: [{low}, {high}) is out of bounds for {dtype}")
    rng = _generator("randint", xp, generator)
    values = rng.integers(low, high, shape, dtype=np.int64) if rng is not None else \
        xp.random.randint(low, high, shape, dtype=np.int64)
    return _leaf("randint", xp.asarray(values).astype(dtype, copy=False), requires_grad)


# ---- ranges --------------------------------------------------------------------------------------------
def _real(op, name, value):
    if not isinstance(value, numbers.Real) or isinstance(value, (builtins.bool, np.bool_)):
        raise TypeError(f"{op}: {name} must be an int or a float, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{op}: {name} must be finite, got {value!r}")
    return value


def arange(start, end=None, step=1, *, dtype=None, device=None, requires_grad=False):
    """arange(end) or arange(start, end, step=1): ceil((end - start) / step) values start + i * step; int64 when
    start, end and step are all ints, else float32."""
    if end is None:
        start, end = 0, start
    start, end, step = (_real("arange", name, value) for name, value in (("start", start), ("end", end),
                                                                         ("step", step)))
    all_ints = all(_is_int(value) for value in (start, end, step))
    xp = _array_module("arange", device)
    dtype = _dtype("arange", dtype, np.int64 if all_ints else DEFAULT_DTYPE)
    if dtype.kind in "iub" and not all_ints:   # torch cuts each toward zero first, then counts in integers
        start, end, step, all_ints = int(start), int(end), int(step), True
    if step == 0:
        raise ValueError(f"arange: step must be nonzero, got {step}")
    if (step > 0 and end < start) or (step < 0 and end > start):
        raise ValueError(f"arange: upper bound and lower bound inconsistent with step sign, got start={start}, "
                         f"end={end}, step={step}")
    if all_ints:
        length = -((int(start) - int(end)) // int(step))   # exact ceil for ints of any size
        values = int(start) + int(step) * xp.arange(length, dtype=np.int64)
    else:   # torch's rule: the length from doubles, the values start + i * step in double, then cast
        length = math.ceil((float(end) - float(start)) / float(step))
        values = float(start) + float(step) * xp.arange(length, dtype=np.float64)
    return _leaf("arange", values.astype(dtype, copy=False), requires_grad)


def linspace(start, end, steps, *, dtype=None, device=None, requires_grad=False):
    """`steps` values from start to end, both included; as torch, the first half counted up from start and the
    second half down from end, so that both endpoints are exact."""
    start, end = _real("linspace", "start", start), _real("linspace", "end", end)
    if not _is_int(steps):
        raise TypeError(f"linspace: steps must be an int, got {steps!r}")
    if steps < 0:
        raise ValueError(f"linspace: number of steps must be non-negative, got {steps}")
    xp = _array_module("linspace", device)
    dtype = _dtype("linspace", dtype, DEFAULT_DTYPE)
    if dtype.kind in "iub":   # torch cuts the endpoints toward zero first
        start, end = int(start), int(end)
    index = xp.arange(steps, dtype=np.float64)
    if steps == 1:
        values = xp.full(1, float(start))
    else:
        step = (float(end) - float(start)) / (steps - 1)
        values = xp.where(index < steps // 2, float(start) + step * index,
                          float(end) - step * (steps - 1 - index))
    return _leaf("linspace", values.astype(dtype, copy=False), requires_grad)


def eye(n, m=None, *, dtype=None, device=None, requires_grad=False):
    """An n x m (n x n by default) matrix with ones on the diagonal."""
    m = n if m is None else m
    for name, value in (("n", n), ("m", m)):
        if not _is_int(value):
            raise TypeError(f"eye: {name} must be an int, got {value!r}")
        if value < 0:
            raise ValueError(f"eye: {name} must be greater or equal to 0, got {value}")
    xp = _array_module("eye", device)
    return _leaf("eye", xp.eye(int(n), int(m), dtype=_dtype("eye", dtype, DEFAULT_DTYPE)), requires_grad)


def from_numpy(ndarray):
    """A CPU Tensor on the same memory as `ndarray` (no copy, as torch): writes to either show in the other."""
    if not isinstance(ndarray, np.ndarray):
        raise TypeError(f"from_numpy: expected np.ndarray, got {type(ndarray).__name__}")
    if ndarray.dtype.kind not in _FROM_NUMPY_KINDS:
        raise TypeError(f"from_numpy: can't convert np.ndarray of dtype {ndarray.dtype}; expected a bool, integer, "
                        f"floating or complex dtype")
    if not ndarray.dtype.isnative:
        raise ValueError(f"from_numpy: the array's byte order is not this machine's (dtype {ndarray.dtype!r}); "
                         f"convert it first, e.g. with array.astype(array.dtype.newbyteorder('='))")
    return Tensor(np.asarray(ndarray))   # (a plain ndarray view of a subclass such as np.matrix: the same memory)


# ---- dtypes, under torch's names -----------------------------------------------------------------------
bool = np.bool_   # torch.bool; the code above says builtins.bool for Python's
uint8, int8, int16, int32, int64 = np.uint8, np.int8, np.int16, np.int32, np.int64
long = np.int64
float16, float32, float64 = np.float16, np.float32, np.float64
half, double = np.float16, np.float64
