"""conv2d forward as an implicit GEMM: y[k, pixel] = sum over (c, r, s) of W[k, c, r, s] * x[n, c, p*sh - pt + r*dh, q*sw - pl + s*dw].

Launch: grid (ceil(N*P*Q / BN), ceil(K/groups / BM), groups), THREADS = (BM/TM)*(BN/TN) = 256. Each block
computes a BM x BN tile (output channels x output pixels), each thread a TM x TN micro-tile in registers,
strided by BM/TM and BN/TN so that shared-memory reads are conflict-free and stores coalesced. The
reduction advances BK = 8 at a time: weights go to shared memory transposed, input patches are gathered
from x straight into shared memory (no im2col in GPU memory), and the next slice is loaded into
registers while the current one is multiplied. Per-pixel index arithmetic is done once per block into
small shared tables; each thread loads one reduction row per step (ROW_THREADS consecutive threads
share it and read consecutive pixels, so the gathers coalesce for stride 1).
"""
import functools
from collections import namedtuple

from numba import cuda, float32, int32

TileConfig = namedtuple("TileConfig", "block_rows block_cols block_k thread_rows thread_cols")
THREADS = 256
OUTSIDE = -(2**30)  # a window corner row no tap can bring back inside the image: marks padding columns


@functools.lru_cache(maxsize=None)
def forward_kernel(config):
    """The forward kernel specialised for one TileConfig (compiled on first launch)."""
    BM, BN, BK, TM, TN = config
    THREAD_COLS = BN // TN             # threads along the pixel dimension of the micro-tile grid
    THREAD_ROWS = BM // TM
    ACC = TM * TN
    ROW_THREADS = THREADS // BK        # threads that load one reduction row of the B tile together
    B_LOADS = BN // ROW_THREADS
    A_STEP = THREADS // BK             # rows of the A tile covered by one pass of all threads
    A_LOADS = max(1, BM * BK // THREADS)
    assert THREAD_COLS * THREAD_ROWS == THREADS and BN % ROW_THREADS == 0 and BN <= THREADS

    @cuda.jit(fastmath=True)
    def conv2d_forward(x, weight, bias, y, batch, in_channels, height, width, out_channels, kernel_h,
                       kernel_w, out_h, out_w, stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w,
                       groups, has_bias):
        tid = cuda.threadIdx.x
        tile_col = cuda.blockIdx.x * BN
        tile_row = cuda.blockIdx.y * BM
        group = cuda.blockIdx.z
        c_group = in_channels // groups
        k_group = out_channels // groups
        taps = kernel_h * kernel_w
        in_plane = height * width
        out_plane = out_h * out_w
        reduction = c_group * taps
        columns = batch * out_plane

        # Per-pixel tables: the flat index in x of the window's top-left corner, that corner's (h, w) for
        # the bounds checks (h far below 0 marks a column past the end), and where the pixel goes in y.
        pixel_source = cuda.shared.array(BN, int32)
        pixel_h = cuda.shared.array(BN, int32)
        pixel_w = cuda.shared.array(BN, int32)
        pixel_out = cuda.shared.array(BN, int32)
        tile_a = cuda.shared.array((BK, BM), float32)
        tile_b = cuda.shared.array((BK, BN), float32)
        if tid < BN:
            col = tile_col + tid
            if col < columns:
                n = col // out_plane
                rest = col - n * out_plane
                p = rest // out_w
                q = rest - p * out_w
                corner_h = p * stride_h - pad_top
                corner_w = q * stride_w - pad_left
                pixel_source[tid] = (n * in_channels + group * c_group) * in_plane + corner_h * width + corner_w
                pixel_h[tid] = corner_h
                pixel_w[tid] = corner_w
                pixel_out[tid] = n * out_channels * out_plane + rest
            else:
                pixel_h[tid] = OUTSIDE
                pixel_w[tid] = 0
                pixel_out[tid] = -1

        acc = cuda.local.array(ACC, float32)
        frag_a = cuda.local.array(TM, float32)
        frag_b = cuda.local.array(TN, float32)
        next_a = cuda.local.array(A_LOADS, float32)
        next_b = cuda.local.array(B_LOADS, float32)
        for i in range(ACC):
            acc[i] = float32(0.0)
        a_k = tid % BK
        a_row = tid // BK
        b_k = tid // ROW_THREADS
        b_lane = tid % ROW_THREADS
        thread_col = tid % THREAD_COLS
        thread_row = tid // THREAD_COLS
        steps = (reduction + BK - 1) // BK
        a_base = (group * k_group + tile_row) * reduction
        cuda.syncthreads()

        for step in range(steps + 1):
            if step > 0:
                cuda.syncthreads()  # everyone is done reading the previous slice
                for i in range(A_LOADS):
                    row = a_row + i * A_STEP
                    if row < BM:
                        tile_a[a_k, row] = next_a[i]
                for i in range(B_LOADS):
                    tile_b[b_k, b_lane + i * ROW_THREADS] = next_b[i]
                cuda.syncthreads()
            if step < steps:
                # Registers <- slice `step` of the weights (A) and of the gathered patches (B).
                kk = step * BK + a_k
                for i in range(A_LOADS):
                    row = a_row + i * A_STEP
                    value = float32(0.0)
                    if row < BM and tile_row + row < k_group and kk < reduction:
                        value = weight[a_base + row * reduction + kk]
                    next_a[i] = value
                kk = step * BK + b_k
                channel = kk // taps
                tap = kk - channel * taps
                tap_r = tap // kernel_w
                offset_h = tap_r * dilation_h
                offset_w = (tap - tap_r * kernel_w) * dilation_w
                tap_offset = channel * in_plane + offset_h * width + offset_w
                for i in range(B_LOADS):
                    j = b_lane + i * ROW_THREADS
                    value = float32(0.0)
                    h = pixel_h[j] + offset_h
                    w = pixel_w[j] + offset_w
                    if kk < reduction and h >= 0 and h < height and w >= 0 and w < width:
                        value = x[pixel_source[j] + tap_offset]
                    next_b[i] = value
            if step > 0:
                for k in range(BK):
                    for i in range(TM):
                        frag_a[i] = tile_a[k, thread_row + i * THREAD_ROWS]
                    for j in range(TN):
                        frag_b[j] = tile_b[k, thread_col + j * THREAD_COLS]
                    for i in range(TM):
                        for j in range(TN):
                            acc[i * TN + j] += frag_a[i] * frag_b[j]

        for i in range(TM):
            row = tile_row + thread_row + i * THREAD_ROWS
            if row < k_group:
                channel = group * k_group + row
                shift = float32(0.0)
                if has_bias != 0:
                    shift = bias[channel]
                for j in range(TN):
                    target = pixel_out[thread_col + j * THREAD_COLS]
                    if target >= 0:
                        y[target + channel * out_plane] = acc[i * TN + j] + shift

    return conv2d_forward


# Tile shapes by the number of GEMM rows (output channels per group here, input channels per group for
# backward-data): wide tiles for many channels, short and wide ones for few channels (OCR, RGB input).
CONFIGS = (
    (128, TileConfig(128, 128, 8, 8, 8)),
    (48, TileConfig(64, 128, 8, 4, 8)),
    (24, TileConfig(32, 128, 8, 2, 8)),
    (8, TileConfig(16, 256, 8, 2, 8)),
    (0, TileConfig(4, 256, 8, 1, 4)),
)


SMS = 132  # streaming multiprocessors of an H100 SXM / H200: below one block per SM, shrink the tile


def choose_config(rows, columns, groups=1):
    """The widest tile the row count allows that still gives every SM a block; else the smallest allowed."""
    allowed = [config for threshold, config in CONFIGS if rows >= threshold]
    for config in allowed:
        blocks = -(-columns // config.block_cols) * -(-rows // config.block_rows) * groups
        if blocks >= SMS:
            return config
    return allowed[-1]
