"""A PackedSequence through nn.LSTM, and LSTMCell steps, on the CUDA kernels in Numba's simulator (tiny shapes)
against the same calls on the CPU path (NUMBANET_BACKEND=cpu): outputs, states and every gradient.
Run with NUMBA_ENABLE_CUDASIM=1."""
import numpy as np

import nn
from nn.utils import rnn as rnn_utils
from tests.oracle import assert_close, random_array


def _run(monkeypatch, backend, make_outputs, leaves):
    """Outputs and leaf gradients of make_outputs() on `backend` ('auto' = the CUDA kernels here)."""
    monkeypatch.setenv("NUMBANET_BACKEND", backend)
    for leaf in leaves:
        leaf.grad = None
    outputs = make_outputs()
    sum((o * nn.Tensor(random_array(o.shape, seed=40 + i))).sum() for i, o in enumerate(outputs)).backward()
    return [o.numpy() for o in outputs], [leaf.grad.numpy() for leaf in leaves]


def _compare(monkeypatch, make_outputs, leaves):
    cuda_outputs, cuda_grads = _run(monkeypatch, "auto", make_outputs, leaves)
    cpu_outputs, cpu_grads = _run(monkeypatch, "cpu", make_outputs, leaves)
    for index, (a, b) in enumerate(zip(cuda_outputs, cpu_outputs)):
        assert_close(a, b, np.float32, name=f"output {index}")
    for index, (a, b) in enumerate(zip(cuda_grads, cpu_grads)):
        assert_close(a, b, np.float32, scale=4, name=f"gradient {index}")


def test_packed_bidirectional_lstm_matches_cpu_path(monkeypatch):
    nn.manual_seed(0)
    model = nn.LSTM(2, 3, bidirectional=True, batch_first=True)
    x = nn.Tensor(random_array((3, 3, 2), seed=1), requires_grad=True)  # (B, T, I)
    h0, c0 = (nn.Tensor(random_array((2, 3, 3), seed=2 + i), requires_grad=True) for i in range(2))

    def outputs():
        packed = rnn_utils.pack_padded_sequence(x, [2, 3, 1], batch_first=True, enforce_sorted=False)
        out, (h_n, c_n) = model(packed, (h0, c0))
        padded, _ = rnn_utils.pad_packed_sequence(out, batch_first=True)
        return [out.data, padded, h_n, c_n]

    _compare(monkeypatch, outputs, [x, h0, c0, *model.parameters()])


def test_lstm_cell_steps_match_cpu_path(monkeypatch):
    nn.manual_seed(1)
    cell = nn.LSTMCell(2, 3)
    x = nn.Tensor(random_array((2, 2, 2), seed=3), requires_grad=True)  # two steps of (B, I)
    h0, c0 = (nn.Tensor(random_array((2, 3), seed=4 + i), requires_grad=True) for i in range(2))

    def outputs():
        h, c = cell(x[0], (h0, c0))
        h2, c2 = cell(x[1], (h, c))
        return [h, h2, c2]

    _compare(monkeypatch, outputs, [x, h0, c0, *cell.parameters()])
