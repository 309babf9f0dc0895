"""Recurrent layers: kernels.lstm / kernels.gru (forward, and forward + backward through time) against
torch.nn.LSTM / GRU with the same weights: cuDNN on the GPU (TF32 off), PyTorch's CPU kernels on the CPU.

GPU shapes: the five LSTM anchors of ANCHORS.md (T, B, input, hidden), DeepBench's (hidden, batch, T)
512/16/25, 1024/64/25, 256/64/150 (input = hidden), and the GRU rows of ANCHORS.md. CPU shapes: the
models' layers (row-wise digits T8 B64 I8 H128; T26 B16 I512 H256 as an LSTM and a GRU; a T25 B16 H128
LSTM) and the default CRNN's first bidirectional layer (T45 B32 I64 H64). flops = the layer's GEMM
flops: 2 T B G H (I + H) forward, three times that for forward + backward (the gradients of the inputs,
the states and the weights).
NUMBANET_RNN_PATH=step (or persistent) forces our recurrence kernels, to compare the two on the GPU.
Bidirectional LSTM layers (the default CRNN's two, T45 B32 H64, and the paper CRNN's first, T26 B16 I512
H256) against torch.nn.LSTM(bidirectional=True): on the GPU twice, both directions in one persistent
launch ("one launch") and one launch a direction ("separate", the form before), in the same run; and the
default CRNN's first layer and the first LSTM anchor again with the device runtime's grid barrier
("runtime barrier": the only kind before 2026-11-27) instead of the default atomic one
(kernels/cuda/rnn_persistent.py). (Fewer, larger persistent blocks, NUMBANET_RNN_UNITS, were slower:
benchmarks/RESULTS.md, 2026-11-27.)
"""
import contextlib

import numpy as np

import kernels
from .harness import Case, vendor_torch

MEASURE_HOST_COST = True
GATES = {"lstm": 4, "gru": 3}

# (cell, T, B, input, hidden)
LSTM_ANCHORS = [(100, 64, 512, 512), (50, 32, 256, 256), (100, 1, 256, 256), (100, 16, 512, 512),
                (25, 128, 1024, 1024)]
DEEPBENCH = [(25, 16, 512, 512), (25, 64, 1024, 1024), (150, 64, 256, 256)]
GRU_ROWS = [(25, 16, 512, 512), (25, 64, 1024, 1024), (150, 64, 256, 256), (25, 128, 512, 512),
            (50, 8, 1536, 1536)]
CPU_SHAPES = [("lstm", 8, 64, 8, 128), ("lstm", 26, 16, 512, 256), ("lstm", 25, 16, 128, 128),
              ("gru", 26, 16, 512, 256)]
# (T, B, input, hidden) of bidirectional LSTM layers
BIDIRECTIONAL = [(45, 32, 64, 64), (45, 32, 128, 64), (26, 16, 512, 256)]


def _uniform_maker(xp, seed):
    """uniform(shape, bound=1): float32 values in [-bound, bound) on xp's device, drawn from `seed`."""
    rng = np.random.default_rng(seed)
    return lambda shape, bound=1.0: xp.asarray(rng.uniform(-bound, bound, size=shape).astype(np.float32))


def _torch_step(torch, backward):
    """The vendor side: torch's recurrent module on the last four inputs (module, x, state, grad_y). A forward
    row's module is in eval mode (the cases make it so): under no_grad alone cuDNN would still run its training
    forward (writing the reserve space), where ours runs inference (dropout is 0 either way)."""
    def vendor(*inputs):
        module, x_t, state, grad_y_t = inputs[-4:]
        if not backward:
            with torch.no_grad():
                return module(x_t, state)
        y, _ = module(x_t, state)
        y.backward(grad_y_t)
        return y
    return vendor


@contextlib.contextmanager
def forced(**switches):
    """kernels/cuda/rnn.py's switches (e.g. force_directions='separate', grid_barrier='runtime') set for the
    duration; a switch given as None stays as configured (NUMBANET_*)."""
    switches = {name: value for name, value in switches.items() if value is not None}
    if not switches:
        yield
        return
    from kernels.cuda import rnn as gpu
    saved = {name: getattr(gpu, name) for name in switches}
    for name, value in switches.items():
        setattr(gpu, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(gpu, name, value)


def _barrier_label(device, barrier):
    """' <kind> barrier' for a row that forces a grid barrier, or that runs under a NUMBANET_GRID_BARRIER
    other than the default (so that rows compared as 'ours against the runtime barrier' say what they ran)."""
    if device != "cuda":
        return ""
    if barrier is None:
        from kernels.cuda import rnn as gpu
        barrier = None if gpu.grid_barrier == "atomic" else gpu.grid_barrier
    return f" {barrier} barrier" if barrier else ""


def _case(device, cell, T, B, I, H, backward, barrier=None):
    G = GATES[cell]
    torch = vendor_torch()

    def make(xp, seed):
        uniform = _uniform_maker(xp, seed)
        scale = 1.0 / np.sqrt(H)
        x, h0, c0 = uniform((T, B, I)), uniform((B, H)), uniform((B, H))
        weights = [uniform((G * H, I), scale), uniform((G * H, H), scale), uniform((G * H,), scale),
                   uniform((G * H,), scale)]
        grad_y = uniform((T, B, H))
        module = (torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(I, H).to(device).train(backward)

        def tensor(array):
            return torch.as_tensor(array, device=device) if device == "cuda" else torch.from_numpy(array)

        with torch.no_grad():
            for parameter, array in zip((module.weight_ih_l0, module.weight_hh_l0, module.bias_ih_l0,
                                         module.bias_hh_l0), weights):
                parameter.copy_(tensor(array))
        x_t = tensor(x).clone().requires_grad_(backward)
        state = (tensor(h0)[None], tensor(c0)[None]) if cell == "lstm" else tensor(h0)[None]
        return (x, h0, c0, *weights, grad_y, module, x_t, state, tensor(grad_y))

    def layer(x, h0, c0, w_ih, w_hh, b_ih, b_hh, grad_y):
        if cell == "lstm":
            result = kernels.lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh, training=backward)
            return kernels.lstm_backward(result[-1], grad_y) if backward else result
        result = kernels.gru(x, h0, w_ih, w_hh, b_ih, b_hh, training=backward)
        return kernels.gru_backward(result[-1], grad_y) if backward else result

    def ours(*inputs):
        with forced(grid_barrier=barrier):
            return layer(*inputs[:8])

    vendor = _torch_step(torch, backward)

    flops = 2.0 * T * B * G * H * (I + H) * (3 if backward else 1)
    where = "cuDNN" if device == "cuda" else "CPU"
    label = f"{cell} T{T} B{B} I{I} H{H}{_barrier_label(device, barrier)} {'fwd+bwd' if backward else 'fwd'}"
    return Case(label=label, make_inputs=make, ours=ours, vendor=vendor,
                vendor_name=f"torch.nn.{cell.upper()} ({where})", flops=flops)


def _bidirectional_case(device, T, B, I, H, backward, directions=None, barrier=None):
    """Both directions of one LSTM layer; `directions` 'combined' or 'separate' forces our GPU form, `barrier`
    the persistent kernels' grid barrier (kernels/cuda/rnn.py grid_barrier)."""
    torch = vendor_torch()

    def make(xp, seed):
        uniform = _uniform_maker(xp, seed)
        scale = 1.0 / np.sqrt(H)
        x, h0, c0, grad_y = uniform((T, B, I)), uniform((2, B, H)), uniform((2, B, H)), uniform((T, B, 2 * H))
        weights = [(uniform((4 * H, I), scale), uniform((4 * H, H), scale), uniform((4 * H,), scale),
                    uniform((4 * H,), scale)) for _ in range(2)]
        module = torch.nn.LSTM(I, H, bidirectional=True).to(device).train(backward)

        def tensor(array):
            return torch.as_tensor(array, device=device) if device == "cuda" else torch.from_numpy(array)

        with torch.no_grad():
            for weight, suffix in zip(weights, ("_l0", "_l0_reverse")):
                for name, array in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), weight):
                    getattr(module, name + suffix).copy_(tensor(array))
        x_t = tensor(x).clone().requires_grad_(backward)
        return (x, h0, c0, weights, grad_y, module, x_t, (tensor(h0), tensor(c0)), tensor(grad_y))

    def layer(x, h0, c0, weights, grad_y):
        result = kernels.lstm_bidirectional(x, h0, c0, weights, training=backward)
        return kernels.lstm_bidirectional_backward(result[-1], grad_y) if backward else result

    def ours(x, h0, c0, weights, grad_y, *vendor_inputs):
        with forced(force_directions=directions, grid_barrier=barrier):
            return layer(x, h0, c0, weights, grad_y)

    vendor = _torch_step(torch, backward)

    flops = 2 * 2.0 * T * B * 4 * H * (I + H) * (3 if backward else 1)
    form = {"combined": " one launch", "separate": " separate"}.get(directions, "") + _barrier_label(device, barrier)
    label = f"bilstm T{T} B{B} I{I} H{H}{form} {'fwd+bwd' if backward else 'fwd'}"
    where = "cuDNN" if device == "cuda" else "CPU"
    return Case(label=label, make_inputs=make, ours=ours, vendor=vendor,
                vendor_name=f"torch.nn.LSTM bidirectional ({where})", flops=flops)


def cases(device, quick=False):
    if device == "cuda":
        shapes = [("lstm",) + s for s in LSTM_ANCHORS + DEEPBENCH] + [("gru",) + s for s in GRU_ROWS]
        if quick:
            shapes = [("lstm",) + LSTM_ANCHORS[0], ("lstm",) + LSTM_ANCHORS[2], ("gru",) + GRU_ROWS[0]]
    else:
        shapes = CPU_SHAPES[:3] if quick else CPU_SHAPES
    found = [_case(device, *shape, backward) for shape in shapes for backward in (False, True)]
    if device != "cuda":
        return found + [_bidirectional_case(device, *BIDIRECTIONAL[0], backward) for backward in (False, True)]
    # first: the rows a capped GPU run must not lose (the CRNN's layers, both forms; then the default CRNN's
    # first layer and the first anchor with the device runtime's grid barrier, against the rows with ours)
    bidirectional = BIDIRECTIONAL[:1] if quick else BIDIRECTIONAL
    first = [_bidirectional_case(device, *shape, backward, directions) for shape in bidirectional
             for backward in (False, True) for directions in ("combined", "separate")]
    first += [_bidirectional_case(device, *BIDIRECTIONAL[0], backward, "combined", "runtime")
              for backward in (False, True)]
    first += [_case(device, "lstm", *LSTM_ANCHORS[0], backward, "runtime") for backward in (False, True)]
    return first + found
