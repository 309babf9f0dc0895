"""The one launcher for every CUDA kernel: device views, the stream, the grid.

CuPy arrays are turned into Numba device views once per array object and cached (weakly), with
no stream synchronisation: passing CuPy arrays straight to a Numba kernel converts them and
synchronises on every launch (about 41 us against 17 us on an H200, see GPU-NOTES.md).
Under the simulator, NumPy arrays go to the kernels as they are.
"""
import weakref

from numba import cuda

from .. import backend

_views = {}  # id(cupy array) -> (weakref to it, Numba view without an owner)


def device_view(x):
    """A Numba device array sharing `x`'s memory (CuPy); anything else is returned unchanged."""
    if not backend.is_gpu_array(x):
        return x
    key = id(x)
    entry = _views.get(key)
    if entry is not None and entry[0]() is x:
        return entry[1]
    # owner=None: the view must not keep `x` alive, or the cache would pin GPU memory.
    view = cuda.from_cuda_array_interface(x.__cuda_array_interface__, owner=None, sync=False)

    def forget(ref, key=key):
        if _views.get(key, (None,))[0] is ref:
            del _views[key]

    _views[key] = (weakref.ref(x, forget), view)
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
    kernel[grid, block, current_stream(), shared_bytes](*[device_view(a) for a in args])


def launch_1d(kernel, n, *args, threads=256):
    """One thread per element of a flat range of `n` items."""
    if n == 0:
        return
    launch(kernel, ceil_div(n, threads), threads, *args)
