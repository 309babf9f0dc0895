"""How the kernels' device functions are compiled: inlined by NVVM (forceinline), not at Numba's IR level.

Numba's IR-level inlining (inline="always") types and lowers a device function again at every call site.
Inlined by NVVM instead, each is typed once per signature and the PTX is the same but for a few
instructions (registers the same but for the persistent recurrent backward kernels, 124-125 -> 127 of
their 128, and the CTC gradient, 58 -> 56; no spills), while compiling to PTX is up to twice as fast on
the 2-core VM: the persistent LSTM backward 1.0 -> 0.56 s, the CTC gradient 0.80 -> 0.35 s, all 101
kernels 44.4 -> 33.1 s. Kernels compile when first launched, so this is start-up time of every GPU run.

A device function is compiled with its own options, not its caller's: without fastmath, whatever the
kernel's (inlined at the IR level it took the kernel's, e.g. the fast exp). None of ours calls math.*
from a fastmath kernel (their PTX has the same exp, log, reciprocal and fma counts as before); one that
should must say so. The simulator's jit has no forceinline (and nothing to inline).
"""
from numba import cuda, int64, uint32

from .. import backend


def device_function(function):
    """`@cuda.jit(device=True)`, inlined into its callers by NVVM."""
    if backend.SIMULATOR:
        return cuda.jit(device=True)(function)
    return cuda.jit(device=True, forceinline=True)(function)


@device_function
def block_sum(values, tid, threads):
    """Tree sum of values[0:threads] (shared memory; threads a power of two, every thread of the block calling):
    pairs added at halving strides, so rounding grows with log2(threads). Every thread gets the total, and a
    barrier follows its read, so `values` may be written again at once."""
    stride = threads // 2
    while stride > 0:
        cuda.syncthreads()
        if tid < stride:
            values[tid] += values[tid + stride]
        stride //= 2
    cuda.syncthreads()
    total = values[0]
    cuda.syncthreads()
    return total


@device_function
def divmod32(a, b):
    """(a // b, a % b) for 0 <= a < 2**32 and 0 < b < 2**32 (indices under conv.INDEX_LIMIT): one div.u32, where
    Numba's floor division of int64 values adds sign and -1 tests and a branch to a ~70-instruction 64-bit
    subroutine. int64 results, so the arithmetic that follows stays signed."""
    quotient = int64(uint32(a) // uint32(b))
    return quotient, a - quotient * b


@device_function
def last_block_to_arrive(counters, slot, blocks, is_last):
    """For a reduction split over `blocks` blocks that each wrote their partials: True, in every thread, in the
    last of them to arrive at counters[slot] (which it resets to 0 for the next launch), whose thread 0 may then
    read all the partials; a block barrier inside (every thread must call it). is_last: a 1-element shared int32."""
    if cuda.threadIdx.x == 0:
        cuda.threadfence()   # this block's partials before its arrival
        done = cuda.atomic.add(counters, slot, 1)
        is_last[0] = 1 if done == blocks - 1 else 0
        if done == blocks - 1:
            counters[slot] = 0
            cuda.threadfence()   # the other blocks' partials after their arrivals
    cuda.syncthreads()
    return is_last[0] == 1
