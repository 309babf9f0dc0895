"""Public recurrent layers (one layer, one direction): LSTM, GRU and vanilla RNN with their backward
through time. Validate, then run where the inputs live (kernels/cpu/rnn.py or kernels/cuda/rnn.py).

Time-major x (T, B, I), states (B, H), PyTorch's weight layout and gate order, so PyTorch weights
load unchanged. `lengths` (B,) gives each sample's length (PyTorch packed-sequence semantics: steps
past it keep the state and output zeros); `reverse=True` runs each sample from its last valid step
back to t = 0, without copying x. The *_bidirectional ops run both directions of one layer at once
(on the GPU in one persistent launch when they fit together): output (T, B, 2H) = [forward | reverse],
states (2, B, H), like one layer of torch.nn.LSTM(bidirectional=True).
"""
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from . import backend
from ._checks import check_ndim, check_out, check_shape, contiguous, float_dtype
from .cpu import rnn as cpu

__all__ = ["lstm", "lstm_backward", "gru", "gru_backward", "rnn", "rnn_backward", "RecurrentSaved",
           "lstm_bidirectional", "lstm_bidirectional_backward", "gru_bidirectional", "gru_bidirectional_backward",
           "rnn_bidirectional", "rnn_bidirectional_backward", "BidirectionalSaved"]


@dataclass
class RecurrentSaved:
    """What a training forward keeps for the backward: inputs, weights, options and the step buffers.

    states/cells (T+1, B, H), gates (T, B, G*H), aux (T, B, H): see kernels/cpu/rnn.py.
    """
    mode: str                      # 'lstm', 'gru', 'rnn_tanh' or 'rnn_relu'
    device: str
    x: Any
    w_ih: Any
    w_hh: Any
    has_b_ih: bool
    has_b_hh: bool
    lengths: Optional[np.ndarray]  # host int64 copy, or None when every sample is T long
    reverse: bool
    states: Any
    cells: Any
    gates: Any
    aux: Any
    extra: Any = None              # device-side helpers of the CUDA path (lengths on the GPU, ...)


def _check_lengths(op, lengths, device, T, B):
    if lengths is None:
        return None
    if backend.is_gpu_array(lengths):
        if device != "cuda":
            raise ValueError(f"{op}: lengths is a CuPy (GPU) array but the inputs are NumPy arrays")
        host = lengths.get()
    elif isinstance(lengths, np.ndarray):
        host = lengths
    else:
        host = np.asarray(lengths)
    if not np.issubdtype(host.dtype, np.integer):
        raise TypeError(f"{op}: lengths must hold integers, got dtype {host.dtype}")
    if host.shape != (B,):
        raise ValueError(f"{op}: lengths must have shape ({B},) (one per sample), got {tuple(host.shape)}")
    if host.min() < 1 or host.max() > T:
        raise ValueError(f"{op}: lengths must lie in [1, {T}] (T = {T}), got values from {host.min()} to {host.max()}")
    host = host.astype(np.int64)
    return None if (host == T).all() else host


def _validate(op, mode, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths):
    device = backend.device_of(op, x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    dtype = float_dtype(op, device, x=x, h0=h0, c0=c0, w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh)
    check_ndim(op, "x", x, 3)
    check_ndim(op, "w_ih", w_ih, 2)
    check_ndim(op, "w_hh", w_hh, 2)
    T, B, I = x.shape
    if T < 1 or B < 1:
        raise ValueError(f"{op}: x (T, B, I) needs at least one step and one sample, got shape {tuple(x.shape)}")
    G = cpu.GATES[mode]
    H = w_hh.shape[1]
    if H < 1 or w_hh.shape[0] != G * H:
        raise ValueError(f"{op}: w_hh must have shape ({G}*H, H), got {tuple(w_hh.shape)}")
    check_shape(op, "w_ih", w_ih, (G * H, I))
    for name, bias in (("b_ih", b_ih), ("b_hh", b_hh)):
        if bias is not None:
            check_shape(op, name, bias, (G * H,))
    for name, state in (("h0", h0), ("c0", c0)):
        if state is not None:
            check_shape(op, name, state, (B, H))
    return device, dtype, _check_lengths(op, lengths, device, T, B)


def _forward(op, mode, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, reverse, training):
    device, _, host_lengths = _validate(op, mode, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths)
    reverse = bool(reverse)
    if device == "cpu":
        y, states, cells, gates, aux = cpu.forward(mode, x, h0, c0, w_ih, w_hh, b_ih, b_hh,
                                                        host_lengths, reverse)
        extra = None
    else:
        from .cuda import rnn as gpu
        arrays = [None if a is None else contiguous(a) for a in (x, h0, c0, w_ih, w_hh, b_ih, b_hh)]
        y, states, cells, gates, aux, extra = gpu.forward(mode, *arrays, host_lengths, reverse)
        x, w_ih, w_hh = arrays[0], arrays[3], arrays[4]
    index = cpu.final_index(x.shape[0], reverse)
    h_n = states[index]
    c_n = None if cells is None else cells[index]
    outputs = (y, h_n, c_n) if mode == "lstm" else (y, h_n)
    if not training:
        return outputs
    saved = RecurrentSaved(mode, device, x, w_ih, w_hh, b_ih is not None, b_hh is not None, host_lengths,
                           reverse, states, cells, gates, aux, extra)
    return outputs + (saved,)


def _backward(op, mode, saved, grad_y, grad_h_n, grad_c_n, weight_grad_outs=None):
    if not isinstance(saved, RecurrentSaved) or saved.mode != mode:
        got = saved.mode if isinstance(saved, RecurrentSaved) else type(saved).__name__
        raise TypeError(f"{op}: saved must come from the matching forward with training=True ({mode}), got {got}")
    device = backend.device_of(op, saved.x, grad_y, grad_h_n, grad_c_n)
    if device != saved.device:
        raise ValueError(f"{op}: gradients live on {device} but the forward ran on {saved.device}")
    float_dtype(op, device, x=saved.x, grad_y=grad_y, grad_h_n=grad_h_n, grad_c_n=grad_c_n)
    T, B, _ = saved.x.shape
    H = saved.w_hh.shape[1]
    if grad_y is not None:
        check_shape(op, "grad_y", grad_y, (T, B, H))
    for name, grad in (("grad_h_n", grad_h_n), ("grad_c_n", grad_c_n)):
        if grad is not None:
            check_shape(op, name, grad, (B, H))
    (outs,) = _weight_grad_outs(op, None if weight_grad_outs is None else (weight_grad_outs,),
                                [(saved.w_ih, saved.w_hh, saved.has_b_ih, saved.has_b_hh)], saved.x)
    if device == "cpu":
        grads = cpu.backward(mode, saved.x, saved.w_ih, saved.w_hh, saved.has_b_ih, saved.has_b_hh,
                             saved.lengths, saved.reverse, saved.states, saved.cells, saved.gates,
                             saved.aux, grad_y, grad_h_n, grad_c_n)
        grads = grads[:3] + _into(outs, grads[3:])
    else:
        from .cuda import rnn as gpu
        grads = gpu.backward(saved, *[None if g is None else contiguous(g) for g in (grad_y, grad_h_n, grad_c_n)],
                             outs)
    grad_x, grad_h0, grad_c0, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh = grads
    if mode == "lstm":
        return grad_x, grad_h0, grad_c0, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh
    return grad_x, grad_h0, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh


def _weight_grad_outs(op, outs, directions, like):
    """Checked `weight_grad_outs`: per direction (w_ih, w_hh, b_ih, b_hh) arrays (or None) that receive those
    gradients; None or a tuple of None for none. directions: per direction (w_ih, w_hh, has_b_ih, has_b_hh)."""
    if outs is None:
        return [(None,) * 4 for _ in directions]
    if not isinstance(outs, (tuple, list)) or len(outs) != len(directions) or \
            any(not isinstance(o, (tuple, list)) or len(o) != 4 for o in outs):
        raise TypeError(f"{op}: weight_grad_outs must be {len(directions)} (w_ih, w_hh, b_ih, b_hh) tuple(s) of "
                        f"arrays or None, got {outs!r}")
    for d, ((w_ih, w_hh, has_b_ih, has_b_hh), direction_outs) in enumerate(zip(directions, outs)):
        shapes = (w_ih.shape, w_hh.shape, (w_ih.shape[0],) if has_b_ih else None,
                  (w_ih.shape[0],) if has_b_hh else None)
        for name, out, shape in zip(("w_ih", "w_hh", "b_ih", "b_hh"), direction_outs, shapes):
            if out is None:
                continue
            if shape is None:
                raise ValueError(f"{op}: an out for grad_{name} was given, but the layer has no {name}")
            check_out(op, out, shape, w_ih.dtype, like, f"weight_grad_outs[{d}] ({name})")
    return [tuple(o) for o in outs]


def _into(outs, grads):
    """The gradients, each copied into its out where one is given (the CPU path)."""
    filled = []
    for out, grad in zip(outs, grads):
        if out is not None and grad is not None:
            out[...] = grad
            grad = out
        filled.append(grad)
    return tuple(filled)


def lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths=None, reverse=False, training=False):
    """One LSTM layer, gates i, f, g, o: returns (y (T, B, H), h_n, c_n) [+ saved when training]."""
    return _forward("lstm", "lstm", x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, reverse, training)


def lstm_backward(saved, grad_y, grad_h_n=None, grad_c_n=None, *, weight_grad_outs=None):
    """(grad_x, grad_h0, grad_c0, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh); bias entries None without biases.
    weight_grad_outs: (w_ih, w_hh, b_ih, b_hh) arrays or None that receive those four gradients and are returned
    (on the GPU the GEMMs write them: nn puts them straight into a flat optimizer's gradient buffer)."""
    return _backward("lstm_backward", "lstm", saved, grad_y, grad_h_n, grad_c_n, weight_grad_outs)


def gru(x, h0, w_ih, w_hh, b_ih, b_hh, lengths=None, reverse=False, training=False):
    """One GRU layer, gates r, z, n with n = tanh(W_in x + b_in + r (W_hn h + b_hn)), h' = (1-z) n + z h."""
    return _forward("gru", "gru", x, h0, None, w_ih, w_hh, b_ih, b_hh, lengths, reverse, training)


def gru_backward(saved, grad_y, grad_h_n=None, *, weight_grad_outs=None):
    """(grad_x, grad_h0, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh); weight_grad_outs as lstm_backward's."""
    return _backward("gru_backward", "gru", saved, grad_y, grad_h_n, None, weight_grad_outs)


def rnn(x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity="tanh", lengths=None, reverse=False, training=False):
    """One Elman RNN layer, h' = act(W_ih x + b_ih + W_hh h + b_hh) with act tanh or relu."""
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"rnn: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    return _forward("rnn", f"rnn_{nonlinearity}", x, h0, None, w_ih, w_hh, b_ih, b_hh, lengths, reverse, training)


def rnn_backward(saved, grad_y, grad_h_n=None, *, weight_grad_outs=None):
    """(grad_x, grad_h0, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh); weight_grad_outs as lstm_backward's."""
    mode = saved.mode if isinstance(saved, RecurrentSaved) and saved.mode.startswith("rnn_") else "rnn_tanh"
    return _backward("rnn_backward", mode, saved, grad_y, grad_h_n, None, weight_grad_outs)


@dataclass
class BidirectionalSaved:
    """What a bidirectional training forward keeps: x, both directions' weights as used, and the step
    buffers by direction: a list of two (states, cells, gates, aux) on the CPU, the stacked buffers of
    kernels/cuda/rnn.forward_directions on the GPU."""
    mode: str
    device: str
    x: Any
    weights: Any                   # ((w_ih, w_hh), (w_ih_reverse, w_hh_reverse))
    has_b_ih: tuple
    has_b_hh: tuple
    lengths: Optional[np.ndarray]
    buffers: Any


def _check_pair(op, name, state, B, H):
    if state is not None:
        check_ndim(op, name, state, 3)
        check_shape(op, name, state, (2, B, H))


def _bidirectional(op, mode, x, h0, c0, weights, lengths, training):
    if not isinstance(weights, (tuple, list)) or len(weights) != 2 or \
            any(not isinstance(w, (tuple, list)) or len(w) != 4 for w in weights):
        raise TypeError(f"{op}: weights must be two (w_ih, w_hh, b_ih, b_hh) tuples (forward, reverse), "
                        f"got {type(weights).__name__}")
    device = backend.device_of(op, x, h0, c0, *weights[0], *weights[1])
    float_dtype(op, device, x=x, h0=h0, c0=c0)
    check_ndim(op, "x", x, 3)
    *_, host_lengths = _validate(op, mode, x, None, None, *weights[0], lengths)
    _validate(op, mode, x, None, None, *weights[1], None)
    if weights[1][1].shape != weights[0][1].shape:
        raise ValueError(f"{op}: both directions need one hidden size, got w_hh {tuple(weights[0][1].shape)} "
                         f"and {tuple(weights[1][1].shape)}")
    T, B, _ = x.shape
    H = weights[0][1].shape[1]
    _check_pair(op, "h0", h0, B, H)
    _check_pair(op, "c0", c0, B, H)
    if device == "cpu":
        runs = [cpu.forward(mode, x, None if h0 is None else h0[d], None if c0 is None else c0[d], *weight,
                            host_lengths, bool(d)) for d, weight in enumerate(weights)]
        y = np.concatenate([run[0] for run in runs], axis=2)
        h_n = np.stack([runs[d][1][cpu.final_index(T, bool(d))] for d in range(2)])
        c_n = np.stack([runs[d][2][cpu.final_index(T, bool(d))] for d in range(2)]) if mode == "lstm" else None
        buffers = [run[1:] for run in runs]
    else:
        from .cuda import rnn as gpu
        x, h0, c0 = [None if a is None else contiguous(a) for a in (x, h0, c0)]
        weights = [[None if a is None else contiguous(a) for a in weight] for weight in weights]
        y, buffers = gpu.forward_directions(mode, x, h0, c0, weights, host_lengths)
        xp = backend.array_module(x)
        h_n = xp.stack([buffers["states"][0, T], buffers["states"][1, 0]])
        c_n = xp.stack([buffers["cells"][0, T], buffers["cells"][1, 0]]) if mode == "lstm" else None
    outputs = (y, h_n, c_n) if mode == "lstm" else (y, h_n)
    if not training:
        return outputs
    saved = BidirectionalSaved(mode, device, x, tuple((w[0], w[1]) for w in weights),
                               tuple(w[2] is not None for w in weights), tuple(w[3] is not None for w in weights),
                               host_lengths, buffers)
    return outputs + (saved,)


def _bidirectional_backward(op, mode, saved, grad_y, grad_h_n, grad_c_n, weight_grad_outs=None):
    if not isinstance(saved, BidirectionalSaved) or saved.mode != mode:
        got = saved.mode if isinstance(saved, BidirectionalSaved) else type(saved).__name__
        raise TypeError(f"{op}: saved must come from the matching bidirectional forward with training=True "
                        f"({mode}), got {got}")
    device = backend.device_of(op, saved.x, grad_y, grad_h_n, grad_c_n)
    if device != saved.device:
        raise ValueError(f"{op}: gradients live on {device} but the forward ran on {saved.device}")
    float_dtype(op, device, x=saved.x, grad_y=grad_y, grad_h_n=grad_h_n, grad_c_n=grad_c_n)
    T, B, _ = saved.x.shape
    H = saved.weights[0][1].shape[1]
    if grad_y is not None:
        check_shape(op, "grad_y", grad_y, (T, B, 2 * H))
    for name, grad in (("grad_h_n", grad_h_n), ("grad_c_n", grad_c_n)):
        if grad is not None:
            check_shape(op, name, grad, (2, B, H))
    outs = _weight_grad_outs(op, weight_grad_outs, [(w_ih, w_hh, saved.has_b_ih[d], saved.has_b_hh[d])
                                                    for d, (w_ih, w_hh) in enumerate(saved.weights)], saved.x)
    if device == "cpu":
        runs = []
        for d, ((w_ih, w_hh), buffers) in enumerate(zip(saved.weights, saved.buffers)):
            states, cells, gates, aux = buffers
            runs.append(cpu.backward(mode, saved.x, w_ih, w_hh, saved.has_b_ih[d], saved.has_b_hh[d], saved.lengths,
                                     bool(d), states, cells, gates, aux,
                                     None if grad_y is None else grad_y[:, :, d * H:(d + 1) * H],
                                     None if grad_h_n is None else grad_h_n[d],
                                     None if grad_c_n is None else grad_c_n[d]))
        grad_x = runs[0][0] + runs[1][0]
        grad_h0 = np.stack([run[1] for run in runs])
        grad_c0 = np.stack([run[2] for run in runs]) if mode == "lstm" else None
        per_direction = [_into(direction_outs, run[3:]) for run, direction_outs in zip(runs, outs)]
    else:
        from .cuda import rnn as gpu
        grad_x, grad_h0, grad_c0, per_direction = gpu.backward_directions(
            mode, saved.x, saved.weights, saved.has_b_ih, saved.has_b_hh, saved.buffers, 0,
            *[None if g is None else contiguous(g) for g in (grad_y, grad_h_n, grad_c_n)], outs)
    states = (grad_x, grad_h0, grad_c0) if mode == "lstm" else (grad_x, grad_h0)
    return states + tuple(per_direction[0]) + tuple(per_direction[1])


def lstm_bidirectional(x, h0, c0, weights, lengths=None, training=False):
    """Both directions of one LSTM layer: weights = ((w_ih, w_hh, b_ih, b_hh), (the reverse direction's)),
    h0, c0 (2, B, H) or None. Returns (y (T, B, 2H), h_n (2, B, H), c_n (2, B, H)) [+ saved when training]."""
    return _bidirectional("lstm_bidirectional", "lstm", x, h0, c0, weights, lengths, training)


def lstm_bidirectional_backward(saved, grad_y, grad_h_n=None, grad_c_n=None, *, weight_grad_outs=None):
    """(grad_x, grad_h0, grad_c0, then grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh of the forward direction
    and the same four of the reverse one); bias entries None without biases. weight_grad_outs: a (w_ih, w_hh,
    b_ih, b_hh) tuple of arrays or None per direction, as lstm_backward's."""
    return _bidirectional_backward("lstm_bidirectional_backward", "lstm", saved, grad_y, grad_h_n, grad_c_n,
                                   weight_grad_outs)


def gru_bidirectional(x, h0, weights, lengths=None, training=False):
    """Both directions of one GRU layer (see lstm_bidirectional): (y (T, B, 2H), h_n (2, B, H)) [+ saved]."""
    return _bidirectional("gru_bidirectional", "gru", x, h0, None, weights, lengths, training)


def gru_bidirectional_backward(saved, grad_y, grad_h_n=None, *, weight_grad_outs=None):
    """(grad_x, grad_h0, then 4 weight gradients per direction, forward direction first)."""
    return _bidirectional_backward("gru_bidirectional_backward", "gru", saved, grad_y, grad_h_n, None,
                                   weight_grad_outs)


def rnn_bidirectional(x, h0, weights, nonlinearity="tanh", lengths=None, training=False):
    """Both directions of one Elman RNN layer (see lstm_bidirectional): (y (T, B, 2H), h_n (2, B, H)) [+ saved]."""
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"rnn_bidirectional: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    return _bidirectional("rnn_bidirectional", f"rnn_{nonlinearity}", x, h0, None, weights, lengths, training)


def rnn_bidirectional_backward(saved, grad_y, grad_h_n=None, *, weight_grad_outs=None):
    """(grad_x, grad_h0, then 4 weight gradients per direction, forward direction first)."""
    mode = saved.mode if isinstance(saved, BidirectionalSaved) and saved.mode.startswith("rnn_") else "rnn_tanh"
    return _bidirectional_backward("rnn_bidirectional_backward", mode, saved, grad_y, grad_h_n, None,
                                   weight_grad_outs)
