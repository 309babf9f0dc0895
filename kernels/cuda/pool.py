"""Pooling forward and backward in fp32: every kernel writes each element of its output exactly once.

Launch: a 3-D grid, x along W (up to 32 threads, a warp covers consecutive columns: coalesced), y
along H, z over the N*C planes, and each thread walks PLANES_PER_THREAD planes so that its window
bounds (integer divisions) are worked out once per position, not once per plane. Forward: one thread
per output, looping over its window's taps. Backward is a gather, not a scatter: one thread per input
element sums the windows that contain it, so there are no atomics and the result is deterministic.
"""
import math

from numba import cuda, float32, int64

from .launch import ceil_div, launch, launch_1d

THREADS = 256            # threads per block (x*y*z)
WARP_COLUMNS = 32        # at most this many threads along W: one warp covers a run of a row
PLANES_PER_THREAD = 4    # planes each thread walks (bounds are per position, shared by all planes)
MAX_GRID_Z = 65535
NEG_INF = float32(-math.inf)


def _pow2_at_least(n):
    return 1 << max(0, int(n) - 1).bit_length()


def _layout(planes, rows, cols, planes_per_thread=PLANES_PER_THREAD):
    """(grid, block) covering cols x rows positions and `planes` planes."""
    bx = min(WARP_COLUMNS, _pow2_at_least(cols))
    by = min(THREADS // bx, _pow2_at_least(rows))
    bz = min(THREADS // (bx * by), _pow2_at_least(planes))
    grid = (ceil_div(cols, bx), ceil_div(rows, by), min(MAX_GRID_Z, ceil_div(planes, bz * planes_per_thread)))
    return grid, (bx, by, bz)


@cuda.jit(device=True, inline=True)
def _first_inside(start, step):
    """First tap of a window that is not in the top/left padding (PyTorch's initial max index)."""
    while start < 0:
        start += step
    return start


@cuda.jit(device=True, inline=True)
def _window_max(x, p, h0, w0, first, kh, kw, dh, dw):
    """(max, flat index) of one window; a later tap wins only if strictly larger or NaN (first-max ties)."""
    height = x.shape[1]
    width = x.shape[2]
    best = NEG_INF
    best_index = first
    for i in range(kh):
        h = h0 + i * dh
        if h >= 0 and h < height:
            for j in range(kw):
                w = w0 + j * dw
                if w >= 0 and w < width:
                    value = x[p, h, w]
                    if value > best or value != value:
                        best = value
                        best_index = h * width + w
    return best, best_index


@cuda.jit
def max_pool2d_kernel(x, y, kh, kw, sh, sw, ph, pw, dh, dw):
    ow = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    oh = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
    if oh >= y.shape[1] or ow >= y.shape[2]:
        return
    h0 = oh * sh - ph
    w0 = ow * sw - pw
    p = cuda.blockIdx.z * cuda.blockDim.z + cuda.threadIdx.z
    while p < x.shape[0]:
        best, _ = _window_max(x, p, h0, w0, 0, kh, kw, dh, dw)
        y[p, oh, ow] = best
        p += cuda.gridDim.z * cuda.blockDim.z


@cuda.jit
def max_pool2d_indices_kernel(x, y, indices, kh, kw, sh, sw, ph, pw, dh, dw):
    ow = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    oh = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
    if oh >= y.shape[1] or ow >= y.shape[2]:
        return
    h0 = oh * sh - ph
    w0 = ow * sw - pw
    first = _first_inside(h0, dh) * x.shape[2] + _first_inside(w0, dw)
    p = cuda.blockIdx.z * cuda.blockDim.z + cuda.threadIdx.z
    while p < x.shape[0]:
        best, best_index = _window_max(x, p, h0, w0, first, kh, kw, dh, dw)
        y[p, oh, ow] = best
        indices[p, oh, ow] = best_index
        p += cuda.gridDim.z * cuda.blockDim.z


@cuda.jit(device=True, inline=True)
def _windows_containing(position, kernel, stride, padding, dilation, out_size):
    """[lo, hi) of the windows whose span (first to last tap) covers `position` along one axis."""
    reach = position + padding
    top = reach - (kernel - 1) * dilation
    lo = 0
    if top > 0:
        lo = (top + stride - 1) // stride
    hi = min(reach // stride + 1, out_size)
    return lo, hi


@cuda.jit
def max_pool2d_backward_kernel(grad_out, indices, grad_in, kh, kw, sh, sw, ph, pw, dh, dw):
    """Sums the grads of the windows whose argmax index is this element (dilation gaps never match)."""
    w = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    h = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
    if h >= grad_in.shape[1] or w >= grad_in.shape[2]:
        return
    oh_lo, oh_hi = _windows_containing(h, kh, sh, ph, dh, grad_out.shape[1])
    ow_lo, ow_hi = _windows_containing(w, kw, sw, pw, dw, grad_out.shape[2])
    target = h * grad_in.shape[2] + w
    p = cuda.blockIdx.z * cuda.blockDim.z + cuda.threadIdx.z
    while p < grad_in.shape[0]:
        total = float32(0.0)
        for oh in range(oh_lo, oh_hi):
            for ow in range(ow_lo, ow_hi):
                if indices[p, oh, ow] == target:
                    total += grad_out[p, oh, ow]
        grad_in[p, h, w] = total
        p += cuda.gridDim.z * cuda.blockDim.z


@cuda.jit
def zero_kernel(a):
    i = cuda.grid(1)
    if i < a.shape[0]:
        a[i] = float32(0.0)


@cuda.jit
def max_pool2d_backward_scatter_kernel(grad_out, indices, grad_in):
    """Without the window geometry: each output adds its grad at its index (grad_in zeroed first)."""
    ow = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    oh = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
    if oh >= grad_out.shape[1] or ow >= grad_out.shape[2]:
        return
    width = grad_in.shape[2]
    p = cuda.blockIdx.z * cuda.blockDim.z + cuda.threadIdx.z
    while p < grad_out.shape[0]:
        index = indices[p, oh, ow]
        cuda.atomic.add(grad_in, (p, index // width, index % width), grad_out[p, oh, ow])
        p += cuda.gridDim.z * cuda.blockDim.z


@cuda.jit(device=True, inline=True)
def _avg_extent(o, size, kernel, stride, padding):
    """(first, end, padded length) of window `o` along one axis, clipped to the input (first, end)
    and to the padded input (length), as PyTorch counts them."""
    start = o * stride - padding
    end = min(start + kernel, size + padding)
    return max(start, 0), min(end, size), end - start


@cuda.jit(device=True, inline=True)
def _avg_scale(oh, ow, height, width, kh, kw, sh, sw, ph, pw, count_include_pad, divisor_override):
    h_first, h_end, h_len = _avg_extent(oh, height, kh, sh, ph)
    w_first, w_end, w_len = _avg_extent(ow, width, kw, sw, pw)
    if divisor_override != 0:
        divisor = divisor_override
    elif count_include_pad != 0:
        divisor = h_len * w_len
    else:
        divisor = (h_end - h_first) * (w_end - w_first)
    return float32(1.0) / float32(divisor)


@cuda.jit(fastmath=True)
def avg_pool2d_kernel(x, y, kh, kw, sh, sw, ph, pw, count_include_pad, divisor_override):
    ow = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    oh = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
    if oh >= y.shape[1] or ow >= y.shape[2]:
        return
    height = x.shape[1]
    width = x.shape[2]
    h_first, h_end, _ = _avg_extent(oh, height, kh, sh, ph)
    w_first, w_end, _ = _avg_extent(ow, width, kw, sw, pw)
    scale = _avg_scale(oh, ow, height, width, kh, kw, sh, sw, ph, pw, count_include_pad, divisor_override)
    p = cuda.blockIdx.z * cuda.blockDim.z + cuda.threadIdx.z
    while p < x.shape[0]:
        total = float32(0.0)
        for h in range(h_first, h_end):
            for w in range(w_first, w_end):
                total += x[p, h, w]
        y[p, oh, ow] = total * scale
        p += cuda.gridDim.z * cuda.blockDim.z


@cuda.jit(fastmath=True)
def avg_pool2d_backward_kernel(grad_out, grad_in, kh, kw, sh, sw, ph, pw, count_include_pad, divisor_override):
    w = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    h = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
    height = grad_in.shape[1]
    width = grad_in.shape[2]
    if h >= height or w >= width:
        return
    oh_lo, oh_hi = _windows_containing(h, kh, sh, ph, 1, grad_out.shape[1])
    ow_lo, ow_hi = _windows_containing(w, kw, sw, pw, 1, grad_out.shape[2])
    p = cuda.blockIdx.z * cuda.blockDim.z + cuda.threadIdx.z
    while p < grad_in.shape[0]:
        total = float32(0.0)
        for oh in range(oh_lo, oh_hi):
            for ow in range(ow_lo, ow_hi):
                scale = _avg_scale(oh, ow, height, width, kh, kw, sh, sw, ph, pw, count_include_pad,
                                   divisor_override)
                total += grad_out[p, oh, ow] * scale
        grad_in[p, h, w] = total
        p += cuda.gridDim.z * cuda.blockDim.z


@cuda.jit(device=True, inline=True)
def _adaptive_window(o, size, out_size):
    """PyTorch's adaptive window [floor(o*size/out), ceil((o+1)*size/out))."""
    return (o * size) // out_size, ((o + 1) * size + out_size - 1) // out_size


@cuda.jit(fastmath=True)
def adaptive_avg_pool2d_kernel(x, y):
    ow = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    oh = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
    if oh >= y.shape[1] or ow >= y.shape[2]:
        return
    h_first, h_end = _adaptive_window(oh, x.shape[1], y.shape[1])
    w_first, w_end = _adaptive_window(ow, x.shape[2], y.shape[2])
    scale = float32(1.0) / float32((h_end - h_first) * (w_end - w_first))
    p = cuda.blockIdx.z * cuda.blockDim.z + cuda.threadIdx.z
    while p < x.shape[0]:
        total = float32(0.0)
        for h in range(h_first, h_end):
            for w in range(w_first, w_end):
                total += x[p, h, w]
        y[p, oh, ow] = total * scale
        p += cuda.gridDim.z * cuda.blockDim.z


@cuda.jit(fastmath=True)
def adaptive_avg_pool2d_backward_kernel(grad_out, grad_in):
    w = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    h = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
    height = grad_in.shape[1]
    width = grad_in.shape[2]
    out_h = grad_out.shape[1]
    out_w = grad_out.shape[2]
    if h >= height or w >= width:
        return
    # windows o with floor(o*H/OH) <= h < ceil((o+1)*H/OH) are exactly o in [floor(h*OH/H), ceil((h+1)*OH/H))
    oh_lo = (h * out_h) // height
    oh_hi = ((h + 1) * out_h + height - 1) // height
    ow_lo = (w * out_w) // width
    ow_hi = ((w + 1) * out_w + width - 1) // width
    p = cuda.blockIdx.z * cuda.blockDim.z + cuda.threadIdx.z
    while p < grad_in.shape[0]:
        total = float32(0.0)
        for oh in range(oh_lo, oh_hi):
            h_first, h_end = _adaptive_window(oh, height, out_h)
            for ow in range(ow_lo, ow_hi):
                w_first, w_end = _adaptive_window(ow, width, out_w)
                total += grad_out[p, oh, ow] / float32((h_end - h_first) * (w_end - w_first))
        grad_in[p, h, w] = total
        p += cuda.gridDim.z * cuda.blockDim.z


def _planes(a):
    """A C-contiguous NCHW array as (N*C, H, W)."""
    return a.reshape((a.shape[0] * a.shape[1],) + tuple(a.shape[2:]))


def _run(kernel, grid_array, planes_per_thread, *args):
    planes, rows, cols = grid_array.shape
    if planes == 0:
        return
    grid, block = _layout(planes, rows, cols, planes_per_thread)
    launch(kernel, grid, block, *args)


def max_pool2d(x, y, indices, kernel, stride, padding, dilation, out_hw):
    geometry = (*kernel, *stride, *padding, *dilation)
    # forward index math is division-free: one plane a thread gives the most parallelism
    if indices is None:
        _run(max_pool2d_kernel, _planes(y), 1, _planes(x), _planes(y), *geometry)
    else:
        _run(max_pool2d_indices_kernel, _planes(y), 1, _planes(x), _planes(y), _planes(indices), *geometry)


def max_pool2d_backward(grad_out, indices, grad_in, geometry):
    """geometry: (kernel, stride, padding, dilation) pairs for the gather, or None for the scatter."""
    if geometry is not None:
        _run(max_pool2d_backward_kernel, _planes(grad_in), PLANES_PER_THREAD, _planes(grad_out),
             _planes(indices), _planes(grad_in), *(v for pair in geometry for v in pair))
        return
    launch_1d(zero_kernel, grad_in.size, grad_in.reshape(-1), threads=THREADS)
    _run(max_pool2d_backward_scatter_kernel, _planes(grad_out), 1, _planes(grad_out), _planes(indices),
         _planes(grad_in))


def avg_pool2d(x, y, kernel, stride, padding, count_include_pad, divisor_override):
    _run(avg_pool2d_kernel, _planes(y), 1, _planes(x), _planes(y), *kernel, *stride, *padding,
         int(count_include_pad), int(divisor_override or 0))


def avg_pool2d_backward(grad_out, grad_in, kernel, stride, padding, count_include_pad, divisor_override):
    _run(avg_pool2d_backward_kernel, _planes(grad_in), PLANES_PER_THREAD, _planes(grad_out), _planes(grad_in),
         *kernel, *stride, *padding, int(count_include_pad), int(divisor_override or 0))


def adaptive_avg_pool2d(x, y):
    _run(adaptive_avg_pool2d_kernel, _planes(y), 1, _planes(x), _planes(y))


def adaptive_avg_pool2d_backward(grad_out, grad_in):
    _run(adaptive_avg_pool2d_backward_kernel, _planes(grad_in), 1, _planes(grad_out), _planes(grad_in))


_planes_f32 = float32[:, :, ::1]
_planes_i64 = int64[:, :, ::1]
_geometry = (int64,) * 8
PTX_SIGNATURES = [
    ("max_pool2d", max_pool2d_kernel, (_planes_f32, _planes_f32) + _geometry),
    ("max_pool2d_indices", max_pool2d_indices_kernel, (_planes_f32, _planes_f32, _planes_i64) + _geometry),
    ("max_pool2d_backward", max_pool2d_backward_kernel, (_planes_f32, _planes_i64, _planes_f32) + _geometry),
    ("max_pool2d_backward_scatter", max_pool2d_backward_scatter_kernel, (_planes_f32, _planes_i64, _planes_f32)),
    ("zero", zero_kernel, (float32[::1],)),
    ("avg_pool2d", avg_pool2d_kernel, (_planes_f32, _planes_f32) + (int64,) * 8),
    ("avg_pool2d_backward", avg_pool2d_backward_kernel, (_planes_f32, _planes_f32) + (int64,) * 8),
    ("adaptive_avg_pool2d", adaptive_avg_pool2d_kernel, (_planes_f32, _planes_f32)),
    ("adaptive_avg_pool2d_backward", adaptive_avg_pool2d_backward_kernel, (_planes_f32, _planes_f32)),
]
