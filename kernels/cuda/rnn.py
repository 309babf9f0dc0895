"""Recurrent layers on the GPU (fp32): orchestration of kernels/cuda/rnn_kernels.py around GEMMs.

Forward: (1) the input projection of all T steps as one kernels.matmul with the foldable biases as
its epilogue; (2) the recurrence: a persistent cooperative kernel (one launch for the sequence, the
block's W_hh slice in shared memory, a grid barrier a step) when the weights fit on chip, else one
fused step kernel a step (STEP_UNITS units a block). Backward: the same choice (one launch a step:
phase B of step s+1 and phase A of step s), then the weight, input and bias gradients as GEMMs over
all steps at once. Buffers are those of kernels/cpu/rnn.py, stacked along a leading direction axis.
Both directions of a bidirectional layer run in ONE persistent launch (kernels/cuda/rnn_persistent.py:
twice the blocks, one barrier a step for both) when their blocks fit on the GPU together; otherwise
each direction has its own launches (persistent or per step), as a single-direction layer does.
A block's threads, dot-product split and shared memory: kernels/cuda/rnn_block_sizes.py.
"""
import os
import warnings

import numpy as np

from numba import cuda, float32, int32, int64, uint32

from .. import backend
from .._checks import constant
from ..cpu.rnn import prev_state_slice, projection_bias
from . import compile_ahead
from .launch import ceil_div, device_view, launch
from .rnn_block_sizes import _allow_shared, _shared_limit, _threads, ksplit_for, persistent_shared_bytes
from .rnn_kernels import CELLS, FORWARD_ROWS, GATE_COUNT, PHASE_B_ROWS, kernels_for
from .rnn_persistent import GRID_BARRIERS, persistent_kernels_for

STEP_UNITS = 32     # units a block in the step kernels: a warp of consecutive units reads W_hh^T coalesced
# The persistent kernels give each dot product at least this many neighbouring lanes (consecutive k):
# a warp then reads one or two rows of h instead of eight, even when the batch fills the block.
PERSISTENT_MIN_KSPLIT = 8
# 'persistent' or 'step' forces a path (tests; NUMBANET_RNN_PATH for benchmarks); None chooses.
force_path = os.environ.get("NUMBANET_RNN_PATH") or None
# Layers of two directions: 'combined' (one persistent launch runs both; an error when they do not fit
# together) or 'separate' (one launch a direction, as before); None: combined when it fits. Tests set it;
# NUMBANET_RNN_DIRECTIONS lets a benchmark run compare the two.
force_directions = os.environ.get("NUMBANET_RNN_DIRECTIONS") or None
# How the blocks of a persistent launch meet between steps (rnn_persistent.py): 'atomic' (ours: one word in
# global memory) or 'runtime' (the device runtime's grid sync, the only kind before 2026-11-27).
# NUMBANET_GRID_BARRIER lets a benchmark run compare them; tests set it.
grid_barrier = os.environ.get("NUMBANET_GRID_BARRIER") or "atomic"
for _name, _value, _choices in (("NUMBANET_RNN_PATH", force_path, ("persistent", "step")),
                                ("NUMBANET_RNN_DIRECTIONS", force_directions, ("combined", "separate")),
                                ("NUMBANET_GRID_BARRIER", grid_barrier, GRID_BARRIERS)):
    if _value not in (None,) + _choices:
        raise ValueError(f"{_name} must be one of {_choices} (or unset), got {_value!r}")


def units_from_environment():
    """NUMBANET_RNN_UNITS: the fewest units a block of the persistent kernels owns (unset: as few as fit,
    so as many blocks as the chip takes). Fewer, larger blocks were slower for the CRNN's H = 64 layers on an
    H100 (4, 16 and 64 units a block against one: benchmarks/RESULTS.md, 2026-11-27)."""
    raw = os.environ.get("NUMBANET_RNN_UNITS") or None
    if raw is not None and not (raw.isdigit() and int(raw) >= 1):
        raise ValueError(f"NUMBANET_RNN_UNITS must be a positive integer (or unset), got {raw!r}")
    return None if raw is None else int(raw)


min_units = units_from_environment()


_compiled_cache = {}


def _compiled(kernel, signature):
    """The kernel compiled for `signature` (the types `launch` passes): for occupancy queries and attributes."""
    key = (id(kernel), signature)
    if key not in _compiled_cache:
        _compiled_cache[key] = kernel.compile(signature)
    return _compiled_cache[key]


def persistent_signature(kind):
    """The argument types `launch` passes to persistent_<kind> (the resource check compiles the same)."""
    vector, matrix, tensor, stacked = float32[::1], float32[:, ::1], float32[:, :, ::1], float32[:, :, :, ::1]
    if kind == "forward":  # ..., w0, w1, gates, b_hn, states, cells, aux, y, y_column, lengths, reverse, arrivals
        return (int64,) * 6 + (vector, vector, stacked, matrix, stacked, stacked, stacked, tensor, int64,
                               int32[::1], int64, uint32[::1])
    # ..., w0, w1, gates, states, cells, aux, grad_y, y_column, grad_h, grad_c, grad_gates, grad_hidden,
    # lengths, reverse, arrivals
    return (int64,) * 6 + (vector, vector) + (stacked,) * 4 + (tensor, int64, tensor, tensor, stacked, stacked,
                                                                int32[::1], int64, uint32[::1])


def _kernels(cell):
    return {**kernels_for(cell), **persistent_kernels_for(cell, grid_barrier)}


_plans = {}


def _plan_key(kind, cell, B, H, directions):
    return ((kind, cell, B, H, directions) + ((min_units,) if min_units else ())
            + ((grid_barrier,) if grid_barrier != "atomic" else ()))


def persistent_plan(kind, cell, B, H, directions=1):
    """(blocks, units, shared bytes, directions a block) for one persistent launch running `directions`
    directions together, or None when their weights do not fit on the chip at once (while compile_ahead
    records: _recording_plan's stand-in)."""
    key = _plan_key(kind, cell, B, H, directions)
    if key in _plans:
        return _plans[key]
    G = GATE_COUNT[cell]
    if compile_ahead.is_recording():
        return _recording_plan(kind, G, H, directions)
    plan = None
    if backend.SIMULATOR:  # one block owning every unit of every direction: the simulator's form
        plan = (1, H, persistent_shared_bytes(kind, G, H, H), directions)
    else:
        compiled = _compiled(persistent_kernels_for(cell, grid_barrier)[f"persistent_{kind}"],
                             persistent_signature(kind))
        threads = _threads(persistent=True)
        limit = _shared_limit()
        # Every direction needs its own blocks; start at the fewest units a block that one block an SM allows.
        units = ceil_div(directions * H, cuda.get_current_device().MULTIPROCESSOR_COUNT)
        units = min(max(units, min_units or 1), H)
        while units <= H:
            nbytes = persistent_shared_bytes(kind, G, H, units)
            if nbytes > limit or not _allow_shared(compiled, nbytes):
                break
            blocks = directions * ceil_div(H, units)
            if blocks <= compiled.max_cooperative_grid_blocks(threads, nbytes):
                plan = (blocks, units, nbytes, 1)
                break
            units += 1
    _plans[key] = plan
    return plan


def _recording_plan(kind, G, H, directions):
    """The plan while compile_ahead records (only the kernels and argument types matter): all directions in one
    persistent launch, as the real plan gives when the weights fit on chip, made without compiling the kernel
    for the occupancy query (here, serially, while the compiling processes wait). Not kept in _plans: the real
    plan is made at the first launch, when the kernel loads from the disk cache those processes filled."""
    units = min(min_units or 1, H)
    return (directions * ceil_div(H, units), units, persistent_shared_bytes(kind, G, H, units), 1)


def _use_persistent(kind, cell, B, H, directions=1):
    if force_path == "step":
        return None
    try:
        plan = persistent_plan(kind, cell, B, H, directions)
    except Exception as error:  # an occupancy query or attribute the driver refuses: keep working
        if force_path == "persistent" or (directions > 1 and force_directions == "combined"):
            raise
        fallback = "one launch a direction" if directions > 1 else "the per-step kernels"
        warnings.warn(f"rnn: persistent {kind} kernel unavailable ({error}); using {fallback}")
        plan = _plans[_plan_key(kind, cell, B, H, directions)] = None
    if plan is None and directions > 1 and force_directions == "combined":
        raise RuntimeError(f"rnn: {directions} directions of H={H} do not fit one persistent {kind} launch")
    if plan is None and directions == 1 and force_path == "persistent":
        raise RuntimeError(f"rnn: the persistent {kind} kernel does not fit for H={H}")
    return plan


def _launch_groups(kind, cell, B, H, directions):
    """[(first direction, count, plan or None)]: every direction in one persistent launch when they fit
    together, else each direction alone (persistent when it fits, else the per-step kernels)."""
    if directions > 1 and force_directions != "separate":
        plan = _use_persistent(kind, cell, B, H, directions)
        if plan is not None:
            return [(0, directions, plan)]
    return [(d, 1, _use_persistent(kind, cell, B, H)) for d in range(directions)]


def _part(array, first, count):
    """The directions first .. first+count-1 of a stacked buffer (the array itself when that is all of it)."""
    return array if count == array.shape[0] else array[first:first + count]


def _launch_persistent(kernel, plan, task_rows, dot_length, T, B, H, w, first, count, *buffers):
    """One persistent launch of directions first .. first+count-1 with `plan` (see persistent_plan): each
    task covers task_rows samples, each dot product is dot_length long; buffers follow W_hh in the kernel's
    argument order. Each launch takes a zeroed word for the atomic grid barrier from the pool (one fill) on
    the current stream: a later launch may get the same address, but only on that stream, in order after
    this one (the pool reuses memory per stream), and a captured graph re-zeroes its word at each replay."""
    blocks, units, nbytes, per_block = plan
    threads = _threads(persistent=True)
    ksplit = ksplit_for(ceil_div(B, task_rows) * units, dot_length, threads, PERSISTENT_MIN_KSPLIT)
    arrivals = backend.array_module(w[0]).zeros(1, np.uint32)
    launch(kernel, blocks, threads, T, B, H, units, ksplit, per_block, w[first], w[first + count - 1], *buffers,
           arrivals, shared_bytes=nbytes * per_block)


def _reversed(reverse, d):
    return (reverse + d) % 2


def forward_directions(mode, x, h0, c0, weights, host_lengths, reverse=0):
    """D = len(weights) directions of one layer over x (T, B, I); weights[d] = (w_ih, w_hh, b_ih, b_hh),
    h0 and c0 (D, B, H) or None; direction d runs in reverse when reverse + d is odd.
    Returns y (T, B, D*H) (direction d in columns d*H ..) and the stacked buffers of kernels/cpu/rnn.py,
    a dict: states, cells, gates, aux (leading axis D; cells and aux are dummies for cells without them)
    and the device-side lengths."""
    from ..gemm import matmul
    xp = backend.array_module(x)
    T, B, I = x.shape
    D = len(weights)
    H = weights[0][1].shape[1]
    cell = CELLS[mode]
    G = GATE_COUNT[cell]
    gates = xp.empty((D, T, B, G * H), xp.float32)
    for d, (w_ih, _, b_ih, b_hh) in enumerate(weights):
        matmul(x.reshape(T * B, I), w_ih, trans_b=True, bias=projection_bias(mode, b_ih, b_hh, H),
               out=gates[d].reshape(T * B, G * H))
    # Stand-ins for another cell's buffers (b_hn, cells, aux here; grad_c, grad_hidden in the backward) are
    # left empty: `cell` compiles their uses out of the kernels, so no fill is launched for them.
    b_hn = xp.zeros((D, H), xp.float32) if mode == "gru" else xp.empty((D, 1), xp.float32)
    if mode == "gru":  # device-side copies, safe inside a captured step
        for d, weight in enumerate(weights):
            if weight[3] is not None:
                b_hn[d] = weight[3][2 * H:]
    states = xp.empty((D, T + 1, B, H), xp.float32)
    cells = xp.empty((D, T + 1, B, H) if mode == "lstm" else (D, 1, 1, 1), xp.float32)
    for buffer, initial in ((states, h0), (cells, c0) if mode == "lstm" else (None, None)):
        if buffer is not None and initial is None:   # one fill zeroes both ends of every direction: the
            buffer[:, ::max(T, 1)] = 0                # recurrence starts from one and overwrites the other
        elif buffer is not None:
            for d in range(D):
                buffer[d, T if _reversed(reverse, d) else 0] = initial[d]
    aux = xp.empty((D, T, B, H) if mode == "gru" else (D, 1, 1, 1), xp.float32)
    y = xp.empty((T, B, D * H), xp.float32)
    # All samples full length: a device array kept from an earlier call (no host-to-device copy, so the
    # call stays asynchronous and can be captured in a CUDA graph).
    lengths = (constant(x, (B,), xp.int32, T) if host_lengths is None
               else xp.asarray(host_lengths, dtype=xp.int32))
    kernels = _kernels(cell)
    w = [weight[1].reshape(-1) for weight in weights]
    for first, count, plan in _launch_groups("forward", cell, B, H, D):
        if plan is not None:
            _launch_persistent(kernels["persistent_forward"], plan, FORWARD_ROWS, H, T, B, H, w, first, count,
                               *[_part(a, first, count) for a in (gates, b_hn, states, cells, aux)], y, first * H,
                               lengths, _reversed(reverse, first))
            continue
        d = first
        threads = _threads()
        w_t = xp.ascontiguousarray(weights[d][1].T).reshape(-1)
        units = min(STEP_UNITS, H)
        ksplit = ksplit_for(ceil_div(B, FORWARD_ROWS) * units, H, threads)
        y_d = y if D == 1 else xp.empty((T, B, H), xp.float32)
        views = [device_view(a) for a in (w_t, gates[d], b_hn[d], states[d], cells[d], aux[d], y_d, lengths)]
        for s in range(T):
            launch(kernels["step_forward"], ceil_div(H, units), threads, s, T, B, H, units, ksplit, *views,
                   _reversed(reverse, d))
        if D > 1:
            y[:, :, d * H:(d + 1) * H] = y_d
    return y, {"states": states, "cells": cells, "gates": gates, "aux": aux, "lengths": lengths}


def backward_directions(mode, x, weights, has_b_ih, has_b_hh, buffers, reverse, grad_y, grad_h_n, grad_c_n,
                        outs=None):
    """Gradients of forward_directions' layer: weights[d] = (w_ih, w_hh); grad_y (T, B, D*H), grad_h_n and
    grad_c_n (D, B, H), each or None. Returns (grad_x, grad_h0 (D, B, H), grad_c0 or None, per direction
    (grad_w_ih, grad_w_hh, grad_b_ih or None, grad_b_hh or None)). outs: per direction four arrays or None
    (checked by the caller) that the weight gradients are written into."""
    from ..gemm import matmul
    xp = backend.array_module(x)
    T, B, I = x.shape
    D = len(weights)
    H = weights[0][1].shape[1]
    cell = CELLS[mode]
    G = GATE_COUNT[cell]
    grad_y = xp.zeros((T, B, D * H), xp.float32) if grad_y is None else grad_y
    if mode == "lstm" and grad_h_n is None and grad_c_n is None:   # both zero: one fill
        grad_h, grad_c = xp.zeros((2, D, B, H), xp.float32)
    else:
        grad_h = xp.zeros((D, B, H), xp.float32) if grad_h_n is None else grad_h_n.copy()
        grad_c = ((xp.zeros((D, B, H), xp.float32) if grad_c_n is None else grad_c_n.copy()) if mode == "lstm"
                  else xp.empty((D, 1, 1), xp.float32))   # (a stand-in: see forward_directions)
    grad_gates = xp.empty((D, T, B, G * H), xp.float32)
    grad_hidden = xp.empty((D, T, B, G * H) if mode == "gru" else (D, 1, 1, 1), xp.float32)
    states, cells, gates, aux, lengths = (buffers[k] for k in ("states", "cells", "gates", "aux", "lengths"))
    kernels = _kernels(cell)
    w = [weight[1].reshape(-1) for weight in weights]
    for first, count, plan in _launch_groups("backward", cell, B, H, D):
        if plan is not None:
            _launch_persistent(kernels["persistent_backward"], plan, PHASE_B_ROWS, G * H, T, B, H, w, first, count,
                               *[_part(a, first, count) for a in (gates, states, cells, aux)], grad_y, first * H,
                               *[_part(a, first, count) for a in (grad_h, grad_c, grad_gates, grad_hidden)],
                               lengths, _reversed(reverse, first))
            continue
        d = first
        threads = _threads()
        units = min(STEP_UNITS, H)
        ksplit = ksplit_for(ceil_div(B, PHASE_B_ROWS) * units, G * H, threads)
        grad_y_d = grad_y if D == 1 else xp.ascontiguousarray(grad_y[:, :, d * H:(d + 1) * H])
        views = [device_view(a) for a in (w[d], gates[d], states[d], cells[d], aux[d], grad_y_d, grad_h[d],
                                          grad_c[d], grad_gates[d], grad_hidden[d], lengths)]
        for i in range(T + 1):  # launch i: phase B of step T-i, then phase A of step T-1-i
            step_a = T - 1 - i if i < T else -1
            step_b = T - i if i > 0 else -1
            launch(kernels["step_backward"], ceil_div(H, units), threads, step_a, step_b, T, B, H, units, ksplit,
                   *views, _reversed(reverse, d))
    x_flat = x.reshape(T * B, I)
    grad_x = None
    ones = constant(x, (1, T * B), xp.float32, 1)
    per_direction = []
    for d, (w_ih, _) in enumerate(weights):
        out_w_ih, out_w_hh, out_b_ih, out_b_hh = (None,) * 4 if outs is None else outs[d]
        flat = grad_gates[d].reshape(T * B, G * H)
        hidden_flat = grad_hidden[d].reshape(T * B, G * H) if mode == "gru" else flat
        if grad_x is None:
            grad_x = matmul(flat, w_ih)
        else:
            matmul(flat, w_ih, beta=1.0, out=grad_x)
        grad_w_ih = matmul(flat, x_flat, trans_a=True, out=out_w_ih)
        prev = states[d][prev_state_slice(T, _reversed(reverse, d))].reshape(T * B, H)
        grad_w_hh = matmul(hidden_flat, prev, trans_a=True, out=out_w_hh)
        grad_b_ih = _column_sums(matmul, ones, flat, out_b_ih) if has_b_ih[d] else None
        grad_b_hh = None
        if has_b_hh[d]:
            if grad_b_ih is not None and mode != "gru":   # (the same sums: copied)
                grad_b_hh = grad_b_ih.copy() if out_b_hh is None else _copied_into(out_b_hh, grad_b_ih)
            else:
                grad_b_hh = _column_sums(matmul, ones, hidden_flat, out_b_hh)
        per_direction.append((grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh))
    return grad_x.reshape(T, B, I), grad_h, (grad_c if mode == "lstm" else None), per_direction


def _column_sums(matmul, ones, matrix, out):
    """ones (1, rows) @ matrix (rows, n) as an (n,) vector: `out` itself when given."""
    if out is None:
        return matmul(ones, matrix).reshape(matrix.shape[1])
    matmul(ones, matrix, out=out.reshape(1, -1))
    return out


def _copied_into(out, values):
    out[...] = values
    return out


def forward(mode, x, h0, c0, w_ih, w_hh, b_ih, b_hh, host_lengths, reverse):
    """One direction: (y, states, cells, gates, aux, extra) with the buffers of kernels/cpu/rnn.py (views of
    forward_directions' stacked ones, which `extra` keeps for the backward); aux is GRU-only here."""
    y, buffers = forward_directions(mode, x, None if h0 is None else h0[None], None if c0 is None else c0[None],
                                    [(w_ih, w_hh, b_ih, b_hh)], host_lengths, int(reverse))
    cells = buffers["cells"][0] if mode == "lstm" else None
    aux = buffers["aux"][0] if mode == "gru" else None
    return y, buffers["states"][0], cells, buffers["gates"][0], aux, buffers


def backward(saved, grad_y, grad_h_n, grad_c_n, outs=None):
    """(grad_x, grad_h0, grad_c0 or None, grad_w_ih, grad_w_hh, grad_b_ih or None, grad_b_hh or None); outs: the
    four weight gradients' arrays or None."""
    grad_x, grad_h, grad_c, per_direction = backward_directions(
        saved.mode, saved.x, [(saved.w_ih, saved.w_hh)], (saved.has_b_ih,), (saved.has_b_hh,), saved.extra,
        int(saved.reverse), grad_y, None if grad_h_n is None else grad_h_n[None],
        None if grad_c_n is None else grad_c_n[None], None if outs is None else [outs])
    return (grad_x, grad_h[0], None if grad_c is None else grad_c[0]) + per_direction[0]


def _signatures():
    vector, matrix, tensor = float32[::1], float32[:, ::1], float32[:, :, ::1]
    lengths = int32[::1]
    found = []
    for mode, cell in CELLS.items():
        kernels = kernels_for(cell)
        found += [
            (f"{mode}_step_forward", kernels["step_forward"],
             (int64,) * 6 + (vector, tensor, vector, tensor, tensor, tensor, tensor, lengths, int64)),
            (f"{mode}_step_backward", kernels["step_backward"],
             (int64,) * 7 + (vector,) + (tensor,) * 5 + (matrix, matrix, tensor, tensor, lengths, int64)),
        ]
        for barrier in GRID_BARRIERS:   # the default kind's names unsuffixed
            suffix = "" if barrier == "atomic" else f"_{barrier}_barrier"
            persistent = persistent_kernels_for(cell, barrier)
            found += [(f"{mode}_persistent_{kind}{suffix}", persistent[f"persistent_{kind}"],
                       persistent_signature(kind)) for kind in ("forward", "backward")]
    return found


PTX_SIGNATURES = _signatures()
