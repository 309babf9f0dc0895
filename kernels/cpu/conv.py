"""2-D convolution (NCHW) in NumPy: im2col by stride tricks, then BLAS. The reference for kernels/cuda/conv.py.

Geometry arrives already resolved by kernels/conv.py: stride and dilation as (h, w) pairs, padding as
(top, bottom, left, right) so that PyTorch's asymmetric 'same' padding is expressible. The only Python
loops are over the R*S filter taps (col2im, depthwise, shifted copies). Large images multiply one image
at a time (a batched matmul over (N, C*R*S, P*Q) columns); small ones lay the whole batch out as one
(C*R*S, N*P*Q) matrix so that one GEMM call does the work instead of N tiny ones. Small, narrow images
(outputs under 32 wide) at stride 1 build that matrix from R*S contiguous shifted slices of the flattened
padded batch (long memcpy-like runs instead of gathers of Q elements), computing the few positions between
images too and dropping them afterwards. The stride-1 data gradient is a convolution of the padded
grad_out unless the input is at least twice the output and the output 16 or more wide (then col2im).
Stride-1 3x3 layers with 16 channels or more on maps of 64 pixels or more (most CRNN layers, and the data
gradient of such layers, which is one) use Winograd F(2x2, 3x3): 16 batched GEMMs with 4/9 of the
multiplies, for the weight gradient too. Each rule's measurements are beside its constant below.
"""
import threading

import numba
import numpy as np
from numpy.lib.stride_tricks import as_strided


def output_size(size, kernel, stride, pad_before, pad_after, dilation):
    return (size + pad_before + pad_after - dilation * (kernel - 1) - 1) // stride + 1


def _padded(x, padding):
    top, bottom, left, right = padding
    if top == bottom == left == right == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))


def _windows(x_padded, kernel_hw, stride, dilation, out_hw):
    """Read-only view (N, C, R, S, P, Q): [n, c, r, s, p, q] = x_padded[n, c, p*sh + r*dh, q*sw + s*dw]."""
    n, c = x_padded.shape[:2]
    step_n, step_c, step_h, step_w = x_padded.strides
    return as_strided(x_padded, (n, c, kernel_hw[0], kernel_hw[1], out_hw[0], out_hw[1]),
                      (step_n, step_c, dilation[0] * step_h, dilation[1] * step_w,
                       stride[0] * step_h, stride[1] * step_w), writeable=False)


BATCHED_MIN_PIXELS = 256   # from this many output pixels per image on, one GEMM per image is efficient
CHUNK_BYTES = 4 * 2**20    # im2col columns built and multiplied a few images at a time, while in cache


def _column_chunks(x, kernel_hw, stride, padding, dilation, groups, out_hw):
    """Yield (start, stop, columns (stop-start, G, C/G*R*S, P*Q)) over the batch, one reused buffer."""
    n, c = x.shape[:2]
    windows = _windows(_padded(x, padding), kernel_hw, stride, dilation, out_hw)
    rows, pixels = c // groups * kernel_hw[0] * kernel_hw[1], out_hw[0] * out_hw[1]
    chunk = max(1, min(n, CHUNK_BYTES // (groups * rows * pixels * x.itemsize)))
    buffer = np.empty((chunk,) + windows.shape[1:], x.dtype)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        np.copyto(buffer[:stop - start], windows[start:stop])
        yield start, stop, buffer[:stop - start].reshape(stop - start, groups, rows, pixels)


def _batch_columns(x, kernel_hw, stride, padding, dilation, groups, out_hw):
    """The im2col matrix of the whole batch, per group: (G, C/G*R*S, N*P*Q), contiguous."""
    n, c = x.shape[:2]
    windows = _windows(_padded(x, padding), kernel_hw, stride, dilation, out_hw).transpose(1, 2, 3, 0, 4, 5)
    return windows.reshape(groups, c // groups * kernel_hw[0] * kernel_hw[1], n * out_hw[0] * out_hw[1])


def _flat_columns(x, kernel_hw, padding, dilation, groups, out_hw):
    """Stride 1, whole batch: columns (G, C/G*R*S, N*Hg*Wg) over a compact grid, and the grid (Hg, Wg).

    Each image sits in an Hg x Wg cell whose right/bottom zero band also serves as the next row's/image's
    left/top padding, so the flat batch needs max(top, bottom) rows and max(left, right) columns of
    zeros per image instead of their sums. Row (c, r, s) of the columns is that flat batch shifted by
    r*dh*Wg + s*dw: one contiguous copy per tap. Output (n, p, q) is grid position (n, p, q); positions
    with p >= P or q >= Q are garbage that the caller drops.
    """
    n, c, h, w = x.shape
    top, bottom, left, right = padding
    grid_h = max(h + max(top, bottom), out_hw[0])
    grid_w = max(w + max(left, right), out_hw[1])
    r, s = kernel_hw
    length = n * grid_h * grid_w
    lead = top * grid_w + left
    reach = (r - 1) * dilation[0] * grid_w + (s - 1) * dilation[1]
    flat = np.zeros((c, max(length + reach, lead + length)), x.dtype)
    flat[:, lead:lead + length].reshape(c, n, grid_h, grid_w)[:, :, :h, :w] = x.transpose(1, 0, 2, 3)
    columns = np.empty((c, r * s, length), x.dtype)
    for tap_r in range(r):
        for tap_s in range(s):
            offset = tap_r * dilation[0] * grid_w + tap_s * dilation[1]
            columns[:, tap_r * s + tap_s] = flat[:, offset:offset + length]
    return columns.reshape(groups, c // groups * r * s, length), (grid_h, grid_w)


# Winograd F(2x2, 3x3): each 2x2 output tile from a 4x4 input tile with 16 multiplies instead of 36.
# Y = A^T [(G g G^T) * (B^T d B)] A; the B^T and A^T products are written out as adds below.
WINOGRAD_FILTER = ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0))   # G
# Measured (one thread, forward and both gradients): from 16 channels Winograd wins or ties, e.g. 32 -> 64
# channels on 6x45 maps 1.72 -> 1.39 ms forward, 16 -> 32 on 14x14 1.59 -> 1.28, 32 -> 64 on 8x8 1.91 -> 1.16;
# at 8 the transforms dominate. On 4x4 maps (4 tiles an image) the digits CNN's step gained nothing (3.1 ms
# either way at batch 64, 1.9 against 2.0 at 32).
WINOGRAD_MIN_CHANNELS = 16
WINOGRAD_MIN_PIXELS = 64


def _use_winograd(weight_shape, stride, dilation, groups, out_hw):
    k, c, r, s = weight_shape
    return ((r, s) == (3, 3) and tuple(stride) == (1, 1) and tuple(dilation) == (1, 1) and groups == 1
            and min(c, k) >= WINOGRAD_MIN_CHANNELS and min(out_hw) >= 2
            and out_hw[0] * out_hw[1] >= WINOGRAD_MIN_PIXELS)


@numba.njit(nogil=True, inline="always")
def _filter_1d(a0, a1, a2, half):
    """G a for G = WINOGRAD_FILTER: (a0, (a0 + a1 + a2) / 2, (a0 - a1 + a2) / 2, a2)."""
    return a0, half * (a0 + a1 + a2), half * (a0 - a1 + a2), a2


@numba.njit(nogil=True, cache=True)
def _winograd_filter_tiles(weight, u, half):
    """u[4i + j, k, c] = (G g G^T)[i, j] for each 3x3 filter g = weight[k, c] (a Numba loop: NumPy's einsum
    cost about 40 us a call, most of a small layer's Winograd overhead). half: 0.5 in the arrays' dtype
    (a float64 literal would turn float32 sums into float64)."""
    for k in range(weight.shape[0]):
        for c in range(weight.shape[1]):
            g = weight[k, c]
            t0 = _filter_1d(g[0, 0], g[1, 0], g[2, 0], half)   # G g, one column at a time ...
            t1 = _filter_1d(g[0, 1], g[1, 1], g[2, 1], half)
            t2 = _filter_1d(g[0, 2], g[1, 2], g[2, 2], half)
            for i in range(4):                           # ... then (G g) G^T along each row i
                w0, w1, w2, w3 = _filter_1d(t0[i], t1[i], t2[i], half)
                u[4 * i, k, c] = w0
                u[4 * i + 1, k, c] = w1
                u[4 * i + 2, k, c] = w2
                u[4 * i + 3, k, c] = w3


@numba.njit(nogil=True, inline="always")
def _filter_gradient_1d(p0, p1, p2, p3, half):
    """G^T p: (p0 + (p1 + p2) / 2, (p1 - p2) / 2, (p1 + p2) / 2 + p3)."""
    return p0 + half * (p1 + p2), half * (p1 - p2), half * (p1 + p2) + p3


@numba.njit(nogil=True, cache=True)
def _winograd_filter_gradients(products, grad_weight, half):
    """grad_weight[k, c] = G^T P G for the 4x4 P[i, j] = products[4i + j, k, c]; half as above."""
    for k in range(grad_weight.shape[0]):
        for c in range(grad_weight.shape[1]):
            r0 = _filter_gradient_1d(products[0, k, c], products[4, k, c], products[8, k, c], products[12, k, c], half)
            r1 = _filter_gradient_1d(products[1, k, c], products[5, k, c], products[9, k, c], products[13, k, c], half)
            r2 = _filter_gradient_1d(products[2, k, c], products[6, k, c], products[10, k, c], products[14, k, c], half)
            r3 = _filter_gradient_1d(products[3, k, c], products[7, k, c], products[11, k, c], products[15, k, c], half)
            for i in range(3):
                grad_weight[k, c, i, 0], grad_weight[k, c, i, 1], grad_weight[k, c, i, 2] = \
                    _filter_gradient_1d(r0[i], r1[i], r2[i], r3[i], half)


@numba.njit(nogil=True, inline="always")
def _data_1d(a0, a1, a2, a3):
    """B^T a for B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]] (kernels/cuda/conv_winograd)."""
    return a0 - a2, a1 + a2, a2 - a1, a1 - a3


@numba.njit(nogil=True, cache=True)
def _winograd_input_tiles(x, v):
    """v[4i + j, c, n, a, b] = (B^T d B)[i, j], d the 4x4 tile x[n, c, 2a:2a+4, 2b:2b+4] of the padded input.

    B^T d combines the tile's rows (0-2, 1+2, 2-1, 1-3); (B^T d) B the same over its columns. One pass
    over the input, sixteen unit-stride output streams (NumPy took eight temporaries and strided writes).
    """
    for n in range(v.shape[2]):
        for c in range(v.shape[1]):
            d = x[n, c]
            for a in range(v.shape[3]):
                row = 2 * a
                for b in range(v.shape[4]):
                    col = 2 * b
                    # B^T d, one column of the tile at a time (rows 0-2, 1+2, 2-1, 1-3) ...
                    t0 = _data_1d(d[row, col], d[row + 1, col], d[row + 2, col], d[row + 3, col])
                    t1 = _data_1d(d[row, col + 1], d[row + 1, col + 1], d[row + 2, col + 1], d[row + 3, col + 1])
                    t2 = _data_1d(d[row, col + 2], d[row + 1, col + 2], d[row + 2, col + 2], d[row + 3, col + 2])
                    t3 = _data_1d(d[row, col + 3], d[row + 1, col + 3], d[row + 2, col + 3], d[row + 3, col + 3])
                    # ... then (B^T d) B along each row i: components 4i .. 4i+3
                    for i in range(4):
                        w0, w1, w2, w3 = _data_1d(t0[i], t1[i], t2[i], t3[i])
                        v[4 * i, c, n, a, b] = w0
                        v[4 * i + 1, c, n, a, b] = w1
                        v[4 * i + 2, c, n, a, b] = w2
                        v[4 * i + 3, c, n, a, b] = w3


@numba.njit(nogil=True, cache=True)
def _winograd_output_tiles(m, bias, y, first_image):
    """y[first_image + n, k, 2a + u, 2b + w] = (A^T m A)[u, w] + bias[k], m[4i + j, k, n, a, b]; edges clipped."""
    out_h, out_w = y.shape[2], y.shape[3]
    for k in range(m.shape[1]):
        shift = bias[k]
        for n in range(m.shape[2]):
            for a in range(m.shape[3]):
                for b in range(m.shape[4]):
                    # A^T m: rows 0+1+2 and 1-2-3, per column j; then the same over columns.
                    s00 = m[0, k, n, a, b] + m[4, k, n, a, b] + m[8, k, n, a, b]
                    s01 = m[1, k, n, a, b] + m[5, k, n, a, b] + m[9, k, n, a, b]
                    s02 = m[2, k, n, a, b] + m[6, k, n, a, b] + m[10, k, n, a, b]
                    s03 = m[3, k, n, a, b] + m[7, k, n, a, b] + m[11, k, n, a, b]
                    s10 = m[4, k, n, a, b] - m[8, k, n, a, b] - m[12, k, n, a, b]
                    s11 = m[5, k, n, a, b] - m[9, k, n, a, b] - m[13, k, n, a, b]
                    s12 = m[6, k, n, a, b] - m[10, k, n, a, b] - m[14, k, n, a, b]
                    s13 = m[7, k, n, a, b] - m[11, k, n, a, b] - m[15, k, n, a, b]
                    row, col = 2 * a, 2 * b
                    image = first_image + n
                    y[image, k, row, col] = s00 + s01 + s02 + shift
                    if col + 1 < out_w:
                        y[image, k, row, col + 1] = s01 - s02 - s03 + shift
                    if row + 1 < out_h:
                        y[image, k, row + 1, col] = s10 + s11 + s12 + shift
                        if col + 1 < out_w:
                            y[image, k, row + 1, col + 1] = s11 - s12 - s13 + shift


_scratch = threading.local()   # per thread: {(use, dtype): 1-d buffer} for _component_rows


def _component_rows(size, dtype, use):
    """An uninitialised (16, size) array whose rows start 256 bytes apart modulo 4 KiB. With rows a multiple
    of 4 KiB apart (C*N*tiles floats often are), the sixteen streams of a tile transform fall into the
    same L1 sets: measured 2.3 ms against 0.31 ms for one CRNN layer's input transform.

    Scratch memory, kept per thread and `use` and grown to the largest layer seen (never freed): a new
    megabyte a call was given back to the OS and faulted in again each time (a digits CNN step at batch
    64: 1567 page faults). Never part of a result, and a use is never live twice at once."""
    stride = -(-size // 1024) * 1024 + 64
    buffers = getattr(_scratch, "buffers", None)
    if buffers is None:
        buffers = _scratch.buffers = {}
    key = (use, np.dtype(dtype))   # (the dtype itself: '>f8' and '<f8' share a char)
    buffer = buffers.get(key)
    if buffer is None or buffer.size < 16 * stride:
        buffer = buffers[key] = np.empty(16 * stride, dtype)
    return as_strided(buffer, (16, size), (stride * buffer.itemsize, buffer.itemsize))


def _winograd_inputs(x, padding, out_hw):
    """x padded so that every 2x2 output tile has its full 4x4 input (contiguous), and the tile counts."""
    tiles_h, tiles_w = -(-out_hw[0] // 2), -(-out_hw[1] // 2)
    top, bottom, left, right = padding
    x = _padded(x, (top, bottom + 2 * tiles_h - out_hw[0], left, right + 2 * tiles_w - out_hw[1]))
    return np.ascontiguousarray(x), tiles_h, tiles_w


def _winograd_conv3x3(x, weight, bias, padding, out_hw):
    """Stride-1 3x3 convolution (plus bias) by Winograd F(2x2, 3x3), a few images at a time: (N, K, P, Q).

    The input transform is a Numba loop, the 16 products are one batched GEMM, and the output
    transform (with the bias and the clipping of odd edges) is a Numba loop.
    """
    n, c = x.shape[:2]
    k = weight.shape[0]
    x_tiles, tiles_h, tiles_w = _winograd_inputs(x, padding, out_hw)
    transformed_weight = np.empty((16, k, c), x.dtype)
    _winograd_filter_tiles(np.ascontiguousarray(weight, x.dtype), transformed_weight, x.dtype.type(0.5))
    bias = np.zeros(k, x.dtype) if bias is None else np.ascontiguousarray(bias, x.dtype)
    y = np.empty((n, k) + tuple(out_hw), x.dtype)
    tiles = tiles_h * tiles_w
    chunk = max(1, min(n, CHUNK_BYTES // (16 * max(c, k) * tiles * x.itemsize)))
    v = _component_rows(c * chunk * tiles, x.dtype, "input")
    products = _component_rows(k * chunk * tiles, x.dtype, "products")
    for start in range(0, n, chunk):
        b = min(n, start + chunk) - start
        part = v[:, :c * b * tiles].reshape(16, c, b, tiles_h, tiles_w)
        _winograd_input_tiles(x_tiles[start:start + b], part)
        m = products[:, :k * b * tiles].reshape(16, k, b * tiles)
        np.matmul(transformed_weight, part.reshape(16, c, b * tiles), out=m)
        _winograd_output_tiles(m.reshape(16, k, b, tiles_h, tiles_w), bias, y, start)
    return y


@numba.njit(nogil=True, cache=True)
def _winograd_gradient_tiles(grad_out, v):
    """v[4i + j, k, n, a, b] = (A dy A^T)[i, j] for each 2x2 tile dy of grad_out (even sizes).

    A = [[1, 0], [1, 1], [1, -1], [0, -1]]: rows 0, 0+1, 0-1, -1, then the same over columns.
    """
    for n in range(v.shape[2]):
        for k in range(v.shape[1]):
            g = grad_out[n, k]
            for a in range(v.shape[3]):
                row = 2 * a
                for b in range(v.shape[4]):
                    col = 2 * b
                    p0, q0 = g[row, col], g[row, col + 1]
                    p1, q1 = g[row + 1, col], g[row + 1, col + 1]
                    rows_p = (p0, p0 + p1, p0 - p1, -p1)
                    rows_q = (q0, q0 + q1, q0 - q1, -q1)
                    for i in range(4):
                        p, q = rows_p[i], rows_q[i]
                        v[4 * i, k, n, a, b] = p
                        v[4 * i + 1, k, n, a, b] = p + q
                        v[4 * i + 2, k, n, a, b] = p - q
                        v[4 * i + 3, k, n, a, b] = -q


def _winograd_weight_gradient3x3(grad_out, x, padding, out_hw):
    """Weight gradient of a stride-1 3x3 convolution by Winograd: G^T [sum over tiles (A dy A^T) * (B^T d B)] G.

    The sum over tiles is 16 GEMMs (K x tiles) @ (tiles x C), accumulated over chunks of images.
    """
    n, c = x.shape[:2]
    k = grad_out.shape[1]
    x_tiles, tiles_h, tiles_w = _winograd_inputs(x, padding, out_hw)
    if tuple(out_hw) != (2 * tiles_h, 2 * tiles_w):  # odd output sizes: zero rows/columns complete the tiles
        grad_out = np.pad(grad_out, ((0, 0), (0, 0), (0, 2 * tiles_h - out_hw[0]), (0, 2 * tiles_w - out_hw[1])))
    tiles = tiles_h * tiles_w
    chunk = max(1, min(n, CHUNK_BYTES // (16 * max(c, k) * tiles * x.itemsize)))
    v = _component_rows(c * chunk * tiles, x.dtype, "input")
    v_grad = _component_rows(k * chunk * tiles, x.dtype, "gradient")
    products = np.zeros((16, k, c), x.dtype)
    for start in range(0, n, chunk):
        b = min(n, start + chunk) - start
        part = v[:, :c * b * tiles].reshape(16, c, b, tiles_h, tiles_w)
        grad_part = v_grad[:, :k * b * tiles].reshape(16, k, b, tiles_h, tiles_w)
        _winograd_input_tiles(x_tiles[start:start + b], part)
        _winograd_gradient_tiles(grad_out[start:start + b], grad_part)
        products += np.matmul(grad_part.reshape(16, k, b * tiles), part.reshape(16, c, b * tiles).transpose(0, 2, 1))
    grad_weight = np.empty((k, c, 3, 3), x.dtype)
    _winograd_filter_gradients(products, grad_weight, x.dtype.type(0.5))
    return grad_weight


# The flat columns hold (H + pad) x (W + pad) grid positions an image for P x Q outputs, but copy each tap
# in one run; im2col copies runs of Q. Measured: flat wins while Q is short (4x4 to 14x14 maps), the two
# tie for Q of 20-36, im2col wins beyond (6x45 maps: 1.80 -> 1.64 ms; 3x46 maps under a 3x2 kernel, 1x45
# outputs: 1.00 -> 0.36 ms).
FLAT_MAX_WIDTH = 32


def _use_flat(stride, out_hw):
    return (tuple(stride) == (1, 1) and out_hw[0] * out_hw[1] < BATCHED_MIN_PIXELS
            and out_hw[1] < FLAT_MAX_WIDTH)


def _out_hw(x_hw, kernel_hw, stride, padding, dilation):
    return (output_size(x_hw[0], kernel_hw[0], stride[0], padding[0], padding[1], dilation[0]),
            output_size(x_hw[1], kernel_hw[1], stride[1], padding[2], padding[3], dilation[1]))


def _is_depthwise(weight, groups):
    return groups > 1 and weight.shape[1] == 1 and weight.shape[0] == groups


def conv2d(x, weight, bias, stride, padding, dilation, groups):
    n, c, h, w = x.shape
    k, c_group, r, s = weight.shape
    out_hw = _out_hw((h, w), (r, s), stride, padding, dilation)
    if _is_depthwise(weight, groups):
        # One channel per group: a GEMM per (image, channel) would be 1 x R*S, so sum the taps instead.
        windows = _windows(_padded(x, padding), (r, s), stride, dilation, out_hw)
        y = np.zeros((n, k) + out_hw, x.dtype)
        for tap_r in range(r):
            for tap_s in range(s):
                y += windows[:, :, tap_r, tap_s] * weight[None, :, 0, tap_r, tap_s, None, None]
    elif _use_winograd(weight.shape, stride, dilation, groups, out_hw):
        return _winograd_conv3x3(x, weight, bias, padding, out_hw)
    elif _use_flat(stride, out_hw):
        columns, grid_hw = _flat_columns(x, (r, s), padding, dilation, groups, out_hw)
        y = np.matmul(weight.reshape(groups, k // groups, c_group * r * s), columns).reshape((k, n) + grid_hw)
        y = np.ascontiguousarray(y[:, :, :out_hw[0], :out_hw[1]].transpose(1, 0, 2, 3))
    elif out_hw[0] * out_hw[1] >= BATCHED_MIN_PIXELS:
        y = np.empty((n, k) + out_hw, x.dtype)
        weight_groups = weight.reshape(groups, k // groups, c_group * r * s)
        for start, stop, columns in _column_chunks(x, (r, s), stride, padding, dilation, groups, out_hw):
            np.matmul(weight_groups, columns, out=y[start:stop].reshape(columns.shape[:2] + (k // groups, -1)))
    else:
        columns = _batch_columns(x, (r, s), stride, padding, dilation, groups, out_hw)
        y = np.matmul(weight.reshape(groups, k // groups, c_group * r * s), columns)
        y = np.ascontiguousarray(y.reshape((k, n) + out_hw).transpose(1, 0, 2, 3))
    if bias is not None:
        y += bias[None, :, None, None]
    return y


def conv2d_backward_bias(grad_out):
    return grad_out.sum(axis=(0, 2, 3))


def conv2d_backward_weight(grad_out, x, weight_shape, stride, padding, dilation, groups):
    k, c_group, r, s = weight_shape
    n = x.shape[0]
    out_hw = grad_out.shape[2:]
    if groups > 1 and c_group == 1 and k == groups:
        windows = _windows(_padded(x, padding), (r, s), stride, dilation, out_hw)
        grad_weight = np.empty(weight_shape, x.dtype)
        for tap_r in range(r):
            for tap_s in range(s):
                grad_weight[:, 0, tap_r, tap_s] = np.einsum("nkpq,nkpq->k", grad_out, windows[:, :, tap_r, tap_s])
        return grad_weight
    if _use_winograd(weight_shape, stride, dilation, groups, out_hw):
        return np.ascontiguousarray(_winograd_weight_gradient3x3(grad_out, x, padding, out_hw))
    if _use_flat(stride, out_hw):
        columns, grid_hw = _flat_columns(x, (r, s), padding, dilation, groups, out_hw)
        grid = np.zeros((k, n) + grid_hw, x.dtype)
        grid[:, :, :out_hw[0], :out_hw[1]] = grad_out.transpose(1, 0, 2, 3)
        grad_weight = np.matmul(grid.reshape(groups, k // groups, -1), columns.transpose(0, 2, 1))
    elif out_hw[0] * out_hw[1] >= BATCHED_MIN_PIXELS:
        # Per image (K, PQ) @ (PQ, C*R*S), BLAS reading the columns transposed in place, then summed.
        grad_groups = grad_out.reshape(n, groups, k // groups, -1)
        grad_weight = np.zeros((groups, k // groups, c_group * r * s), x.dtype)
        for start, stop, columns in _column_chunks(x, (r, s), stride, padding, dilation, groups, out_hw):
            grad_weight += np.matmul(grad_groups[start:stop], columns.transpose(0, 1, 3, 2)).sum(axis=0)
    else:
        # One GEMM per group reducing over the whole batch: (K, N*PQ) @ (N*PQ, C*R*S).
        columns = _batch_columns(x, (r, s), stride, padding, dilation, groups, out_hw)
        grad_groups = grad_out.reshape(n, groups, k // groups, -1).transpose(1, 2, 0, 3)
        grad_groups = grad_groups.reshape(groups, k // groups, -1)
        grad_weight = np.matmul(grad_groups, columns.transpose(0, 2, 1))
    return grad_weight.reshape(weight_shape)


def _pad_or_crop(x, padding):
    """Zero-pad (positive entries) or crop (negative entries) the last two axes by (top, bottom, left, right)."""
    top, bottom, left, right = padding
    x = x[:, :, max(0, -top):x.shape[2] - max(0, -bottom), max(0, -left):x.shape[3] - max(0, -right)]
    return _padded(x, (max(0, top), max(0, bottom), max(0, left), max(0, right)))


# The stride-1 data gradient as a convolution of the padded grad_out computes H*W outputs of C*K*R*S
# products each; col2im's GEMM computes P*Q of them, then scatters R*S taps of rows Q long. Measured:
# col2im wins once H*W >= 2 P*Q with rows of 16 or more (a 3x2 kernel over 3x46 maps: 1.08 -> 0.43 ms;
# 3x3 over 3x20: 0.27 -> 0.12), the convolution on narrower maps (3x3 over 4x4 to 6x6: 18-82 us against
# 34-121) and below that ratio.
FLIPPED_MAX_WORK = 2
COL2IM_MIN_WIDTH = 16


def conv2d_backward_input(grad_out, weight, input_shape, stride, padding, dilation, groups):
    """Stride 1 (unless the input is much larger than a wide output): a convolution of the padded grad_out
    with the flipped, transposed weights (no col2im).

    Otherwise col2im: the column gradient W^T @ grad_out, scattered back tap by tap onto the padded input.
    """
    n, c, h, w = input_shape
    k, c_group, r, s = weight.shape
    out_h, out_w = grad_out.shape[2:]
    top, bottom, left, right = padding
    if tuple(stride) == (1, 1) and (h * w < FLIPPED_MAX_WORK * out_h * out_w or out_w < COL2IM_MIN_WIDTH):
        extent_h, extent_w = dilation[0] * (r - 1), dilation[1] * (s - 1)
        flipped = weight.reshape(groups, k // groups, c_group, r, s)[:, :, :, ::-1, ::-1]
        flipped = np.ascontiguousarray(flipped.transpose(0, 2, 1, 3, 4)).reshape(c, k // groups, r, s)
        pads = (extent_h - top, h - out_h + top, extent_w - left, w - out_w + left)
        if min(pads) >= 0:
            return conv2d(grad_out, flipped, None, (1, 1), pads, dilation, groups)
        return conv2d(_pad_or_crop(grad_out, pads), flipped, None, (1, 1), (0, 0, 0, 0), dilation, groups)
    return _col2im_input_gradient(grad_out, weight, input_shape, stride, padding, dilation, groups)


def _col2im_input_gradient(grad_out, weight, input_shape, stride, padding, dilation, groups):
    n, c, h, w = input_shape
    k, c_group, r, s = weight.shape
    out_h, out_w = grad_out.shape[2:]
    top, bottom, left, right = padding
    grad_padded = np.zeros((n, c, h + top + bottom, w + left + right), grad_out.dtype)
    if _is_depthwise(weight, groups):
        grad_columns = None
    else:   # one GEMM a group over the whole batch (a GEMM an image is up to 2x slower at small maps)
        weight_t = weight.reshape(groups, k // groups, c_group * r * s).transpose(0, 2, 1)
        batch_columns = grad_out.reshape(n, groups, k // groups, out_h * out_w).transpose(1, 2, 0, 3)
        grad_columns = np.matmul(weight_t, batch_columns.reshape(groups, k // groups, n * out_h * out_w))
        grad_columns = grad_columns.reshape(c, r, s, n, out_h, out_w)   # (channel, taps, image, pixels)
    stride_h, stride_w = stride
    for tap_r in range(r):
        row = tap_r * dilation[0]
        rows = slice(row, row + stride_h * (out_h - 1) + 1, stride_h)
        for tap_s in range(s):
            col = tap_s * dilation[1]
            cols = slice(col, col + stride_w * (out_w - 1) + 1, stride_w)
            if grad_columns is None:
                grad_padded[:, :, rows, cols] += grad_out * weight[None, :, 0, tap_r, tap_s, None, None]
            else:
                grad_padded[:, :, rows, cols] += grad_columns[:, tap_r, tap_s].transpose(1, 0, 2, 3)
    return np.ascontiguousarray(grad_padded[:, :, top:top + h, left:left + w])
