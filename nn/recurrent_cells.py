"""Recurrent cells LSTMCell, GRUCell and RNNCell with torch.nn's arguments, parameter names, shapes, gate order
and init: one time step, run as a sequence of T = 1 through the layer kernels' autograd Functions of
nn/recurrent.py. A cell returns the layer's h_n (and c_n), whose gradients those Functions' backward takes,
so a Python loop over the steps, as users write it, differentiates through every state.
"""
import numpy as np


from . import autograd
from .functional import _tensor
from .layers import _dtype, _on_device
from .module import Module, Parameter
from .recurrent import GATES, GRULayer, LSTMLayer, RNNLayer, check_sizes, check_state_matches, reset_uniformly

__all__ = ["GRUCell", "LSTMCell", "RNNCell"]


class _CellBase(Module):
    """torch.nn.RNNCellBase: weight_ih (G*H, I), weight_hh (G*H, H), bias_ih and bias_hh (G*H,) or None."""

    def __init__(self, cell, input_size, hidden_size, bias, device, dtype):
        super().__init__()
        name = type(self).__name__
        check_sizes(name, input_size=input_size, hidden_size=hidden_size)
        dtype = _dtype(dtype, name)   # float32 by default, as the other layers
        self.cell = cell
        self.input_size, self.hidden_size, self.bias = int(input_size), int(hidden_size), bool(bias)
        rows = GATES[cell] * self.hidden_size
        self.weight_ih = Parameter(np.empty((rows, self.input_size), dtype))
        self.weight_hh = Parameter(np.empty((rows, self.hidden_size), dtype))
        for kind in ("bias_ih", "bias_hh"):
            self.register_parameter(kind, Parameter(np.empty(rows, dtype)) if self.bias else None)
        self.reset_parameters()
        _on_device(self, device)

    def reset_parameters(self):
        reset_uniformly(self)

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")

    def _check_input(self, x):
        name = type(self).__name__
        x = _tensor(x, f"{name}: input", optional=False)
        if x.ndim not in (1, 2) or x.shape[-1] != self.input_size:
            raise ValueError(f"{name}: input must be (batch, input_size) or unbatched (input_size,) with "
                             f"input_size={self.input_size}, got shape {x.shape}")
        if x.device != self.weight_ih.device:
            raise ValueError(f"{name}: input is on {x.device} but the parameters are on {self.weight_ih.device}; "
                             f"move one with .to(device)")
        if x.dtype != self.weight_ih.dtype:
            raise TypeError(f"{name}: input dtype {x.dtype} does not match the parameters' {self.weight_ih.dtype}")
        return x

    def _check_state(self, state, label, x):
        """`state` as (B, H) for input x (batch, I); unbatched input takes an (H,) state."""
        name = type(self).__name__
        state = _tensor(state, f"{name}: {label}", optional=False)
        expected = (self.hidden_size,) if x.ndim == 1 else (x.shape[0], self.hidden_size)
        if state.shape != expected:
            raise ValueError(f"{name}: {label} must have shape {expected} ({'' if x.ndim == 1 else 'batch, '}"
                             f"hidden_size) for input of shape {x.shape}, got {state.shape}")
        check_state_matches(name, label, state, self.weight_ih)
        return state.reshape(1, self.hidden_size) if x.ndim == 1 else state

    def _step(self, input, states):
        """Runs the layer Function on one step; returns its h_n (and c_n) as (B, H), or (H,) unbatched."""
        x = self._check_input(input)
        states = [None if s is None else self._check_state(s, label, x) for s, label in states]
        sequence = x.reshape(1, 1, self.input_size) if x.ndim == 1 else x.unsqueeze(0)  # (T=1, B, I)
        weights = (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        inputs = (sequence, *states, *weights)
        training = autograd.grad_enabled() and any(t is not None and t.requires_grad for t in inputs)
        if self.cell == "LSTM":
            outputs = LSTMLayer.apply(*inputs, training=training)[1:]
        elif self.cell == "GRU":
            outputs = GRULayer.apply(*inputs, training=training)[1:]
        else:
            outputs = RNNLayer.apply(*inputs, nonlinearity=self.nonlinearity, training=training)[1:]
        return tuple(o.reshape(self.hidden_size) if x.ndim == 1 else o for o in outputs)


class LSTMCell(_CellBase):
    """torch.nn.LSTMCell, gates i, f, g, o: forward(input, (h, c)=None) -> (h', c')."""

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__("LSTM", input_size, hidden_size, bias, device, dtype)

    def forward(self, input, hx=None):
        if hx is None:
            hx = (None, None)
        elif not isinstance(hx, (tuple, list)) or len(hx) != 2 or hx[0] is None or hx[1] is None:
            got = type(hx).__name__
            if isinstance(hx, (tuple, list)):
                got = "(" + ", ".join(type(state).__name__ for state in hx) + ")"
            raise TypeError(f"LSTMCell: hx must be a pair of tensors (h, c) or None, got {got}")
        return self._step(input, [(hx[0], "hx[0] (h)"), (hx[1], "hx[1] (c)")])


class GRUCell(_CellBase):
    """torch.nn.GRUCell, gates r, z, n: forward(input, h=None) -> h'."""

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__("GRU", input_size, hidden_size, bias, device, dtype)

    def forward(self, input, hx=None):
        return self._step(input, [(hx, "hx")])[0]


class RNNCell(_CellBase):
    """torch.nn.RNNCell (Elman): h' = tanh or relu(W_ih x + b_ih + W_hh h + b_hh); forward(input, h=None) -> h'."""

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", device=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNNCell: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__("RNN", input_size, hidden_size, bias, device, dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input, hx=None):
        return self._step(input, [(hx, "hx")])[0]

    def extra_repr(self):
        text = super().extra_repr()  # torch's repr: the nonlinearity without quotes
        return text if self.nonlinearity == "tanh" else text + f", nonlinearity={self.nonlinearity}"
