"""Recurrent layers RNN, LSTM and GRU with torch.nn's arguments, parameter names, shapes and init.

Each layer is one autograd Function around a whole-sequence kernel (kernels.lstm / gru / rnn and their
*_backward; a bidirectional layer: kernels.*_bidirectional, both directions in one op, so that the GPU
runs them in one launch), so a layer costs one graph node, not T of them.
Variable-length batches: per-sample `lengths` (outputs are zero past each sample's length and h_n is the
state after its last valid step, as with pack_padded_sequence(enforce_sorted=False)), or torch's
PackedSequence (nn.utils.rnn), which runs through the same lengths path and gives a PackedSequence back.
"""
import math
import warnings

import numpy as np

import kernels
from kernels import backend
from kernels._checks import positive_int

from . import autograd, init
from .functional import _Op, _tensor
from .layers import _dtype, _on_device
from .module import Module, Parameter
from .tensor import Tensor, cat
from .utils import rnn as rnn_utils

__all__ = ["GRU", "LSTM", "RNN", "GRUCell", "LSTMCell", "RNNCell"]

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


class _RecurrentLayer(_Op):
    """Shared plumbing: optional arguments given as None are not graph inputs, so their gradients are
    dropped; grad_outputs of unused outputs arrive as None and are passed on as None."""

    def _weight_outs(self, first):
        """gradient_out of the four weights from input position `first` (w_ih, w_hh, b_ih, b_hh): where the
        backward writes their gradients (a flat optimizer's buffer) instead of new arrays."""
        needs = self.needs()
        return tuple(self.out_for(position, needs[position]) for position in range(first, first + 4))


class LSTMLayer(_RecurrentLayer):
    def forward(self, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths=None, reverse=False, training=False):
        self.present = [a is not None for a in (x, h0, c0, w_ih, w_hh, b_ih, b_hh)]
        result = kernels.lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths=lengths, reverse=reverse,
                              training=training)
        if training:
            self.saved = result[3]
        return result[:3]

    def backward(self, grad_y, grad_h_n, grad_c_n):
        return self.grads(*kernels.lstm_backward(self.saved, grad_y, grad_h_n, grad_c_n,
                                                weight_grad_outs=self._weight_outs(3)))


class GRULayer(_RecurrentLayer):
    def forward(self, x, h0, w_ih, w_hh, b_ih, b_hh, lengths=None, reverse=False, training=False):
        self.present = [a is not None for a in (x, h0, w_ih, w_hh, b_ih, b_hh)]
        result = kernels.gru(x, h0, w_ih, w_hh, b_ih, b_hh, lengths=lengths, reverse=reverse, training=training)
        if training:
            self.saved = result[2]
        return result[:2]

    def backward(self, grad_y, grad_h_n):
        return self.grads(*kernels.gru_backward(self.saved, grad_y, grad_h_n, weight_grad_outs=self._weight_outs(2)))


class RNNLayer(_RecurrentLayer):
    def forward(self, x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity="tanh", lengths=None, reverse=False,
                training=False):
        self.present = [a is not None for a in (x, h0, w_ih, w_hh, b_ih, b_hh)]
        result = kernels.rnn(x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity=nonlinearity, lengths=lengths,
                             reverse=reverse, training=training)
        if training:
            self.saved = result[2]
        return result[:2]

    def backward(self, grad_y, grad_h_n):
        return self.grads(*kernels.rnn_backward(self.saved, grad_y, grad_h_n, weight_grad_outs=self._weight_outs(2)))


class BidirectionalLayer(_RecurrentLayer):
    """Both directions of one layer as one op (kernels.*_bidirectional: on the GPU one persistent launch
    runs both when they fit together). Inputs: x, h0, c0 (each (2, B, H) or None), then w_ih, w_hh, b_ih,
    b_hh of the forward direction and of the reverse one; c0 is None unless mode is 'lstm'."""

    def forward(self, x, h0, c0, *weights, mode="lstm", lengths=None, training=False):
        self.present = [a is not None for a in (x, h0, c0) + weights]
        self.mode = mode
        pair = (weights[:4], weights[4:])
        if mode == "lstm":
            result = kernels.lstm_bidirectional(x, h0, c0, pair, lengths=lengths, training=training)
        elif mode == "gru":
            result = kernels.gru_bidirectional(x, h0, pair, lengths=lengths, training=training)
        else:
            result = kernels.rnn_bidirectional(x, h0, pair, nonlinearity=mode[4:], lengths=lengths,
                                               training=training)
        if training:
            self.saved = result[-1]
            return result[:-1]
        return result

    def backward(self, grad_y, grad_h_n, grad_c_n=None):
        outs = (self._weight_outs(3), self._weight_outs(7))
        if self.mode == "lstm":
            grads = kernels.lstm_bidirectional_backward(self.saved, grad_y, grad_h_n, grad_c_n, weight_grad_outs=outs)
        else:
            backward = kernels.gru_bidirectional_backward if self.mode == "gru" else kernels.rnn_bidirectional_backward
            grads = backward(self.saved, grad_y, grad_h_n, weight_grad_outs=outs)
            grads = grads[:2] + (None,) + grads[2:]
        return self.grads(*grads)


def check_sizes(name, **sizes):
    """Each size a positive integer (a ValueError naming the layer or cell otherwise)."""
    for arg, value in sizes.items():
        positive_int(name, arg, value)


def reset_uniformly(module):
    """PyTorch's default for recurrent layers and cells: every weight and bias from U(-1/sqrt(H), 1/sqrt(H)), in
    registration order."""
    bound = 1.0 / math.sqrt(module.hidden_size)
    for parameter in module._parameters.values():
        if parameter is not None:
            init.uniform_(parameter, -bound, bound)


def check_state_matches(name, label, state, weight):
    """A given initial state must be on the parameters' device and of their dtype (named here, not by a kernel)."""
    if state.device != weight.device:
        raise ValueError(f"{name}: {label} is on {state.device} but the parameters are on {weight.device}")
    if state.dtype != weight.dtype:
        raise TypeError(f"{name}: {label} dtype {state.dtype} does not match the parameters' {weight.dtype}")


class _RecurrentBase(Module):
    """torch.nn.RNNBase without projections (proj_size 0 only): the parameters of layer k, direction d are
    weight_ih_l{k}[_reverse] (G*H, in), weight_hh_l{k}[_reverse] (G*H, H), bias_ih_l{k}[_reverse] and
    bias_hh_l{k}[_reverse] (G*H,), registered in PyTorch's order so state dicts load unchanged. `cell` is
    'LSTM', 'GRU' or 'RNN'; `mode` is torch's name ('LSTM', 'GRU', 'RNN_TANH', 'RNN_RELU')."""

    def __init__(self, cell, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, device=None, dtype=None, nonlinearity="tanh"):
        super().__init__()
        name = type(self).__name__
        dtype = _dtype(dtype, name)
        check_sizes(name, input_size=input_size, hidden_size=hidden_size, num_layers=num_layers)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout <= 1.0:
            raise ValueError(f"{name}: dropout must be a number in [0, 1], got {dropout!r}")
        if dropout > 0 and num_layers == 1:   # torch's warning, word for word
            warnings.warn("dropout option adds dropout after all but last recurrent layer, so non-zero dropout "
                          f"expects num_layers greater than 1, but got dropout={dropout} and num_layers={num_layers}")
        if isinstance(proj_size, bool) or not isinstance(proj_size, (int, np.integer)) or proj_size < 0:
            raise ValueError(f"{name}: proj_size must be a non-negative integer, got {proj_size!r}")
        if proj_size:
            raise NotImplementedError(f"{name}: proj_size > 0 (LSTM projections) is not supported, got "
                                      f"proj_size={proj_size}")
        self.cell, self.nonlinearity, self.proj_size = cell, nonlinearity, 0
        self.mode = f"RNN_{nonlinearity.upper()}" if cell == "RNN" else cell
        self.input_size, self.hidden_size, self.num_layers = int(input_size), int(hidden_size), int(num_layers)
        self.bias, self.batch_first, self.bidirectional = bool(bias), bool(batch_first), bool(bidirectional)
        self.dropout = float(dropout)
        self.num_directions = 2 if self.bidirectional else 1
        gate_rows = GATES[cell] * self.hidden_size
        for layer in range(self.num_layers):
            layer_input = self.input_size if layer == 0 else self.hidden_size * self.num_directions
            for direction in range(self.num_directions):
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                shapes = [("weight_ih", (gate_rows, layer_input)), ("weight_hh", (gate_rows, self.hidden_size))]
                if self.bias:
                    shapes += [("bias_ih", (gate_rows,)), ("bias_hh", (gate_rows,))]
                for kind, shape in shapes:
                    setattr(self, kind + suffix, Parameter(np.empty(shape, dtype=dtype)))
        self.reset_parameters()
        _on_device(self, device)

    def reset_parameters(self):
        reset_uniformly(self)

    def flatten_parameters(self):
        """Nothing to do (PyTorch packs cuDNN's weight buffer here); kept so PyTorch code runs unchanged."""
        return self

    def _layer_parameters(self, layer, direction):
        suffix = f"_l{layer}" + ("_reverse" if direction else "")
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        return [self._parameters.get(kind + suffix) for kind in names]

    def extra_repr(self):
        text = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            text += f", num_layers={self.num_layers}"
        if not self.bias:
            text += ", bias=False"
        if self.batch_first:
            text += ", batch_first=True"
        if self.dropout:
            text += f", dropout={self.dropout}"
        if self.bidirectional:
            text += ", bidirectional=True"
        return text

    # ---- checks ------------------------------------------------------------------------------
    def _check_input(self, x):
        name = type(self).__name__
        x = _tensor(x, f"{name}: input", optional=False)
        if x.ndim not in (2, 3):
            raise ValueError(f"{name}: input must be 2-D (unbatched: T, input_size) or 3-D "
                             f"({'B, T' if self.batch_first else 'T, B'}, input_size), got shape {x.shape}")
        if x.shape[-1] != self.input_size:
            raise ValueError(f"{name}: input.size(-1) must equal input_size={self.input_size}, "
                             f"got shape {x.shape}")
        if 0 in x.shape[:-1]:   # (torch returns empty outputs for an empty batch; the kernels take none)
            raise ValueError(f"{name}: input needs at least one step and one sample, got shape {x.shape}")
        weight = self.weight_ih_l0
        if x.device != weight.device:
            raise ValueError(f"{name}: input is on {x.device} but the parameters are on {weight.device}; "
                             f"move one with .to(device)")
        if x.dtype != weight.dtype:
            raise TypeError(f"{name}: input dtype {x.dtype} does not match the parameters' {weight.dtype}")
        return x

    def _check_state(self, state, label, batch, unbatched):
        name = type(self).__name__
        state = _tensor(state, f"{name}: {label}", optional=False)
        layers = self.num_layers * self.num_directions
        expected = (layers, self.hidden_size) if unbatched else (layers, batch, self.hidden_size)
        if state.shape != expected:
            raise ValueError(f"{name}: {label} must have shape {expected} (num_layers * num_directions, "
                             f"{'' if unbatched else 'batch, '}hidden_size), got {state.shape}")
        check_state_matches(name, label, state, self.weight_ih_l0)
        if unbatched:
            state = state.unsqueeze(1)
        return state

    def _check_lengths(self, lengths, steps, batch):
        name = type(self).__name__
        if lengths is None:
            return None
        if isinstance(lengths, Tensor):
            lengths = lengths.data
        if backend.is_gpu_array(lengths):
            return lengths  # checked by the kernel (a host copy would synchronise here)
        host = np.asarray(lengths)
        if not np.issubdtype(host.dtype, np.integer) or host.shape != (batch,):
            raise ValueError(f"{name}: lengths must be {batch} integers (one per sample), got "
                             f"{host.dtype} of shape {host.shape}")
        if host.min() < 1 or host.max() > steps:
            raise ValueError(f"{name}: lengths must lie in [1, {steps}], got values from {host.min()} to {host.max()}")
        return host.astype(np.int64)

    # ---- forward -----------------------------------------------------------------------------
    def forward(self, input, hx=None, lengths=None):
        """input (T, B, I) (or (B, T, I) with batch_first, or unbatched (T, I)), or a PackedSequence; hx
        (L*D, B, H) or None for zeros (LSTM: a pair (h0, c0)), samples in the original order; lengths: B ints,
        each sample's valid steps. Returns output (T, B, D*H) (batch_first: (B, T, D*H); a PackedSequence for
        a packed input) and h_n (L*D, B, H) (LSTM: (h_n, c_n))."""
        if isinstance(input, rnn_utils.PackedSequence):
            return self._forward_packed(input, hx, lengths)
        x = self._check_input(input)
        unbatched = x.ndim == 2
        if unbatched:
            if lengths is not None:
                raise ValueError(f"{type(self).__name__}: lengths needs batched (3-D) input, got shape {x.shape}")
            x = x.unsqueeze(1)
        elif self.batch_first:
            x = x.transpose(0, 1)
        output, states = self._forward_time_major(x, hx, lengths, unbatched)
        if self.batch_first and not unbatched:
            output = output.transpose(0, 1)
        return output, states

    def _forward_packed(self, packed, hx, lengths):
        """A PackedSequence runs padded (time-major, original sample order) with its lengths, and its output
        is packed like the input: as torch's, whose sorting of hx and h_n by sorted_indices cancels out."""
        if lengths is not None:
            raise ValueError(f"{type(self).__name__}: lengths cannot be given with a PackedSequence input "
                             f"(it carries its own)")
        if packed.data.ndim != 2:
            raise ValueError(f"{type(self).__name__}: a PackedSequence input must have data of shape (sum of "
                             f"lengths, input_size), got {packed.data.shape}")
        padded, lengths = rnn_utils.pad_packed_sequence(packed)
        output, states = self._forward_time_major(self._check_input(padded), hx, lengths.data, False)
        return rnn_utils._pack(output, packed.batch_sizes.data, packed.sorted_indices, False), states

    def _forward_time_major(self, x, hx, lengths, unbatched):
        steps, batch = x.shape[0], x.shape[1]
        h0, c0 = self._initial_states(hx, batch, unbatched)
        lengths = self._check_lengths(lengths, steps, batch)
        training_graph = autograd.grad_enabled()
        h_last, c_last = [], []  # (directions, B, H) a layer
        for layer in range(self.num_layers):
            if self.bidirectional:
                index = slice(2 * layer, 2 * layer + 2)
                h = None if h0 is None else h0[index]
                c = None if c0 is None else c0[index]
                x, h_n, c_n = self._run_bidirectional(x, h, c, layer, lengths, training_graph)
            else:
                h = None if h0 is None else h0[layer]
                c = None if c0 is None else c0[layer]
                x, h_n, c_n = self._run_direction(x, h, c, layer, 0, lengths, training_graph)
                h_n, c_n = h_n.unsqueeze(0), (None if c_n is None else c_n.unsqueeze(0))
            h_last.append(h_n)
            c_last.append(c_n)
            if self.dropout and self.training and layer < self.num_layers - 1:
                from . import functional
                x = functional.dropout(x, p=self.dropout, training=True)
        output = x
        h_n = h_last[0] if len(h_last) == 1 else cat(h_last, dim=0)
        c_n = None
        if self.cell == "LSTM":
            c_n = c_last[0] if len(c_last) == 1 else cat(c_last, dim=0)
        if unbatched:
            output, h_n = output.squeeze(1), h_n.squeeze(1)
            c_n = None if c_n is None else c_n.squeeze(1)
        return (output, (h_n, c_n)) if self.cell == "LSTM" else (output, h_n)

    def _initial_states(self, hx, batch, unbatched):
        if hx is None:
            return None, None
        if self.cell == "LSTM":
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError(f"LSTM: hx must be a pair (h0, c0), got {type(hx).__name__}")
            return (self._check_state(hx[0], "h0", batch, unbatched),
                    self._check_state(hx[1], "c0", batch, unbatched))
        return self._check_state(hx, "hx", batch, unbatched), None

    def _run_direction(self, x, h, c, layer, direction, lengths, training_graph):
        w_ih, w_hh, b_ih, b_hh = self._layer_parameters(layer, direction)
        inputs = (x, h, c, w_ih, w_hh, b_ih, b_hh)
        training = training_graph and any(t is not None and t.requires_grad for t in inputs)
        options = dict(lengths=lengths, reverse=bool(direction), training=training)
        if self.cell == "LSTM":
            return LSTMLayer.apply(x, h, c, w_ih, w_hh, b_ih, b_hh, **options)
        if self.cell == "GRU":
            y, h_n = GRULayer.apply(x, h, w_ih, w_hh, b_ih, b_hh, **options)
        else:
            y, h_n = RNNLayer.apply(x, h, w_ih, w_hh, b_ih, b_hh, nonlinearity=self.nonlinearity, **options)
        return y, h_n, None

    def _run_bidirectional(self, x, h, c, layer, lengths, training_graph):
        weights = self._layer_parameters(layer, 0) + self._layer_parameters(layer, 1)
        inputs = (x, h, c, *weights)
        training = training_graph and any(t is not None and t.requires_grad for t in inputs)
        mode = self.cell.lower() if self.cell != "RNN" else f"rnn_{self.nonlinearity}"
        result = BidirectionalLayer.apply(*inputs, mode=mode, lengths=lengths, training=training)
        return result[0], result[1], (result[2] if self.cell == "LSTM" else None)


class LSTM(_RecurrentBase):
    """torch.nn.LSTM: gates i, f, g, o; forward(input, (h0, c0)=None, lengths=None) -> output, (h_n, c_n)."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, device=None, dtype=None):
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         proj_size, device, dtype)


class GRU(_RecurrentBase):
    """torch.nn.GRU: gates r, z, n; forward(input, h0=None, lengths=None) -> output, h_n."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, device=None, dtype=None):
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         0, device, dtype)


class RNN(_RecurrentBase):
    """torch.nn.RNN (Elman): h' = tanh or relu(W_ih x + b_ih + W_hh h + b_hh). (torch's repr leaves the
    nonlinearity out; `mode` says it: 'RNN_TANH' or 'RNN_RELU'.)"""

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, device=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__("RNN", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         0, device, dtype, nonlinearity)


# The cells (one step each) live in recurrent_cells.py, which builds on the Functions above; re-exported here
# so that nn.recurrent holds every recurrent module, as torch.nn.modules.rnn does.
from .recurrent_cells import GRUCell, LSTMCell, RNNCell
