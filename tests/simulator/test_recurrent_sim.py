"""The recurrent modules on the CUDA kernels in Numba's simulator (tiny shapes), forward and backward,
against torch.nn in float64. Run with NUMBA_ENABLE_CUDASIM=1."""
import numpy as np

import nn
from nn.recurrent import GRU, LSTM
from tests.oracle import assert_close, random_array, torch_module


def check(ours, theirs, x, lengths=None, states=None):
    torch = torch_module()
    theirs = theirs.double()
    ours.load_state_dict(theirs.state_dict())
    lstm = isinstance(ours, LSTM)
    x_ours = nn.Tensor(x, requires_grad=True)
    x_torch = torch.tensor(x.astype(np.float64), requires_grad=True)
    hx_ours = hx_torch = None
    if states is not None:
        hx_ours = tuple(nn.Tensor(s) for s in states) if lstm else nn.Tensor(states[0])
        hx_torch = tuple(torch.tensor(s.astype(np.float64)) for s in states) if lstm else \
            torch.tensor(states[0].astype(np.float64))
    out, h = ours(x_ours, hx_ours, lengths=lengths)
    if lengths is None:
        out_t, h_t = theirs(x_torch, hx_torch)
    else:
        pack = torch.nn.utils.rnn
        packed = pack.pack_padded_sequence(x_torch, torch.tensor(lengths), enforce_sorted=False)
        out_packed, h_t = theirs(packed, hx_torch)
        out_t, _ = pack.pad_packed_sequence(out_packed, total_length=x.shape[0])
    h_ours = h[0] if lstm else h
    h_torch = h_t[0] if lstm else h_t
    weight = random_array(out.shape, seed=3)
    ((out * nn.Tensor(weight)).sum() + h_ours.sum()).backward()
    ((out_t * torch.tensor(weight.astype(np.float64))).sum() + h_torch.sum()).backward()
    assert_close(out.data, out_t.detach().numpy(), np.float32, name="output")
    assert_close(h_ours.data, h_torch.detach().numpy(), np.float32, name="h_n")
    assert_close(x_ours.grad.data, x_torch.grad.numpy(), np.float32, scale=4, name="grad x")
    for (name, p), (_, q) in zip(ours.named_parameters(), theirs.named_parameters()):
        assert_close(p.grad.data, q.grad.numpy(), np.float32, scale=4, name=f"grad {name}")


def test_lstm_layer_in_simulator():
    torch = torch_module()
    torch.manual_seed(0)
    x = random_array((3, 2, 3), seed=1)
    states = [random_array((1, 2, 4), seed=2 + i) for i in range(2)]
    check(LSTM(3, 4), torch.nn.LSTM(3, 4), x, states=states)


def test_bidirectional_gru_with_lengths_in_simulator():
    torch = torch_module()
    torch.manual_seed(1)
    x = random_array((3, 2, 2), seed=4)
    check(GRU(2, 3, bidirectional=True), torch.nn.GRU(2, 3, bidirectional=True), x, lengths=np.array([3, 2]))
