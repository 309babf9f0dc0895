"""Recurrent-layer CUDA kernels (fp32): the recurrent product h W_hh^T fused with the gate math and state
update, per time step (one launch a step) or persistent (one cooperative launch for the sequence).

Each block owns a slice of `units` hidden units and all G gates of them, so the state update is
local. Launch: ceil(H / units) blocks of THREADS threads (step kernels) or PERSISTENT_THREADS (the
persistent ones: one block an SM, so more warps to hide the latency of each step). A block's threads
walk tasks of a few samples of one unit (2 forward, 4 in backward phase B: a weight read serves each
of them); each task's dot products over k are split `ksplit` ways (to fill the block when
tasks are few, and in the persistent kernels at least 8 ways so that a warp reads few rows of h) and
summed through shared memory (no shuffles, so the simulator runs it). In the forward step the sums of a
task's two samples go to its parts 0 and 1, which update them side by side, their inputs loaded before the
products (with ksplit 1, part 0 updates both in turn). Persistent kernels keep their
weight slice in dynamic shared memory (odd row stride: conflict-free) and meet at a grid barrier
between steps; one launch of them with a single block is the simulator's form. The per-step kernels
are here; the persistent ones (one or both directions of a layer a launch) and their barriers in
rnn_persistent.py.
Backward: phase A (gate gradients of the block's own units, step s) and phase B (dh_prev of its own
units = gate gradients of all units x its W_hh columns) need a grid-wide exchange between them.
Phase B reads the hidden-side gate gradients: grad_hidden for the GRU (its n part is r * dn), else
grad_gates (then grad_hidden is a placeholder: never pass one array twice, the simulator copies each).
Device functions are inlined by NVVM (kernels/cuda/device.py), and the closure constants of each cell
type fold away.
"""
import functools
import math

from numba import cuda, float32, uint32, uint64

from .. import backend
from .device import device_function, divmod32
from .jit import cached_jit

THREADS = 256                 # threads a block, step kernels; powers of two (the k-split tree reduction)
PERSISTENT_THREADS = 512      # persistent kernels: <= 128 registers a thread keeps one block an SM
REDUCE_SLOTS = max(THREADS, PERSISTENT_THREADS) * 9    # partial sums: 4 gates of 2 samples a thread, odd stride
FORWARD_ROWS = 2              # samples a forward task covers; the body is written for exactly 2
PHASE_B_ROWS = 4              # samples a backward phase-B task covers; the body is written for exactly 4
PERSISTENT_REGISTERS = 65536 // PERSISTENT_THREADS       # so that a block of them can launch at all
# Launch bounds (PERSISTENT_THREADS, 1): ptxas keeps to PERSISTENT_REGISTERS, and the resource check
# compiles with the same bounds. (The simulator takes no launch bounds.)
PERSISTENT_OPTIONS = {} if backend.SIMULATOR else {"launch_bounds": (PERSISTENT_THREADS, 1)}
LSTM, GRU, RNN_TANH, RNN_RELU = 0, 1, 2, 3
CELLS = {"lstm": LSTM, "gru": GRU, "rnn_tanh": RNN_TANH, "rnn_relu": RNN_RELU}
GATE_COUNT = {LSTM: 4, GRU: 3, RNN_TANH: 1, RNN_RELU: 1}


if backend.SIMULATOR:
    @device_function
    def sigmoid(v):
        return float32(1.0) / (float32(1.0) + math.exp(-v))
else:
    from numba.cuda import libdevice

    @device_function
    def sigmoid(v):
        """1 / (1 + exp(-v)), the division approximate (div.approx: 2 ulps, as the expf before it; 0 where
        1 + exp(-v) > 2^126, v < -87.3, whose exact results are subnormal): the IEEE division's slow path is a
        subroutine call, and its call sites cost the persistent kernels registers that they do not have (at
        128, they spill). +-inf give 0 and 1, NaN stays NaN (tests/gpu/test_rnn_gpu.py)."""
        return libdevice.fast_fdividef(float32(1.0), float32(1.0) + math.exp(-v))


@functools.lru_cache(maxsize=None)
def device_functions(cell):
    """forward_step, backward_phase_a, backward_phase_b specialised for one cell type."""
    G = GATE_COUNT[cell]

    @device_function
    def lane_roles(ksplit, lanes_over_k):
        """(slot, part, partner stride, chunk width): the thread's task slot in a chunk, its share of the dot
        (k = part, part + ksplit, ...), the thread-index distance between parts of one task, and the tasks a
        chunk holds. lanes_over_k puts the parts of a task in neighbouring lanes (consecutive k: coalesced h
        loads, conflict-free reads of shared weight rows); otherwise neighbouring lanes take neighbouring
        units (coalesced W_hh^T rows from global memory in the step kernels). 32-bit divisions: Numba's
        int64 ones call a subroutine, and these run every step."""
        chunk_width = divmod32(cuda.blockDim.x, ksplit)[0]
        if lanes_over_k:
            slot, part = divmod32(cuda.threadIdx.x, ksplit)
            return slot, part, 1, chunk_width
        part, slot = divmod32(cuda.threadIdx.x, chunk_width)
        return slot, part, chunk_width, chunk_width

    @device_function
    def reduce_partials(red, acc0, acc1, acc2, acc3, part, ksplit, stride):
        """Sum the ksplit partial sums of each task through shared memory into its part 0 (backward phase B);
        every thread must call it. A thread's values sit at red[5 * thread ...] (an odd stride: a warp's
        accesses to one value hit 32 banks). Each thread then reads its own slots only, which it alone writes
        next; the barrier after each step keeps its reads of other slots before their owners' next stores."""
        index = cuda.threadIdx.x * 5
        red[index] = acc0
        red[index + 1] = acc1
        red[index + 2] = acc2
        red[index + 3] = acc3
        cuda.syncthreads()
        step = ksplit // 2
        while step > 0:
            if part < step:
                other = index + step * stride * 5
                red[index] += red[other]
                red[index + 1] += red[other + 1]
                red[index + 2] += red[other + 2]
                red[index + 3] += red[other + 3]
            cuda.syncthreads()
            step //= 2
        return red[index], red[index + 1], red[index + 2], red[index + 3]

    @device_function
    def reduce_pair_partials(red, acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7, part, ksplit, stride):
        """Sum the ksplit (>= 2) partial sums of a forward task's two samples, acc0-3 of b0 and acc4-7 of b1,
        in one tree through shared memory (a thread's values at red[9 * thread ...], an odd stride):
        halving steps as in reduce_partials for all eight, then at the last step part 0 adds part 1's b0 sums
        and part 1 adds part 0's b1 sums (disjoint slots). Part 0 returns b0's totals first, part 1 b1's last.
        One barrier a step for both samples, where a tree for each took twice as many. Each thread then reads
        its own slots only, which it alone writes next; the last barrier keeps the last step's reads of the
        partner's slots before the partner's stores of the next call. Every thread must call it."""
        index = uint32(cuda.threadIdx.x * 9)   # unsigned: no wrap-around code for the shared indices
        red[index] = acc0
        red[index + uint32(1)] = acc1
        red[index + uint32(2)] = acc2
        red[index + uint32(3)] = acc3
        red[index + uint32(4)] = acc4
        red[index + uint32(5)] = acc5
        red[index + uint32(6)] = acc6
        red[index + uint32(7)] = acc7
        cuda.syncthreads()
        step = ksplit // 2
        while step > 1:
            if part < step:
                other = index + uint32(step * stride * 9)
                for q in range(8):
                    red[index + uint32(q)] += red[other + uint32(q)]
            cuda.syncthreads()
            step //= 2
        if part == 0:      # part 0 completes b0's sums (values 0-3), part 1 b1's (values 4-7)
            other = index + uint32(stride * 9)
            for q in range(4):
                red[index + uint32(q)] += red[other + uint32(q)]
        elif part == 1:
            other = index - uint32(stride * 9)
            for q in range(4, 8):
                red[index + uint32(q)] += red[other + uint32(q)]
        cuda.syncthreads()
        return (red[index], red[index + uint32(1)], red[index + uint32(2)], red[index + uint32(3)],
                red[index + uint32(4)], red[index + uint32(5)], red[index + uint32(6)], red[index + uint32(7)])

    @device_function
    def gate_values(gates, t, b, j, H):
        """The G gate values of sample b, unit j at time t (zero past G); indices uint64."""
        zero = float32(0.0)
        v1 = v2 = v3 = zero
        v0 = gates[t, b, j]
        if G > 1:
            v1 = gates[t, b, H + j]
            v2 = gates[t, b, uint64(2) * H + j]
        if G > 3:
            v3 = gates[t, b, uint64(3) * H + j]
        return v0, v1, v2, v3

    @device_function
    def cell_inputs(t, read, b, j, H, gates, b_hn, states, cells, lengths):
        """What the update of sample b, unit j at time t reads besides its recurrent products: (alive, the
        gate pre-activations x0..x3 (zero past G), h_prev, c_prev, the GRU's b_hn), loaded together and
        before any store, so that they cost one memory round trip rather than one each (a store to `gates`
        in between would order every later load after it). Indices (t, read, b, j, H) are uint64."""
        zero = float32(0.0)
        h_prev = c_prev = b_n = zero
        alive = t < uint64(lengths[b])   # both unsigned (lengths are at least 0): not compared as float64
        x0, x1, x2, x3 = gate_values(gates, t, b, j, H)
        if cell == LSTM:
            c_prev = cells[read, b, j]
        if cell == GRU:
            b_n = b_hn[j]
            h_prev = states[read, b, j]
        return alive, x0, x1, x2, x3, h_prev, c_prev, b_n

    @device_function
    def cell_update(t, read, write, b, j, H, acc0, acc1, acc2, acc3, inputs, gates, states, cells, aux, y):
        """Gates, state and output of sample b, unit j at time t, given its recurrent products acc* and its
        cell_inputs; stores only (but for a sample past its length). Indices are uint64, as cell_inputs'."""
        alive, x0, x1, x2, x3, h_prev, c_prev, b_n = inputs
        if not alive:  # past this sample's length: keep the state (read here but for the GRU's input), output zero
            states[write, b, j] = h_prev if cell == GRU else states[read, b, j]
            if cell == LSTM:
                cells[write, b, j] = c_prev
            y[t, b, j] = float32(0.0)
            return
        if cell == LSTM:
            i = sigmoid(x0 + acc0)
            f = sigmoid(x1 + acc1)
            g = math.tanh(x2 + acc2)
            o = sigmoid(x3 + acc3)
            gates[t, b, j] = i
            gates[t, b, H + j] = f
            gates[t, b, uint64(2) * H + j] = g
            gates[t, b, uint64(3) * H + j] = o
            c = f * c_prev + i * g
            cells[write, b, j] = c
            h = o * math.tanh(c)
        elif cell == GRU:
            r = sigmoid(x0 + acc0)
            z = sigmoid(x1 + acc1)
            hn = acc2 + b_n
            n = math.tanh(x2 + r * hn)
            gates[t, b, j] = r
            gates[t, b, H + j] = z
            gates[t, b, uint64(2) * H + j] = n
            aux[t, b, j] = hn
            h = n + z * (h_prev - n)
        else:
            v = x0 + acc0
            h = (float32(0.0) if v < float32(0.0) else v) if cell == RNN_RELU else math.tanh(v)   # NaN stays
            gates[t, b, j] = h
        states[write, b, j] = h
        y[t, b, j] = h

    @device_function
    def forward_step(s, T, B, H, unit0, units, ksplit, lanes_over_k, w, w_off, w_gs, w_us, w_ks,
                     gates, b_hn, states, cells, aux, y, lengths, reverse, red):
        """Step s (processing order) for units unit0 .. unit0+units-1; weight (g, u, k) at
        w[w_off + g*w_gs + u*w_us + k*w_ks]. A task is two samples (b0, b1) of one unit, so each weight
        read serves two products; with an odd batch the last task computes b0 twice and keeps one."""
        t = T - 1 - s if reverse else s
        read = t + 1 if reverse else t
        write = t if reverse else t + 1
        slot, part, stride, chunk_width = lane_roles(ksplit, lanes_over_k)
        tasks = ((B + FORWARD_ROWS - 1) // FORWARD_ROWS) * units
        zero = float32(0.0)
        no_inputs = (False, zero, zero, zero, zero, zero, zero, zero)
        for chunk in range(0, tasks, chunk_width):
            p = chunk + slot
            acc0 = float32(0.0)
            acc1 = float32(0.0)
            acc2 = float32(0.0)
            acc3 = float32(0.0)
            acc4 = float32(0.0)
            acc5 = float32(0.0)
            acc6 = float32(0.0)
            acc7 = float32(0.0)
            group, u = divmod32(p, units)
            b0 = group * FORWARD_ROWS
            # Unsigned indices from here on: Numba adds no wrap-around code, nor the registers it holds (the
            # persistent kernels have 128 a thread, all in use).
            b0u = uint64(min(b0, B - 1))   # past the last task: a real sample, loaded and dropped
            b1u = uint64(min(b0 + 1, B - 1))
            ru = uint64(read)
            # Parts 0 and 1 of a task update its samples b0 and b1 side by side (one instruction stream:
            # lanes of one warp in the persistent kernels); with ksplit 1, part 0 updates both in turn.
            # Each loads its sample's update inputs here, so that their latency overlaps the products and
            # the reduction's barriers.
            second = ksplit > 1 and part == 1
            tu, wu, ju, Hu = uint64(t), uint64(write), uint64(unit0 + u), uint64(H)
            inputs = no_inputs
            if part < 2:   # (the other parts update nothing; in the step kernels whole warps skip the loads)
                inputs = cell_inputs(tu, ru, b1u if second else b0u, ju, Hu, gates, b_hn, states, cells, lengths)
            if p < tasks:
                base = uint64(w_off + u * w_us)
                for k in range(part, H, ksplit):
                    ku = uint64(k)
                    h0 = states[ru, b0u, ku]
                    h1 = states[ru, b1u, ku]
                    at = base + ku * uint64(w_ks)
                    wv = w[at]
                    acc0 += h0 * wv
                    acc4 += h1 * wv
                    if G > 1:
                        wv = w[at + uint64(w_gs)]
                        acc1 += h0 * wv
                        acc5 += h1 * wv
                        wv = w[at + uint64(2 * w_gs)]
                        acc2 += h0 * wv
                        acc6 += h1 * wv
                    if G > 3:
                        wv = w[at + uint64(3 * w_gs)]
                        acc3 += h0 * wv
                        acc7 += h1 * wv
            if ksplit > 1:   # b0's sums to part 0, b1's to part 1
                acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7 = reduce_pair_partials(
                    red, acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7, part, ksplit, stride)
            if p < tasks and (part == 0 or (second and b0 + 1 < B)):
                # selects, not branches, so that the two lanes run one update together
                cell_update(tu, ru, wu, b1u if second else b0u, ju, Hu, acc4 if second else acc0,
                            acc5 if second else acc1, acc6 if second else acc2, acc7 if second else acc3, inputs,
                            gates, states, cells, aux, y)
                if ksplit == 1 and b0 + 1 < B:
                    inputs = cell_inputs(tu, ru, b1u, ju, Hu, gates, b_hn, states, cells, lengths)
                    cell_update(tu, ru, wu, b1u, ju, Hu, acc4, acc5, acc6, acc7, inputs, gates, states, cells, aux,
                                y)

    @device_function
    def backward_phase_a(s, T, B, H, unit0, units, gates, states, cells, aux, grad_y, grad_h, grad_c,
                         grad_gates, grad_hidden, lengths, reverse):
        """Gate gradients of step s for the block's units; grad_h becomes the direct part of dh_prev
        (z dh for the GRU, else 0), or stays as it is for samples past their length."""
        t = T - 1 - s if reverse else s
        # unsigned indices: Numba adds no wrap-around code (nor registers) for them (see forward_step)
        tu, read, write, Hu = uint64(t), uint64(t + 1 if reverse else t), uint64(t if reverse else t + 1), uint64(H)
        pairs = B * units
        zero = float32(0.0)
        for p in range(cuda.threadIdx.x, pairs, cuda.blockDim.x):
            sample, u = divmod32(p, units)
            b, j = uint64(sample), uint64(unit0 + u)
            # Every load before the first store, and the results chosen by selects rather than a branch on
            # `alive`: one round trip to memory. (Behind a branch, the compiler sinks the loads that only the
            # live path uses below the test of the length, which then waits for its own load first; and a store
            # to grad_gates in between would order the later loads behind it.) A sample past its length gets
            # zero gate gradients and keeps grad_h and grad_c.
            alive = tu < uint64(lengths[b])
            gh = grad_h[b, j]
            dh = gh + grad_y[tu, b, j]
            c_t = c_prev = dc_next = hn = h_prev = zero
            a0, a1, a2, a3 = gate_values(gates, tu, b, j, Hu)
            if cell == LSTM:
                c_t = cells[write, b, j]
                c_prev = cells[read, b, j]
                dc_next = grad_c[b, j]
            if cell == GRU:
                hn = aux[tu, b, j]
                h_prev = states[read, b, j]
            if cell == LSTM:
                i, f, g, o = a0, a1, a2, a3
                tanh_c = math.tanh(c_t)
                dc = dc_next + dh * o * (float32(1.0) - tanh_c * tanh_c)
                grad_gates[tu, b, j] = dc * g * i * (float32(1.0) - i) if alive else zero
                grad_gates[tu, b, Hu + j] = dc * c_prev * f * (float32(1.0) - f) if alive else zero
                grad_gates[tu, b, uint64(2) * Hu + j] = dc * i * (float32(1.0) - g * g) if alive else zero
                grad_gates[tu, b, uint64(3) * Hu + j] = dh * tanh_c * o * (float32(1.0) - o) if alive else zero
                grad_c[b, j] = dc * f if alive else dc_next
                grad_h[b, j] = zero if alive else gh
            elif cell == GRU:
                r, z, n = a0, a1, a2
                dn = dh * (float32(1.0) - z) * (float32(1.0) - n * n)
                dr = dn * hn * r * (float32(1.0) - r)
                dz = dh * (h_prev - n) * z * (float32(1.0) - z)
                dr = dr if alive else zero
                dz = dz if alive else zero
                dn = dn if alive else zero
                grad_gates[tu, b, j] = dr
                grad_gates[tu, b, Hu + j] = dz
                grad_gates[tu, b, uint64(2) * Hu + j] = dn
                grad_hidden[tu, b, j] = dr
                grad_hidden[tu, b, Hu + j] = dz
                grad_hidden[tu, b, uint64(2) * Hu + j] = dn * r
                grad_h[b, j] = dh * z if alive else gh
            else:
                h = a0
                if cell == RNN_RELU:
                    grad = zero if h <= zero else dh   # as torch at NaN
                else:
                    grad = dh * (float32(1.0) - h * h)
                grad_gates[tu, b, j] = grad if alive else zero
                grad_h[b, j] = zero if alive else gh

    @device_function
    def backward_phase_b(s, T, B, H, unit0, units, ksplit, lanes_over_k, w, w_off, w_rs, w_us, grad_hidden,
                         grad_h, reverse, red):
        """grad_h[b, j] += sum over the G*H gate rows r of grad_hidden[t, b, r] * W_hh[r, j];
        weight (r, u) at w[w_off + r*w_rs + u*w_us]. A task is PHASE_B_ROWS samples of one unit, so each
        weight read serves that many products (rows past B are computed on row B-1 and dropped)."""
        t = T - 1 - s if reverse else s
        rows = G * H
        slot, part, stride, chunk_width = lane_roles(ksplit, lanes_over_k)
        tasks = ((B + PHASE_B_ROWS - 1) // PHASE_B_ROWS) * units
        last = B - 1
        for chunk in range(0, tasks, chunk_width):
            p = chunk + slot
            acc0 = float32(0.0)
            acc1 = float32(0.0)
            acc2 = float32(0.0)
            acc3 = float32(0.0)
            group, u = divmod32(p, units)
            b0 = group * PHASE_B_ROWS
            # unsigned indices: no wrap-around code (see forward_step)
            tu, ju = uint64(t), uint64(unit0 + u)
            b0u = uint64(min(b0, last))
            b1u = uint64(min(b0 + 1, last))
            b2u = uint64(min(b0 + 2, last))
            b3u = uint64(min(b0 + 3, last))
            if p < tasks:
                base = uint64(w_off + u * w_us)
                for r in range(part, rows, ksplit):
                    ru = uint64(r)
                    wv = w[base + ru * uint64(w_rs)]
                    acc0 += grad_hidden[tu, b0u, ru] * wv
                    acc1 += grad_hidden[tu, b1u, ru] * wv
                    acc2 += grad_hidden[tu, b2u, ru] * wv
                    acc3 += grad_hidden[tu, b3u, ru] * wv
            if ksplit > 1:
                acc0, acc1, acc2, acc3 = reduce_partials(red, acc0, acc1, acc2, acc3, part, ksplit, stride)
            if part == 0 and p < tasks:
                # the four loads before any store: one memory round trip, not four
                h0, h1, h2, h3 = grad_h[b0u, ju], grad_h[b1u, ju], grad_h[b2u, ju], grad_h[b3u, ju]
                grad_h[b0u, ju] = h0 + acc0
                if b0 + 1 <= last:
                    grad_h[b1u, ju] = h1 + acc1
                if b0 + 2 <= last:
                    grad_h[b2u, ju] = h2 + acc2
                if b0 + 3 <= last:
                    grad_h[b3u, ju] = h3 + acc3

    return forward_step, backward_phase_a, backward_phase_b


def weight_stride(H):
    """Row stride of a weight slice in shared memory: odd, so that threads reading the rows of
    consecutive units at one k hit different banks."""
    return H + 1 - H % 2


@functools.lru_cache(maxsize=None)
def kernels_for(cell):
    """The per-step kernels of one cell type, step_forward and step_backward (the persistent ones are in
    rnn_persistent.py)."""
    G = GATE_COUNT[cell]
    forward_step, backward_phase_a, backward_phase_b = device_functions(cell)

    @cached_jit
    def step_forward(s, T, B, H, units, ksplit, w_t, gates, b_hn, states, cells, aux, y, lengths, reverse):
        """One step; w_t is W_hh^T (H, G*H) flattened, so consecutive units read consecutive words."""
        red = cuda.shared.array(REDUCE_SLOTS, float32)
        unit0 = cuda.blockIdx.x * units
        here = min(units, H - unit0)
        forward_step(s, T, B, H, unit0, here, ksplit, False, w_t, unit0, H, 1, G * H,
                     gates, b_hn, states, cells, aux, y, lengths, reverse, red)

    @cached_jit
    def step_backward(step_a, step_b, T, B, H, units, ksplit, w, gates, states, cells, aux, grad_y, grad_h,
                      grad_c, grad_gates, grad_hidden, lengths, reverse):
        """Phase B of step_b then phase A of step_a (-1: skip), both for this block's units, so that one
        launch a step suffices; w is W_hh (G*H, H) flattened."""
        red = cuda.shared.array(REDUCE_SLOTS, float32)
        unit0 = cuda.blockIdx.x * units
        here = min(units, H - unit0)
        if step_b >= 0:
            backward_phase_b(step_b, T, B, H, unit0, here, ksplit, False, w, unit0, H, 1,
                             grad_hidden if cell == GRU else grad_gates, grad_h, reverse, red)
        cuda.syncthreads()
        if step_a >= 0:
            backward_phase_a(step_a, T, B, H, unit0, here, gates, states, cells, aux, grad_y, grad_h, grad_c,
                             grad_gates, grad_hidden, lengths, reverse)

    return {"step_forward": step_forward, "step_backward": step_backward}
