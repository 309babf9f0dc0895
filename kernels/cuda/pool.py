"""Pooling forward and backward in fp32 over (N*C, H, W) planes; every output element is written once.

Launch: a 3-D grid, x along W (up to 32 threads: a warp reads a run of a row, coalesced), y along H,
z over planes. Forward (its kernels in pool_forward.py): one thread per output, its window's taps
unrolled for 2x2 and 3x3 (all loads in flight at once). Backward is a gather, not a scatter: one thread
per input element and BACKWARD_PLANES planes sums the windows that contain it (bounds worked out once,
four independent load streams, no atomics, deterministic). Adaptive pooling of large windows (global
pooling) takes a block of REDUCE_THREADS per output instead.
"""
from numba import cuda, float32, int64

from .device import block_sum, device_function
from .jit import cached_jit
from .launch import ceil_div, launch, launch_1d
from .pool_forward import _avg_count, avg_pool2d_kernel, max_pool2d_kernels

THREADS = 256                           # threads per block (x*y*z)
WARP_COLUMNS = 32                       # at most this many threads along W
BACKWARD_PLANES = 4                     # planes per backward thread, unrolled by hand below
MAX_GRID_Z = 65535
MAX_BLOCK_Z = 64                        # CUDA's limit on blockDim.z
SPECIALISED_WINDOWS = ((2, 2), (3, 3))  # forward kernels compiled with these windows unrolled
REDUCE_ROWS = 4                         # adaptive pooling of large windows: 32 x 4 threads a window
REDUCE_THREADS = WARP_COLUMNS * REDUCE_ROWS
REDUCE_MIN_AREA = 64                    # windows at least this large take a block each


def _pow2_at_least(n):
    return 1 << max(0, int(n) - 1).bit_length()


def _layout(planes, rows, cols, planes_per_thread):
    """(grid, block, planes per launch) covering cols x rows positions of `planes` planes."""
    bx = min(WARP_COLUMNS, _pow2_at_least(cols))
    by = min(THREADS // bx, _pow2_at_least(rows))
    bz = min(THREADS // (bx * by), MAX_BLOCK_Z, _pow2_at_least(ceil_div(planes, planes_per_thread)))
    per_launch = min(planes, MAX_GRID_Z * bz * planes_per_thread)
    grid = (ceil_div(cols, bx), ceil_div(rows, by), ceil_div(per_launch, bz * planes_per_thread))
    return grid, (bx, by, bz), per_launch


@device_function
def _windows_containing(position, kernel, stride, padding, dilation, out_size):
    """[lo, hi) of the windows whose span (first to last tap) covers `position` along one axis."""
    reach = position + padding
    top = reach - (kernel - 1) * dilation
    lo = 0
    if top > 0:
        lo = (top + stride - 1) // stride
    return lo, min(reach // stride + 1, out_size)


@device_function
def _backward_planes(planes):
    """This thread's first plane p0, the spacing of its BACKWARD_PLANES planes, and those planes
    clamped to the last one so that every load is in bounds (clamped duplicates are never stored)."""
    step = cuda.gridDim.z * cuda.blockDim.z
    p0 = cuda.blockIdx.z * cuda.blockDim.z + cuda.threadIdx.z
    last = planes - 1
    return p0, step, min(p0, last), min(p0 + step, last), min(p0 + 2 * step, last), min(p0 + 3 * step, last)


@device_function
def _store_planes(out, h, w, p0, step, t0, t1, t2, t3):
    planes = out.shape[0]
    if p0 < planes:
        out[p0, h, w] = t0
    if p0 + step < planes:
        out[p0 + step, h, w] = t1
    if p0 + 2 * step < planes:
        out[p0 + 2 * step, h, w] = t2
    if p0 + 3 * step < planes:
        out[p0 + 3 * step, h, w] = t3


@cached_jit
def max_pool2d_backward_kernel(grad_out, indices, grad_in, kh, kw, sh, sw, ph, pw, dh, dw):
    """Sums the grads of the windows whose argmax index is this element (dilation gaps never match)."""
    w = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    h = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
    if h >= grad_in.shape[1] or w >= grad_in.shape[2]:
        return
    oh_lo, oh_hi = _windows_containing(h, kh, sh, ph, dh, grad_out.shape[1])
    ow_lo, ow_hi = _windows_containing(w, kw, sw, pw, dw, grad_out.shape[2])
    target = h * grad_in.shape[2] + w
    p0, step, q0, q1, q2, q3 = _backward_planes(grad_in.shape[0])
    t0 = float32(0.0)
    t1 = float32(0.0)
    t2 = float32(0.0)
    t3 = float32(0.0)
    for oh in range(oh_lo, oh_hi):
        for ow in range(ow_lo, ow_hi):
            # loads first and unconditional: eight independent loads in flight per window
            g0 = grad_out[q0, oh, ow]
            g1 = grad_out[q1, oh, ow]
            g2 = grad_out[q2, oh, ow]
            g3 = grad_out[q3, oh, ow]
            t0 += g0 if indices[q0, oh, ow] == target else float32(0.0)
            t1 += g1 if indices[q1, oh, ow] == target else float32(0.0)
            t2 += g2 if indices[q2, oh, ow] == target else float32(0.0)
            t3 += g3 if indices[q3, oh, ow] == target else float32(0.0)
    _store_planes(grad_in, h, w, p0, step, t0, t1, t2, t3)


@cached_jit(fastmath=True)
def avg_pool2d_backward_kernel(grad_out, grad_in, kh, kw, sh, sw, ph, pw, count_include_pad, divisor_override):
    w = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    h = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
    height = grad_in.shape[1]
    width = grad_in.shape[2]
    if h >= height or w >= width:
        return
    oh_lo, oh_hi = _windows_containing(h, kh, sh, ph, 1, grad_out.shape[1])
    ow_lo, ow_hi = _windows_containing(w, kw, sw, pw, 1, grad_out.shape[2])
    p0, step, q0, q1, q2, q3 = _backward_planes(grad_in.shape[0])
    t0 = float32(0.0)
    t1 = float32(0.0)
    t2 = float32(0.0)
    t3 = float32(0.0)
    for oh in range(oh_lo, oh_hi):
        rows = 1 if divisor_override != 0 else _avg_count(oh, height, kh, sh, ph, count_include_pad)
        for ow in range(ow_lo, ow_hi):
            cols = divisor_override
            if cols == 0:
                cols = _avg_count(ow, width, kw, sw, pw, count_include_pad)
            scale = float32(1.0) / float32(rows * cols)
            t0 += grad_out[q0, oh, ow] * scale
            t1 += grad_out[q1, oh, ow] * scale
            t2 += grad_out[q2, oh, ow] * scale
            t3 += grad_out[q3, oh, ow] * scale
    _store_planes(grad_in, h, w, p0, step, t0, t1, t2, t3)


@cached_jit
def zero_kernel(a):
    i = cuda.grid(1)
    if i < a.shape[0]:
        a[i] = float32(0.0)


@cached_jit
def max_pool2d_backward_scatter_kernel(grad_out, indices, grad_in):
    """Without the window geometry: each output adds its grad at its index (grad_in zeroed first)."""
    ow = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    oh = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
    p = cuda.blockIdx.z * cuda.blockDim.z + cuda.threadIdx.z
    if oh < grad_out.shape[1] and ow < grad_out.shape[2] and p < grad_out.shape[0]:
        index = indices[p, oh, ow]
        width = grad_in.shape[2]
        cuda.atomic.add(grad_in, (p, index // width, index % width), grad_out[p, oh, ow])


@device_function
def _adaptive_window(o, size, out_size):
    """PyTorch's adaptive window [floor(o*size/out), ceil((o+1)*size/out))."""
    return (o * size) // out_size, ((o + 1) * size + out_size - 1) // out_size


@cached_jit(fastmath=True)
def adaptive_avg_pool2d_kernel(x, y):
    ow = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    oh = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
    p = cuda.blockIdx.z * cuda.blockDim.z + cuda.threadIdx.z
    if oh >= y.shape[1] or ow >= y.shape[2] or p >= y.shape[0]:
        return
    h_first, h_end = _adaptive_window(oh, x.shape[1], y.shape[1])
    w_first, w_end = _adaptive_window(ow, x.shape[2], y.shape[2])
    total = float32(0.0)
    for h in range(h_first, h_end):
        for w in range(w_first, w_end):
            total += x[p, h, w]
    y[p, oh, ow] = total / float32((h_end - h_first) * (w_end - w_first))


@cached_jit(fastmath=True)
def adaptive_avg_pool2d_reduce_kernel(x, y):
    """Large windows (global pooling): one block per output, warps reading window rows, then a
    shared-memory tree (no warp shuffles, so the simulator runs it too)."""
    ow = cuda.blockIdx.x
    oh = cuda.blockIdx.y
    p = cuda.blockIdx.z
    tid = cuda.threadIdx.y * WARP_COLUMNS + cuda.threadIdx.x
    partial = cuda.shared.array(REDUCE_THREADS, float32)
    h_first, h_end = _adaptive_window(oh, x.shape[1], y.shape[1])
    w_first, w_end = _adaptive_window(ow, x.shape[2], y.shape[2])
    total = float32(0.0)
    for h in range(h_first + cuda.threadIdx.y, h_end, REDUCE_ROWS):
        for w in range(w_first + cuda.threadIdx.x, w_end, WARP_COLUMNS):
            total += x[p, h, w]
    partial[tid] = total
    total = block_sum(partial, tid, REDUCE_THREADS)
    if tid == 0:
        y[p, oh, ow] = total / float32((h_end - h_first) * (w_end - w_first))


@cached_jit(fastmath=True)
def adaptive_avg_pool2d_backward_kernel(grad_out, grad_in):
    w = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    h = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
    p = cuda.blockIdx.z * cuda.blockDim.z + cuda.threadIdx.z
    height = grad_in.shape[1]
    width = grad_in.shape[2]
    out_h = grad_out.shape[1]
    out_w = grad_out.shape[2]
    if h >= height or w >= width or p >= grad_in.shape[0]:
        return
    # floor(o*H/OH) <= h < ceil((o+1)*H/OH) holds exactly for o in [floor(h*OH/H), ceil((h+1)*OH/H))
    oh_hi = ((h + 1) * out_h + height - 1) // height
    ow_hi = ((w + 1) * out_w + width - 1) // width
    total = float32(0.0)
    for oh in range(h * out_h // height, oh_hi):
        h_first, h_end = _adaptive_window(oh, height, out_h)
        for ow in range(w * out_w // width, ow_hi):
            w_first, w_end = _adaptive_window(ow, width, out_w)
            total += grad_out[p, oh, ow] / float32((h_end - h_first) * (w_end - w_first))
    grad_in[p, h, w] = total


def _compiled_window(kernel):
    """The window size to compile in: one of SPECIALISED_WINDOWS, else (0, 0) (read at run time)."""
    return tuple(kernel) if tuple(kernel) in SPECIALISED_WINDOWS else (0, 0)


def _planes(a):
    """A C-contiguous NCHW array as (N*C, H, W)."""
    return a.reshape((a.shape[0] * a.shape[1],) + tuple(a.shape[2:]))


def _run(kernel, covered, planes_per_thread, arrays, scalars=()):
    """Launch over the positions of `covered` (N*C, rows, cols); planes beyond one grid's z limit go
    in further launches on plane slices (only for over MAX_GRID_Z * block z planes)."""
    planes, rows, cols = covered.shape
    if planes == 0:
        return
    grid, block, per_launch = _layout(planes, rows, cols, planes_per_thread)
    if per_launch == planes:
        launch(kernel, grid, block, *arrays, *scalars)
        return
    for start in range(0, planes, per_launch):
        launch(kernel, grid, block, *[a[start:start + per_launch] for a in arrays], *scalars)


def max_pool2d(x, y, indices, kernel, stride, padding, dilation, out_hw):
    geometry = (*kernel, *stride, *padding, *dilation)
    plain, with_indices = max_pool2d_kernels(*_compiled_window(kernel))
    if indices is None:
        _run(plain, _planes(y), 1, (_planes(x), _planes(y)), geometry)
    else:
        _run(with_indices, _planes(y), 1, (_planes(x), _planes(y), _planes(indices)), geometry)


def max_pool2d_backward(grad_out, indices, grad_in, geometry):
    """geometry: (kernel, stride, padding, dilation) pairs for the gather, or None for the scatter."""
    if geometry is not None:
        _run(max_pool2d_backward_kernel, _planes(grad_in), BACKWARD_PLANES,
             (_planes(grad_out), _planes(indices), _planes(grad_in)), tuple(v for pair in geometry for v in pair))
        return
    launch_1d(zero_kernel, grad_in.size, grad_in.reshape(-1), threads=THREADS)
    _run(max_pool2d_backward_scatter_kernel, _planes(grad_out), 1,
         (_planes(grad_out), _planes(indices), _planes(grad_in)))


def avg_pool2d(x, y, kernel, stride, padding, count_include_pad, divisor_override):
    _run(avg_pool2d_kernel(*_compiled_window(kernel)), _planes(y), 1, (_planes(x), _planes(y)),
         (*kernel, *stride, *padding, int(count_include_pad), int(divisor_override or 0)))


def avg_pool2d_backward(grad_out, grad_in, kernel, stride, padding, count_include_pad, divisor_override):
    _run(avg_pool2d_backward_kernel, _planes(grad_in), BACKWARD_PLANES, (_planes(grad_out), _planes(grad_in)),
         (*kernel, *stride, *padding, int(count_include_pad), int(divisor_override or 0)))


def adaptive_avg_pool2d(x, y):
    x3, y3 = _planes(x), _planes(y)
    planes, out_h, out_w = y3.shape
    if (x3.shape[1] // out_h) * (x3.shape[2] // out_w) < REDUCE_MIN_AREA:
        _run(adaptive_avg_pool2d_kernel, y3, 1, (x3, y3))
        return
    # a block per output: planes * out_h * out_w blocks, at most MAX_GRID_Z planes per launch
    for start in range(0, planes, MAX_GRID_Z):
        stop = min(planes, start + MAX_GRID_Z)
        launch(adaptive_avg_pool2d_reduce_kernel, (out_w, out_h, stop - start), (WARP_COLUMNS, REDUCE_ROWS, 1),
               *((x3, y3) if (start, stop) == (0, planes) else (x3[start:stop], y3[start:stop])))


def adaptive_avg_pool2d_backward(grad_out, grad_in):
    _run(adaptive_avg_pool2d_backward_kernel, _planes(grad_in), 1, (_planes(grad_out), _planes(grad_in)))


_planes_f32 = float32[:, :, ::1]
_planes_i64 = int64[:, :, ::1]
_geometry = (int64,) * 8
PTX_SIGNATURES = []
for _window in SPECIALISED_WINDOWS + ((0, 0),):
    _tag = "x".join(map(str, _window)) if _window != (0, 0) else "any"
    _plain, _with_indices = max_pool2d_kernels(*_window)
    PTX_SIGNATURES += [
        (f"max_pool2d[{_tag}]", _plain, (_planes_f32, _planes_f32) + _geometry),
        (f"max_pool2d_indices[{_tag}]", _with_indices, (_planes_f32, _planes_f32, _planes_i64) + _geometry),
        (f"avg_pool2d[{_tag}]", avg_pool2d_kernel(*_window), (_planes_f32, _planes_f32) + _geometry),
    ]
PTX_SIGNATURES += [
    ("max_pool2d_backward", max_pool2d_backward_kernel, (_planes_f32, _planes_i64, _planes_f32) + _geometry),
    ("max_pool2d_backward_scatter", max_pool2d_backward_scatter_kernel, (_planes_f32, _planes_i64, _planes_f32)),
    ("zero", zero_kernel, (float32[::1],)),
    ("avg_pool2d_backward", avg_pool2d_backward_kernel, (_planes_f32, _planes_f32) + _geometry),
    ("adaptive_avg_pool2d", adaptive_avg_pool2d_kernel, (_planes_f32, _planes_f32)),
    ("adaptive_avg_pool2d_reduce", adaptive_avg_pool2d_reduce_kernel, (_planes_f32, _planes_f32)),
    ("adaptive_avg_pool2d_backward", adaptive_avg_pool2d_backward_kernel, (_planes_f32, _planes_f32)),
]
