"""Where an op runs: CPU (NumPy), CUDA (CuPy arrays on a GPU) or Numba's CUDA simulator.

Rule: an op runs where its inputs live. CuPy arrays run the CUDA kernels; NumPy arrays run the
CPU implementation, except under NUMBA_ENABLE_CUDASIM=1 where they run the CUDA kernels in the
simulator so that machines without a GPU still execute every kernel's code.
NUMBANET_BACKEND=auto|cpu|cuda overrides the choice for NumPy arrays.
"""
import contextlib
import functools
import os

import numpy as np

SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") == "1"
BACKEND_CHOICES = ("auto", "cpu", "cuda")


_ENVIRON = os.environ
# Every op reads NUMBANET_BACKEND (it may change while running: tests), a few hundred times a CRNN step.
# os.environ's own get encodes the key and goes through Mapping.get (about 0.5 us); on POSIX its encoded
# dict answers in a tenth of that and sees every change made through os.environ.
_RAW_ENVIRON, _BACKEND_KEY = (_ENVIRON._data, b"NUMBANET_BACKEND") if isinstance(
    getattr(_ENVIRON, "_data", None), dict) and os.name == "posix" else (_ENVIRON, "NUMBANET_BACKEND")


def requested_backend():
    raw = _RAW_ENVIRON.get(_BACKEND_KEY)
    if raw is None:
        return "auto"
    if isinstance(raw, bytes):
        raw = raw.decode(errors="replace")
    choice = raw.strip().lower() or "auto"
    if choice not in BACKEND_CHOICES:
        raise ValueError(f"NUMBANET_BACKEND must be one of {BACKEND_CHOICES}, got {choice!r}")
    return choice


_GPU_TYPES, _OTHER_TYPES = set(), {np.ndarray}   # types already classified (a few hundred calls a step)


def is_gpu_array(x):
    """True for CuPy arrays; checked by module name so that CuPy is never imported needlessly."""
    kind = type(x)
    if kind in _OTHER_TYPES:
        return False
    if kind in _GPU_TYPES:
        return True
    gpu = kind.__module__.split(".", 1)[0] == "cupy"
    (_GPU_TYPES if gpu else _OTHER_TYPES).add(kind)
    return gpu


def is_array(x):
    return isinstance(x, np.ndarray) or is_gpu_array(x)


def data_address(x):
    """The address of an array's first element (device memory for CuPy, host memory for NumPy)."""
    return x.data.ptr if is_gpu_array(x) else x.__array_interface__["data"][0]


@functools.lru_cache(maxsize=None)
def cupy_module():
    """The cupy module, or None when it is missing or no GPU can be used."""
    if SIMULATOR:
        return None
    try:
        import cupy
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None
        return cupy
    except Exception:  # ImportError, or a CUDA driver/runtime error on a machine without a GPU
        return None


def gpu_available():
    return cupy_module() is not None


def device_of(op, *arrays):
    """'cpu' or 'cuda' for the arrays of one op call; `None` entries (optional arguments) are skipped.

    Mixing NumPy and CuPy arrays is an error rather than a silent copy across the bus.
    """
    # Called on every op: one pass over the arguments, no temporary containers.
    numpy_seen = cupy_seen = False
    for a in arrays:
        if a is None:
            continue
        if isinstance(a, np.ndarray):
            numpy_seen = True
        elif is_gpu_array(a):
            cupy_seen = True
        else:
            raise TypeError(f"{op}: expected NumPy or CuPy arrays, got {type(a).__name__}")
    if numpy_seen and cupy_seen:
        kinds = ", ".join("cupy" if is_gpu_array(a) else "numpy" for a in arrays if a is not None)
        raise ValueError(f"{op}: arrays live on different devices ({kinds}); move them to one device first")
    choice = requested_backend()
    if cupy_seen:
        if choice == "cpu":
            raise ValueError(f"{op}: NUMBANET_BACKEND=cpu but the inputs are CuPy (GPU) arrays")
        return "cuda"
    if SIMULATOR and choice in ("auto", "cuda"):
        return "cuda"
    if choice == "cuda":
        raise ValueError(f"{op}: NUMBANET_BACKEND=cuda needs CuPy arrays (or NUMBA_ENABLE_CUDASIM=1), got NumPy arrays")
    return "cpu"


def is_capturing():
    """True while CuPy's current stream is being recorded into a CUDA graph (nn.capture). Ops must then
    neither synchronise with the host (device-to-host reads for error checks) nor copy NumPy data to the
    GPU (CuPy stages it through recycled pinned buffers): check on the host only when this is False."""
    cupy = cupy_module()
    return cupy is not None and bool(cupy.cuda.get_current_stream().is_capturing())


def device_id(x):
    """The CUDA device a CuPy array lives on, None for a NumPy array (a cache key per device)."""
    return getattr(getattr(x, "device", None), "id", None)


def on_device_of(x):
    """A context in which CuPy allocates on x's device (not the current one); nothing for a NumPy array."""
    device = getattr(x, "device", None)
    return device if hasattr(device, "__enter__") else contextlib.nullcontext()


def array_module(x):
    """numpy or cupy, whichever `x` belongs to."""
    if is_gpu_array(x):
        import cupy
        return cupy
    return np


def name():
    """The backend new work goes to: 'simulator', 'cuda' or 'cpu'."""
    choice = requested_backend()
    if SIMULATOR and choice != "cpu":
        return "simulator"
    if choice != "cpu" and gpu_available():
        return "cuda"
    return "cpu"


def device_name(op, device):
    """'cpu' or 'cuda' for a device as torch code names it: None (kept), 'cpu', 'cuda', 'cuda:0', 'cpu:0' or a
    torch.device; a ValueError naming `op` otherwise (one GPU is used here: another index is refused)."""
    if device is None or device in ("cpu", "cuda"):
        return device
    text = str(device) if type(device).__name__ == "device" else device   # (torch.device('cuda:0'))
    if isinstance(text, str):
        kind, _, index = text.partition(":")
        if kind in ("cpu", "cuda") and index in ("", "0"):
            return kind
    raise ValueError(f"{op}: device must be 'cpu' or 'cuda', got {device!r} ('cuda:0' or a torch.device name them "
                     f"too; one GPU is used here)")


def default_device():
    """'cuda' where a GPU is usable (and not disabled), else 'cpu'; used by nn and the training scripts."""
    return "cuda" if name() == "cuda" else "cpu"


def to_device(x, device):
    """Copy a NumPy/CuPy array to 'cpu' (NumPy) or 'cuda' (CuPy); returns `x` itself when already there."""
    if device == "cpu":
        return x.get() if is_gpu_array(x) else np.asarray(x)
    if device == "cuda":
        cupy = cupy_module()
        if cupy is None:
            raise RuntimeError("device 'cuda' requested but no usable GPU/CuPy was found (see `numbanet info`)")
        return x if is_gpu_array(x) else cupy.asarray(x)
    raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")


def to_numpy(x):
    return x.get() if is_gpu_array(x) else np.asarray(x)


_deterministic = {"mode": False, "warn_only": False}


def use_deterministic_algorithms(mode, *, warn_only=False):
    """As torch.use_deterministic_algorithms: with mode=True the GPU ops that sum with float atomics (whose
    order, so whose last bits, change from run to run) take an in-order form, and an op that has none raises
    RuntimeError (with warn_only=True: warns and runs). The CPU ops are deterministic either way."""
    if not isinstance(mode, bool):
        raise TypeError(f"use_deterministic_algorithms: mode must be a bool, got {type(mode).__name__}")
    if not isinstance(warn_only, bool):
        raise TypeError(f"use_deterministic_algorithms: warn_only must be a bool, got {type(warn_only).__name__}")
    _deterministic.update(mode=mode, warn_only=warn_only)


def are_deterministic_algorithms_enabled():
    return _deterministic["mode"]


def is_deterministic_algorithms_warn_only_enabled():
    return _deterministic["warn_only"]


@contextlib.contextmanager
def deterministic_algorithms(mode=True, *, warn_only=False):
    """use_deterministic_algorithms(mode, warn_only=...) for a `with` block, then the setting as it was."""
    previous = dict(_deterministic)
    use_deterministic_algorithms(mode, warn_only=warn_only)
    try:
        yield
    finally:
        _deterministic.update(previous)


def alert_not_deterministic(op):
    """Called by an op about to run a nondeterministic form: raises or warns when deterministic algorithms
    were asked for (torch's message, so that habits carry over)."""
    if not _deterministic["mode"]:
        return
    message = (f"{op} does not have a deterministic implementation, but you set "
               "'use_deterministic_algorithms(True)'")
    if _deterministic["warn_only"]:
        import warnings
        warnings.warn(message, UserWarning, stacklevel=3)
    else:
        raise RuntimeError(message)


def synchronize():
    cupy = cupy_module()
    if cupy is not None:
        cupy.cuda.get_current_stream().synchronize()


def switches():
    """The NUMBANET_* environment variables in force (backend choice, forced kernel forms, launcher), so
    that a recorded measurement says which forms ran."""
    return {key: value for key, value in sorted(_ENVIRON.items()) if key.startswith("NUMBANET_")}


def describe():
    """Facts printed by `numbanet info`."""
    import numba
    facts = {"backend": name(), "numpy": np.__version__, "numba": numba.__version__}
    try:
        from importlib.metadata import version
        facts["numba-cuda"] = version("numba-cuda")
    except Exception:
        facts["numba-cuda"] = "not installed"
    try:
        import cupy
        facts["cupy"] = cupy.__version__
    except Exception:
        facts["cupy"] = "not installed"
    cupy = cupy_module()
    if cupy is not None:
        device = cupy.cuda.Device()
        props = cupy.cuda.runtime.getDeviceProperties(device.id)
        facts["gpu"] = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        facts["compute_capability"] = ".".join(device.compute_capability)
        facts["multiprocessors"] = props["multiProcessorCount"]
        from .cuda import launch   # which launcher runs the kernels (direct replay, or Numba's dispatch)
        facts["launcher"] = launch.launcher_in_force()
        from .cuda import jit      # where compiled kernels are kept between runs
        facts["kernel cache"] = jit.cache_directory() if jit.caching_enabled() else "off (NUMBANET_KERNEL_CACHE=0)"
    else:
        facts["gpu"] = "none"
    facts["switches"] = " ".join(f"{key}={value}" for key, value in switches().items()) or "none"
    return facts


# glibc mallopt parameters
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
KEEP_FREED_BYTES = 1 << 30


def keep_freed_memory(limit=KEEP_FREED_BYTES):
    """Ask glibc's malloc to keep up to `limit` bytes of freed memory instead of giving it back to
    the OS, for a process that trains on the CPU. By default large arrays are mmapped and returned
    on free, and a freed heap top over 2x the mmap threshold is trimmed, so every step's new
    multi-megabyte arrays fault their pages in again: measured on the 2-core VM, one CRNN training
    step took 70-79 ms with glibc's defaults and 54 ms with the memory kept. Process-wide, so the
    training command and the CPU benchmarks call it, the ops never do. Returns False where the C
    library has no mallopt (not glibc)."""
    import ctypes
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    limit = int(min(limit, 2**31 - 1))
    return bool(mallopt(_M_MMAP_THRESHOLD, min(limit, 32 << 20))) and bool(mallopt(_M_TRIM_THRESHOLD, limit))
