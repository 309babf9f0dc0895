"""Stride-1 3x3 convolutions by Winograd F(2x2, 3x3) on the GPU: the forward pass, the data gradient (a
forward pass of grad_out with the flipped, transposed filters) and the weight gradient. The CPU twin is
kernels/cpu/conv.py (_winograd_conv3x3, _winograd_weight_gradient3x3); the formulas are the same.

Each 2x2 output tile takes 16 multiplies instead of 36: Y = A^T [U * V] A with U = G g G^T (filters) and
V = B^T d B (4x4 input tiles). The 16 element-wise products summed over channels are 16 GEMMs, done by
kernels.matmul as one batched call; the transforms here are one thread per (channel, tile), reading and
writing the 16 components with the tile index fastest (coalesced). Layouts: U (16, K, C), V (16, C, tiles),
products (16, K, tiles), tiles ordered (image, tile row, tile column). Images are taken a chunk at a time
so the transformed buffers stay within CHUNK_BYTES (peak memory of a training step).
"""
import os

from numba import cuda, float32, int64

from .. import backend
from .device import device_function, divmod32
from .jit import cached_jit
from .launch import ceil_div, launch_1d

CHUNK_BYTES = 32 * 2**20     # largest transformed buffer (16 x channels x tiles floats) of one chunk
# When Winograd beats the implicit GEMM, as measured on an H100 (benchmarks/RESULTS.md, 2026-11-26): from 256
# channels (6x45 and 14x14 maps: forward + backward 1.4-1.9x faster), and from 64 on small maps (the
# train suite's CRNN, whose 64-, 128- and 128-to-256-channel layers work on 6x45 maps, took 2.1 ms more of
# its 11.4 ms captured step with them by implicit GEMM). It lost at 64-128 channels on larger maps (fifth
# session: 28x28, 56x56, 32x128: 0.7-0.9x), where the implicit GEMM runs well, and on layers too small to pay for
# its four extra launches and transform passes (16x64x6x60 to 128 channels, 0.85 GFLOP: 0.63x forward).
# Per pass since the sixteenth session (H100, RESULTS.md): on the paper CRNN's 64->128 layer on 16x50 maps (800
# pixels) Winograd won the forward (0.468 ms against 0.612) and the data gradient (0.572 against 0.949) but lost
# the weight gradient (1.121 against 0.610), and on 28x28 maps with 128 channels it won the forward (0.727
# against 0.892): the forward and data passes take it up to 800 pixels, the weight gradient up to 512.
MIN_CHANNELS = 256
SMALL_MAP_MIN_CHANNELS = 64
SMALL_MAP_PIXELS = 800          # output height x width (the data gradient: grad_x's), forward and data passes
WEIGHT_SMALL_MAP_PIXELS = 512   # the same for the weight gradient
MIN_FLOPS = 1e9              # of the direct convolution, 2 N K C 9 H W
HALF = float32(0.5)
ZERO = float32(0.0)
ALGORITHMS = ("winograd", "implicit", "gemm")
# 'winograd', 'implicit' or 'gemm' (im2col + kernels.matmul, conv_gemm.py) forces that algorithm for every layer it
# can take, the implicit GEMM for the others (tests, benchmarks); None chooses.
force_algorithm = os.environ.get("NUMBANET_CONV_ALGORITHM") or None
if force_algorithm not in (None,) + ALGORITHMS:
    raise ValueError(f"NUMBANET_CONV_ALGORITHM must be one of {ALGORITHMS} (or unset), got {force_algorithm!r}")


def eligible(weight_shape, stride, dilation, groups, out_hw):
    return (tuple(weight_shape[2:]) == (3, 3) and tuple(stride) == (1, 1) and tuple(dilation) == (1, 1) and groups == 1
            and min(out_hw) >= 2)


def use_winograd(weight_shape, stride, dilation, groups, out_hw, batch, weight_gradient=False):
    """Whether a pass runs by Winograd (weight_gradient: the weight-gradient pass, with its own map limit)."""
    if force_algorithm not in (None, "winograd") or not eligible(weight_shape, stride, dilation, groups, out_hw):
        return False
    if force_algorithm == "winograd":
        return True
    filters, channels = weight_shape[:2]
    pixels = out_hw[0] * out_hw[1]
    if 2 * batch * filters * channels * 9 * pixels < MIN_FLOPS:
        return False
    fewer = min(filters, channels)
    small_map = pixels <= (WEIGHT_SMALL_MAP_PIXELS if weight_gradient else SMALL_MAP_PIXELS)
    return fewer >= MIN_CHANNELS or (small_map and fewer >= SMALL_MAP_MIN_CHANNELS)


# The 1-D pieces of the transforms, applied first down the columns, then along the rows.
@device_function
def filter_1d(a0, a1, a2):
    """G a for G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]."""
    return a0, HALF * (a0 + a1 + a2), HALF * (a0 - a1 + a2), a2


@device_function
def filter_adjoint_1d(a0, a1, a2, a3):
    """G^T a: back from the 4 Winograd components to the 3 filter taps (weight gradient)."""
    return a0 + HALF * (a1 + a2), HALF * (a1 - a2), HALF * (a1 + a2) + a3


@device_function
def data_1d(a0, a1, a2, a3):
    """B^T a for B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]."""
    return a0 - a2, a1 + a2, a2 - a1, a1 - a3


@device_function
def output_1d(a0, a1, a2, a3):
    """A^T a for A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]."""
    return a0 + a1 + a2, a1 - a2 - a3


@device_function
def gradient_1d(a0, a1):
    """A a for the 2-vector a: the output-gradient tile into Winograd components."""
    return a0, a0 + a1, a0 - a1, -a1


@device_function
def thread_task(channels, tiles, tiles_h, tiles_w, first_image):
    """(t, channel, image n, tile row a, tile column b) of this thread's tile p; t < 0 when it has none."""
    t = cuda.grid(1)
    if t >= channels * tiles:
        return -1, 0, 0, 0, 0
    channel, p = divmod32(t, tiles)   # (32-bit divisions: every index is under conv.INDEX_LIMIT)
    image, in_image = divmod32(p, tiles_h * tiles_w)
    row, column = divmod32(in_image, tiles_w)
    return t, channel, first_image + image, row, column


@device_function
def pixel(x, base, row, col, height, width):
    """x[base + row * width + col], or 0 in the padding."""
    if row < 0 or row >= height or col < 0 or col >= width:
        return ZERO
    return x[base + row * width + col]


@device_function
def store_4(out, index, stride, v0, v1, v2, v3):
    out[index] = v0
    out[index + stride] = v1
    out[index + 2 * stride] = v2
    out[index + 3 * stride] = v3


@device_function
def store_3(out, index, v0, v1, v2):
    out[index] = v0
    out[index + 1] = v1
    out[index + 2] = v2


@cached_jit(fastmath=True)
def filter_transform(weight, u, K, C, flip):
    """u[i, k, c] = (G g G^T)[i] for g = weight[k, c]; with flip, u[i, c, k] of g rotated by 180 degrees
    (the filters of the data gradient)."""
    t = cuda.grid(1)
    if t >= K * C:
        return
    k = t // C
    c = t - k * C
    base = t * 9
    if flip:  # tap (r, s) of the rotated filter is tap (2 - r, 2 - s)
        g0, g1, g2 = weight[base + 8], weight[base + 7], weight[base + 6]
        g3, g4, g5 = weight[base + 5], weight[base + 4], weight[base + 3]
        g6, g7, g8 = weight[base + 2], weight[base + 1], weight[base]
        out = c * K + k
    else:
        g0, g1, g2 = weight[base], weight[base + 1], weight[base + 2]
        g3, g4, g5 = weight[base + 3], weight[base + 4], weight[base + 5]
        g6, g7, g8 = weight[base + 6], weight[base + 7], weight[base + 8]
        out = t
    column0 = filter_1d(g0, g3, g6)
    column1 = filter_1d(g1, g4, g7)
    column2 = filter_1d(g2, g5, g8)
    stride = K * C
    row = filter_1d(column0[0], column1[0], column2[0])
    store_4(u, out, stride, row[0], row[1], row[2], row[3])
    row = filter_1d(column0[1], column1[1], column2[1])
    store_4(u, out + 4 * stride, stride, row[0], row[1], row[2], row[3])
    row = filter_1d(column0[2], column1[2], column2[2])
    store_4(u, out + 8 * stride, stride, row[0], row[1], row[2], row[3])
    row = filter_1d(column0[3], column1[3], column2[3])
    store_4(u, out + 12 * stride, stride, row[0], row[1], row[2], row[3])


@cached_jit(fastmath=True)
def data_transform(x, v, C, H, W, tiles_h, tiles_w, pad_top, pad_left, first_image, tiles):
    """v[i, c, p] = (B^T d B)[i] for the 4x4 tile d of image first_image + p // (tiles_h * tiles_w), channel
    c, whose top-left input pixel is (2a - pad_top, 2b - pad_left); `tiles` tiles in this chunk."""
    t, c, n, a, b = thread_task(C, tiles, tiles_h, tiles_w, first_image)
    if t < 0:
        return
    base = (n * C + c) * H * W
    row = 2 * a - pad_top
    col = 2 * b - pad_left
    column0 = data_1d(pixel(x, base, row, col, H, W), pixel(x, base, row + 1, col, H, W),
                      pixel(x, base, row + 2, col, H, W), pixel(x, base, row + 3, col, H, W))
    column1 = data_1d(pixel(x, base, row, col + 1, H, W), pixel(x, base, row + 1, col + 1, H, W),
                      pixel(x, base, row + 2, col + 1, H, W), pixel(x, base, row + 3, col + 1, H, W))
    column2 = data_1d(pixel(x, base, row, col + 2, H, W), pixel(x, base, row + 1, col + 2, H, W),
                      pixel(x, base, row + 2, col + 2, H, W), pixel(x, base, row + 3, col + 2, H, W))
    column3 = data_1d(pixel(x, base, row, col + 3, H, W), pixel(x, base, row + 1, col + 3, H, W),
                      pixel(x, base, row + 2, col + 3, H, W), pixel(x, base, row + 3, col + 3, H, W))
    stride = C * tiles
    r = data_1d(column0[0], column1[0], column2[0], column3[0])
    store_4(v, t, stride, r[0], r[1], r[2], r[3])
    r = data_1d(column0[1], column1[1], column2[1], column3[1])
    store_4(v, t + 4 * stride, stride, r[0], r[1], r[2], r[3])
    r = data_1d(column0[2], column1[2], column2[2], column3[2])
    store_4(v, t + 8 * stride, stride, r[0], r[1], r[2], r[3])
    r = data_1d(column0[3], column1[3], column2[3], column3[3])
    store_4(v, t + 12 * stride, stride, r[0], r[1], r[2], r[3])


@cached_jit(fastmath=True)
def output_transform(m, bias, y, K, P, Q, tiles_h, tiles_w, first_image, tiles, has_bias):
    """y[n, k, 2a:2a+2, 2b:2b+2] = A^T m[:, k, p] A (+ bias[k]), clipped at odd edges."""
    t, k, n, a, b = thread_task(K, tiles, tiles_h, tiles_w, first_image)
    if t < 0:
        return
    stride = K * tiles
    column0 = output_1d(m[t], m[t + 4 * stride], m[t + 8 * stride], m[t + 12 * stride])
    column1 = output_1d(m[t + stride], m[t + 5 * stride], m[t + 9 * stride], m[t + 13 * stride])
    column2 = output_1d(m[t + 2 * stride], m[t + 6 * stride], m[t + 10 * stride], m[t + 14 * stride])
    column3 = output_1d(m[t + 3 * stride], m[t + 7 * stride], m[t + 11 * stride], m[t + 15 * stride])
    shift = bias[k] if has_bias else ZERO
    top = output_1d(column0[0], column1[0], column2[0], column3[0])
    bottom = output_1d(column0[1], column1[1], column2[1], column3[1])
    row, col = 2 * a, 2 * b
    index = ((n * K + k) * P + row) * Q + col
    y[index] = top[0] + shift
    if col + 1 < Q:
        y[index + 1] = top[1] + shift
    if row + 1 < P:
        y[index + Q] = bottom[0] + shift
        if col + 1 < Q:
            y[index + Q + 1] = bottom[1] + shift


@device_function
def gradient_pixel(grad_out, base, row, col, P, Q):
    if row >= P or col >= Q:  # odd output sizes: zero rows and columns complete the last tiles
        return ZERO
    return grad_out[base + row * Q + col]


@cached_jit(fastmath=True)
def gradient_transform(grad_out, v, K, P, Q, tiles_h, tiles_w, first_image, tiles):
    """v[i, k, p] = (A dy A^T)[i] for the 2x2 tile dy of grad_out[n, k] at (2a, 2b)."""
    t, k, n, a, b = thread_task(K, tiles, tiles_h, tiles_w, first_image)
    if t < 0:
        return
    base = (n * K + k) * P * Q
    row, col = 2 * a, 2 * b
    left = gradient_1d(gradient_pixel(grad_out, base, row, col, P, Q),
                       gradient_pixel(grad_out, base, row + 1, col, P, Q))
    right = gradient_1d(gradient_pixel(grad_out, base, row, col + 1, P, Q),
                        gradient_pixel(grad_out, base, row + 1, col + 1, P, Q))
    stride = K * tiles
    r = gradient_1d(left[0], right[0])
    store_4(v, t, stride, r[0], r[1], r[2], r[3])
    r = gradient_1d(left[1], right[1])
    store_4(v, t + 4 * stride, stride, r[0], r[1], r[2], r[3])
    r = gradient_1d(left[2], right[2])
    store_4(v, t + 8 * stride, stride, r[0], r[1], r[2], r[3])
    r = gradient_1d(left[3], right[3])
    store_4(v, t + 12 * stride, stride, r[0], r[1], r[2], r[3])


@cached_jit(fastmath=True)
def filter_gradient(products, grad_weight, K, C):
    """grad_weight[k, c] = G^T products[:, k, c] G: the 16 summed components back to 3x3 taps."""
    t = cuda.grid(1)
    if t >= K * C:
        return
    stride = K * C
    column0 = filter_adjoint_1d(products[t], products[t + 4 * stride], products[t + 8 * stride],
                                products[t + 12 * stride])
    column1 = filter_adjoint_1d(products[t + stride], products[t + 5 * stride], products[t + 9 * stride],
                                products[t + 13 * stride])
    column2 = filter_adjoint_1d(products[t + 2 * stride], products[t + 6 * stride], products[t + 10 * stride],
                                products[t + 14 * stride])
    column3 = filter_adjoint_1d(products[t + 3 * stride], products[t + 7 * stride], products[t + 11 * stride],
                                products[t + 15 * stride])
    base = t * 9
    taps = filter_adjoint_1d(column0[0], column1[0], column2[0], column3[0])
    store_3(grad_weight, base, taps[0], taps[1], taps[2])
    taps = filter_adjoint_1d(column0[1], column1[1], column2[1], column3[1])
    store_3(grad_weight, base + 3, taps[0], taps[1], taps[2])
    taps = filter_adjoint_1d(column0[2], column1[2], column2[2], column3[2])
    store_3(grad_weight, base + 6, taps[0], taps[1], taps[2])


def _chunks(n, in_channels, out_channels, out_hw, xp):
    """(tiles_h, tiles_w, [(first image, tiles)], buffer for the input side, buffer for the output side):
    the images in near-equal chunks whose transformed data (16 x channels x tiles) fit CHUNK_BYTES."""
    tiles_h, tiles_w = ceil_div(out_hw[0], 2), ceil_div(out_hw[1], 2)
    image_tiles = tiles_h * tiles_w
    most = max(1, CHUNK_BYTES // (16 * max(in_channels, out_channels) * image_tiles * 4))
    chunk = ceil_div(n, ceil_div(n, most))
    parts = [(start, (min(n, start + chunk) - start) * image_tiles) for start in range(0, n, chunk)]
    return (tiles_h, tiles_w, parts, xp.empty(16 * in_channels * chunk * image_tiles, xp.float32),
            xp.empty(16 * out_channels * chunk * image_tiles, xp.float32))


def _forward(x, u, bias, y, pad_top, pad_left):
    """y = the convolution whose transformed filters are u (16, K, C), over padded x; y's size sets the tiles."""
    from ..gemm import matmul
    xp = backend.array_module(x)
    n, c, h, w = x.shape
    k, (p, q) = y.shape[1], y.shape[2:]
    tiles_h, tiles_w, parts, v, m = _chunks(n, c, k, (p, q), xp)
    has_bias = 0 if bias is None else 1
    bias = u.reshape(-1) if bias is None else bias   # read only when has_bias: any float32 array stands in
    x_flat, y_flat = x.reshape(-1), y.reshape(-1)
    for start, tiles in parts:
        v_part = v[:16 * c * tiles]
        m_part = m[:16 * k * tiles]
        launch_1d(data_transform, c * tiles, x_flat, v_part, c, h, w, tiles_h, tiles_w, pad_top, pad_left,
                  start, tiles)
        matmul(u, v_part.reshape(16, c, tiles), out=m_part.reshape(16, k, tiles))
        launch_1d(output_transform, k * tiles, m_part, bias, y_flat, k, p, q, tiles_h, tiles_w, start, tiles,
                  has_bias)


def conv2d(x, weight, bias, y, padding):
    """y = conv2d(x, weight) + bias, weight (K, C, 3, 3), stride 1; padding is (top, bottom, left, right)."""
    xp = backend.array_module(x)
    k, c = weight.shape[:2]
    u = xp.empty((16, k, c), xp.float32)
    launch_1d(filter_transform, k * c, weight.reshape(-1), u.reshape(-1), k, c, 0)
    _forward(x, u, bias, y, padding[0], padding[2])


def conv2d_backward_input(grad_out, weight, grad_x, padding):
    """grad_x = grad_out convolved with the rotated, transposed filters; grad_out sits at offset
    (2 - top, 2 - left) of grad_x's frame."""
    xp = backend.array_module(grad_out)
    k, c = weight.shape[:2]
    u = xp.empty((16, c, k), xp.float32)
    launch_1d(filter_transform, k * c, weight.reshape(-1), u.reshape(-1), k, c, 1)
    _forward(grad_out, u, None, grad_x, 2 - padding[0], 2 - padding[2])


def conv2d_backward_weight(grad_out, x, grad_weight, padding):
    """grad_weight = G^T [sum over tiles (A dy A^T) * (B^T d B)] G, the sum as batched GEMMs per chunk."""
    from ..gemm import matmul
    xp = backend.array_module(x)
    n, c, h, w = x.shape
    k, (p, q) = grad_out.shape[1], grad_out.shape[2:]
    tiles_h, tiles_w, parts, v, v_grad = _chunks(n, c, k, (p, q), xp)
    products = xp.empty((16, k, c), xp.float32)
    x_flat, grad_flat = x.reshape(-1), grad_out.reshape(-1)
    for start, tiles in parts:
        v_part = v[:16 * c * tiles]
        grad_part = v_grad[:16 * k * tiles]
        launch_1d(data_transform, c * tiles, x_flat, v_part, c, h, w, tiles_h, tiles_w, padding[0], padding[2],
                  start, tiles)
        launch_1d(gradient_transform, k * tiles, grad_flat, grad_part, k, p, q, tiles_h, tiles_w, start, tiles)
        matmul(grad_part.reshape(16, k, tiles), v_part.reshape(16, c, tiles), trans_b=True,
               beta=0.0 if start == 0 else 1.0, out=products)
    launch_1d(filter_gradient, k * c, products.reshape(-1), grad_weight.reshape(-1), k, c)


_vector = float32[::1]
PTX_SIGNATURES = [
    ("winograd_filter_transform", filter_transform, (_vector, _vector, int64, int64, int64)),
    ("winograd_data_transform", data_transform, (_vector, _vector) + (int64,) * 9),
    ("winograd_output_transform", output_transform, (_vector,) * 3 + (int64,) * 8),
    ("winograd_gradient_transform", gradient_transform, (_vector, _vector) + (int64,) * 7),
    ("winograd_filter_gradient", filter_gradient, (_vector, _vector, int64, int64)),
]
