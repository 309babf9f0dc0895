"""nn.utils.rnn (packed sequences), packed input to LSTM/GRU/RNN, and LSTMCell/GRUCell/RNNCell against torch in
float64: values, layouts, every gradient (weights, states, inputs through the packing) and the errors."""
import numpy as np
import pytest

import nn
from nn.utils import rnn as ours_rnn
from tests.oracle import assert_close, random_array, torch_module

EXACT = dict(rtol=1e-9, atol=1e-10)


def _tensors(arrays):
    """The same float64 values as our leaf Tensors and torch's, both requiring grad."""
    torch = torch_module()
    return ([nn.Tensor(a.copy(), requires_grad=True) for a in arrays],
            [torch.tensor(a, requires_grad=True) for a in arrays])


def _backward_both(ours, theirs, seed=50):
    """Backward sum(output * w) with the same random w for each pair of outputs."""
    torch = torch_module()
    weights = [random_array(o.shape, np.float64, seed=seed + i) for i, o in enumerate(ours)]
    sum(((o * w).sum() for o, w in zip(ours, weights)), nn.Tensor(np.zeros((), np.float64))).backward()
    sum((o * torch.tensor(w)).sum() for o, w in zip(theirs, weights)).backward()


def _assert_same_indices(ours, theirs):
    for field in ("batch_sizes", "sorted_indices", "unsorted_indices"):
        a, b = getattr(ours, field), getattr(theirs, field)
        assert (a is None) == (b is None), field
        if a is not None:
            assert a.dtype == np.int64 and a.device == "cpu", field
            np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=field)


# ---- packing and padding -------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("enforce_sorted", [True, False])
def test_pack_and_pad_match_torch_with_gradients(batch_first, enforce_sorted):
    torch = torch_module()
    lengths = [6, 4, 4, 2, 1] if enforce_sorted else [2, 6, 4, 1, 6]  # ties: torch's sort is stable, so is ours
    x = random_array((5, 6, 3) if batch_first else (6, 5, 3), np.float64, seed=1)
    (x_ours,), (x_torch,) = _tensors([x])
    packed = ours_rnn.pack_padded_sequence(x_ours, lengths, batch_first=batch_first, enforce_sorted=enforce_sorted)
    packed_t = torch.nn.utils.rnn.pack_padded_sequence(x_torch, torch.tensor(lengths), batch_first=batch_first,
                                                       enforce_sorted=enforce_sorted)
    assert isinstance(packed, tuple) and packed._fields == packed_t._fields
    _assert_same_indices(packed, packed_t)
    assert_close(packed.data.data, packed_t.data.detach().numpy(), np.float64, **EXACT)
    padded, out_lengths = ours_rnn.pad_packed_sequence(packed, batch_first=batch_first, padding_value=-2.5,
                                                       total_length=8)
    padded_t, out_lengths_t = torch.nn.utils.rnn.pad_packed_sequence(packed_t, batch_first=batch_first,
                                                                     padding_value=-2.5, total_length=8)
    assert_close(padded.data, padded_t.detach().numpy(), np.float64, **EXACT)
    np.testing.assert_array_equal(out_lengths.numpy(), out_lengths_t.numpy())
    assert out_lengths.dtype == np.int64
    _backward_both([padded, packed.data], [padded_t, packed_t.data])
    assert_close(x_ours.grad.data, x_torch.grad.numpy(), np.float64, **EXACT)


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_pad_sequence_matches_torch_with_gradients(batch_first, padding_side):
    torch = torch_module()
    arrays = [random_array((n, 2, 3), np.float64, seed=n) for n in (3, 0, 5, 1)]
    ours, theirs = _tensors(arrays)
    padded = ours_rnn.pad_sequence(ours, batch_first=batch_first, padding_value=7.0, padding_side=padding_side)
    padded_t = torch.nn.utils.rnn.pad_sequence(theirs, batch_first=batch_first, padding_value=7.0,
                                               padding_side=padding_side)
    assert_close(padded.data, padded_t.detach().numpy(), np.float64, **EXACT)
    _backward_both([padded], [padded_t])
    for a, b in zip(ours, theirs):
        assert_close(a.grad.data, b.grad.numpy(), np.float64, **EXACT)


@pytest.mark.parametrize("enforce_sorted", [True, False])
def test_pack_sequence_matches_torch_with_gradients(enforce_sorted):
    torch = torch_module()
    sizes = (5, 3, 3, 1) if enforce_sorted else (3, 5, 1, 3)
    ours, theirs = _tensors([random_array((n, 2), np.float64, seed=n) for n in sizes])
    packed = ours_rnn.pack_sequence(ours, enforce_sorted=enforce_sorted)
    packed_t = torch.nn.utils.rnn.pack_sequence(theirs, enforce_sorted=enforce_sorted)
    _assert_same_indices(packed, packed_t)
    assert_close(packed.data.data, packed_t.data.detach().numpy(), np.float64, **EXACT)
    _backward_both([packed.data], [packed_t.data])
    for a, b in zip(ours, theirs):
        assert_close(a.grad.data, b.grad.numpy(), np.float64, **EXACT)


def test_packed_sequence_tuple_and_defaults():
    data = nn.Tensor(random_array((4, 2)))
    packed = ours_rnn.PackedSequence(data, np.array([2, 1, 1]), np.array([1, 0]))
    np.testing.assert_array_equal(packed.unsorted_indices.numpy(), [1, 0])  # the inverse, made as torch does
    data_field, batch_sizes, sorted_indices, unsorted_indices = packed
    assert data_field is data and batch_sizes.dtype == np.int64 and sorted_indices is packed.sorted_indices
    assert unsorted_indices is packed.unsorted_indices
    assert packed.to("cpu") is packed and not packed.is_cuda
    assert ours_rnn.PackedSequence(data, [4]).sorted_indices is None


def test_pad_sequence_takes_the_first_sequences_dtype_as_torch():
    """torch's output has the first sequence's dtype; concatenating promoted (int64 with float32 gave float64)."""
    torch = torch_module()
    for first, second in [(np.int64, np.float32), (np.float32, np.float64), (np.float32, np.int64)]:
        a, b = np.arange(3).astype(first), (np.arange(2) + 0.5).astype(second)
        ours = ours_rnn.pad_sequence([nn.Tensor(a), nn.Tensor(b)], padding_value=7)
        theirs = torch.nn.utils.rnn.pad_sequence([torch.from_numpy(a), torch.from_numpy(b)], padding_value=7)
        assert ours.dtype == theirs.numpy().dtype
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


@pytest.mark.parametrize("batch_first", [False, True])
def test_unpad_and_unpack_sequence_match_torch_with_gradients(batch_first):
    torch = torch_module()
    arrays = [random_array((n, 3), np.float64, seed=n) for n in (4, 2, 5)]
    ours = [nn.Tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    padded = ours_rnn.pad_sequence(ours, batch_first=batch_first)
    their_padded = torch.nn.utils.rnn.pad_sequence(theirs, batch_first=batch_first)
    lengths = [4, 2, 5]
    unpadded = ours_rnn.unpad_sequence(padded, lengths, batch_first=batch_first)
    their_unpadded = torch.nn.utils.rnn.unpad_sequence(their_padded, torch.tensor(lengths), batch_first=batch_first)
    unpacked = ours_rnn.unpack_sequence(ours_rnn.pack_sequence(ours, enforce_sorted=False))
    their_unpacked = torch.nn.utils.rnn.unpack_sequence(torch.nn.utils.rnn.pack_sequence(theirs, enforce_sorted=False))
    total, their_total = 0, 0
    for k, (a, b, c, d) in enumerate(zip(unpadded, their_unpadded, unpacked, their_unpacked, strict=True)):
        assert_close(a.numpy(), b.detach().numpy(), np.float64)
        assert_close(c.numpy(), d.detach().numpy(), np.float64)
        total = total + (a * (k + 1)).sum() + (c * (k + 2) * c).sum()
        their_total = their_total + (b * (k + 1)).sum() + (d * (k + 2) * d).sum()
    total.backward()
    their_total.backward()
    for mine, reference in zip(ours, theirs, strict=True):
        assert_close(mine.grad.numpy(), reference.grad.numpy(), np.float64)
    packed = ours_rnn.pack_sequence(ours, enforce_sorted=False)
    assert packed.to(np.float32).data.dtype == np.float32 and packed.double() is packed and packed.cpu() is packed
    with pytest.raises(ValueError, match=r"unpad_sequence: lengths must be 3 integers in \[0, 5\], got \[4, 2, 6\]"):
        ours_rnn.unpad_sequence(ours_rnn.pad_sequence(ours), [4, 2, 6])


@pytest.mark.parametrize("call, error, match", [
    (lambda x: ours_rnn.pack_padded_sequence(x, [3, 4, 2]), ValueError, "sorted in decreasing order"),
    (lambda x: ours_rnn.pack_padded_sequence(x, [4, 3, 0]), ValueError, "greater than 0"),
    (lambda x: ours_rnn.pack_padded_sequence(x, [5, 3, 2]), ValueError, "exceed the input's 4 steps"),
    (lambda x: ours_rnn.pack_padded_sequence(x, [4, 3]), ValueError, r"len\(lengths\).*got 2 \(batch_size=3\)"),
    (lambda x: ours_rnn.pack_padded_sequence(x, [[4, 3, 2]]), ValueError, "1-D"),
    (lambda x: ours_rnn.pack_padded_sequence(x, [4.5, 3, 2]), TypeError, "integers"),
    (lambda x: ours_rnn.pack_padded_sequence(x[0, 0], [1]), ValueError, "time and a batch dim"),
    (lambda x: ours_rnn.pad_packed_sequence(ours_rnn.pack_padded_sequence(x, [4, 3, 2]), total_length=3),
     ValueError, "total_length=3 and max sequence length being 4"),
    (lambda x: ours_rnn.pad_packed_sequence(x), TypeError, "must be a PackedSequence"),
    (lambda x: ours_rnn.pad_sequence([]), ValueError, "empty list"),
    (lambda x: ours_rnn.pad_sequence([x[0], x[:, :, 0]]), ValueError, "same trailing dims"),
    (lambda x: ours_rnn.pad_sequence([x[0]], padding_side="up"), ValueError, "left or right"),
    (lambda x: ours_rnn.pad_sequence([3.0]), TypeError, "expected a Tensor"),
    (lambda x: ours_rnn.pack_padded_sequence(x[:, :0], []), ValueError,
     r"pack_padded_sequence: cannot pack an empty batch, got input of shape \(4, 0, 2\)"),   # torch refuses too
])
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call(nn.Tensor(random_array((4, 3, 2))))


# ---- PackedSequence through LSTM / GRU / RNN -----------------------------------------------------------------
LAYERS = {"LSTM": {}, "GRU": {}, "RNN": {"nonlinearity": "tanh"}}


@pytest.mark.parametrize("mode", list(LAYERS))
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("enforce_sorted", [True, False])
def test_packed_input_matches_torch(mode, batch_first, enforce_sorted):
    """2-layer bidirectional layers on a packed batch with initial states (original order): the packed output
    (and padded), h_n, c_n and the gradients of the weights, the states and the padded input."""
    torch = torch_module()
    options = dict(num_layers=2, bidirectional=True, batch_first=batch_first, **LAYERS[mode])
    torch.manual_seed(3)
    theirs = getattr(torch.nn, mode)(3, 4, **options).double()
    ours = getattr(nn, mode)(3, 4, **options, dtype=np.float64)
    ours.load_state_dict(theirs.state_dict())
    lengths = [7, 5, 5, 3, 1] if enforce_sorted else [3, 7, 1, 5, 7]
    x = random_array((5, 7, 3) if batch_first else (7, 5, 3), np.float64, seed=2)
    states = [random_array((4, 5, 4), np.float64, seed=30 + i) for i in range(2 if mode == "LSTM" else 1)]
    (x_ours, *states_ours), (x_torch, *states_torch) = _tensors([x] + states)
    pack, pack_t = ours_rnn.pack_padded_sequence, torch.nn.utils.rnn.pack_padded_sequence
    packed = pack(x_ours, lengths, batch_first=batch_first, enforce_sorted=enforce_sorted)
    packed_t = pack_t(x_torch, torch.tensor(lengths), batch_first=batch_first, enforce_sorted=enforce_sorted)
    hx = tuple(states_ours) if mode == "LSTM" else states_ours[0]
    out, h = ours(packed, hx)
    out_t, h_t = theirs(packed_t, tuple(states_torch) if mode == "LSTM" else states_torch[0])
    assert isinstance(out, ours_rnn.PackedSequence)
    _assert_same_indices(out, out_t)
    padded, _ = ours_rnn.pad_packed_sequence(out, batch_first=batch_first)
    padded_t, _ = torch.nn.utils.rnn.pad_packed_sequence(out_t, batch_first=batch_first)
    ours_outputs = [out.data, padded] + (list(h) if mode == "LSTM" else [h])
    torch_outputs = [out_t.data, padded_t] + (list(h_t) if mode == "LSTM" else [h_t])
    for index, (a, b) in enumerate(zip(ours_outputs, torch_outputs)):
        assert_close(a.data, b.detach().numpy(), np.float64, **EXACT, name=f"output {index}")
    _backward_both(ours_outputs, torch_outputs)
    for a, b in zip([x_ours] + states_ours, [x_torch] + states_torch):
        assert_close(a.grad.data, b.grad.numpy(), np.float64, **EXACT, name="input/state gradient")
    for (name, p), (_, p_t) in zip(ours.named_parameters(), theirs.named_parameters()):
        assert_close(p.grad.data, p_t.grad.numpy(), np.float64, **EXACT, name=name)


def test_packed_input_without_states_and_errors():
    torch = torch_module()
    torch.manual_seed(4)
    theirs = torch.nn.GRU(2, 3).double()
    ours = nn.GRU(2, 3, dtype=np.float64)
    ours.load_state_dict(theirs.state_dict())
    x = random_array((4, 3, 2), np.float64, seed=5)
    packed = ours_rnn.pack_padded_sequence(nn.Tensor(x), [2, 4, 3], enforce_sorted=False)
    out, h = ours(packed)
    out_t, h_t = theirs(torch.nn.utils.rnn.pack_padded_sequence(torch.tensor(x), [2, 4, 3], enforce_sorted=False))
    assert_close(out.data.data, out_t.data.detach().numpy(), np.float64, **EXACT)
    assert_close(h.data, h_t.detach().numpy(), np.float64, **EXACT)
    with pytest.raises(ValueError, match="GRU: lengths cannot be given with a PackedSequence"):
        ours(packed, lengths=[2, 4, 3])
    with pytest.raises(ValueError, match=r"GRU: hx must have shape \(1, 3, 3\)"):
        ours(packed, nn.Tensor(np.zeros((1, 2, 3))))
    featureless = ours_rnn.pack_padded_sequence(nn.Tensor(x[:, :, 0]), [2, 4, 3], enforce_sorted=False)
    with pytest.raises(ValueError, match=r"GRU: a PackedSequence input must have data of shape .* got \(9,\)"):
        ours(featureless)


# ---- cells ---------------------------------------------------------------------------------------------------
CELLS = {"LSTMCell": {}, "GRUCell": {}, "RNNCell": {}, "RNNCell-relu": {"nonlinearity": "relu"}}


def _cell_pair(name, input_size, hidden_size, **options):
    torch = torch_module()
    kind = name.split("-")[0]
    torch.manual_seed(6)
    theirs = getattr(torch.nn, kind)(input_size, hidden_size, **CELLS[name], **options).double()
    ours = getattr(nn, kind)(input_size, hidden_size, **CELLS[name], **options, dtype=np.float64)
    ours.load_state_dict(theirs.state_dict())  # strict
    return ours, theirs


@pytest.mark.parametrize("name", list(CELLS))
@pytest.mark.parametrize("bias", [True, False])
def test_cell_unrolled_matches_torch(name, bias):
    """Four steps in a Python loop from given states: every step's outputs and all gradients (input steps,
    initial h and c, weights)."""
    ours, theirs = _cell_pair(name, 3, 5, bias=bias)
    lstm = name == "LSTMCell"
    arrays = [random_array((4, 2, 3), np.float64, seed=7)] + \
             [random_array((2, 5), np.float64, seed=8 + i) for i in range(2 if lstm else 1)]
    (x, *initial), (x_t, *initial_t) = _tensors(arrays)
    state, state_t, outputs, outputs_t = initial, initial_t, [], []
    for step in range(4):
        if lstm:
            state, state_t = list(ours(x[step], tuple(state))), list(theirs(x_t[step], tuple(state_t)))
        else:
            state, state_t = [ours(x[step], state[0])], [theirs(x_t[step], state_t[0])]
        outputs += state
        outputs_t += state_t
    for a, b in zip(outputs, outputs_t):
        assert_close(a.data, b.detach().numpy(), np.float64, **EXACT)
    _backward_both(outputs, outputs_t)
    leaves = [x] + initial + list(ours.parameters())
    leaves_t = [x_t] + initial_t + list(theirs.parameters())
    assert len(leaves) == len(leaves_t)
    for a, b in zip(leaves, leaves_t):
        assert_close(a.grad.data, b.grad.numpy(), np.float64, **EXACT)


@pytest.mark.parametrize("name", list(CELLS))
def test_cell_state_gradients_default_state_and_unbatched(name):
    torch = torch_module()
    ours, theirs = _cell_pair(name, 2, 3)
    lstm = name == "LSTMCell"
    arrays = [random_array((4, 2), np.float64, seed=9)] + \
             [random_array((4, 3), np.float64, seed=10 + i) for i in range(2 if lstm else 1)]
    (x, *state), (x_t, *state_t) = _tensors(arrays)
    result = ours(x, tuple(state) if lstm else state[0])
    result_t = theirs(x_t, tuple(state_t) if lstm else state_t[0])
    result, result_t = (list(result), list(result_t)) if lstm else ([result], [result_t])
    _backward_both(result, result_t)
    for a, b in zip([x] + state, [x_t] + state_t):  # the gradients of hx and cx
        assert_close(a.grad.data, b.grad.numpy(), np.float64, **EXACT)
    zero_state = ours(nn.Tensor(arrays[0]))
    zero_state_t = theirs(torch.tensor(arrays[0]))
    unbatched = ours(nn.Tensor(arrays[0][1]), tuple(nn.Tensor(s[1]) for s in arrays[1:]) if lstm
                     else nn.Tensor(arrays[1][1]))
    unbatched_t = theirs(torch.tensor(arrays[0][1]), tuple(torch.tensor(s[1]) for s in arrays[1:]) if lstm
                         else torch.tensor(arrays[1][1]))
    for ours_result, torch_result in ((zero_state, zero_state_t), (unbatched, unbatched_t)):
        for a, b in zip(*((list(r) if lstm else [r]) for r in (ours_result, torch_result))):
            assert_close(a.data, b.detach().numpy(), np.float64, **EXACT)
    assert (unbatched[0] if lstm else unbatched).shape == (3,)


@pytest.mark.parametrize("name", list(CELLS))
def test_cell_parameters_init_and_state_dict(name):
    torch = torch_module()
    kind = name.split("-")[0]
    theirs = getattr(torch.nn, kind)(3, 16, **CELLS[name])
    nn.init.manual_seed(1)
    ours = getattr(nn, kind)(3, 16, **CELLS[name])
    assert {k: v.shape for k, v in ours.state_dict().items()} == \
           {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    assert list(ours.state_dict()) == list(theirs.state_dict())
    bound = 1 / 4
    for value in ours.state_dict().values():
        assert value.dtype == np.float32 and bound >= np.abs(value).max() > 0.8 * bound
    no_bias = getattr(nn, kind)(3, 16, bias=False, **CELLS[name])
    assert list(no_bias.state_dict()) == ["weight_ih", "weight_hh"] and no_bias.bias_ih is None
    assert repr(ours) == repr(theirs)


@pytest.mark.parametrize("kind", ["LSTMCell", "GRUCell", "RNNCell"])
def test_cell_bad_input(kind):
    cell = getattr(nn, kind)(3, 4)
    state = nn.Tensor(np.zeros((2, 4), np.float32))
    hx = (state, state) if kind == "LSTMCell" else state
    with pytest.raises(ValueError, match=f"{kind}: input must be .*input_size=3, got shape \\(2, 5\\)"):
        cell(nn.Tensor(np.ones((2, 5), np.float32)))
    with pytest.raises(ValueError, match=f"{kind}: input must be"):
        cell(nn.Tensor(np.ones((1, 2, 3), np.float32)))
    with pytest.raises(ValueError, match=rf"{kind}: hx.* must have shape \(3, 4\) .* got \(2, 4\)"):
        cell(nn.Tensor(np.ones((3, 3), np.float32)), hx)
    with pytest.raises(TypeError, match=f"{kind}: input dtype float64"):
        cell(nn.Tensor(np.ones((2, 3))))
    with pytest.raises(ValueError, match=f"{kind}: input_size must be a positive integer"):
        getattr(nn, kind)(0, 4)
    if kind == "LSTMCell":
        with pytest.raises(TypeError, match="LSTMCell: hx must be a pair"):
            cell(nn.Tensor(np.ones((2, 3), np.float32)), state)
    if kind == "RNNCell":
        with pytest.raises(ValueError, match="RNNCell: nonlinearity must be 'tanh' or 'relu'"):
            nn.RNNCell(3, 4, nonlinearity="sigmoid")


@pytest.mark.parametrize("kind", ["LSTMCell", "GRUCell", "RNNCell"])
def test_cell_dtype_rule(kind):
    """The layers' dtype rule: None is float32 (torch's default dtype), float64 allowed, integer dtypes refused."""
    cls = getattr(nn, kind)
    assert all(p.dtype == np.float32 for p in cls(3, 4, dtype=None).parameters())
    assert all(p.dtype == np.float32 for p in cls(3, 4).parameters())
    assert all(p.dtype == np.float64 for p in cls(3, 4, dtype=np.float64).parameters())
    for bad in (np.int64, "not a dtype"):
        with pytest.raises(TypeError, match=f"{kind}: dtype must be float32 or float64, got"):
            cls(3, 4, dtype=bad)


@pytest.mark.parametrize("layer", ["LSTM", "GRU", "RNN"])
def test_recurrent_layers_take_the_layers_dtype_rule(layer):
    """dtype=None is float32 (torch's default), float64 is kept, anything else is an error naming the layer."""
    assert getattr(nn, layer)(3, 4, dtype=None).weight_ih_l0.dtype == np.float32
    assert getattr(nn, layer)(3, 4, dtype=np.float64).weight_hh_l0.dtype == np.float64
    with pytest.raises(TypeError, match=f"{layer}: dtype must be float32 or float64, got int64"):
        getattr(nn, layer)(3, 4, dtype=np.int64)
