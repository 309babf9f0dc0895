"""RNN, LSTM and GRU modules against torch.nn with the same state dict, in float64: outputs, final
states and the gradients of every input, initial state and parameter; lengths against packed sequences."""
import numpy as np
import pytest

import nn
from nn.recurrent import GRU, LSTM, RNN
from tests.oracle import assert_close, random_array, torch_module

CELLS = {"lstm": (LSTM, "LSTM", {}), "gru": (GRU, "GRU", {}), "rnn_tanh": (RNN, "RNN", {}),
         "rnn_relu": (RNN, "RNN", {"nonlinearity": "relu"})}


def make_pair(cell, input_size, hidden_size, **options):
    """Our layer and torch's, float64, ours loaded (strict) from torch's state dict."""
    torch = torch_module()
    ours_class, torch_name, extra = CELLS[cell]
    torch.manual_seed(1)
    theirs = getattr(torch.nn, torch_name)(input_size, hidden_size, **extra, **options).double()
    ours = ours_class(input_size, hidden_size, **extra, **options, dtype=np.float64)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def run_both(ours, theirs, x, states=None, lengths=None, seed=5):
    """Forward both, backward a random weighting of every output; returns (ours, torch) result lists."""
    torch = torch_module()
    lstm = isinstance(ours, LSTM)
    x_ours = nn.Tensor(x.copy(), requires_grad=True)
    x_torch = torch.tensor(x, requires_grad=True)
    states_ours = states_torch = None
    if states is not None:
        states_ours = [nn.Tensor(s.copy(), requires_grad=True) for s in states]
        states_torch = [torch.tensor(s, requires_grad=True) for s in states]
    hx_ours = None if states is None else (tuple(states_ours) if lstm else states_ours[0])
    hx_torch = None if states is None else (tuple(states_torch) if lstm else states_torch[0])
    out, h = ours(x_ours, hx_ours, lengths=lengths)
    if lengths is None:
        out_t, h_t = theirs(x_torch, hx_torch)
    else:
        pack = torch.nn.utils.rnn
        packed = pack.pack_padded_sequence(x_torch, torch.tensor(lengths), batch_first=ours.batch_first,
                                           enforce_sorted=False)
        out_packed, h_t = theirs(packed, hx_torch)
        total = x.shape[1] if ours.batch_first else x.shape[0]
        out_t, _ = pack.pad_packed_sequence(out_packed, batch_first=ours.batch_first, total_length=total)
    outs_ours = [out] + (list(h) if lstm else [h])
    outs_torch = [out_t] + (list(h_t) if lstm else [h_t])
    weights = [random_array(o.shape, np.float64, seed=seed + i) for i, o in enumerate(outs_ours)]
    sum(((o * w).sum() for o, w in zip(outs_ours, weights)), nn.Tensor(np.zeros((), np.float64))).backward()
    sum((o * torch.tensor(w)).sum() for o, w in zip(outs_torch, weights)).backward()
    ours_results = [o.numpy() for o in outs_ours] + [x_ours.grad.numpy()]
    torch_results = [o.detach().numpy() for o in outs_torch] + [x_torch.grad.numpy()]
    for s_ours, s_torch in zip(states_ours or [], states_torch or []):
        ours_results.append(s_ours.grad.numpy())
        torch_results.append(s_torch.grad.numpy())
    for (name, p_ours), (_, p_torch) in zip(ours.named_parameters(), theirs.named_parameters()):
        ours_results.append(p_ours.grad.numpy())
        torch_results.append(p_torch.grad.numpy())
    return ours_results, torch_results


def compare(ours_results, torch_results):
    assert len(ours_results) == len(torch_results)
    for index, (a, b) in enumerate(zip(ours_results, torch_results)):
        assert_close(a, b, np.float64, rtol=1e-9, atol=1e-10, name=f"result {index}")


CONFIGS = [
    dict(num_layers=1),
    dict(num_layers=2, bidirectional=True),
    dict(num_layers=2, batch_first=True, bias=False),
    dict(num_layers=1, bidirectional=True, batch_first=True),
    dict(num_layers=2, bidirectional=True, bias=False),
]


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("config", range(len(CONFIGS)))
def test_matches_torch_with_initial_states(cell, config):
    options = CONFIGS[config]
    ours, theirs = make_pair(cell, 3, 5, **options)
    batch, steps = 4, 6
    shape = (batch, steps, 3) if options.get("batch_first") else (steps, batch, 3)
    x = random_array(shape, np.float64, seed=config)
    layers = options["num_layers"] * (2 if options.get("bidirectional") else 1)
    states = [random_array((layers, batch, 5), np.float64, seed=10 + i) for i in range(2 if cell == "lstm" else 1)]
    compare(*run_both(ours, theirs, x, states))


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
def test_zero_initial_state_by_default(cell):
    ours, theirs = make_pair(cell, 2, 3, num_layers=2)
    compare(*run_both(ours, theirs, random_array((5, 3, 2), np.float64, seed=3)))


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_relu"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_lengths_match_packed_sequences(cell, batch_first):
    ours, theirs = make_pair(cell, 3, 4, num_layers=2, bidirectional=True, batch_first=batch_first)
    lengths = [4, 7, 1, 7, 5]
    shape = (5, 7, 3) if batch_first else (7, 5, 3)
    x = random_array(shape, np.float64, seed=4)
    states = [random_array((4, 5, 4), np.float64, seed=20 + i) for i in range(2 if cell == "lstm" else 1)]
    ours_results, torch_results = run_both(ours, theirs, x, states, lengths=np.array(lengths))
    compare(ours_results, torch_results)
    output = ours_results[0] if not batch_first else ours_results[0].transpose(1, 0, 2)
    for sample, length in enumerate(lengths):
        assert np.all(output[length:, sample] == 0.0), "outputs past a sample's length must be zero"


def test_lengths_as_list_and_all_full():
    ours, theirs = make_pair("gru", 2, 3)
    x = random_array((4, 2, 2), np.float64, seed=6)
    full, _ = ours(nn.Tensor(x))
    listed, _ = ours(nn.Tensor(x), lengths=[4, 4])
    assert_close(listed.data, full.data, np.float64)


def test_float32_forward_close_to_torch():
    torch = torch_module()
    torch.manual_seed(2)
    theirs = torch.nn.LSTM(8, 16, num_layers=2, bidirectional=True)
    ours = LSTM(8, 16, num_layers=2, bidirectional=True)
    ours.load_state_dict(theirs.state_dict())
    x = random_array((9, 3, 8), seed=7)
    out, (h, c) = ours(nn.Tensor(x))
    out_t, (h_t, c_t) = theirs(torch.from_numpy(x))
    assert out.dtype == np.float32
    for a, b in ((out, out_t), (h, h_t), (c, c_t)):
        assert_close(a.data, b.detach().numpy(), np.float32, scale=4)


@pytest.mark.parametrize("cell", list(CELLS))
def test_state_dict_keys_shapes_and_strict_load(cell):
    torch = torch_module()
    ours_class, torch_name, extra = CELLS[cell]
    theirs = getattr(torch.nn, torch_name)(3, 4, num_layers=2, bidirectional=True, **extra)
    ours = ours_class(3, 4, num_layers=2, bidirectional=True, **extra)
    expected = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    assert [k for k in ours.state_dict()] == list(expected)
    assert {k: v.shape for k, v in ours.state_dict().items()} == expected
    ours.load_state_dict(theirs.state_dict())  # strict by default
    no_bias = ours_class(3, 4, bias=False, **extra)
    assert list(no_bias.state_dict()) == ["weight_ih_l0", "weight_hh_l0"]
    with pytest.raises(KeyError, match="missing keys"):
        no_bias.load_state_dict({"weight_ih_l0": theirs.state_dict()["weight_ih_l0"]})


def test_default_init_is_uniform_in_pytorch_bound_and_seeded():
    nn.init.manual_seed(3)
    first = LSTM(5, 16, num_layers=2).state_dict()
    nn.init.manual_seed(3)
    second = LSTM(5, 16, num_layers=2).state_dict()
    bound = 1 / np.sqrt(16)
    for key, value in first.items():
        np.testing.assert_array_equal(value, second[key])
        assert value.dtype == np.float32
        assert np.abs(value).max() <= bound and np.abs(value).max() > 0.8 * bound and value.std() > 0.4 * bound


def test_dropout_between_layers_only_in_training():
    torch = torch_module()
    ours, theirs = make_pair("lstm", 3, 6, num_layers=3, dropout=0.5)
    ours.eval()
    theirs.eval()
    x = random_array((5, 2, 3), np.float64, seed=8)
    out, _ = ours(nn.Tensor(x))
    assert_close(out.data, theirs(torch.tensor(x))[0].detach().numpy(), np.float64)
    ours.train()
    nn.init.manual_seed(0)
    dropped, _ = ours(nn.Tensor(x))
    assert np.abs(dropped.numpy() - out.numpy()).max() > 1e-3, "dropout must change the training output"
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):   # as torch
        single = LSTM(3, 6, num_layers=1, dropout=0.5, dtype=np.float64)  # torch too: no dropout after the last layer
    single.train()
    a, _ = single(nn.Tensor(x))
    single.eval()
    b, _ = single(nn.Tensor(x))
    assert_close(a.data, b.data, np.float64)


def test_unbatched_input():
    torch = torch_module()
    ours, theirs = make_pair("gru", 3, 4, num_layers=2, bidirectional=True)
    x = random_array((5, 3), np.float64, seed=9)
    h0 = random_array((4, 4), np.float64, seed=10)
    out, h = ours(nn.Tensor(x), nn.Tensor(h0))
    out_t, h_t = theirs(torch.tensor(x), torch.tensor(h0))
    assert out.shape == (5, 8) and h.shape == (4, 4)
    assert_close(out.data, out_t.detach().numpy(), np.float64)
    assert_close(h.data, h_t.detach().numpy(), np.float64)


def test_no_grad_records_nothing():
    model = LSTM(2, 3)
    with nn.no_grad():
        out, (h, c) = model(nn.Tensor(random_array((4, 2, 2))))
    assert not out.requires_grad and out._creator is None and h.shape == (1, 2, 3)


def test_hidden_state_only_loss_backpropagates():
    """Unused outputs (here `output` and c_n) reach the Function as None gradients."""
    torch = torch_module()
    ours, theirs = make_pair("lstm", 3, 4, num_layers=2)
    x = random_array((6, 2, 3), np.float64, seed=11)
    _, (h, _) = ours(nn.Tensor(x))
    h.sum().backward()
    _, (h_t, _) = theirs(torch.tensor(x))
    h_t.sum().backward()
    for p, p_t in zip(ours.parameters(), theirs.parameters()):
        assert_close(p.grad.data, p_t.grad.numpy(), np.float64, rtol=1e-9, atol=1e-10)


def test_bad_input_names_the_layer():
    model = LSTM(3, 4, num_layers=2)
    with pytest.raises(ValueError, match=r"LSTM: input must be 2-D .* got shape \(2, 3, 4, 3\)"):
        model(nn.Tensor(random_array((2, 3, 4, 3))))
    with pytest.raises(ValueError, match=r"LSTM: input.size\(-1\) must equal input_size=3, got shape \(5, 2, 4\)"):
        model(nn.Tensor(random_array((5, 2, 4))))
    with pytest.raises(ValueError, match=r"GRU: hx must have shape \(1, 2, 4\)"):
        GRU(3, 4)(nn.Tensor(random_array((5, 2, 3))), nn.Tensor(random_array((2, 2, 4))))
    with pytest.raises(TypeError, match="LSTM: hx must be a pair"):
        model(nn.Tensor(random_array((5, 2, 3))), nn.Tensor(random_array((2, 2, 4))))
    with pytest.raises(ValueError, match=r"RNN: lengths must lie in \[1, 5\]"):
        RNN(3, 4)(nn.Tensor(random_array((5, 2, 3))), lengths=[6, 2])
    with pytest.raises(ValueError, match="RNN: lengths must be 2 integers"):
        RNN(3, 4)(nn.Tensor(random_array((5, 2, 3))), lengths=[3])
    with pytest.raises(TypeError, match="LSTM: input dtype float64 does not match"):
        model(nn.Tensor(random_array((5, 2, 3), np.float64)))
    with pytest.raises(ValueError, match="RNN: nonlinearity"):
        RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="GRU: hidden_size must be a positive integer"):
        GRU(3, 0)


def test_constructor_arguments_attributes_and_repr_are_torchs():
    """torch's positional order (LSTM: proj_size, then device, dtype), proj_size and mode attributes, repr."""
    torch = torch_module()
    cases = [("LSTM", (3, 4, 2, False, True, 0.0, True, 0)), ("GRU", (3, 4, 1, True, False, 0.0, True)),
             ("RNN", (3, 4, 2, "relu", True, True)), ("RNN", (3, 4)), ("LSTMCell", (3, 4, False)),
             ("GRUCell", (3, 4)), ("RNNCell", (3, 4, True, "relu"))]
    for name, args in cases:
        ours, theirs = getattr(nn, name)(*args), getattr(torch.nn, name)(*args)
        assert repr(ours) == repr(theirs)
        for attribute in ("mode", "proj_size", "nonlinearity", "bidirectional", "batch_first", "num_layers"):
            if hasattr(theirs, attribute):
                assert getattr(ours, attribute) == getattr(theirs, attribute), (name, attribute)
    layer = LSTM(3, 4, 1, True, False, 0.0, False, 0, "cpu", np.float64)
    assert layer.weight_ih_l0.dtype == np.float64
    assert nn.GRUCell(3, 4, True, "cpu", np.float64).weight_ih.dtype == np.float64
    with pytest.raises(NotImplementedError, match=r"LSTM: proj_size > 0 \(LSTM projections\) is not supported"):
        LSTM(3, 4, proj_size=2)
    with pytest.raises(ValueError, match=r"LSTM: proj_size must be a non-negative integer, got -1"):
        LSTM(3, 4, proj_size=-1)
    with pytest.raises(ValueError, match=r"device must be 'cpu' or 'cuda', got 'tpu'"):
        GRU(3, 4, device="tpu")


def test_states_of_another_dtype_or_an_empty_batch_are_refused_by_the_layer():
    x = nn.Tensor(random_array((5, 2, 3), np.float32, seed=1))
    with pytest.raises(TypeError, match=r"GRU: hx dtype float64 does not match the parameters' float32"):
        GRU(3, 4)(x, nn.Tensor(np.zeros((1, 2, 4))))
    with pytest.raises(TypeError, match=r"LSTM: h0 dtype int64 does not match the parameters' float32"):
        LSTM(3, 4, bidirectional=True)(x, (nn.Tensor(np.zeros((2, 2, 4), np.int64)), nn.Tensor(np.zeros((2, 2, 4)))))
    with pytest.raises(TypeError, match=r"GRUCell: hx dtype float64 does not match the parameters' float32"):
        nn.GRUCell(3, 4)(x[0], nn.Tensor(np.zeros((2, 4))))
    with pytest.raises(TypeError, match=r"LSTMCell: hx must be a pair of tensors \(h, c\) or None, got "
                                        r"\(Tensor, NoneType\)"):
        nn.LSTMCell(3, 4)(x[0], (nn.Tensor(np.zeros((2, 4), np.float32)), None))
    with pytest.raises(ValueError, match=r"RNN: input needs at least one step and one sample, got shape \(5, 0, 3\)"):
        RNN(3, 4)(nn.Tensor(np.zeros((5, 0, 3), np.float32)))


def test_backward_through_freed_graph_raises():
    model = GRU(2, 3)
    out, _ = model(nn.Tensor(random_array((3, 2, 2))))
    loss = out.sum()
    loss.backward()
    with pytest.raises(RuntimeError, match="second time"):
        loss.backward()
