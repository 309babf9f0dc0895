"""How big a block of the recurrent kernels is (kernels/cuda/rnn.py launches them): its threads, how many of
them share each dot product, and its dynamic shared memory (the persistent kernels' slice of W_hh, with the
opt-in a block needs above 48 KiB).
"""
from numba import cuda

from .. import backend
from .rnn_kernels import PERSISTENT_THREADS, REDUCE_SLOTS, THREADS, weight_stride

SHARED_DEFAULT = 48 * 1024   # dynamic shared memory a block may use without opting in


def _threads(persistent=False):
    # The simulator runs one OS thread per CUDA thread: a warp is plenty for its tiny shapes.
    if backend.SIMULATOR:
        return 32
    return PERSISTENT_THREADS if persistent else THREADS


def ksplit_for(pairs, length, threads, minimum=1):
    """How many threads share one dot product: the largest power of two s <= length with s * pairs <=
    threads, or at least `minimum` (then the pairs take several rounds)."""
    split = 1
    while split * 2 <= length and (split * 2 * pairs <= threads or split * 2 <= minimum):
        split *= 2
    return split


def _shared_limit():
    """Dynamic shared memory a block can opt in to (minus our static reduction buffer)."""
    if backend.SIMULATOR:
        return 1 << 30
    try:
        limit = cuda.get_current_device().MAX_SHARED_MEMORY_PER_BLOCK_OPTIN
    except Exception:  # attribute missing in this driver binding: stay within the default
        limit = SHARED_DEFAULT
    return limit - REDUCE_SLOTS * 4


_opted_in = {}  # id(compiled kernel) -> the dynamic shared memory it is allowed


def _allow_shared(compiled, nbytes):
    """Opt the kernel in to `nbytes` of dynamic shared memory (needed above 48 KiB); False if refused.
    The allowance only grows: plans of one kernel (one direction, both, other sizes) differ in bytes,
    and a later, smaller plan must not take the room of an earlier, larger one."""
    if backend.SIMULATOR or nbytes + REDUCE_SLOTS * 4 <= SHARED_DEFAULT or nbytes <= _opted_in.get(id(compiled), 0):
        return True
    try:
        from numba.cuda.cudadrv.driver import binding, driver
        cufunc = compiled._codelibrary.get_cufunc()
        attribute = binding.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
        driver.cuKernelSetAttribute(attribute, nbytes, cufunc.handle, cufunc.device.id)
    except Exception:
        return False
    _opted_in[id(compiled)] = nbytes
    return True


def persistent_shared_bytes(kind, G, H, units):
    """Dynamic shared memory of one direction's weight slice in a persistent block."""
    if kind == "forward":
        return 4 * G * units * weight_stride(H)
    return 4 * units * weight_stride(G * H)
