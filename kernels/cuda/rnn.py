"""Recurrent layers on the GPU (fp32): orchestration of kernels/cuda/rnn_kernels.py around GEMMs.

Forward: (1) the input projection of all T steps as one kernels.matmul with the foldable biases as
its epilogue; (2) the recurrence: a persistent cooperative kernel (one launch for the sequence, the
block's W_hh slice in shared memory, a grid barrier a step) when the weights fit on chip, else one
fused step kernel a step (STEP_UNITS units a block). Backward: the same choice (one launch a step:
phase B of step s+1 and phase A of step s), then the weight, input and bias gradients as GEMMs over
all steps at once. Buffers are those of kernels/cpu/rnn.py.
"""
import os
import warnings

import numba
from numba import cuda, float32, int32, int64

from .. import backend
from ..cpu.rnn import prev_state_slice, projection_bias
from .launch import ceil_div, device_view, launch
from .rnn_kernels import (CELLS, FORWARD_ROWS, GATE_COUNT, PERSISTENT_THREADS, PHASE_B_ROWS, REDUCE_SLOTS, THREADS,
                          kernels_for, weight_stride)

STEP_UNITS = 32     # units a block in the step kernels: a warp of consecutive units reads W_hh^T coalesced
SHARED_DEFAULT = 48 * 1024   # dynamic shared memory a block may use without opting in
# The persistent kernels give each dot product at least this many neighbouring lanes (consecutive k):
# a warp then reads one or two rows of h instead of eight, even when the batch fills the block.
PERSISTENT_MIN_KSPLIT = 8
# 'persistent' or 'step' forces a path (tests; NUMBANET_RNN_PATH for benchmarks); None chooses.
force_path = os.environ.get("NUMBANET_RNN_PATH") or None


def _threads(persistent=False):
    # The simulator runs one OS thread per CUDA thread: a warp is plenty for its tiny shapes.
    if backend.SIMULATOR:
        return 32
    return PERSISTENT_THREADS if persistent else THREADS


def ksplit_for(pairs, length, threads, minimum=1):
    """How many threads share one dot product: the largest power of two s <= length with s * pairs <=
    threads, or at least `minimum` (then the pairs take several rounds)."""
    split = 1
    while split * 2 <= length and (split * 2 * pairs <= threads or split * 2 <= minimum):
        split *= 2
    return split


_compiled_cache = {}


def _compiled(kernel, args):
    """The kernel compiled for the types `launch` will pass (for occupancy queries and attributes)."""
    if backend.SIMULATOR:
        return kernel.overloads[None]
    signature = tuple(numba.typeof(device_view(a)) for a in args)
    key = (id(kernel), signature)
    if key not in _compiled_cache:
        _compiled_cache[key] = kernel.compile(signature)
    return _compiled_cache[key]


def _shared_limit():
    """Dynamic shared memory a block can opt in to (minus our static reduction buffer)."""
    if backend.SIMULATOR:
        return 1 << 30
    try:
        limit = cuda.get_current_device().MAX_SHARED_MEMORY_PER_BLOCK_OPTIN
    except Exception:  # attribute missing in this driver binding: stay within the default
        limit = SHARED_DEFAULT
    return limit - REDUCE_SLOTS * 4


def _allow_shared(compiled, nbytes):
    """Opt the kernel in to `nbytes` of dynamic shared memory (needed above 48 KiB); False if refused."""
    if backend.SIMULATOR or nbytes + REDUCE_SLOTS * 4 <= SHARED_DEFAULT:
        return True
    try:
        from numba.cuda.cudadrv.driver import binding, driver
        cufunc = compiled._codelibrary.get_cufunc()
        attribute = binding.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
        driver.cuKernelSetAttribute(attribute, nbytes, cufunc.handle, cufunc.device.id)
        return True
    except Exception:
        return False


def persistent_shared_bytes(kind, G, H, units):
    if kind == "forward":
        return 4 * G * units * weight_stride(H)
    return 4 * units * weight_stride(G * H)


_plans = {}


def persistent_plan(kind, cell, B, H, args):
    """(blocks, units, shared bytes) for the persistent kernel, or None when its weights do not fit."""
    key = (kind, cell, B, H)
    if key in _plans:
        return _plans[key]
    G = GATE_COUNT[cell]
    kernel = kernels_for(cell)[f"persistent_{kind}"]
    compiled = _compiled(kernel, args)
    threads = _threads(persistent=True)
    plan = None
    if backend.SIMULATOR:  # one block owning every unit: the simulator's form of the kernel
        plan = (1, H, persistent_shared_bytes(kind, G, H, H))
    else:
        limit = _shared_limit()
        units = ceil_div(H, cuda.get_current_device().MULTIPROCESSOR_COUNT)
        while units <= H:
            nbytes = persistent_shared_bytes(kind, G, H, units)
            if nbytes > limit or not _allow_shared(compiled, nbytes):
                break
            blocks = ceil_div(H, units)
            if blocks <= compiled.max_cooperative_grid_blocks(threads, nbytes):
                plan = (blocks, units, nbytes)
                break
            units += 1
    _plans[key] = plan
    return plan


def _use_persistent(kind, cell, B, H, args):
    if force_path == "step":
        return None
    try:
        plan = persistent_plan(kind, cell, B, H, args)
    except Exception as error:  # an occupancy query or attribute the driver refuses: keep working
        if force_path == "persistent":
            raise
        warnings.warn(f"rnn: persistent {kind} kernel unavailable ({error}); using the per-step kernels")
        plan = _plans[(kind, cell, B, H)] = None
    if plan is None and force_path == "persistent":
        raise RuntimeError(f"rnn: the persistent {kind} kernel does not fit for H={H}")
    return plan


def forward(mode, x, h0, c0, w_ih, w_hh, b_ih, b_hh, host_lengths, reverse):
    """(y, states, cells, gates, aux, extra) with the buffers of kernels/cpu/rnn.py; aux is GRU-only here."""
    from ..gemm import matmul
    xp = backend.array_module(x)
    T, B, I = x.shape
    H = w_hh.shape[1]
    cell = CELLS[mode]
    G = GATE_COUNT[cell]
    bias = projection_bias(mode, b_ih, b_hh, H)
    gates = matmul(x.reshape(T * B, I), w_ih, trans_b=True, bias=bias).reshape(T, B, G * H)
    dummy = xp.zeros((1, 1, 1), xp.float32)
    b_hn = xp.zeros(1, xp.float32)
    if mode == "gru":
        b_hn = xp.zeros(H, xp.float32) if b_hh is None else xp.ascontiguousarray(b_hh[2 * H:])
    start = T if reverse else 0
    states = xp.empty((T + 1, B, H), xp.float32)
    states[start] = 0 if h0 is None else h0
    cells = dummy
    if mode == "lstm":
        cells = xp.empty((T + 1, B, H), xp.float32)
        cells[start] = 0 if c0 is None else c0
    aux = xp.empty((T, B, H), xp.float32) if mode == "gru" else dummy
    y = xp.empty((T, B, H), xp.float32)
    # All samples full length: fill on the device (no host-to-device copy, so the call stays asynchronous
    # and can be captured in a CUDA graph).
    lengths = xp.full(B, T, xp.int32) if host_lengths is None else xp.asarray(host_lengths, dtype=xp.int32)
    flag = int(reverse)
    kernels = kernels_for(cell)
    threads = _threads()
    w_flat = w_hh.reshape(-1)
    args = (T, B, H, 1, 1, w_flat, gates, b_hn, states, cells, aux, y, lengths, flag)
    plan = _use_persistent("forward", cell, B, H, args)
    if plan is not None:
        blocks, units, nbytes = plan
        threads = _threads(persistent=True)
        ksplit = ksplit_for(ceil_div(B, FORWARD_ROWS) * units, H, threads, PERSISTENT_MIN_KSPLIT)
        launch(kernels["persistent_forward"], blocks, threads, T, B, H, units, ksplit, *args[5:],
               shared_bytes=nbytes)
    else:
        w_t = xp.ascontiguousarray(w_hh.T).reshape(-1)
        units = min(STEP_UNITS, H)
        ksplit = ksplit_for(ceil_div(B, FORWARD_ROWS) * units, H, threads)
        step_args = [device_view(a) for a in (w_t, gates, b_hn, states, cells, aux, y, lengths)]
        for s in range(T):
            launch(kernels["step_forward"], ceil_div(H, units), threads, s, T, B, H, units, ksplit, *step_args, flag)
    return y, states, (cells if mode == "lstm" else None), gates, (aux if mode == "gru" else None), {"lengths": lengths}


def backward(saved, grad_y, grad_h_n, grad_c_n):
    """(grad_x, grad_h0, grad_c0 or None, grad_w_ih, grad_w_hh, grad_b_ih or None, grad_b_hh or None)."""
    from ..gemm import matmul
    x, w_ih, w_hh = saved.x, saved.w_ih, saved.w_hh
    xp = backend.array_module(x)
    T, B, I = x.shape
    H = w_hh.shape[1]
    cell = CELLS[saved.mode]
    G = GATE_COUNT[cell]
    dummy3 = xp.zeros((1, 1, 1), xp.float32)
    grad_y = xp.zeros((T, B, H), xp.float32) if grad_y is None else grad_y
    grad_h = xp.zeros((B, H), xp.float32) if grad_h_n is None else grad_h_n.copy()
    grad_c = xp.zeros((1, 1), xp.float32)
    if saved.mode == "lstm":
        grad_c = xp.zeros((B, H), xp.float32) if grad_c_n is None else grad_c_n.copy()
    grad_gates = xp.empty((T, B, G * H), xp.float32)
    grad_hidden = xp.empty((T, B, G * H), xp.float32) if saved.mode == "gru" else xp.zeros((1, 1, 1), xp.float32)
    cells = dummy3 if saved.cells is None else saved.cells
    aux = dummy3 if saved.aux is None else saved.aux
    flag = int(saved.reverse)
    kernels = kernels_for(cell)
    threads = _threads()
    buffers = (saved.gates, saved.states, cells, aux, grad_y, grad_h, grad_c, grad_gates, grad_hidden,
               saved.extra["lengths"])
    w_flat = w_hh.reshape(-1)
    args = (T, B, H, 1, 1, w_flat) + buffers + (flag,)
    plan = _use_persistent("backward", cell, B, H, args)
    if plan is not None:
        blocks, units, nbytes = plan
        threads = _threads(persistent=True)
        ksplit = ksplit_for(ceil_div(B, PHASE_B_ROWS) * units, G * H, threads, PERSISTENT_MIN_KSPLIT)
        launch(kernels["persistent_backward"], blocks, threads, T, B, H, units, ksplit, *args[5:],
               shared_bytes=nbytes)
    else:
        units = min(STEP_UNITS, H)
        ksplit = ksplit_for(ceil_div(B, PHASE_B_ROWS) * units, G * H, threads)
        views = [device_view(a) for a in (w_flat,) + buffers]
        for i in range(T + 1):  # launch i: phase B of step T-i, then phase A of step T-1-i
            step_a = T - 1 - i if i < T else -1
            step_b = T - i if i > 0 else -1
            launch(kernels["step_backward"], ceil_div(H, units), threads, step_a, step_b, T, B, H, units, ksplit,
                   *views, flag)
    flat = grad_gates.reshape(T * B, G * H)
    hidden_flat = grad_hidden.reshape(T * B, G * H) if saved.mode == "gru" else flat
    grad_x = matmul(flat, w_ih).reshape(T, B, I)
    grad_w_ih = matmul(flat, x.reshape(T * B, I), trans_a=True)
    prev = saved.states[prev_state_slice(T, saved.reverse)].reshape(T * B, H)
    grad_w_hh = matmul(hidden_flat, prev, trans_a=True)
    ones = xp.ones((1, T * B), xp.float32)
    grad_b_ih = matmul(ones, flat).reshape(G * H) if saved.has_b_ih else None
    grad_b_hh = None
    if saved.has_b_hh:
        if grad_b_ih is not None and saved.mode != "gru":
            grad_b_hh = grad_b_ih.copy()
        else:
            grad_b_hh = matmul(ones, hidden_flat).reshape(G * H)
    return grad_x, grad_h, (grad_c if saved.mode == "lstm" else None), grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh


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
            (f"{mode}_persistent_forward", kernels["persistent_forward"],
             (int64,) * 5 + (vector, tensor, vector, tensor, tensor, tensor, tensor, lengths, int64)),
            (f"{mode}_persistent_backward", kernels["persistent_backward"],
             (int64,) * 5 + (vector,) + (tensor,) * 5 + (matrix, matrix, tensor, tensor, lengths, int64)),
        ]
    return found


PTX_SIGNATURES = _signatures()
