"""Pooling forward kernels in fp32 over (N*C, H, W) planes: max (with or without argmax indices) and average.

Launch (pool.py's `_layout`): a 3-D grid, x along W (a warp reads a run of a row, coalesced), y along H, z
over planes; one thread per output, its window's taps unrolled for the windows compiled in (pool.py's
SPECIALISED_WINDOWS: 2x2 and 3x3, all loads in flight at once), else read at run time.
"""
import functools
import math

from numba import cuda, float32

from .device import device_function
from .jit import cached_jit

NEG_INF = float32(-math.inf)


@device_function
def _first_inside(start, step):
    """First tap of a window that is not in the top/left padding (PyTorch's initial max index)."""
    while start < 0:
        start += step
    return start


@functools.lru_cache(maxsize=None)
def max_pool2d_kernels(window_h=0, window_w=0):
    """(kernel without indices, kernel with indices) for a window fixed at compile time (0: read
    kh/kw at run time)."""

    @device_function
    def window_max(x, p, h0, w0, first, kh, kw, dh, dw):
        # a later tap wins only if strictly larger or NaN: ties keep the first maximum, as PyTorch
        taps_h = window_h if window_h > 0 else kh
        taps_w = window_w if window_w > 0 else kw
        height = x.shape[1]
        width = x.shape[2]
        best = NEG_INF
        best_index = first
        for i in range(taps_h):
            h = h0 + i * dh
            if h >= 0 and h < height:
                for j in range(taps_w):
                    w = w0 + j * dw
                    if w >= 0 and w < width:
                        value = x[p, h, w]
                        if value > best or value != value:
                            best = value
                            best_index = h * width + w
        return best, best_index

    @cached_jit
    def plain(x, y, kh, kw, sh, sw, ph, pw, dh, dw):
        ow = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        oh = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
        p = cuda.blockIdx.z * cuda.blockDim.z + cuda.threadIdx.z
        if oh < y.shape[1] and ow < y.shape[2] and p < y.shape[0]:
            best, _ = window_max(x, p, oh * sh - ph, ow * sw - pw, 0, kh, kw, dh, dw)
            y[p, oh, ow] = best

    @cached_jit
    def with_indices(x, y, indices, kh, kw, sh, sw, ph, pw, dh, dw):
        ow = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        oh = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
        p = cuda.blockIdx.z * cuda.blockDim.z + cuda.threadIdx.z
        if oh < y.shape[1] and ow < y.shape[2] and p < y.shape[0]:
            h0 = oh * sh - ph
            w0 = ow * sw - pw
            first = _first_inside(h0, dh) * x.shape[2] + _first_inside(w0, dw)
            best, best_index = window_max(x, p, h0, w0, first, kh, kw, dh, dw)
            y[p, oh, ow] = best
            indices[p, oh, ow] = best_index

    return plain, with_indices


@device_function
def _avg_extent(o, size, kernel, stride, padding):
    """(first, end) of window `o` clipped to the input, and its length clipped to the padded input."""
    start = o * stride - padding
    end = min(start + kernel, size + padding)
    return max(start, 0), min(end, size), end - start


@device_function
def _avg_count(o, size, kernel, stride, padding, count_include_pad):
    """Along one axis, the elements PyTorch counts in window `o` (the divisor is a product of two)."""
    first, end, padded_length = _avg_extent(o, size, kernel, stride, padding)
    return padded_length if count_include_pad != 0 else end - first


@functools.lru_cache(maxsize=None)
def avg_pool2d_kernel(window_h=0, window_w=0):
    """Average pooling forward for a window fixed at compile time (0: read kh/kw at run time)."""

    @cached_jit(fastmath=True)
    def kernel(x, y, kh, kw, sh, sw, ph, pw, count_include_pad, divisor_override):
        ow = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        oh = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
        p = cuda.blockIdx.z * cuda.blockDim.z + cuda.threadIdx.z
        if oh >= y.shape[1] or ow >= y.shape[2] or p >= y.shape[0]:
            return
        taps_h = window_h if window_h > 0 else kh
        taps_w = window_w if window_w > 0 else kw
        height = x.shape[1]
        width = x.shape[2]
        h0 = oh * sh - ph
        w0 = ow * sw - pw
        total = float32(0.0)
        for i in range(taps_h):
            h = h0 + i
            if h >= 0 and h < height:
                for j in range(taps_w):
                    w = w0 + j
                    if w >= 0 and w < width:
                        total += x[p, h, w]
        divisor = divisor_override
        if divisor == 0:
            divisor = (_avg_count(oh, height, taps_h, sh, ph, count_include_pad)
                       * _avg_count(ow, width, taps_w, sw, pw, count_include_pad))
        y[p, oh, ow] = total / float32(divisor)

    return kernel
