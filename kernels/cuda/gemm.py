"""SGEMM C = act(alpha*op(A)@op(B) + beta*C + bias): shared-memory tiles, 8x8 register micro-tiles.

Launch: grid (ceil(N/BN), ceil(M/BM), batch*splits), THREADS = (BM/TM)*(BN/TN) a block. Tiles:
128x128x8 with 256 threads for large problems, and with split-K for a few dozen such tiles over a long K;
64x64x8 with 64 threads plus split-K when large tiles would leave SMs idle (skinny DeepBench shapes); the
last block of a split tile sums the partials (`plan` chooses; benchmarks/gemm_plans.py measures the choices).
Both operands sit k-major in shared memory (rows padded so transposing stores are conflict-free); tile k+1 is
fetched into registers while tile k is multiplied. Transposes are compile-time variants of the load indexing
(cached factory). A and B come flat, (batch, rows*cols): a thread's loads are its offset plus multiples of a
pitch, in unsigned arithmetic, so the K loop is mostly FFMAs (tests/test_resources.py reads the machine code).
"""
import functools
import math

import numpy as np

from numba import cuda, float32, int32, int64, uint32, uint64

from .. import backend
from .compile_ahead import is_recording
from .jit import cached_jit, specialize
from .launch import ceil_div, device_view, launch, stream_scratch

# name -> (BM, BN, BK, TM, TN): block tile M x N x K and each thread's micro-tile TM x TN.
CONFIGS = {
    "128x128": (128, 128, 8, 8, 8),
    "64x64": (64, 64, 8, 8, 8),
}
K_UNROLL = 2       # k steps whose fragments are read together: NVVM then unrolls the whole BK loop
PAD = 4            # shared rows of BM+4 floats: a warp's transposing store (16 rows at k and k+4) hits 32 banks
REDUCE_ROWS = 8    # micro-tile rows summed a pass in the split-K reduction: all 8 (no spills, tests/test_resources.py)
EDGE_REDUCE_ROWS = 2   # the same for an edge tile, whose bounds tests take registers (4 spill)
GROUP = 4          # a micro-tile is built of 4-wide strips: rows/cols g*(BM/G) + t*4 + r (conflict-free reads)
WARP_ROWS = 4      # a warp is 4 x 8 threads of the thread grid: 4+8 distinct 16-byte reads per k step
# 16-byte aligned shared rows let NVVM merge a thread's 4-wide strip reads into ld.shared.v4.
# (The simulator rejects the alignment argument.)
SHARED_ALIGNMENT = None if backend.SIMULATOR else 16
RESIDENT_THREADS = 65536 // 128   # threads an SM's 64K registers hold at 128 registers each
ACTIVATIONS = {None: 0, "relu": 1, "tanh": 2, "sigmoid": 3}
ACTIVATION_MASK = 3
BIAS_FLAG = 4      # epilogue code = activation | BIAS_FLAG when a bias is added


def jit_options(threads):
    """fastmath, and launch bounds asking for 512 resident threads an SM: ptxas then keeps to 128
    registers (no spills, checked), so two 128x128 blocks or eight 64x64 blocks share an SM; left
    unbounded it takes ~150 for ILP in the epilogue. (The simulator takes no launch bounds.)"""
    if backend.SIMULATOR:
        return {"fastmath": True}
    return {"fastmath": True, "launch_bounds": (threads, RESIDENT_THREADS // threads)}


@functools.lru_cache(maxsize=None)
def gemm_kernel(config, trans_a, trans_b):
    """The kernel for one tile configuration and transpose pair (compile-time constants, cached)."""
    BM, BN, BK, TM, TN = CONFIGS[config]
    THREADS_N = BN // TN
    THREADS = (BM // TM) * THREADS_N
    GM, GN = TM // GROUP, TN // GROUP                     # strips per micro-tile in M and N
    STRIDE_M, STRIDE_N = BM // GM, BN // GN               # distance between a thread's strips
    WARP_COLS = 32 // WARP_ROWS
    WARPS_N = THREADS_N // WARP_COLS
    WARP_COLS_SHIFT = WARP_COLS.bit_length() - 1
    A_LOADS, B_LOADS = BM * BK // THREADS, BN * BK // THREADS
    A_STRIPS, B_STRIPS = (BM + PAD) // GROUP, (BN + PAD) // GROUP   # shared rows, in 4-float strips
    # A K-contiguous operand is read as runs along K, A_LOADS long, one row a thread (one row
    # pointer a thread instead of one a load: fewer registers); A_ROW_THREADS threads share a row.
    A_ROW_THREADS, B_ROW_THREADS = THREADS // BM, THREADS // BN
    assert THREADS % BM == 0 and THREADS % BN == 0 and THREADS_N % WARP_COLS == 0
    assert A_ROW_THREADS * A_LOADS == BK and B_ROW_THREADS * B_LOADS == BK

    @cached_jit(**jit_options(THREADS))
    def kernel(a, b, c, bias, workspace, counters, alpha, beta, epilogue, splits):
        # a: (1 or batch, M*K) and b: (1 or batch, K*N), each batch's op(A) / op(B) stored row-major as the
        # transpose flags say; c: (batch, M, N). The launcher's `_flat` makes that layout (nothing here checks it).
        # Everything is written out in the body (no device functions). Branches on trans_a/trans_b are
        # compile-time constants.
        M, N = c.shape[1], c.shape[2]
        K = a.shape[1] // M    # a holds op(A)'s M x K values a batch
        tid = uint32(cuda.threadIdx.x)
        batch, split = uint32(cuda.blockIdx.z) // splits, uint32(cuda.blockIdx.z) % splits
        za, zb = uint32(min(batch, a.shape[0] - 1)), uint32(min(batch, b.shape[0] - 1))   # a 2-D operand has batch 1
        block_m, block_n = uint32(cuda.blockIdx.y) * BM, uint32(cuda.blockIdx.x) * BN

        k_tiles = (K + BK - 1) // BK
        per_split = (k_tiles + splits - 1) // splits
        first_tile = split * per_split
        last_tile = min(first_tile + per_split, k_tiles)

        a_tile = cuda.shared.array((2, BK, A_STRIPS, GROUP), float32, alignment=SHARED_ALIGNMENT)
        b_tile = cuda.shared.array((2, BK, B_STRIPS, GROUP), float32, alignment=SHARED_ALIGNMENT)
        is_last = cuda.shared.array(1, int32)
        a_next = cuda.local.array(A_LOADS, float32)
        b_next = cuda.local.array(B_LOADS, float32)
        a_frag = cuda.local.array((K_UNROLL, TM), float32)
        b_frag = cuda.local.array((K_UNROLL, TN), float32)
        acc = cuda.local.array((TM, TN), float32)
        for i in range(TM):
            for j in range(TN):
                acc[i, j] = float32(0.0)

        # Thread position in the BM/TM x BN/TN thread grid; each warp covers WARP_ROWS x WARP_COLS.
        # (Bit operations: no sign fix-ups, so NVVM can prove strip alignment for vector loads.)
        warp, lane = tid >> 5, tid & 31
        ty = (warp // WARPS_N) * WARP_ROWS + (lane >> WARP_COLS_SHIFT)
        tx = (warp % WARPS_N) * WARP_COLS + (lane & (WARP_COLS - 1))

        # What this thread fetches, fixed for the whole K loop: values of one row of op(A) (column of op(B)),
        # at k = k0 + a_k + a_stride * load, and where they go in the shared tile. The operands come flat,
        # (batch, M*K) and (batch, K*N), so an address is the thread's offset plus a multiple of a pitch (the
        # elements between k and k+1) fixed for the whole loop. The thread's positions are uint32 and its
        # offsets uint64, so Numba adds no wrap-around code to the loads and stores. Rows past M (columns past N)
        # read row M-1 (N-1): results that no store keeps.
        if trans_a:   # stored K x M, M contiguous: consecutive threads take consecutive m, THREADS // BM k rows
            a_row, a_k = uint32(tid % BM), uint32(tid // BM)
            a_stride = THREADS // BM
        else:         # stored M x K, K contiguous: each thread reads a run of A_LOADS k of one row
            a_row, a_k = uint32(tid // A_ROW_THREADS), uint32((tid % A_ROW_THREADS) * A_LOADS)
            a_stride = 1
        if trans_b:   # stored N x K, K contiguous
            b_col, b_k = uint32(tid // B_ROW_THREADS), uint32((tid % B_ROW_THREADS) * B_LOADS)
            b_stride = 1
        else:         # stored K x N, N contiguous
            b_col, b_k = uint32(tid % BN), uint32(tid // BN)
            b_stride = THREADS // BN
        m_fetched, n_fetched = uint64(min(block_m + a_row, M - 1)), uint64(min(block_n + b_col, N - 1))
        a_pitch = uint64(M) if trans_a else uint64(1)
        b_pitch = uint64(1) if trans_b else uint64(N)
        a_offset = (m_fetched if trans_a else m_fetched * uint64(K)) + uint64(a_k) * a_pitch
        b_offset = (n_fetched * uint64(K) if trans_b else n_fetched) + uint64(b_k) * b_pitch

        # Step s fetches tile s into registers, multiplies tile s-1 from shared buffer (s-1)&1, then
        # stores tile s into buffer s&1: one barrier a step, global latency hidden by the FMAs.
        # (`& 1` lets NVVM prove the buffer index non-negative: no wrap-around code in the loop.)
        for step in range(first_tile, last_tile + 1):
            fetch = step < last_tile
            if fetch:
                k0 = uint64(step * BK)
                a_at, b_at = a_offset + k0 * a_pitch, b_offset + k0 * b_pitch
                if k0 + BK <= K:   # a whole K tile: no bounds tests
                    for load in range(A_LOADS):
                        a_next[load] = a[za, a_at + uint64(a_stride * load) * a_pitch]
                    for load in range(B_LOADS):
                        b_next[load] = b[zb, b_at + uint64(b_stride * load) * b_pitch]
                else:              # K's last, partial tile: zeros past K
                    for load in range(A_LOADS):
                        a_next[load] = float32(0.0)
                        if k0 + a_k + a_stride * load < K:
                            a_next[load] = a[za, a_at + uint64(a_stride * load) * a_pitch]
                    for load in range(B_LOADS):
                        b_next[load] = float32(0.0)
                        if k0 + b_k + b_stride * load < K:
                            b_next[load] = b[zb, b_at + uint64(b_stride * load) * b_pitch]
            if step > first_tile:
                for k_group in range(BK // K_UNROLL):
                    kk = (K_UNROLL * k_group) & (BK - 1)   # provably in range: no wrap-around fix-up
                    buffer = (step - 1) & 1
                    for u in range(K_UNROLL):
                        for g in range(GM):
                            for r in range(GROUP):
                                a_frag[u, g * GROUP + r] = a_tile[buffer, kk + u, g * STRIDE_M // GROUP + ty, r]
                        for g in range(GN):
                            for r in range(GROUP):
                                b_frag[u, g * GROUP + r] = b_tile[buffer, kk + u, g * STRIDE_N // GROUP + tx, r]
                    for u in range(K_UNROLL):
                        for i in range(TM):
                            for j in range(TN):
                                acc[i, j] += a_frag[u, i] * b_frag[u, j]
            if fetch:
                for load in range(A_LOADS):
                    kk = uint32(a_k + a_stride * load)
                    a_tile[step & 1, kk, a_row >> 2, a_row & 3] = a_next[load]
                for load in range(B_LOADS):
                    kk = uint32(b_k + b_stride * load)
                    b_tile[step & 1, kk, b_col >> 2, b_col & 3] = b_next[load]
            cuda.syncthreads()

        # Partial tiles in the workspace are kept in register order: a thread's value (i, j) sits at
        # slot + (i*TN + j)*THREADS + tid, so stores and loads are coalesced and every address is one base
        # plus a constant (no address registers: reading a slice back into `acc` does not spill).
        tile_id = (batch * cuda.gridDim.y + cuda.blockIdx.y) * cuda.gridDim.x + cuda.blockIdx.x
        if splits > 1:
            # Split-K: every block writes its partial tile; the last of a tile's blocks to finish (it resets
            # the counter) sums all the partials back into its registers, in split order whichever block is
            # last (the same sum every run), REDUCE_ROWS rows of the micro-tile a pass: a pass's loads are
            # independent, where one coalesced pass over the tile made each thread wait on a chain of
            # BM*BN/THREADS loads (most of a 125 us LSTM weight gradient with 16 splits on an H100).
            # A tile inside C moves all its values; an edge tile only those inside C (a skinny C, e.g. one row,
            # moves its own values only), EDGE_REDUCE_ROWS rows a pass (the bounds tests cost registers).
            interior = block_m + BM <= M and block_n + BN <= N
            slot = (tile_id * splits + split) * (BM * BN) + tid
            for i in range(TM):
                m = block_m + (i // GROUP) * STRIDE_M + ty * GROUP + i % GROUP
                for j in range(TN):
                    n = block_n + (j // GROUP) * STRIDE_N + tx * GROUP + j % GROUP
                    if interior or (m < M and n < N):
                        workspace[slot + (i * TN + j) * THREADS] = acc[i, j]
            cuda.threadfence()
            cuda.syncthreads()
            if tid == 0:
                done = cuda.atomic.add(counters, tile_id, 1)
                is_last[0] = 1 if done == splits - 1 else 0
                if done == splits - 1:
                    counters[tile_id] = 0
            cuda.syncthreads()
            if is_last[0] == 0:
                return
            cuda.threadfence()
            for i in range(TM):
                for j in range(TN):
                    acc[i, j] = float32(0.0)
            if interior:
                for strip in range(TM // REDUCE_ROWS):
                    for other in range(splits):
                        other_slot = (tile_id * splits + other) * (BM * BN) + tid
                        for r in range(REDUCE_ROWS):
                            i = strip * REDUCE_ROWS + r
                            for j in range(TN):
                                acc[i, j] += workspace[other_slot + (i * TN + j) * THREADS]
            else:
                for strip in range(TM // EDGE_REDUCE_ROWS):
                    for other in range(splits):
                        other_slot = (tile_id * splits + other) * (BM * BN) + tid
                        for r in range(EDGE_REDUCE_ROWS):
                            i = strip * EDGE_REDUCE_ROWS + r
                            m = block_m + (i // GROUP) * STRIDE_M + ty * GROUP + i % GROUP
                            for j in range(TN):
                                n = block_n + (j // GROUP) * STRIDE_N + tx * GROUP + j % GROUP
                                if m < M and n < N:
                                    acc[i, j] += workspace[other_slot + (i * TN + j) * THREADS]

        if beta != float32(0.0):
            # beta*C through the workspace (the block's slot, with split-K the partials already summed):
            # the tile goes out in register order, then alpha*total + beta*C + bias in a coalesced pass that
            # finds each value's owner thread. C loads inside the unrolled loops below get hoisted together
            # and would need ~40 more registers than the 128 the launch bounds allow.
            slot = (tile_id * splits + split) * (BM * BN)
            for i in range(TM):
                for j in range(TN):
                    workspace[slot + (i * TN + j) * THREADS + tid] = acc[i, j]
            cuda.syncthreads()   # the block's own stores are visible to all its threads
            for e in range(tid, BM * BN, THREADS):
                row, col = e // BN, e % BN
                m, n = block_m + row, block_n + col
                if m < M and n < N:
                    owner_y, i = (row % STRIDE_M) // GROUP, (row // STRIDE_M) * GROUP + row % GROUP
                    owner_x, j = (col % STRIDE_N) // GROUP, (col // STRIDE_N) * GROUP + col % GROUP
                    owner = (((owner_y // WARP_ROWS) * WARPS_N + owner_x // WARP_COLS) * 32
                             + (owner_y % WARP_ROWS) * WARP_COLS + owner_x % WARP_COLS)
                    value = alpha * workspace[slot + (i * TN + j) * THREADS + owner]
                    value += beta * c[batch, m, n]
                    if epilogue & BIAS_FLAG:
                        value += bias[n]
                    c[batch, m, n] = value
        else:
            # Epilogue from registers. Every loop over `acc` has a small body so that it unrolls
            # fully (a loop that does not unroll would move `acc` to local memory).
            for i in range(TM):
                for j in range(TN):
                    acc[i, j] *= alpha
            if epilogue & BIAS_FLAG:
                for j in range(TN):
                    n = block_n + (j // GROUP) * STRIDE_N + tx * GROUP + j % GROUP
                    b_frag[0, j] = bias[n] if n < N else float32(0.0)
                for i in range(TM):
                    for j in range(TN):
                        acc[i, j] += b_frag[0, j]
            for i in range(TM):
                m = block_m + (i // GROUP) * STRIDE_M + ty * GROUP + i % GROUP
                for j in range(TN):
                    n = block_n + (j // GROUP) * STRIDE_N + tx * GROUP + j % GROUP
                    if m < M and n < N:
                        c[batch, m, n] = acc[i, j]

        # The activation (long libdevice code, kept out of the unrolled loops) is a second pass over
        # the block's tile of C, coalesced; the barrier makes the other threads' stores visible.
        activation = epilogue & ACTIVATION_MASK
        if activation != 0:
            cuda.syncthreads()
            for e in range(tid, BM * BN, THREADS):
                m, n = block_m + e // BN, block_n + e % BN
                if m < M and n < N:
                    value = c[batch, m, n]
                    if activation == 1:
                        value = float32(0.0) if value < float32(0.0) else value   # NaN stays NaN
                    elif activation == 2:
                        value = math.tanh(value)
                    else:
                        value = float32(1.0) / (float32(1.0) + math.exp(-value))
                    c[batch, m, n] = value

    return kernel


# ---------------------------------------------------------------------------------------------
# Launcher: plan (tile, split-K), flat views of A and B and a 3-D view of C, scratch buffers, one launch.

TARGET_BLOCKS_PER_SM = 4     # small-tile blocks (2 warps each) wanted per SM before splitting K stops
MIN_SPLIT_K_TILES = 16       # each split-K slice keeps at least 16 K tiles (128 values of K)
# Large tiles with split-K where C has a few dozen of them and K is long: on an H200 (benchmarks.gemm_plans,
# RESULTS.md, sixteenth session) 128x128 with 4-8 splits beat the small tile with its splits by 10-45% on the
# CRNN step's Winograd weight gradients (16 x 256x256x1518: 0.148 ms against 0.212), a 2880x256x1536 GEMM
# (0.136 against 0.249) and a 256x1536x2880 one (0.150 against 0.169, but it keeps the small tile: 8 splits
# give it 192 blocks, under 1.5 an SM, and more were not measured); for 2 such tiles (256x128x2880) the
# small tile's 16 splits won (0.075 against 0.101 for 128x128/8).
LARGE_SPLIT_MIN_TILES = 24
LARGE_SPLIT_BLOCKS_PER_SM = 1.5
LARGE_SPLIT_MAX_SPLITS = 8   # the most measured
MAX_SPLITS = 16
MAX_GRID_YZ = 65535


@functools.lru_cache(maxsize=None)
def multiprocessor_count():
    cupy = backend.cupy_module()
    if cupy is None:
        return 132          # the simulator: plan as for an H100/H200
    return cupy.cuda.Device().attributes["MultiProcessorCount"]


def _splits_until(tiles, k_tiles, blocks, most=MAX_SPLITS):
    """K splits, doubling while under `blocks` blocks and each slice keeps MIN_SPLIT_K_TILES K tiles (at most
    `most`)."""
    splits = 1
    while tiles * splits < blocks and k_tiles // (2 * splits) >= MIN_SPLIT_K_TILES and splits < most:
        splits *= 2
    return splits


@functools.lru_cache(maxsize=4096)
def plan(batch, m, n, k):
    """(tile configuration, K splits) for a problem: the large tile when it fills the GPU; the large tile with K
    split (at most LARGE_SPLIT_MAX_SPLITS) when a C of at least LARGE_SPLIT_MIN_TILES large tiles, and at least
    one tile high and wide, reaches LARGE_SPLIT_BLOCKS_PER_SM blocks per SM that way; else the small tile with K
    split until about
    TARGET_BLOCKS_PER_SM blocks per SM exist."""
    sms = multiprocessor_count()
    bm, bn, bk = CONFIGS["128x128"][:3]
    tiles = batch * ceil_div(m, bm) * ceil_div(n, bn)
    if tiles >= sms:
        return "128x128", 1
    if tiles >= LARGE_SPLIT_MIN_TILES and m >= bm and n >= bn:   # (a C thinner than a tile: the small tile)
        wanted = int(LARGE_SPLIT_BLOCKS_PER_SM * sms)
        splits = _splits_until(tiles, ceil_div(k, bk), wanted, LARGE_SPLIT_MAX_SPLITS)
        if tiles * splits >= wanted:
            return "128x128", splits
    bm, bn, bk = CONFIGS["64x64"][:3]
    tiles = batch * ceil_div(m, bm) * ceil_div(n, bn)
    return "64x64", _splits_until(tiles, ceil_div(k, bk), TARGET_BLOCKS_PER_SM * sms)


# Operands are reshaped here (CuPy or NumPy views); the launcher makes the Numba views, cached by pointer
# and layout, so the same buffers every training step cost a dictionary lookup.
def _as_3d(x):
    return x if x.ndim == 3 else x.reshape((1,) + x.shape)


def _flat(x, batched):
    """The kernel's operand layout: (batch, rows*cols), or (1, size) for a 2-D operand or a batch that is folded
    into C's rows."""
    return x.reshape(x.shape[0], x.shape[1] * x.shape[2]) if batched and x.ndim == 3 else x.reshape(1, x.size)


_scratch = {}   # (array module, stream pointer) -> split-K workspace and tile counters (launch.stream_scratch)


def _buffers(workspace_size, counter_size):
    """Per-stream split-K workspace and tile counters (counters start at 0 and the kernel resets them)."""
    return stream_scratch(_scratch, workspace_size, counter_size)


def matmul(a, b, trans_a, trans_b, alpha, beta, out, bias, activation, config=None, splits=None):
    """out = activation(alpha*op(a)@op(b) + beta*out + bias); arrays C-contiguous, checked by the public op.

    `config` and `splits` override the plan (used by the tests to reach every kernel variant).
    """
    if out.size == 0:
        return
    k = a.shape[-2] if trans_a else a.shape[-1]
    fold = a.ndim == 3 and b.ndim == 2 and not trans_a   # (batch, rows, K) @ (K, N): one GEMM of batch*rows rows
    c = out.reshape(1, out.shape[0] * out.shape[1], out.shape[2]) if fold else _as_3d(out)
    a, b = _flat(a, not fold), _flat(b, True)
    batch, m, n = c.shape
    if config is None:
        config, planned_splits = plan(batch, m, n, k)
        splits = planned_splits if splits is None else splits
    splits = splits or 1
    bm, bn, bk, tm, tn = CONFIGS[config]
    grid = (ceil_div(n, bn), ceil_div(m, bm), batch * splits)
    if grid[1] > MAX_GRID_YZ or grid[2] > MAX_GRID_YZ:
        raise ValueError(f"matmul: {batch} x {m} x {n} output needs a grid of {grid} blocks, over the "
                         f"CUDA limit of {MAX_GRID_YZ} in y and z; split the batch or the rows")
    threads = (bm // tm) * (bn // tn)
    through_workspace = splits > 1 or beta != 0.0   # the kernel's path; see its epilogue
    tiles = grid[0] * grid[1] * batch
    workspace, counters = _buffers(tiles * splits * bm * bn if through_workspace else 0,
                                   tiles if splits > 1 else 0)
    code = ACTIVATIONS[activation] | (BIAS_FLAG if bias is not None else 0)
    args = (a, b, c, workspace if bias is None else bias, workspace, counters,
            np.float32(alpha), np.float32(beta), code, splits)
    launch(_launchable(config, trans_a, trans_b, args), grid, threads, *args)


_specialised = {}


def _launchable(config, trans_a, trans_b, args):
    """The kernel, specialised on the GPU to the one argument-type tuple the launcher passes
    (PTX_SIGNATURES): a specialised dispatcher skips typing its 10 arguments on every launch."""
    key = (config, trans_a, trans_b)
    kernel = _specialised.get(key)
    if kernel is None:
        kernel = gemm_kernel(config, trans_a, trans_b)
        if not backend.SIMULATOR:
            if is_recording():   # (compiling ahead: the launch only records the kernel; specialise later)
                return kernel
            kernel = specialize(kernel, *[device_view(x) for x in args])   # through the disk cache
        _specialised[key] = kernel
    return kernel



_array2, _array3 = float32[:, ::1], float32[:, :, ::1]
_signature = (_array2, _array2, _array3, float32[::1], float32[::1], int32[::1], float32, float32, int64, int64)
PTX_SIGNATURES = [(f"gemm_{config}_{'t' if ta else 'n'}{'t' if tb else 'n'}", gemm_kernel(config, ta, tb), _signature)
                  for config in CONFIGS for ta in (False, True) for tb in (False, True)]
