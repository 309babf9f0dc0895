"""Winograd F(2x2, 3x3) for stride-1 3x3 convolutions in NumPy and Numba-CPU: the forward (`conv3x3`, which
is also the data gradient: a convolution of the padded grad_out with the flipped filters) and the weight
gradient (`weight_gradient3x3`). The reference for kernels/cuda/conv_winograd.py; kernels/cpu/conv.py
decides when a layer takes it (`_use_winograd`) and how many images a chunk holds.

The tile transforms are Numba loops, the 16 products of a chunk one batched GEMM.
"""
import threading

import numba
import numpy as np
from numpy.lib.stride_tricks import as_strided

# Winograd F(2x2, 3x3): each 2x2 output tile from a 4x4 input tile with 16 multiplies instead of 36.
# Y = A^T [(G g G^T) * (B^T d B)] A; the B^T and A^T products are written out as adds below.
WINOGRAD_FILTER = ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0))   # G


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
    bottom, right = bottom + 2 * tiles_h - out_hw[0], right + 2 * tiles_w - out_hw[1]
    if top or bottom or left or right:
        x = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    return np.ascontiguousarray(x), tiles_h, tiles_w


def conv3x3(x, weight, bias, padding, out_hw, chunk_bytes):
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
    chunk = max(1, min(n, chunk_bytes // (16 * max(c, k) * tiles * x.itemsize)))
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


def weight_gradient3x3(grad_out, x, padding, out_hw, chunk_bytes):
    """Weight gradient of a stride-1 3x3 convolution by Winograd: G^T [sum over tiles (A dy A^T) * (B^T d B)] G.

    The sum over tiles is 16 GEMMs (K x tiles) @ (tiles x C), accumulated over chunks of images.
    """
    n, c = x.shape[:2]
    k = grad_out.shape[1]
    x_tiles, tiles_h, tiles_w = _winograd_inputs(x, padding, out_hw)
    if tuple(out_hw) != (2 * tiles_h, 2 * tiles_w):  # odd output sizes: zero rows/columns complete the tiles
        grad_out = np.pad(grad_out, ((0, 0), (0, 0), (0, 2 * tiles_h - out_hw[0]), (0, 2 * tiles_w - out_hw[1])))
    tiles = tiles_h * tiles_w
    chunk = max(1, min(n, chunk_bytes // (16 * max(c, k) * tiles * x.itemsize)))
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
