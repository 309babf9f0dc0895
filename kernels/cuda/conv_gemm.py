"""conv2d as an explicit GEMM: im2col gathers x into columns (N*P*Q, C*R*S) that kernels.matmul multiplies with
the filters (K, C*R*S); col2im gathers a column gradient back onto the input. Launch: one thread per column
element (im2col) or input pixel (col2im), 256 a block; 32x32 tiles of 32x8 threads for the layout transposes.
Why: the implicit-GEMM kernels have no split-K, so a layer with few output pixels and a long reduction leaves most
SMs idle (the CRNN's last 256-channel 3x2 layer: 184 forward blocks on 132 SMs); the GEMM plans tiles and
split-K for any shape. groups == 1 only; the rule that picks it is `use_gemm`, applied in kernels/cuda/conv.py.
"""
from numba import cuda, float32, int64

from .. import backend
from . import conv_winograd as winograd
from .conv_forward import SMS
from .device import divmod32
from .jit import cached_jit
from .launch import ceil_div, launch, launch_1d

TILE = 32                   # the transposes move 32x32 tiles through shared memory (both sides coalesced)
TILE_ROWS = 8               # rows of threads a transpose block has: each thread moves TILE // TILE_ROWS values
TILE_STRIDE = TILE + 1      # shared tile rows of 33 floats: a warp's column reads hit 32 different banks
# The rule (use_gemm). The column matrix is the scratch the GEMM costs: at most 2**25 floats (128 MiB), read
# and written once more than the implicit kernels do, worth it only while they leave SMs idle: fewer than two
# blocks an SM (under 2 * 132 blocks, their tiles are too few to hide latency and fill the SMs), with a long
# reduction (512 or more multiply-adds an output, so the GEMM's split-K has work to share out; below that
# the im2col pass and the transposes cost as much as the multiplies).
MAX_COLUMN_ELEMENTS = 2**25
MAX_GEMM_ROWS = 64 * 65535   # the GEMM's grid y limit at its smallest tile (kernels/cuda/gemm.py: MAX_GRID_YZ)
MIN_REDUCTION = 512
MAX_IMPLICIT_BLOCKS = 2 * SMS
ZERO = float32(0.0)


def eligible(groups, column_elements, rows=0):
    """Whether the explicit GEMM can take a pass: ungrouped, its column matrix within MAX_COLUMN_ELEMENTS, and its
    GEMM's `rows` (N*P*Q for the forward and input-gradient passes) within the grid's reach (MAX_GEMM_ROWS)."""
    return groups == 1 and column_elements <= MAX_COLUMN_ELEMENTS and rows <= MAX_GEMM_ROWS


def use_gemm(groups, column_elements, rows, reduction, implicit_blocks):
    """Whether a forward or input-gradient pass runs as im2col + GEMM: `rows` is N*P*Q, `reduction` the implicit
    kernel's (C*R*S forward, K*R*S for the input gradient) and `implicit_blocks` the blocks it would launch. A
    forced algorithm (conv_winograd.force_algorithm) decides alone: 'gemm' wherever `eligible`; 'implicit' or
    'winograd', never. (The weight gradient stays with its implicit kernel unless forced: kernels/cuda/conv.py.)"""
    forced = winograd.force_algorithm
    if not eligible(groups, column_elements, rows) or forced is not None:
        return forced == "gemm" and eligible(groups, column_elements, rows)
    return reduction >= MIN_REDUCTION and implicit_blocks < MAX_IMPLICIT_BLOCKS


@cached_jit(fastmath=True)
def im2col(x, columns, batch, channels, height, width, kernel_h, kernel_w, out_h, out_w, stride_h, stride_w,
           pad_top, pad_left, dilation_h, dilation_w):
    """columns[(n, p, q), (c, r, s)] = x[n, c, p*sh - pt + r*dh, q*sw - pl + s*dw], 0 in the padding."""
    t = cuda.grid(1)
    taps = kernel_h * kernel_w
    reduction = channels * taps
    out_plane = out_h * out_w
    if t >= batch * out_plane * reduction:
        return
    row, col = divmod32(t, reduction)   # (32-bit divisions: indices are under conv.INDEX_LIMIT)
    n, pixel = divmod32(row, out_plane)
    p, q = divmod32(pixel, out_w)
    c, tap = divmod32(col, taps)
    r, s = divmod32(tap, kernel_w)
    h = p * stride_h - pad_top + r * dilation_h
    w = q * stride_w - pad_left + s * dilation_w
    value = ZERO
    if h >= 0 and h < height and w >= 0 and w < width:
        value = x[((n * channels + c) * height + h) * width + w]
    columns[t] = value


@cached_jit(fastmath=True)
def col2im(columns, grad_x, batch, channels, height, width, kernel_h, kernel_w, out_h, out_w, stride_h, stride_w,
           pad_top, pad_left, dilation_h, dilation_w):
    """grad_x[n, c, h, w] = the sum of columns[(n, p, q), (c, r, s)] over the taps (r, s) that reach (h, w) from
    an output pixel (p, q): a gather, each pixel summed by one thread in a fixed order (no atomics)."""
    t = cuda.grid(1)
    in_plane = height * width
    if t >= batch * channels * in_plane:
        return
    image_channel, pixel = divmod32(t, in_plane)   # (32-bit divisions: indices are under conv.INDEX_LIMIT)
    n, c = divmod32(image_channel, channels)
    h, w = divmod32(pixel, width)
    reduction = channels * kernel_h * kernel_w
    first_row = n * out_h * out_w
    total = ZERO
    for r in range(kernel_h):
        offset_h = h + pad_top - r * dilation_h     # p * stride_h when tap r reaches h from output row p
        if offset_h >= 0:
            p, off_row = divmod32(offset_h, stride_h)
            if off_row == 0 and p < out_h:
                row = first_row + p * out_w
                col = (c * kernel_h + r) * kernel_w
                for s in range(kernel_w):
                    offset_w = w + pad_left - s * dilation_w
                    if offset_w >= 0:
                        q, off_column = divmod32(offset_w, stride_w)
                        if off_column == 0 and q < out_w:
                            total += columns[(row + q) * reduction + col + s]
    grad_x[t] = total


@cached_jit(fastmath=True)
def transpose(source, target, batch, rows, cols):
    """target[b, j, i] = source[b, i, j] for source (batch, rows, cols): block b * tiles + tile, a TILE x TILE
    tile read along source rows and written along target rows through shared memory."""
    tile = cuda.shared.array((TILE, TILE_STRIDE), float32)
    tiles_c = (cols + TILE - 1) // TILE
    tiles = ((rows + TILE - 1) // TILE) * tiles_c
    b = cuda.blockIdx.x // tiles
    rest = cuda.blockIdx.x - b * tiles
    tile_row = rest // tiles_c
    first_row = tile_row * TILE
    first_col = (rest - tile_row * tiles_c) * TILE
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    base = b * rows * cols
    for k in range(0, TILE, TILE_ROWS):
        i = first_row + ty + k
        j = first_col + tx
        if i < rows and j < cols:
            tile[ty + k, tx] = source[base + i * cols + j]
    cuda.syncthreads()
    for k in range(0, TILE, TILE_ROWS):
        j = first_col + ty + k
        i = first_row + tx
        if i < rows and j < cols:
            target[base + j * rows + i] = tile[tx, ty + k]


def _transpose(source, target, batch, rows, cols):
    blocks = batch * ceil_div(rows, TILE) * ceil_div(cols, TILE)
    if blocks:
        launch(transpose, blocks, (TILE, TILE_ROWS), source.reshape(-1), target.reshape(-1), batch, rows, cols)


def _geometry(x_shape, weight_shape, out_hw, stride, padding, dilation):
    n, c, h, w = x_shape
    r, s = weight_shape[2:]
    return (n, c, h, w, r, s, out_hw[0], out_hw[1], stride[0], stride[1], padding[0], padding[2], dilation[0],
            dilation[1])


def _columns(x, weight_shape, out_hw, stride, padding, dilation):
    """The im2col matrix of x, (N*P*Q, C*R*S), in a scratch array of the pool."""
    xp = backend.array_module(x)
    n, c = x.shape[:2]
    reduction = c * weight_shape[2] * weight_shape[3]
    columns = xp.empty((n * out_hw[0] * out_hw[1], reduction), xp.float32)
    launch_1d(im2col, columns.size, x.reshape(-1), columns.reshape(-1),
              *_geometry(x.shape, weight_shape, out_hw, stride, padding, dilation))
    return columns


def _pixel_major(grad_out):
    """grad_out (N, K, P, Q) as dY (N*P*Q, K), in a scratch array."""
    n, k, p, q = grad_out.shape
    xp = backend.array_module(grad_out)
    grad_rows = xp.empty((n * p * q, k), xp.float32)
    _transpose(grad_out, grad_rows, n, k, p * q)
    return grad_rows


def conv2d(x, weight, bias, y, stride, padding, dilation):
    """y = conv2d(x, weight) + bias: Y (N*P*Q, K) = columns @ W^T + bias, then transposed into y (N, K, P, Q)."""
    from ..gemm import matmul
    xp = backend.array_module(x)
    n, k, p, q = y.shape
    columns = _columns(x, weight.shape, (p, q), stride, padding, dilation)
    y_rows = xp.empty((n * p * q, k), xp.float32)
    matmul(columns, weight.reshape(k, -1), trans_b=True, bias=bias, out=y_rows)
    _transpose(y_rows, y, n, p * q, k)


def conv2d_backward_input(grad_out, weight, grad_x, stride, padding, dilation):
    """Column gradient dY (N*P*Q, K) @ W (K, C*R*S), then col2im into grad_x."""
    from ..gemm import matmul
    xp = backend.array_module(grad_out)
    k = weight.shape[0]
    grad_columns = xp.empty((grad_out.shape[0] * grad_out.shape[2] * grad_out.shape[3], weight.size // k),
                            xp.float32)
    matmul(_pixel_major(grad_out), weight.reshape(k, -1), out=grad_columns)
    launch_1d(col2im, grad_x.size, grad_columns.reshape(-1), grad_x.reshape(-1),
              *_geometry(grad_x.shape, weight.shape, grad_out.shape[2:], stride, padding, dilation))


def conv2d_backward_weight(grad_out, x, grad_weight, stride, padding, dilation):
    """grad_weight (K, C*R*S) = dY^T @ columns, the columns made again from x (no state kept between passes)."""
    from ..gemm import matmul
    columns = _columns(x, grad_weight.shape, grad_out.shape[2:], stride, padding, dilation)
    matmul(_pixel_major(grad_out), columns, trans_a=True, out=grad_weight.reshape(grad_weight.shape[0], -1))


_vector = float32[::1]
PTX_SIGNATURES = [
    ("gemm_im2col", im2col, (_vector, _vector) + (int64,) * 14),
    ("gemm_col2im", col2im, (_vector, _vector) + (int64,) * 14),
    ("gemm_transpose", transpose, (_vector, _vector, int64, int64, int64)),
]
