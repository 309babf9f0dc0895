"""conv2d weight and bias gradients: reductions over every output pixel of the batch.

Weight: gW[k, (c, r, s)] = sum over pixels (n, p, q) of gy[n, k, p, q] * x[n, c, p*sh - pt + r*dh, q*sw - pl + s*dw],
an implicit GEMM with the long N*P*Q reduction split over grid z (groups * splits); with more than one
split each block atomically adds its partial tile into a zeroed gW, or, under deterministic algorithms
(partial_size > 0), stores it in its split's slice of a partials buffer, summed in split order after.
Launch: grid (ceil(C/G*R*S / BN), ceil(K/G / BM), groups * splits), THREADS = 256, micro-tiles TM x TN in
registers (strips, warp layout and double-buffered shared slices as in conv_forward.py); BK = 16 pixels
per step so that a warp's loads run along consecutive pixels (coalesced rows of gy and x).
Bias: blocks (channel, slice of the batch) sum in shared memory (no warp shuffles, so the simulator runs them);
the last of a channel's blocks adds the slices' partial sums in order (launch.batch_slices).
"""
import functools

from numba import cuda, float32, int32, uint32

from .conv_forward import (K_UNROLL, SHARED_ALIGNMENT, THREADS, WARP_COLS, WARP_ROWS, TileConfig, jit_options,
                           tile_layout, tile_steps)
from .device import block_sum, divmod32, last_block_to_arrive
from .jit import cached_jit


@functools.lru_cache(maxsize=None)
def weight_gradient_kernel(config):
    BM, BN, BK, TM, TN = config
    (THREAD_ROWS, THREAD_COLS, STRIP_M, STRIP_N, STRIDE_M, STRIDE_N, STRIPS_A, STRIPS_B,
     WARPS_N) = tile_layout(config)
    multiply_slice, store_slice = tile_steps(config, check_columns=True)
    ACC = TM * TN
    LOAD_STEP = THREADS // BK          # tile rows (A) or columns (B) covered by one pass of all threads
    A_LOADS = max(1, BM * BK // THREADS)
    B_LOADS = max(1, BN * BK // THREADS)
    assert BN <= THREADS

    @cached_jit(**jit_options(config))
    def conv2d_weight_gradient(grad_out, x, grad_weight, batch, in_channels, height, width,
                               out_channels, kernel_h, kernel_w, out_h, out_w, stride_h, stride_w,
                               pad_top, pad_left, dilation_h, dilation_w, groups, splits, partial_size):
        tid = cuda.threadIdx.x
        tile_col = cuda.blockIdx.x * BN
        tile_row = cuda.blockIdx.y * BM
        group, split = divmod32(cuda.blockIdx.z, splits)
        c_group = in_channels // groups
        k_group = out_channels // groups
        taps = kernel_h * kernel_w
        in_plane = height * width
        out_plane = out_h * out_w
        columns = c_group * taps
        pixels = batch * out_plane
        steps_total = (pixels + BK - 1) // BK
        steps_per_split = (steps_total + splits - 1) // splits
        first_step = split * steps_per_split
        last_step = min(steps_total, first_step + steps_per_split)

        # Per-column tables: the channel's plane offset and the tap's (row, column) shift.
        column_offset = cuda.shared.array(BN, int32)
        column_h = cuda.shared.array(BN, int32)
        column_w = cuda.shared.array(BN, int32)
        tile_a = cuda.shared.array((2, BK, STRIPS_A, STRIP_M), float32, alignment=SHARED_ALIGNMENT)
        tile_b = cuda.shared.array((2, BK, STRIPS_B, STRIP_N), float32, alignment=SHARED_ALIGNMENT)
        if tid < BN:
            col = tile_col + tid
            if col < columns:
                channel = col // taps
                tap = col - channel * taps
                tap_r = tap // kernel_w
                column_offset[tid] = (group * c_group + channel) * in_plane
                column_h[tid] = tap_r * dilation_h - pad_top
                column_w[tid] = (tap - tap_r * kernel_w) * dilation_w - pad_left
            else:
                column_offset[tid] = -1

        acc = cuda.local.array(ACC, float32)
        frag_a = cuda.local.array((K_UNROLL, TM), float32)
        frag_b = cuda.local.array((K_UNROLL, TN), float32)
        next_a = cuda.local.array(A_LOADS, float32)
        next_b = cuda.local.array(B_LOADS, float32)
        for i in range(ACC):
            acc[i] = float32(0.0)
        load_k = tid % BK
        load_index = tid // BK
        warp = tid >> 5
        lane = tid & 31
        thread_row = (warp // WARPS_N) * WARP_ROWS + (lane >> 3)
        thread_col = (warp % WARPS_N) * WARP_COLS + (lane & (WARP_COLS - 1))
        cuda.syncthreads()

        # Step s fetches slice s into registers, multiplies slice s-1 from buffer (s-1)&1, stores slice s
        # into buffer s&1, then one barrier.
        for step in range(first_step, last_step + 1):
            if step < last_step:
                pixel = step * BK + load_k
                valid = pixel < pixels
                n, rest = divmod32(pixel, out_plane)
                p, q = divmod32(rest, out_w)
                a_base = (n * out_channels + group * k_group + tile_row) * out_plane + rest
                b_base = n * in_channels * in_plane
                for i in range(A_LOADS):
                    row = load_index + i * LOAD_STEP
                    value = float32(0.0)
                    if valid and row < BM and tile_row + row < k_group:
                        value = grad_out[uint32(a_base + row * out_plane)]
                    next_a[i] = value
                for i in range(B_LOADS):
                    col = load_index + i * LOAD_STEP
                    value = float32(0.0)
                    if valid and col < BN:
                        offset = column_offset[col]
                        h = p * stride_h + column_h[col]
                        w = q * stride_w + column_w[col]
                        if offset >= 0 and h >= 0 and h < height and w >= 0 and w < width:
                            value = x[uint32(b_base + offset + h * width + w)]
                    next_b[i] = value
            if step > first_step:
                multiply_slice(tile_a, tile_b, (step - 1) & 1, frag_a, frag_b, acc, thread_row, thread_col)
            if step < last_step:
                store_slice(tile_a, tile_b, step & 1, next_a, next_b, load_k, load_index, LOAD_STEP, load_k, load_index,
                            LOAD_STEP)
            cuda.syncthreads()

        # one split stores gW; several add into it atomically, or (deterministic) store their own partials
        atomic = splits > 1 and partial_size == 0
        partial_base = split * partial_size
        for i in range(TM):
            row = tile_row + (i // STRIP_M) * STRIDE_M + thread_row * STRIP_M + i % STRIP_M
            if row < k_group:
                row_base = (group * k_group + row) * columns
                for j in range(TN):
                    col = tile_col + (j // STRIP_N) * STRIDE_N + thread_col * STRIP_N + j % STRIP_N
                    if col < columns:
                        if atomic:
                            cuda.atomic.add(grad_weight, row_base + col, acc[i * TN + j])
                        else:
                            grad_weight[partial_base + row_base + col] = acc[i * TN + j]

    return conv2d_weight_gradient


# (minimum output channels per group, minimum weight columns C/G*R*S, tile): BK = 16 pixels everywhere.
WEIGHT_CONFIGS = (
    (128, 128, TileConfig(128, 128, 16, 8, 8)),
    (48, 48, TileConfig(64, 64, 16, 4, 4)),
    (0, 0, TileConfig(16, 16, 16, 1, 1)),
)


def choose_weight_config(rows, columns):
    for min_rows, min_columns, config in WEIGHT_CONFIGS:
        if rows >= min_rows and columns >= min_columns:
            return config
    return WEIGHT_CONFIGS[-1][2]


BIAS_THREADS = 256   # (its grid: launch.batch_slices)


@cached_jit(fastmath=True)
def conv2d_bias_gradient(grad_out, grad_bias, partials, counters, batch, channels, plane, images_per_slice):
    # Block (k, s) sums grad_out[s*images_per_slice : (s+1)*images_per_slice, k] (read plane by plane: consecutive
    # threads read consecutive pixels). One slice writes grad_bias[k] itself; with more, each block writes its
    # partial and the last of the channel's blocks to finish (it resets the counter) adds them in slice order:
    # no zero fill, no float atomics, the same sum every run.
    partial = cuda.shared.array(BIAS_THREADS, float32)
    is_last = cuda.shared.array(1, int32)
    tid = cuda.threadIdx.x
    channel, part = cuda.blockIdx.x, cuda.blockIdx.y
    slices = cuda.gridDim.y
    first = part * images_per_slice
    count = min(images_per_slice, batch - first) * plane
    total = float32(0.0)
    for index in range(tid, count, BIAS_THREADS):
        image = first + index // plane
        total += grad_out[(image * channels + channel) * plane + index - (index // plane) * plane]
    partial[tid] = total
    total = block_sum(partial, tid, BIAS_THREADS)
    if slices == 1:
        if tid == 0:
            grad_bias[channel] = total
        return
    if tid == 0:
        partials[channel * slices + part] = total
    if last_block_to_arrive(counters, channel, slices, is_last) and tid == 0:
        total = float32(0.0)
        for other in range(slices):
            total += partials[channel * slices + other]
        grad_bias[channel] = total
