"""LSTM, GRU and vanilla RNN layers in NumPy, forward and backward through time: the reference for
kernels/cuda/rnn.py and the CPU path.

One matmul projects the inputs of all steps, a loop over time does the recurrent product (BLAS) and
the gate math in place, and after the backward loop one matmul per weight gathers the weight
gradients of all steps. Buffers shared with the CUDA path (see kernels/rnn.py, `RecurrentSaved`):
  states (T+1, B, H): the hidden state entering each step; forward reads states[t] and writes
      states[t+1], reverse reads states[t+1] and writes states[t], so that the states entering the
      steps in time order are one slice, states[0:T] or states[1:T+1];
  cells (T+1, B, H): the same for the LSTM cell state;
  gates (T, B, G*H): gate activations by time (LSTM i,f,g,o; GRU r,z,n; RNN the new state);
  hidden_n (T, B, H): GRU only, W_hn h + b_hn, which the gradient of r needs.
Steps at t >= lengths[b] leave sample b's state unchanged and output zeros.
"""
import numpy as np

GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}


def _sigmoid_(x):
    """In-place logistic function through tanh (no overflow for large |x|)."""
    x *= 0.5
    np.tanh(x, out=x)
    x += 1.0
    x *= 0.5
    return x


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


def active_masks(lengths, T):
    """(T, B, 1) booleans: sample b takes part in step t; None when every sample is T long."""
    if lengths is None:
        return None
    return (np.arange(T)[:, None] < lengths[None, :])[:, :, None]


def input_projection(mode, x, w_ih, b_ih, b_hh):
    """x W_ih^T plus the biases that can be folded in, for all steps at once: (T, B, G*H)."""
    T, B, I = x.shape
    proj = np.matmul(x.reshape(T * B, I), w_ih.T).reshape(T, B, w_ih.shape[0])
    if b_ih is not None:
        proj += b_ih
    if b_hh is not None and mode != "gru":  # GRU keeps b_hn inside r * (W_hn h + b_hn)
        proj += b_hh
    return proj


def forward(mode, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, reverse):
    """Returns (y, states, cells, gates, hidden_n); see the module docstring for the buffers."""
    T, B, _ = x.shape
    H = w_hh.shape[1]
    dtype = x.dtype
    gates = input_projection(mode, x, w_ih, b_ih, b_hh)
    states = np.empty((T + 1, B, H), dtype)
    cells = np.empty((T + 1, B, H), dtype) if mode == "lstm" else None
    hidden_n = np.empty((T, B, H), dtype) if mode == "gru" else None
    start = T if reverse else 0
    states[start] = 0 if h0 is None else h0
    if cells is not None:
        cells[start] = 0 if c0 is None else c0
    y = np.empty((T, B, H), dtype)
    masks = active_masks(lengths, T)
    w_hh_t = w_hh.T
    recurrent = np.empty((B, w_hh.shape[0]), dtype)
    for t, read, write in step_order(T, reverse):
        h = states[read]
        g = gates[t]
        np.matmul(h, w_hh_t, out=recurrent)
        h_new = states[write]
        if mode == "lstm":
            g += recurrent
            _sigmoid_(g[:, :2 * H])
            np.tanh(g[:, 2 * H:3 * H], out=g[:, 2 * H:3 * H])
            _sigmoid_(g[:, 3 * H:])
            c_new = cells[write]
            np.multiply(g[:, H:2 * H], cells[read], out=c_new)
            c_new += g[:, :H] * g[:, 2 * H:3 * H]
            np.tanh(c_new, out=h_new)
            h_new *= g[:, 3 * H:]
        elif mode == "gru":
            if b_hh is not None:
                recurrent += b_hh
            g[:, :2 * H] += recurrent[:, :2 * H]
            _sigmoid_(g[:, :2 * H])
            hidden_n[t] = recurrent[:, 2 * H:]
            n = g[:, 2 * H:]
            n += g[:, :H] * recurrent[:, 2 * H:]
            np.tanh(n, out=n)
            z = g[:, H:2 * H]
            # h' = n + z (h - n)
            np.subtract(h, n, out=h_new)
            h_new *= z
            h_new += n
        else:
            g += recurrent
            if mode == "rnn_tanh":
                np.tanh(g, out=g)
            else:
                np.maximum(g, 0, out=g)
            h_new[...] = g
        if masks is None:
            y[t] = h_new
        else:
            m = masks[t]
            np.multiply(h_new, m, out=y[t])
            np.copyto(h_new, h, where=~m)
            if cells is not None:
                np.copyto(cells[write], cells[read], where=~m)
    return y, states, cells, gates, hidden_n


def backward(mode, x, w_ih, w_hh, has_b_ih, has_b_hh, lengths, reverse, states, cells, gates, hidden_n,
             grad_y, grad_h_n, grad_c_n):
    """Gradients (x, h0, c0 or None, w_ih, w_hh, b_ih or None, b_hh or None) from the forward buffers."""
    T, B, I = x.shape
    H = w_hh.shape[1]
    G = GATES[mode]
    dtype = x.dtype
    grad_h = np.zeros((B, H), dtype) if grad_h_n is None else np.array(grad_h_n, dtype, copy=True)
    grad_c = None
    if mode == "lstm":
        grad_c = np.zeros((B, H), dtype) if grad_c_n is None else np.array(grad_c_n, dtype, copy=True)
    # Gate gradients by time, input side; for the GRU the hidden side differs in its n part.
    grad_gates = np.empty((T, B, G * H), dtype)
    grad_hidden_n = np.empty((T, B, H), dtype) if mode == "gru" else None
    masks = active_masks(lengths, T)
    recurrent = np.empty((B, H), dtype)
    for t, read, write in reversed(step_order(T, reverse)):
        dh = grad_h if grad_y is None else grad_h + (grad_y[t] if masks is None else grad_y[t] * masks[t])
        g = gates[t]
        dg = grad_gates[t]
        if mode == "lstm":
            i, f, c_gate, o = g[:, :H], g[:, H:2 * H], g[:, 2 * H:3 * H], g[:, 3 * H:]
            tanh_c = np.tanh(cells[write])
            dc = grad_c + dh * o * (1 - tanh_c * tanh_c)
            dg[:, :H] = dc * c_gate * i * (1 - i)
            dg[:, H:2 * H] = dc * cells[read] * f * (1 - f)
            dg[:, 2 * H:3 * H] = dc * i * (1 - c_gate * c_gate)
            dg[:, 3 * H:] = dh * tanh_c * o * (1 - o)
            dc *= f
            direct = None
        elif mode == "gru":
            r, z, n = g[:, :H], g[:, H:2 * H], g[:, 2 * H:]
            dn = dh * (1 - z) * (1 - n * n)
            dg[:, 2 * H:] = dn
            dg[:, :H] = dn * hidden_n[t] * r * (1 - r)
            dg[:, H:2 * H] = dh * (states[read] - n) * z * (1 - z)
            grad_hidden_n[t] = dn * r
            direct = dh * z
        else:
            if mode == "rnn_tanh":
                np.multiply(dh, 1 - g * g, out=dg)
            else:
                np.multiply(dh, g > 0, out=dg)
            direct = None
        if masks is not None:
            dg *= masks[t]
            if grad_hidden_n is not None:
                grad_hidden_n[t] *= masks[t]
        if mode == "gru":
            np.matmul(dg[:, :2 * H], w_hh[:2 * H], out=recurrent)
            recurrent += grad_hidden_n[t] @ w_hh[2 * H:]
        else:
            np.matmul(dg, w_hh, out=recurrent)
        if direct is not None:
            recurrent += direct
        if masks is None:
            grad_h = recurrent.copy()
            if mode == "lstm":
                grad_c = dc
        else:
            m = masks[t]
            grad_h = np.where(m, recurrent, grad_h)
            if mode == "lstm":
                grad_c = np.where(m, dc, grad_c)
    flat = grad_gates.reshape(T * B, G * H)
    grad_x = np.matmul(flat, w_ih).reshape(T, B, I)
    grad_w_ih = np.matmul(flat.T, x.reshape(T * B, I))
    prev = states[prev_state_slice(T, reverse)].reshape(T * B, H)
    if mode == "gru":
        hidden_flat = np.concatenate([flat[:, :2 * H], grad_hidden_n.reshape(T * B, H)], axis=1)
    else:
        hidden_flat = flat
    grad_w_hh = np.matmul(hidden_flat.T, prev)
    grad_b_ih = flat.sum(axis=0) if has_b_ih else None
    grad_b_hh = hidden_flat.sum(axis=0) if has_b_hh else None
    return grad_x, grad_h, grad_c, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh
