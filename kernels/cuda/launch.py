"""The one launcher for every CUDA kernel: device views, the stream, the grid.

Host cost decides the speed of small ops and of every time-stepped loop, so the launcher caches:
- Numba device views of CuPy arrays, keyed by what a view is (pointer, shape, strides, dtype). A
  view made with owner=None is only that description, so one cached for freed memory is still right
  for any later array with the same pointer and layout, and CuPy's memory pool hands the same
  pointers back every training step. Making a view costs tens of microseconds on an H200 (the
  driver is asked about the pointer); passing CuPy arrays straight to a kernel converts them and
  synchronises on every launch (about 41 us, GPU-NOTES.md).
- Configured kernels (`kernel[grid, block, stream, shared]`), keyed by those four.
Under the simulator, NumPy arrays go to the kernels as they are, and nothing is cached.
"""
import warnings

from numba import cuda
from numba.core.errors import NumbaPerformanceWarning

from .. import backend

# Small grids are deliberate here (per-step recurrent kernels, tiny layers): Numba's warning about
# them on every new launch configuration is noise to our users.
warnings.filterwarnings("ignore", message="Grid size .* under-utilization", category=NumbaPerformanceWarning)

CACHE_LIMIT = 8192  # entries per cache; cleared when full (a cold cache costs only the slow path)
_views = {}    # (pointer, shape, strides, dtype char) -> Numba view without an owner
_configured = {}  # (kernel, grid, block, stream, shared bytes) -> configured kernel


def device_view(x):
    """A Numba device array sharing `x`'s memory (CuPy); anything else is returned unchanged."""
    if not backend.is_gpu_array(x):
        return x
    key = (x.data.ptr, x.shape, x.strides, x.dtype.char)
    view = _views.get(key)
    if view is None:
        if len(_views) >= CACHE_LIMIT:
            _views.clear()
        view = _views[key] = cuda.from_cuda_array_interface(x.__cuda_array_interface__, owner=None,
                                                            sync=False)
    return view


_external_streams = {}


def current_stream():
    """CuPy's current stream as a Numba stream (0, the default stream, under the simulator)."""
    cupy = backend.cupy_module()
    if cupy is None:
        return 0
    pointer = cupy.cuda.get_current_stream().ptr
    if pointer == 0:
        return 0
    stream = _external_streams.get(pointer)
    if stream is None:
        stream = _external_streams[pointer] = cuda.external_stream(pointer)
    return stream


def ceil_div(a, b):
    return -(-a // b)


def launch(kernel, grid, block, *args, shared_bytes=0):
    """Launch `kernel[grid, block]` on the current stream with arrays converted to device views."""
    stream = current_stream()
    if backend.SIMULATOR:
        kernel[grid, block, stream, shared_bytes](*args)
        return
    key = (kernel, grid, block, stream, shared_bytes)
    configured = _configured.get(key)
    if configured is None:
        if len(_configured) >= CACHE_LIMIT:
            _configured.clear()
        configured = _configured[key] = kernel[grid, block, stream, shared_bytes]
    configured(*[device_view(a) for a in args])


def launch_1d(kernel, n, *args, threads=256):
    """One thread per element of a flat range of `n` items."""
    if n == 0:
        return
    launch(kernel, ceil_div(n, threads), threads, *args)
