"""LSTM, GRU and vanilla RNN layers in NumPy, forward and backward through time: the reference for
kernels/cuda/rnn.py and the CPU path.

One matmul projects the inputs of all steps; a Python loop over time does the recurrent product
(BLAS), the gate nonlinearities as one vectorised np.tanh (sigmoid rows pre-halved, see
sigmoid_rows) and the state update in small fused Numba-CPU loops (small steps are overhead-bound:
this avoids a dozen NumPy temporaries and scalar libm calls); after the backward loop one matmul per
weight gathers the weight gradients of all steps. Buffers (see kernels/rnn.py, `RecurrentSaved`):
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
from numba import njit

from .. import backend

GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}


def step_order(T, reverse):
    """(time, read index, write index) of each step in processing order."""
    if reverse:
        return [(t, t + 1, t) for t in range(T - 1, -1, -1)]
    return [(t, t, t + 1) for t in range(T)]


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
    weights and biases is exact, so one vectorised np.tanh serves every gate of a step."""
    scale = np.ones(GATES[mode] * H)
    if mode == "lstm":
        scale[:2 * H] = scale[3 * H:] = 0.5
    elif mode == "gru":
        scale[:2 * H] = 0.5
    return scale


def _scaled(array, scale):
    return None if array is None else array * scale.astype(array.dtype).reshape((-1,) + (1,) * (array.ndim - 1))


@njit(cache=True)
def _lstm_cell(gates, c_prev, c_new, lengths, t):
    """gates hold tanh of the (half-scaled) pre-activations; turn i, f, o into sigmoids, update c."""
    B, H = c_new.shape
    for b in range(B):
        if t >= lengths[b]:
            c_new[b] = c_prev[b]
            continue
        for j in range(H):
            i = 0.5 * gates[b, j] + 0.5
            f = 0.5 * gates[b, H + j] + 0.5
            o = 0.5 * gates[b, 3 * H + j] + 0.5
            gates[b, j] = i
            gates[b, H + j] = f
            gates[b, 3 * H + j] = o
            c_new[b, j] = f * c_prev[b, j] + i * gates[b, 2 * H + j]


@njit(cache=True)
def _lstm_output(gates, tanh_c, h_prev, h_new, y, lengths, t):
    B, H = h_new.shape
    for b in range(B):
        if t >= lengths[b]:
            h_new[b] = h_prev[b]
            y[b] = 0.0
            continue
        for j in range(H):
            h = gates[b, 3 * H + j] * tanh_c[b, j]
            h_new[b, j] = h
            y[b, j] = h


@njit(cache=True)
def _gru_candidate(gates, recurrent, b_hn, hidden_n):
    """r, z from tanh to sigmoid; the n slot gets W_in x + b_in + r (W_hn h + b_hn) (tanh comes next)."""
    B = gates.shape[0]
    H = hidden_n.shape[1]
    for b in range(B):
        for j in range(H):
            r = 0.5 * gates[b, j] + 0.5
            gates[b, j] = r
            gates[b, H + j] = 0.5 * gates[b, H + j] + 0.5
            hn = recurrent[b, 2 * H + j] + b_hn[j]
            hidden_n[b, j] = hn
            gates[b, 2 * H + j] += r * hn


@njit(cache=True)
def _gru_output(gates, h_prev, h_new, y, lengths, t):
    B, H = h_new.shape
    for b in range(B):
        if t >= lengths[b]:
            h_new[b] = h_prev[b]
            y[b] = 0.0
            continue
        for j in range(H):
            n = gates[b, 2 * H + j]
            h = n + gates[b, H + j] * (h_prev[b, j] - n)
            h_new[b, j] = h
            y[b, j] = h


@njit(cache=True)
def _rnn_output(gates, h_prev, h_new, y, lengths, t):
    B, H = h_new.shape
    for b in range(B):
        if t >= lengths[b]:
            h_new[b] = h_prev[b]
            y[b] = 0.0
        else:
            h_new[b] = gates[b]
            y[b] = gates[b]


def forward(mode, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, reverse):
    """Returns (y, states, cells, gates, aux); see the module docstring for the buffers."""
    T, B, _ = x.shape
    H = w_hh.shape[1]
    dtype = x.dtype
    scale = sigmoid_rows(mode, H)
    b_hn = np.zeros(H, dtype) if b_hh is None else np.ascontiguousarray(b_hh[2 * H:])  # GRU only
    gates = input_projection(x, _scaled(w_ih, scale), _scaled(projection_bias(mode, b_ih, b_hh, H), scale))
    w_hh_t = _scaled(w_hh, scale).T
    states = np.empty((T + 1, B, H), dtype)
    cells = np.empty((T + 1, B, H), dtype) if mode == "lstm" else None
    aux = np.empty((T, B, H), dtype) if mode in ("lstm", "gru") else None
    start = T if reverse else 0
    states[start] = 0 if h0 is None else h0
    if cells is not None:
        cells[start] = 0 if c0 is None else c0
    y = np.empty((T, B, H), dtype)
    lengths = np.full(B, T, np.int64) if lengths is None else lengths
    recurrent = np.empty((B, w_hh.shape[0]), dtype)
    for t, read, write in step_order(T, reverse):
        g = gates[t]
        np.matmul(states[read], w_hh_t, out=recurrent)
        if mode == "lstm":
            g += recurrent
            np.tanh(g, out=g)
            _lstm_cell(g, cells[read], cells[write], lengths, t)
            np.tanh(cells[write], out=aux[t])
            _lstm_output(g, aux[t], states[read], states[write], y[t], lengths, t)
        elif mode == "gru":
            rz = g[:, :2 * H]
            rz += recurrent[:, :2 * H]
            np.tanh(rz, out=rz)
            _gru_candidate(g, recurrent, b_hn, aux[t])
            np.tanh(g[:, 2 * H:], out=g[:, 2 * H:])
            _gru_output(g, states[read], states[write], y[t], lengths, t)
        else:
            g += recurrent
            if mode == "rnn_tanh":
                np.tanh(g, out=g)
            else:
                np.maximum(g, 0, out=g)
            _rnn_output(g, states[read], states[write], y[t], lengths, t)
    return y, states, cells, gates, aux


@njit(cache=True)
def _lstm_step_backward(gates, c_prev, tanh_c_new, grad_y, has_grad_y, grad_h, grad_c, grad_gates, lengths, t):
    """Gate gradients of one step; grad_c becomes dc_prev, grad_h its direct part (0; kept when idle)."""
    B, H = grad_h.shape
    for b in range(B):
        active = t < lengths[b]
        for j in range(H):
            if not active:
                for k in range(4):
                    grad_gates[b, k * H + j] = 0.0
                continue
            dh = grad_h[b, j] + (grad_y[b, j] if has_grad_y else 0.0)
            i, f, g, o = gates[b, j], gates[b, H + j], gates[b, 2 * H + j], gates[b, 3 * H + j]
            tanh_c = tanh_c_new[b, j]
            dc = grad_c[b, j] + dh * o * (1.0 - tanh_c * tanh_c)
            grad_gates[b, j] = dc * g * i * (1.0 - i)
            grad_gates[b, H + j] = dc * c_prev[b, j] * f * (1.0 - f)
            grad_gates[b, 2 * H + j] = dc * i * (1.0 - g * g)
            grad_gates[b, 3 * H + j] = dh * tanh_c * o * (1.0 - o)
            grad_c[b, j] = dc * f
            grad_h[b, j] = 0.0


@njit(cache=True)
def _gru_step_backward(gates, hidden_n, h_prev, grad_y, has_grad_y, grad_h, grad_gates, grad_hidden, lengths, t):
    """Input- and hidden-side gate gradients; grad_h becomes the direct part z * dh (kept when idle)."""
    B, H = grad_h.shape
    for b in range(B):
        active = t < lengths[b]
        for j in range(H):
            if not active:
                for k in range(3):
                    grad_gates[b, k * H + j] = 0.0
                    grad_hidden[b, k * H + j] = 0.0
                continue
            dh = grad_h[b, j] + (grad_y[b, j] if has_grad_y else 0.0)
            r, z, n = gates[b, j], gates[b, H + j], gates[b, 2 * H + j]
            dn = dh * (1.0 - z) * (1.0 - n * n)
            dr = dn * hidden_n[b, j] * r * (1.0 - r)
            dz = dh * (h_prev[b, j] - n) * z * (1.0 - z)
            grad_gates[b, j], grad_gates[b, H + j], grad_gates[b, 2 * H + j] = dr, dz, dn
            grad_hidden[b, j], grad_hidden[b, H + j], grad_hidden[b, 2 * H + j] = dr, dz, dn * r
            grad_h[b, j] = dh * z


@njit(cache=True)
def _rnn_step_backward(gates, relu, grad_y, has_grad_y, grad_h, grad_gates, lengths, t):
    B, H = grad_h.shape
    for b in range(B):
        active = t < lengths[b]
        for j in range(H):
            if not active:
                grad_gates[b, j] = 0.0
                continue
            dh = grad_h[b, j] + (grad_y[b, j] if has_grad_y else 0.0)
            h = gates[b, j]
            grad_gates[b, j] = (0.0 if h <= 0.0 else dh) if relu else dh * (1.0 - h * h)   # NaN h: dh, as torch
            grad_h[b, j] = 0.0


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
    grad_y = np.ascontiguousarray(grad_y) if has_grad_y else np.zeros((T, 1, 1), dtype)
    lengths = np.full(B, T, np.int64) if lengths is None else lengths
    grad_gates = np.empty((T, B, G * H), dtype)
    grad_hidden = np.empty((T, B, G * H), dtype) if mode == "gru" else grad_gates
    recurrent = np.empty((B, H), dtype)
    for t, read, write in reversed(step_order(T, reverse)):
        if mode == "lstm":
            _lstm_step_backward(gates[t], cells[read], aux[t], grad_y[t], has_grad_y, grad_h, grad_c,
                                grad_gates[t], lengths, t)
        elif mode == "gru":
            _gru_step_backward(gates[t], aux[t], states[read], grad_y[t], has_grad_y, grad_h,
                               grad_gates[t], grad_hidden[t], lengths, t)
        else:
            _rnn_step_backward(gates[t], mode == "rnn_relu", grad_y[t], has_grad_y, grad_h, grad_gates[t],
                               lengths, t)
        np.matmul(grad_hidden[t], w_hh, out=recurrent)
        grad_h += recurrent  # idle samples have zero gate gradients: their grad_h passes through
    flat = grad_gates.reshape(T * B, G * H)
    hidden_flat = grad_hidden.reshape(T * B, G * H)
    grad_x = np.matmul(flat, w_ih).reshape(T, B, I)
    grad_w_ih = np.matmul(flat.T, x.reshape(T * B, I))
    grad_w_hh = np.matmul(hidden_flat.T, states[prev_state_slice(T, reverse)].reshape(T * B, H))
    grad_b_ih = flat.sum(axis=0) if has_b_ih else None
    grad_b_hh = hidden_flat.sum(axis=0) if has_b_hh else None
    return grad_x, grad_h, grad_c, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh
