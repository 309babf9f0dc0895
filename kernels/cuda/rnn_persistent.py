"""Persistent recurrent kernels (fp32): one cooperative launch runs all T steps of one direction of a layer,
or of both directions at once (they are independent, so they share every grid barrier and advance in
lockstep: the sequential recurrent time of a bidirectional layer halves).

Launch: D * blocks_per_direction blocks of PERSISTENT_THREADS (D = directions in the launch); block b
takes direction b // blocks_per_direction and units (b % blocks_per_direction) * units + [0, units);
its W_hh slice stays in dynamic shared memory (layout and the step bodies: rnn_kernels.py). The
simulator has no grid sync across blocks, so there ONE block owns every unit of every direction
(directions_per_block = D) and loops over the directions inside each step: the same kernel.
Buffers carry a leading direction axis (D, ...); y and grad_y are (T, B, Y) with direction d in columns
y_column + d*H .. + H (the layer's concatenated output, or a direction's half of it); W_hh of
direction d is w0 (d = 0) or w1 (d = 1; the same array as w0 when D = 1). Direction d runs in reverse
when reverse + d is odd. Dummies (cells, aux, grad_c, grad_hidden) keep the leading axis D.
When a block owns every unit of its direction (units >= H: NUMBANET_RNN_UNITS for small layers, and the
simulator's one block), the steps are separated by a block barrier instead of a grid barrier.

Grid barriers, two kinds (GRID_BARRIERS; kernels/cuda/rnn.py picks, NUMBANET_GRID_BARRIER overrides):
- 'atomic': thread 0 of each block adds to one word in global memory (`arrivals`, zeroed before the
  launch) and waits for the word's top bit to flip, reading it with plain loads from L2 (ld.relaxed.gpu);
  its low bits are back at zero after each barrier.
- 'runtime': the CUDA device runtime's grid sync as Numba exposes it (cuda.cg.this_grid().sync()). There
  every thread of the grid calls cudaCGGetIntrinsicHandle and cudaCGSynchronize (libcudadevrt) at each
  barrier, and in CUDA 13's libcudadevrt cudaCGSynchronize passes each call on to the driver's
  __cuda_syscall_CGS_sync (cudaCGSynchronizeGrid, which Numba does not use, makes that call once a block).
Both kinds are launched cooperatively (all blocks resident at once, or the launch fails): a spinning
block never waits on a block that has not started.
"""
import functools

import numpy as np
from numba import cuda, float32, uint32

from .. import backend
from .device import device_function, divmod32
from .jit import cached_jit
from .rnn_kernels import GATE_COUNT, GRU, PERSISTENT_OPTIONS, REDUCE_SLOTS, device_functions

GRID_BARRIERS = ("atomic", "runtime")
FLIP = np.uint32(1 << 31)    # the arrival word's top bit: flips once each barrier

if backend.SIMULATOR:
    @device_function
    def runtime_grid_barrier():
        cuda.cg.this_grid().sync()  # the simulator's grid is one block: a block barrier

    @device_function
    def launched_cooperatively():
        pass

    @device_function
    def read_arrivals(arrivals):
        return cuda.atomic.add(arrivals, 0, uint32(0))   # the simulator has no cache-operator loads
else:
    # The intrinsics behind cuda.cg.this_grid().sync() (numba-cuda 0.30), called directly: the public
    # overloads compile a device function for the current GPU, which the PTX check could not do without
    # one before resources.py compiled device functions for its target itself. Each marks the kernel
    # cooperative, so Numba launches it cooperatively.
    from llvmlite import ir
    from numba import types
    from numba.cuda.cg import _grid_group_sync, _this_grid
    from numba.cuda.extending import intrinsic

    @device_function
    def runtime_grid_barrier():
        _grid_group_sync(_this_grid())

    @device_function
    def launched_cooperatively():
        """Marks the kernel cooperative (the atomic barrier needs every block resident); one runtime call."""
        _this_grid()

    @intrinsic
    def _load_relaxed(typingctx, words):
        """words[0] (uint32) by ld.relaxed.gpu (a generic address, as Numba's array data is; sm_70 and
        later): read where the GPU's memory is coherent (L2), never from a stale L1 line. Volatile asm: every
        call loads. (Not ld.acquire, which invalidates the L1 at every poll: the fence after the polling loop
        orders the reads that follow, once.)"""
        if not (isinstance(words, types.Array) and words.dtype == types.uint32):
            return None

        def codegen(context, builder, signature, arguments):
            data = context.make_array(signature.args[0])(context, builder, value=arguments[0]).data
            function = ir.FunctionType(ir.IntType(32), [data.type])
            load = ir.InlineAsm(function, "ld.relaxed.gpu.u32 $0, [$1];", "=r,l", side_effect=True)
            return builder.call(load, [data])

        return types.uint32(words), codegen

    @device_function
    def read_arrivals(arrivals):
        """The polling read of the arrival word: a load, so that 128 polling blocks do not queue their reads
        in the L2's atomic unit ahead of the arrivals they wait for (CUDA's own grid sync polls with a
        volatile load too)."""
        return _load_relaxed(arrivals)


@device_function
def arrive_and_wait(arrivals, block, blocks):
    """One block's part of the atomic grid barrier, done by one thread of it: block 0 adds 2^31 - (blocks - 1)
    to arrivals[0] and every other block 1, so the sum flips the word's top bit when the last block arrives
    and not before (its low bits start at zero and return to it); then it polls the word (read_arrivals) until
    the top bit differs from what it saw on arriving. The fences publish the block's writes before the arrival
    and order its reads after the wait, as a grid sync does."""
    increment = uint32(1)
    if block == 0:
        increment = uint32(FLIP - uint32(blocks - 1))
    cuda.threadfence()
    seen = cuda.atomic.add(arrivals, 0, increment)
    while ((read_arrivals(arrivals) ^ seen) & FLIP) == 0:
        pass
    cuda.threadfence()


@device_function
def atomic_grid_barrier(arrivals):
    """Every block of the grid meets here (the block barriers order the other threads' work around thread 0's
    arrival)."""
    cuda.syncthreads()
    if cuda.threadIdx.x == 0:
        arrive_and_wait(arrivals, cuda.blockIdx.x, cuda.gridDim.x)
    cuda.syncthreads()


@functools.lru_cache(maxsize=None)
def step_barrier_for(grid_barrier):
    """The device function that separates the steps of a persistent kernel: a grid barrier of the given kind,
    or only a block barrier when every block owns all the units of its direction (units >= H: one block a
    direction), since then no other block reads what it wrote. The condition is the same in every block,
    so all of them take one branch."""
    atomic = grid_barrier == "atomic"

    @device_function
    def step_barrier(block_owns_direction, arrivals):
        if block_owns_direction:
            cuda.syncthreads()
        elif atomic:
            atomic_grid_barrier(arrivals)
        else:
            runtime_grid_barrier()

    return step_barrier


@device_function
def block_direction(directions, directions_per_block, units):
    """(first direction of this block, its first unit)."""
    blocks_per_direction = cuda.gridDim.x * directions_per_block // directions
    first = cuda.blockIdx.x // blocks_per_direction * directions_per_block
    return first, (cuda.blockIdx.x % blocks_per_direction) * units


def persistent_kernels_for(cell, grid_barrier="atomic"):
    """persistent_forward and persistent_backward of one cell type, meeting at grid barriers of the given
    kind (see the module docstring); `arrivals` is the atomic barrier's word (uint32, zeroed; any uint32
    array for the runtime's barrier). The same dispatchers for every call with the same cell and kind."""
    if grid_barrier not in GRID_BARRIERS:
        raise ValueError(f"persistent rnn kernels: grid_barrier must be one of {GRID_BARRIERS}, "
                         f"got {grid_barrier!r}")
    return _persistent_kernels(cell, grid_barrier)


@functools.lru_cache(maxsize=None)
def _persistent_kernels(cell, grid_barrier):
    G = GATE_COUNT[cell]
    forward_step, backward_phase_a, backward_phase_b = device_functions(cell)
    step_barrier = step_barrier_for(grid_barrier)
    atomic = grid_barrier == "atomic"

    @cached_jit(**PERSISTENT_OPTIONS)
    def persistent_forward(T, B, H, units, ksplit, directions_per_block, w0, w1, gates, b_hn, states, cells, aux,
                           y, y_column, lengths, reverse, arrivals):
        """All T steps; each direction's rows of W_hh (G x units x H, row stride weight_stride(H)) stay in
        dynamic shared memory; a grid barrier publishes each step's states to every block (a block
        barrier when each block owns its whole direction: step_barrier)."""
        if atomic:
            launched_cooperatively()
        red = cuda.shared.array(REDUCE_SLOTS, float32)
        w_shared = cuda.shared.array(0, float32)
        first, unit0 = block_direction(states.shape[0], directions_per_block, units)
        here = min(units, H - unit0)
        ld = H + 1 - H % 2
        slice_size = G * units * ld
        size = G * here * H
        for slot in range(directions_per_block):
            w = w0 if first + slot == 0 else w1
            for index in range(cuda.threadIdx.x, size, cuda.blockDim.x):
                g, rest = divmod32(index, here * H)
                u, k = divmod32(rest, H)
                w_shared[slot * slice_size + (g * units + u) * ld + k] = w[(g * H + unit0 + u) * H + k]
        cuda.syncthreads()
        for s in range(T):
            for slot in range(directions_per_block):
                d = first + slot
                column = y_column + d * H
                forward_step(s, T, B, H, unit0, here, ksplit, True, w_shared, slot * slice_size, units * ld, ld, 1,
                             gates[d], b_hn[d], states[d], cells[d], aux[d], y[:, :, column:column + H], lengths,
                             (reverse + d) % 2, red)
            step_barrier(units >= H, arrivals)

    @cached_jit(**PERSISTENT_OPTIONS)
    def persistent_backward(T, B, H, units, ksplit, directions_per_block, w0, w1, gates, states, cells, aux,
                            grad_y, y_column, grad_h, grad_c, grad_gates, grad_hidden, lengths, reverse, arrivals):
        """All T steps backwards; each direction's columns of W_hh, stored as rows (units x G*H, row stride
        weight_stride(G*H)), stay in dynamic shared memory; a grid barrier between phase A and phase B
        of each step (a block barrier when each block owns its whole direction: step_barrier)."""
        if atomic:
            launched_cooperatively()
        red = cuda.shared.array(REDUCE_SLOTS, float32)
        w_shared = cuda.shared.array(0, float32)
        first, unit0 = block_direction(states.shape[0], directions_per_block, units)
        here = min(units, H - unit0)
        rows = G * H
        ld = rows + 1 - rows % 2
        slice_size = units * ld
        size = rows * here
        for slot in range(directions_per_block):
            w = w0 if first + slot == 0 else w1
            for index in range(cuda.threadIdx.x, size, cuda.blockDim.x):
                r, u = divmod32(index, here)
                w_shared[slot * slice_size + u * ld + r] = w[r * H + unit0 + u]
        cuda.syncthreads()
        for s in range(T - 1, -1, -1):
            for slot in range(directions_per_block):
                d = first + slot
                column = y_column + d * H
                backward_phase_a(s, T, B, H, unit0, here, gates[d], states[d], cells[d], aux[d],
                                 grad_y[:, :, column:column + H], grad_h[d], grad_c[d], grad_gates[d],
                                 grad_hidden[d], lengths, (reverse + d) % 2)
            step_barrier(units >= H, arrivals)
            for slot in range(directions_per_block):
                d = first + slot
                backward_phase_b(s, T, B, H, unit0, here, ksplit, True, w_shared, slot * slice_size, 1, ld,
                                 grad_hidden[d] if cell == GRU else grad_gates[d], grad_h[d], (reverse + d) % 2,
                                 red)
            cuda.syncthreads()

    return {"persistent_forward": persistent_forward, "persistent_backward": persistent_backward}
