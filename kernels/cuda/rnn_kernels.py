"""Recurrent-layer CUDA kernels (fp32): the recurrent product h W_hh^T fused with the gate math and state
update, per time step (one launch a step) or persistent (one cooperative launch for the sequence).

Each block owns a slice of `units` hidden units and all G gates of them, so the state update is
local. Launch: ceil(H / units) blocks of THREADS threads (step kernels) or PERSISTENT_THREADS (the
persistent ones: one block an SM, so more warps to hide the latency of each step). A block's threads
walk tasks of a few samples of one unit (2 forward, 4 in backward phase B: a weight read serves each
of them); each task's dot products over k are split `ksplit` ways (to fill the block when
tasks are few, and in the persistent kernels at least 8 ways so that a warp reads few rows of h) and
summed through shared memory (no shuffles, so the simulator runs it). Persistent kernels keep their
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

from numba import cuda, float32

from .. import backend
from .device import device_function
from .jit import cached_jit

THREADS = 256                 # threads a block, step kernels; powers of two (the k-split tree reduction)
PERSISTENT_THREADS = 512      # persistent kernels: <= 128 registers a thread keeps one block an SM
REDUCE_SLOTS = max(THREADS, PERSISTENT_THREADS) * 4    # partial sums: up to 4 gates for each thread
FORWARD_ROWS = 2              # samples a forward task covers; the body is written for exactly 2
PHASE_B_ROWS = 4              # samples a backward phase-B task covers; the body is written for exactly 4
PERSISTENT_REGISTERS = 65536 // PERSISTENT_THREADS       # so that a block of them can launch at all
# Launch bounds (PERSISTENT_THREADS, 1): ptxas keeps to PERSISTENT_REGISTERS, and the resource check
# compiles with the same bounds. (The simulator takes no launch bounds.)
PERSISTENT_OPTIONS = {} if backend.SIMULATOR else {"launch_bounds": (PERSISTENT_THREADS, 1)}
LSTM, GRU, RNN_TANH, RNN_RELU = 0, 1, 2, 3
CELLS = {"lstm": LSTM, "gru": GRU, "rnn_tanh": RNN_TANH, "rnn_relu": RNN_RELU}
GATE_COUNT = {LSTM: 4, GRU: 3, RNN_TANH: 1, RNN_RELU: 1}


@device_function
def sigmoid(v):
    return float32(1.0) / (float32(1.0) + math.exp(-v))


@functools.lru_cache(maxsize=None)
def device_functions(cell):
    """forward_step, backward_phase_a, backward_phase_b specialised for one cell type."""
    G = GATE_COUNT[cell]

    @device_function
    def lane_roles(ksplit, lanes_over_k):
        """(slot, part, partner stride): the thread's pair slot in a chunk, its share of the dot (k = part,
        part + ksplit, ...), and the thread-index distance between parts of one pair. lanes_over_k puts
        the parts of a pair in neighbouring lanes (consecutive k: coalesced h loads, conflict-free reads of
        shared weight rows); otherwise neighbouring lanes take neighbouring units (coalesced W_hh^T rows
        from global memory in the step kernels)."""
        chunk_width = cuda.blockDim.x // ksplit
        if lanes_over_k:
            return cuda.threadIdx.x // ksplit, cuda.threadIdx.x % ksplit, 1
        return cuda.threadIdx.x % chunk_width, cuda.threadIdx.x // chunk_width, chunk_width

    @device_function
    def reduce_partials(red, acc0, acc1, acc2, acc3, part, ksplit, stride):
        """Sum the ksplit partial sums of each pair through shared memory; every thread must call it."""
        index = cuda.threadIdx.x * 4
        red[index] = acc0
        red[index + 1] = acc1
        red[index + 2] = acc2
        red[index + 3] = acc3
        cuda.syncthreads()
        step = ksplit // 2
        while step > 0:
            if part < step:
                other = index + step * stride * 4
                red[index] += red[other]
                red[index + 1] += red[other + 1]
                red[index + 2] += red[other + 2]
                red[index + 3] += red[other + 3]
            cuda.syncthreads()
            step //= 2
        return red[index], red[index + 1], red[index + 2], red[index + 3]

    @device_function
    def cell_update(t, read, write, b, j, H, acc0, acc1, acc2, acc3, gates, b_hn, states, cells, aux, y,
                    lengths):
        """Gates, state and output of sample b, unit j at time t, given its recurrent products acc*."""
        if t >= lengths[b]:  # past this sample's length: keep the state, output zero
            states[write, b, j] = states[read, b, j]
            if cell == LSTM:
                cells[write, b, j] = cells[read, b, j]
            y[t, b, j] = float32(0.0)
            return
        if cell == LSTM:
            i = sigmoid(gates[t, b, j] + acc0)
            f = sigmoid(gates[t, b, H + j] + acc1)
            g = math.tanh(gates[t, b, 2 * H + j] + acc2)
            o = sigmoid(gates[t, b, 3 * H + j] + acc3)
            gates[t, b, j] = i
            gates[t, b, H + j] = f
            gates[t, b, 2 * H + j] = g
            gates[t, b, 3 * H + j] = o
            c = f * cells[read, b, j] + i * g
            cells[write, b, j] = c
            h = o * math.tanh(c)
        elif cell == GRU:
            r = sigmoid(gates[t, b, j] + acc0)
            z = sigmoid(gates[t, b, H + j] + acc1)
            hn = acc2 + b_hn[j]
            n = math.tanh(gates[t, b, 2 * H + j] + r * hn)
            gates[t, b, j] = r
            gates[t, b, H + j] = z
            gates[t, b, 2 * H + j] = n
            aux[t, b, j] = hn
            h = n + z * (states[read, b, j] - n)
        else:
            v = gates[t, b, j] + acc0
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
        chunk_width = cuda.blockDim.x // ksplit
        slot, part, stride = lane_roles(ksplit, lanes_over_k)
        tasks = ((B + FORWARD_ROWS - 1) // FORWARD_ROWS) * units
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
            group = p // units
            u = p - group * units
            b0 = group * FORWARD_ROWS
            b1 = min(b0 + 1, B - 1)
            if p < tasks:
                base = w_off + u * w_us
                for k in range(part, H, ksplit):
                    h0 = states[read, b0, k]
                    h1 = states[read, b1, k]
                    at = base + k * w_ks
                    wv = w[at]
                    acc0 += h0 * wv
                    acc4 += h1 * wv
                    if G > 1:
                        wv = w[at + w_gs]
                        acc1 += h0 * wv
                        acc5 += h1 * wv
                        wv = w[at + 2 * w_gs]
                        acc2 += h0 * wv
                        acc6 += h1 * wv
                    if G > 3:
                        wv = w[at + 3 * w_gs]
                        acc3 += h0 * wv
                        acc7 += h1 * wv
            if ksplit > 1:
                # Two rounds through the same slots: after a round's last barrier each thread reads only
                # its own slot, which it alone writes next.
                acc0, acc1, acc2, acc3 = reduce_partials(red, acc0, acc1, acc2, acc3, part, ksplit, stride)
                acc4, acc5, acc6, acc7 = reduce_partials(red, acc4, acc5, acc6, acc7, part, ksplit, stride)
            if part == 0 and p < tasks:
                j = unit0 + u
                cell_update(t, read, write, b0, j, H, acc0, acc1, acc2, acc3, gates, b_hn, states, cells, aux,
                            y, lengths)
                if b0 + 1 < B:
                    cell_update(t, read, write, b1, j, H, acc4, acc5, acc6, acc7, gates, b_hn, states, cells,
                                aux, y, lengths)

    @device_function
    def backward_phase_a(s, T, B, H, unit0, units, gates, states, cells, aux, grad_y, grad_h, grad_c,
                         grad_gates, grad_hidden, lengths, reverse):
        """Gate gradients of step s for the block's units; grad_h becomes the direct part of dh_prev
        (z dh for the GRU, else 0), or stays as it is for samples past their length."""
        t = T - 1 - s if reverse else s
        read = t + 1 if reverse else t
        write = t if reverse else t + 1
        pairs = B * units
        for p in range(cuda.threadIdx.x, pairs, cuda.blockDim.x):
            b = p // units
            j = unit0 + p - b * units
            if t >= lengths[b]:
                for g in range(G):
                    grad_gates[t, b, g * H + j] = float32(0.0)
                    if cell == GRU:
                        grad_hidden[t, b, g * H + j] = float32(0.0)
                continue
            dh = grad_h[b, j] + grad_y[t, b, j]
            if cell == LSTM:
                i = gates[t, b, j]
                f = gates[t, b, H + j]
                g = gates[t, b, 2 * H + j]
                o = gates[t, b, 3 * H + j]
                tanh_c = math.tanh(cells[write, b, j])
                dc = grad_c[b, j] + dh * o * (float32(1.0) - tanh_c * tanh_c)
                grad_gates[t, b, j] = dc * g * i * (float32(1.0) - i)
                grad_gates[t, b, H + j] = dc * cells[read, b, j] * f * (float32(1.0) - f)
                grad_gates[t, b, 2 * H + j] = dc * i * (float32(1.0) - g * g)
                grad_gates[t, b, 3 * H + j] = dh * tanh_c * o * (float32(1.0) - o)
                grad_c[b, j] = dc * f
                grad_h[b, j] = float32(0.0)
            elif cell == GRU:
                r = gates[t, b, j]
                z = gates[t, b, H + j]
                n = gates[t, b, 2 * H + j]
                dn = dh * (float32(1.0) - z) * (float32(1.0) - n * n)
                dr = dn * aux[t, b, j] * r * (float32(1.0) - r)
                dz = dh * (states[read, b, j] - n) * z * (float32(1.0) - z)
                grad_gates[t, b, j] = dr
                grad_gates[t, b, H + j] = dz
                grad_gates[t, b, 2 * H + j] = dn
                grad_hidden[t, b, j] = dr
                grad_hidden[t, b, H + j] = dz
                grad_hidden[t, b, 2 * H + j] = dn * r
                grad_h[b, j] = dh * z
            else:
                h = gates[t, b, j]
                if cell == RNN_RELU:
                    grad_gates[t, b, j] = float32(0.0) if h <= float32(0.0) else dh   # as torch at NaN
                else:
                    grad_gates[t, b, j] = dh * (float32(1.0) - h * h)
                grad_h[b, j] = float32(0.0)

    @device_function
    def backward_phase_b(s, T, B, H, unit0, units, ksplit, lanes_over_k, w, w_off, w_rs, w_us, grad_hidden,
                         grad_h, reverse, red):
        """grad_h[b, j] += sum over the G*H gate rows r of grad_hidden[t, b, r] * W_hh[r, j];
        weight (r, u) at w[w_off + r*w_rs + u*w_us]. A task is PHASE_B_ROWS samples of one unit, so each
        weight read serves that many products (rows past B are computed on row B-1 and dropped)."""
        t = T - 1 - s if reverse else s
        rows = G * H
        chunk_width = cuda.blockDim.x // ksplit
        slot, part, stride = lane_roles(ksplit, lanes_over_k)
        tasks = ((B + PHASE_B_ROWS - 1) // PHASE_B_ROWS) * units
        last = B - 1
        for chunk in range(0, tasks, chunk_width):
            p = chunk + slot
            acc0 = float32(0.0)
            acc1 = float32(0.0)
            acc2 = float32(0.0)
            acc3 = float32(0.0)
            group = p // units
            u = p - group * units
            b0 = group * PHASE_B_ROWS
            b1 = min(b0 + 1, last)
            b2 = min(b0 + 2, last)
            b3 = min(b0 + 3, last)
            if p < tasks:
                base = w_off + u * w_us
                for r in range(part, rows, ksplit):
                    wv = w[base + r * w_rs]
                    acc0 += grad_hidden[t, b0, r] * wv
                    acc1 += grad_hidden[t, b1, r] * wv
                    acc2 += grad_hidden[t, b2, r] * wv
                    acc3 += grad_hidden[t, b3, r] * wv
            if ksplit > 1:
                acc0, acc1, acc2, acc3 = reduce_partials(red, acc0, acc1, acc2, acc3, part, ksplit, stride)
            if part == 0 and p < tasks:
                j = unit0 + u
                grad_h[b0, j] += acc0
                if b0 + 1 <= last:
                    grad_h[b1, j] += acc1
                if b0 + 2 <= last:
                    grad_h[b2, j] += acc2
                if b0 + 3 <= last:
                    grad_h[b3, j] += acc3

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
