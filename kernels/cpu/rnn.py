"""LSTM, GRU and vanilla RNN layers in NumPy, forward and backward through time: the reference for
kernels/cuda/rnn.py and the CPU path.

One matmul projects the inputs of all steps; the time loop, with the recurrent product (BLAS), the gate
nonlinearities (sigmoid rows pre-halved, see sigmoid_rows, so that one tanh serves every gate) and the
state update, is one Numba-CPU function per cell type (kernels/cpu/rnn_loops.py: a step of these small
layers then costs no Python); after the backward loop one matmul per weight gathers the weight gradients
of all steps. Buffers (see kernels/rnn.py, `RecurrentSaved`):
  states (T+1, B, H): the hidden state entering each step; forward reads states[t] and writes
      states[t+1], reverse reads states[t+1] and writes states[t], so that the states entering the
      steps in time order are one slice, states[0:T] or states[1:T+1];
  cells (T+1, B, H): the same for the LSTM cell state;
  gates (T, B, G*H): gate activations by time (LSTM i,f,g,o; GRU r,z,n; RNN the new state);
  aux (T, B, H): GRU: W_hn h + b_hn, which the gradient of r needs; LSTM (CPU path only): tanh(c_t).
The backward keeps gate gradients by time (T, B, G*H); the GRU also keeps the hidden-side ones, which
differ in the n part (r * dn instead of dn).
Steps at t >= lengths[b] leave sample b's state unchanged and output zeros.
"""
import numpy as np

from .. import backend
from . import rnn_loops as loops

GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}


def final_index(T, reverse):
    return 0 if reverse else T


def prev_state_slice(T, reverse):
    """The states entering the steps, in time order, as a slice of `states`."""
    return slice(1, T + 1) if reverse else slice(0, T)


def input_projection(x, w_ih, bias):
    """x W_ih^T + bias for all steps at once: (T, B, G*H)."""
    T, B, I = x.shape
    proj = np.matmul(x.reshape(T * B, I), w_ih.T).reshape(T, B, w_ih.shape[0])
    if bias is not None:
        proj += bias
    return proj


def projection_bias(mode, b_ih, b_hh, H):
    """The biases the input projection adds: b_ih + b_hh, except the GRU's b_hn (inside r * (...)).
    NumPy or CuPy arrays (the CUDA path uses it too)."""
    if b_hh is not None and mode == "gru":
        xp = backend.array_module(b_hh)
        b_hh = xp.concatenate([b_hh[:2 * H], xp.zeros(H, b_hh.dtype)])
    if b_ih is None:
        return b_hh
    return b_ih if b_hh is None else b_ih + b_hh


def sigmoid_rows(mode, H):
    """Row scale 0.5 for sigmoid gates: sigmoid(v) = 0.5 tanh(v / 2) + 0.5, and halving the rows of the
    weights and biases is exact, so one tanh loop serves every gate of a step."""
    scale = np.ones(GATES[mode] * H)
    if mode == "lstm":
        scale[:2 * H] = scale[3 * H:] = 0.5
    elif mode == "gru":
        scale[:2 * H] = 0.5
    return scale


def _scaled(array, scale):
    return None if array is None else array * scale.astype(array.dtype).reshape((-1,) + (1,) * (array.ndim - 1))


def _lengths(lengths, B, T):
    """Per-sample lengths as the loops take them: int64, C-contiguous, T for every sample when None."""
    return np.full(B, T, np.int64) if lengths is None else np.ascontiguousarray(lengths, np.int64)


def forward(mode, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, reverse):
    """Returns (y, states, cells, gates, aux); see the module docstring for the buffers."""
    T, B, _ = x.shape
    H = w_hh.shape[1]
    dtype = x.dtype
    scale = sigmoid_rows(mode, H)
    b_hn = np.zeros(H, dtype) if b_hh is None else np.ascontiguousarray(b_hh[2 * H:])  # GRU only
    gates = input_projection(x, _scaled(w_ih, scale), _scaled(projection_bias(mode, b_ih, b_hh, H), scale))
    w_hh_t = np.ascontiguousarray(_scaled(w_hh, scale).T)   # (H, G*H): see rnn_loops
    states = np.empty((T + 1, B, H), dtype)
    cells = np.empty((T + 1, B, H), dtype) if mode == "lstm" else None
    aux = np.empty((T, B, H), dtype) if mode in ("lstm", "gru") else None
    start = T if reverse else 0
    states[start] = 0 if h0 is None else h0
    if cells is not None:
        cells[start] = 0 if c0 is None else c0
    y = np.empty((T, B, H), dtype)
    lengths = _lengths(lengths, B, T)
    if mode == "lstm":
        loops.lstm_forward(gates, w_hh_t, states, cells, aux, y, lengths, bool(reverse))
    elif mode == "gru":
        loops.gru_forward(gates, w_hh_t, b_hn, states, aux, y, lengths, bool(reverse))
    else:
        loops.rnn_forward(gates, w_hh_t, mode == "rnn_relu", states, y, lengths, bool(reverse))
    return y, states, cells, gates, aux


def backward(mode, x, w_ih, w_hh, has_b_ih, has_b_hh, lengths, reverse, states, cells, gates, aux,
             grad_y, grad_h_n, grad_c_n):
    """Gradients (x, h0, c0 or None, w_ih, w_hh, b_ih or None, b_hh or None) from the forward buffers."""
    T, B, I = x.shape
    H = w_hh.shape[1]
    G = GATES[mode]
    dtype = x.dtype
    grad_h = np.zeros((B, H), dtype) if grad_h_n is None else np.array(grad_h_n, dtype, order="C")
    grad_c = None
    if mode == "lstm":
        grad_c = np.zeros((B, H), dtype) if grad_c_n is None else np.array(grad_c_n, dtype, order="C")
    has_grad_y = grad_y is not None
    grad_y = np.ascontiguousarray(grad_y, dtype) if has_grad_y else np.zeros((T, 1, 1), dtype)
    lengths = _lengths(lengths, B, T)
    grad_gates = np.empty((T, B, G * H), dtype)
    grad_hidden = np.empty((T, B, G * H), dtype) if mode == "gru" else grad_gates
    w_hh = np.ascontiguousarray(w_hh)
    states, cells, gates, aux = [None if a is None else np.ascontiguousarray(a) for a in (states, cells, gates, aux)]
    if mode == "lstm":
        loops.lstm_backward(gates, cells, aux, grad_y, has_grad_y, w_hh, lengths, bool(reverse), grad_h, grad_c,
                            grad_gates)
    elif mode == "gru":
        loops.gru_backward(gates, aux, states, grad_y, has_grad_y, w_hh, lengths, bool(reverse), grad_h,
                           grad_gates, grad_hidden)
    else:
        loops.rnn_backward(gates, mode == "rnn_relu", grad_y, has_grad_y, w_hh, lengths, bool(reverse), grad_h,
                           grad_gates)
    flat = grad_gates.reshape(T * B, G * H)
    hidden_flat = grad_hidden.reshape(T * B, G * H)
    grad_x = np.matmul(flat, w_ih).reshape(T, B, I)
    grad_w_ih = np.matmul(flat.T, x.reshape(T * B, I))
    grad_w_hh = np.matmul(hidden_flat.T, states[prev_state_slice(T, reverse)].reshape(T * B, H))
    grad_b_ih = flat.sum(axis=0) if has_b_ih else None
    grad_b_hh = hidden_flat.sum(axis=0) if has_b_hh else None
    return grad_x, grad_h, grad_c, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh
