"""conv2d backward-data as an implicit GEMM per stride phase: gx[c, pixel] = sum over (k, r, s) of
W[k, c, r, s] * gy[n, k, (h + pt - r*dh)/sh, (w + pl - s*dw)/sw], only where the divisions are exact.

Input pixels are split into sh*sw phases (h mod sh, w mod sw); within a phase exactly the taps r = r0,
r0 + step, ... divide evenly, and p = p0(h) - i*dp for the i-th of them, so no multiply is spent on the
holes a stride leaves (stride 1 is the single phase r0 = 0, step 1). One launch per phase: grid
(ceil(N*Hphase*Wphase / BN), ceil(C/groups / BM), groups), THREADS = 256, the same BM x BN tiles, TM x TN
register micro-tiles in strips, double-buffered BK = 8 slices and register prefetch as the forward
kernel (conv_forward.py):
A is the weight read as W[k, c, r, s] (transposed on the fly), B gathers grad_out.
"""
import functools
import math

from numba import cuda, float32, int32, uint32

from .conv_forward import (K_UNROLL, OUTSIDE, SHARED_ALIGNMENT, THREADS, WARP_COLS, WARP_ROWS, jit_options,
                           tile_layout, tile_steps)
from .device import divmod32
from .jit import cached_jit


@functools.lru_cache(maxsize=None)
def backward_data_kernel(config):
    BM, BN, BK, TM, TN = config
    (THREAD_ROWS, THREAD_COLS, STRIP_M, STRIP_N, STRIDE_M, STRIDE_N, STRIPS_A, STRIPS_B,
     WARPS_N) = tile_layout(config)
    multiply_slice, store_slice = tile_steps(config, check_columns=False)
    ACC = TM * TN
    ROW_THREADS = THREADS // BK
    B_LOADS = BN // ROW_THREADS
    A_STEP = THREADS // BK
    A_LOADS = max(1, BM * BK // THREADS)
    assert BN % ROW_THREADS == 0 and BN <= THREADS

    @cached_jit(**jit_options(config))
    def conv2d_backward_data(grad_out, weight, grad_x, batch, in_channels, height, width, out_channels,
                             kernel_h, kernel_w, out_h, out_w, groups, stride_h, stride_w,
                             phase_h, phase_w, phase_rows, phase_cols, first_tap_h, first_tap_w,
                             tap_step_h, tap_step_w, taps_h, taps_w, first_p, first_q, p_step, q_step):
        tid = cuda.threadIdx.x
        tile_col = cuda.blockIdx.x * BN
        tile_row = cuda.blockIdx.y * BM
        group = cuda.blockIdx.z
        c_group = in_channels // groups
        k_group = out_channels // groups
        kernel_taps = kernel_h * kernel_w
        phase_taps = taps_h * taps_w
        in_plane = height * width
        out_plane = out_h * out_w
        phase_plane = phase_rows * phase_cols
        reduction = k_group * phase_taps
        columns = batch * phase_plane

        # Per-pixel tables: the flat index in grad_out of the pixel's first (p, q), that (p, q) for the bounds
        # checks (p far below 0 marks a column past the end), and where the pixel goes in grad_x.
        pixel_source = cuda.shared.array(BN, int32)
        pixel_p = cuda.shared.array(BN, int32)
        pixel_q = cuda.shared.array(BN, int32)
        pixel_out = cuda.shared.array(BN, int32)
        tile_a = cuda.shared.array((2, BK, STRIPS_A, STRIP_M), float32, alignment=SHARED_ALIGNMENT)
        tile_b = cuda.shared.array((2, BK, STRIPS_B, STRIP_N), float32, alignment=SHARED_ALIGNMENT)
        if tid < BN:
            col = tile_col + tid
            if col < columns:
                n = col // phase_plane
                rest = col - n * phase_plane
                i = rest // phase_cols
                j = rest - i * phase_cols
                pixel_source[tid] = (n * out_channels + group * k_group) * out_plane + (first_p + i) * out_w \
                    + first_q + j
                pixel_p[tid] = first_p + i
                pixel_q[tid] = first_q + j
                pixel_out[tid] = n * in_channels * in_plane + (phase_h + i * stride_h) * width + phase_w + j * stride_w
            else:
                pixel_p[tid] = OUTSIDE
                pixel_q[tid] = 0
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
        cuda.syncthreads()

        for step in range(steps + 1):
            if step < steps:
                # A[c, (k, tap)] = W[k, c, r, s] for the phase's tap (r, s).
                kk = step * BK + a_k
                k_a, tap = divmod32(kk, phase_taps)
                tap_i, tap_j = divmod32(tap, taps_w)
                a_base = ((group * k_group + k_a) * c_group + tile_row) * kernel_taps \
                    + (first_tap_h + tap_i * tap_step_h) * kernel_w + first_tap_w + tap_j * tap_step_w
                for i in range(A_LOADS):
                    row = a_row + i * A_STEP
                    value = float32(0.0)
                    if row < BM and tile_row + row < c_group and kk < reduction:
                        value = weight[uint32(a_base + row * kernel_taps)]
                    next_a[i] = value
                # B[(k, tap), pixel] = grad_out[n, k, p, q].
                kk = step * BK + b_k
                k_b, tap = divmod32(kk, phase_taps)
                tap_i, tap_j = divmod32(tap, taps_w)
                shift_p = tap_i * p_step
                shift_q = tap_j * q_step
                tap_offset = k_b * out_plane - shift_p * out_w - shift_q
                for i in range(B_LOADS):
                    j = b_lane + i * ROW_THREADS
                    value = float32(0.0)
                    p = pixel_p[j] - shift_p
                    q = pixel_q[j] - shift_q
                    if kk < reduction and p >= 0 and p < out_h and q >= 0 and q < out_w:
                        value = grad_out[uint32(pixel_source[j] + tap_offset)]
                    next_b[i] = value
            if step > 0:
                multiply_slice(tile_a, tile_b, (step - 1) & 1, frag_a, frag_b, acc, thread_row, thread_col)
            if step < steps:
                store_slice(tile_a, tile_b, step & 1, next_a, next_b, a_k, a_row, A_STEP, b_k, b_lane, ROW_THREADS)
            cuda.syncthreads()

        for i in range(TM):
            row = tile_row + (i // STRIP_M) * STRIDE_M + thread_row * STRIP_M + i % STRIP_M
            if row < c_group:
                channel_offset = (group * c_group + row) * in_plane
                for j in range(TN):
                    target = pixel_out[(j // STRIP_N) * STRIDE_N + thread_col * STRIP_N + j % STRIP_N]
                    if target >= 0:
                        grad_x[target + channel_offset] = acc[i * TN + j]

    return conv2d_backward_data


def phase_taps(phase, pad, stride, dilation, kernel):
    """(first tap, tap step, tap count, first output index, output step) of one phase along one axis.

    Input index h = phase + i*stride reaches output p = (h + pad - r*dilation) / stride exactly for the
    taps r with (phase + pad - r*dilation) % stride == 0: an arithmetic progression with step
    stride / gcd(stride, dilation). For the first such tap r0, p = (phase + pad - r0*dilation)/stride + i,
    and each further tap lowers p by step*dilation/stride.
    """
    step = stride // math.gcd(stride, dilation)
    valid = [r for r in range(min(step, kernel)) if (phase + pad - r * dilation) % stride == 0]
    if not valid:
        return 0, 1, 0, 0, 0
    first = valid[0]
    count = (kernel - first + step - 1) // step
    return first, step, count, (phase + pad - first * dilation) // stride, step * dilation // stride
