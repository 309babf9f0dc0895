"""conv2d forward as an implicit GEMM:
y[k, pixel] = sum over (c, r, s) of W[k, c, r, s] * x[n, c, p*sh - pt + r*dh, q*sw - pl + s*dw].

Launch: grid (ceil(N*P*Q / BN), ceil(K/groups / BM), groups), THREADS = (BM/TM)*(BN/TN) = 256. Each block
computes a BM x BN tile (output channels x output pixels), each thread a TM x TN micro-tile in registers
made of strips of up to 4 adjacent rows/columns (one vector shared-memory read each), a warp covering
4 x 8 threads of the thread grid (few distinct shared addresses a read). The reduction advances BK = 8
at a time through two shared buffers (one barrier a step): weights go to shared memory transposed,
input patches are gathered from x straight into shared memory (no im2col in GPU memory), and slice s+1
is loaded into registers while slice s is multiplied. Per-pixel index arithmetic is done once per block
into small shared tables; each thread loads one reduction row per step (ROW_THREADS consecutive threads
share it and read consecutive pixels, so the gathers coalesce for stride 1).
"""
import functools
from collections import namedtuple

from numba import cuda, float32, int32, uint32

from .. import backend
from .device import device_function, divmod32
from .jit import cached_jit

TileConfig = namedtuple("TileConfig", "block_rows block_cols block_k thread_rows thread_cols")
THREADS = 256
OUTSIDE = -(2**30)  # a window corner row no tap can bring back inside the image: marks padding columns
STRIP = 4           # a micro-tile is built of strips of up to 4 adjacent rows (columns): ld.shared.v4
PAD = 4             # shared rows of BM+4 floats: the transposing weight stores hit 32 different banks
WARP_ROWS, WARP_COLS = 4, 8
K_UNROLL = 2        # k steps whose fragments are read together (then NVVM unrolls the BK loop)
# 16-byte aligned shared rows let NVVM merge a strip's reads into one vector load (not in the simulator).
SHARED_ALIGNMENT = None if backend.SIMULATOR else 16
# Launch bounds: two 256-thread blocks an SM (ptxas keeps to 128 registers, no spills: checked) for
# micro-tiles up to 32 accumulators; the 8x8 one needs more registers than that and runs one block an SM.
BLOCKS_PER_SM = 2

TileLayout = namedtuple("TileLayout", "thread_rows thread_cols strip_m strip_n stride_m stride_n "
                                      "strips_a strips_b warps_n")


def tile_layout(config):
    """Where each thread's micro-tile lies: strips of strip_m rows stride_m apart, same for columns."""
    BM, BN, BK, TM, TN = config
    thread_rows, thread_cols = BM // TM, BN // TN
    strip_m, strip_n = min(STRIP, TM), min(STRIP, TN)
    assert thread_rows * thread_cols == THREADS and thread_rows % WARP_ROWS == 0 and thread_cols % WARP_COLS == 0
    return TileLayout(thread_rows, thread_cols, strip_m, strip_n, thread_rows * strip_m, thread_cols * strip_n,
                      (BM + PAD) // strip_m, (BN + PAD) // strip_n, thread_cols // WARP_COLS)


def jit_options(config):
    if backend.SIMULATOR:
        return {"fastmath": True}
    blocks = 1 if config.thread_rows * config.thread_cols > 32 else BLOCKS_PER_SM
    return {"fastmath": True, "launch_bounds": (THREADS, blocks)}


@functools.lru_cache(maxsize=None)
def tile_steps(config, check_columns):
    """(multiply_slice, store_slice): the inner steps the three conv kernels share, as inline device
    functions specialised for one TileConfig (inlined by NVVM, kernels/cuda/device.py).
    check_columns: whether a thread's B columns may run past BN (else the bound check is left out)."""
    BM, BN, BK, TM, TN = config
    layout = tile_layout(config)
    STRIP_M, STRIP_N = layout.strip_m, layout.strip_n
    STRIPS_M, STRIPS_N = layout.stride_m // STRIP_M, layout.stride_n // STRIP_N

    @device_function
    def multiply_slice(tile_a, tile_b, buffer, frag_a, frag_b, acc, thread_row, thread_col):
        """acc += this thread's micro-tile of the product of shared slice `buffer` (BK steps of k)."""
        for k_pair in range(BK // K_UNROLL):
            # Fragments of K_UNROLL k steps read together: NVVM then unrolls the whole slice.
            k0 = (k_pair * K_UNROLL) & (BK - 1)
            for u in range(K_UNROLL):
                for g in range(TM // STRIP_M):
                    for r in range(STRIP_M):
                        frag_a[u, g * STRIP_M + r] = tile_a[buffer, k0 + u, g * STRIPS_M + thread_row, r]
                for g in range(TN // STRIP_N):
                    for r in range(STRIP_N):
                        frag_b[u, g * STRIP_N + r] = tile_b[buffer, k0 + u, g * STRIPS_N + thread_col, r]
            for u in range(K_UNROLL):
                for i in range(TM):
                    for j in range(TN):
                        acc[i * TN + j] += frag_a[u, i] * frag_b[u, j]

    @device_function
    def store_slice(tile_a, tile_b, buffer, next_a, next_b, k_a, first_row, row_step, k_b, first_col, col_step):
        """The slice fetched into registers -> shared buffer `buffer`, in the strip layout the multiply reads."""
        for i in range(next_a.shape[0]):
            row = first_row + i * row_step
            if row < BM:
                tile_a[buffer, k_a, row // STRIP_M, row % STRIP_M] = next_a[i]
        for i in range(next_b.shape[0]):
            col = first_col + i * col_step
            if not check_columns or col < BN:
                tile_b[buffer, k_b, col // STRIP_N, col % STRIP_N] = next_b[i]

    return multiply_slice, store_slice


@functools.lru_cache(maxsize=None)
def forward_kernel(config):
    """The forward kernel specialised for one TileConfig (compiled on first launch)."""
    BM, BN, BK, TM, TN = config
    (THREAD_ROWS, THREAD_COLS, STRIP_M, STRIP_N, STRIDE_M, STRIDE_N, STRIPS_A, STRIPS_B,
     WARPS_N) = tile_layout(config)
    multiply_slice, store_slice = tile_steps(config, check_columns=False)
    ACC = TM * TN
    ROW_THREADS = THREADS // BK        # threads that load one reduction row of the B tile together
    B_LOADS = BN // ROW_THREADS
    A_STEP = THREADS // BK             # rows of the A tile covered by one pass of all threads
    A_LOADS = max(1, BM * BK // THREADS)
    assert BN % ROW_THREADS == 0 and BN <= THREADS

    @cached_jit(**jit_options(config))
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
        tile_a = cuda.shared.array((2, BK, STRIPS_A, STRIP_M), float32, alignment=SHARED_ALIGNMENT)
        tile_b = cuda.shared.array((2, BK, STRIPS_B, STRIP_N), float32, alignment=SHARED_ALIGNMENT)
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
        frag_a = cuda.local.array((K_UNROLL, TM), float32)
        frag_b = cuda.local.array((K_UNROLL, TN), float32)
        next_a = cuda.local.array(A_LOADS, float32)
        next_b = cuda.local.array(B_LOADS, float32)
        for i in range(ACC):
            acc[i] = float32(0.0)
        a_k = tid % BK
        a_row = tid // BK
        b_k = tid // ROW_THREADS
        b_lane = tid % ROW_THREADS
        warp = tid >> 5
        lane = tid & 31
        thread_row = (warp // WARPS_N) * WARP_ROWS + (lane >> 3)
        thread_col = (warp % WARPS_N) * WARP_COLS + (lane & (WARP_COLS - 1))
        steps = (reduction + BK - 1) // BK
        a_base = (group * k_group + tile_row) * reduction
        cuda.syncthreads()

        # Step s fetches slice s into registers, multiplies slice s-1 from buffer (s-1)&1, then stores
        # slice s into buffer s&1: one barrier a step, the global loads' latency hidden by the FMAs.
        for step in range(steps + 1):
            if step < steps:
                # Registers <- slice `step` of the weights (A) and of the gathered patches (B).
                kk = step * BK + a_k
                for i in range(A_LOADS):
                    row = a_row + i * A_STEP
                    value = float32(0.0)
                    if row < BM and tile_row + row < k_group and kk < reduction:
                        value = weight[uint32(a_base + row * reduction + kk)]
                    next_a[i] = value
                kk = step * BK + b_k
                channel, tap = divmod32(kk, taps)
                tap_r, tap_s = divmod32(tap, kernel_w)
                offset_h = tap_r * dilation_h
                offset_w = tap_s * dilation_w
                tap_offset = channel * in_plane + offset_h * width + offset_w
                for i in range(B_LOADS):
                    j = b_lane + i * ROW_THREADS
                    value = float32(0.0)
                    h = pixel_h[j] + offset_h
                    w = pixel_w[j] + offset_w
                    if kk < reduction and h >= 0 and h < height and w >= 0 and w < width:
                        value = x[uint32(pixel_source[j] + tap_offset)]
                    next_b[i] = value
            if step > 0:
                multiply_slice(tile_a, tile_b, (step - 1) & 1, frag_a, frag_b, acc, thread_row, thread_col)
            if step < steps:
                store_slice(tile_a, tile_b, step & 1, next_a, next_b, a_k, a_row, A_STEP, b_k, b_lane, ROW_THREADS)
            cuda.syncthreads()

        for i in range(TM):
            row = tile_row + (i // STRIP_M) * STRIDE_M + thread_row * STRIP_M + i % STRIP_M
            if row < k_group:
                channel = group * k_group + row
                shift = float32(0.0)
                if has_bias != 0:
                    shift = bias[channel]
                for j in range(TN):
                    target = pixel_out[(j // STRIP_N) * STRIDE_N + thread_col * STRIP_N + j % STRIP_N]
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
