"""The torch-habit API added on top of nn (Tensor methods and in-place ops, the extra losses, packed sequences,
the recurrent cells, clip_grad_value_ on a flat optimizer) on CuPy arrays against the same calls on NumPy arrays
(the CPU path, itself checked against torch in tests/nn): values and gradients. These are array-module code and
the existing kernels, so what this checks is CuPy's side (fancy-index scatters, where/clip/power with scalars,
host index arrays next to device data). Needs a GPU (skipped elsewhere)."""
import numpy as np
import pytest

import nn
from nn.utils import rnn as rnn_utils
from tests.oracle import assert_close, random_array

GPU_TOLERANCE = dict(rtol=2e-4, atol=2e-5)


def _leaves(device, arrays):
    leaves = [nn.Tensor(a.copy(), requires_grad=True) for a in arrays]
    return leaves, ([leaf.to("cuda") for leaf in leaves] if device == "cuda" else leaves)


def _run(fn, arrays, device, seed=90):
    """fn(*tensors) -> Tensor or tuple of Tensors; backward of sum(out * w) for fixed random w. Returns the
    outputs and the inputs' gradients as NumPy arrays (the gradients of the CPU leaves: .to('cuda') is
    differentiable)."""
    leaves, inputs = _leaves(device, arrays)
    outputs = fn(*inputs)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    total = None
    for i, out in enumerate(outputs):
        if not np.issubdtype(out.dtype, np.floating):
            continue
        weight = nn.Tensor(random_array(out.shape, out.dtype, seed=seed + i))
        weight = weight.to(out.device) if out.device == "cuda" else weight
        term = (out * weight).sum()
        total = term if total is None else total + term
    if total is not None:
        total.backward()
    return [o.numpy() for o in outputs], [leaf.grad.numpy() if leaf.grad is not None else None for leaf in leaves]


def _assert_gpu_matches_cpu(fn, arrays, name):
    cpu_outputs, cpu_grads = _run(fn, arrays, "cpu")
    gpu_outputs, gpu_grads = _run(fn, arrays, "cuda")
    for i, (got, expected) in enumerate(zip(gpu_outputs, cpu_outputs)):
        assert got.dtype == expected.dtype, f"{name} output {i}: dtype {got.dtype}, CPU {expected.dtype}"
        if np.issubdtype(expected.dtype, np.floating):
            assert_close(got, expected, np.float32, name=f"{name} output {i}", **GPU_TOLERANCE)
        else:
            np.testing.assert_array_equal(got, expected, err_msg=f"{name} output {i}")
    for i, (got, expected) in enumerate(zip(gpu_grads, cpu_grads)):
        assert (got is None) == (expected is None), f"{name} gradient {i}"
        if expected is not None:
            assert_close(got, expected, np.float32, name=f"{name} gradient {i}", **GPU_TOLERANCE)


X = random_array((5, 7), seed=1)
Y = random_array((5, 7), seed=2)
X_TIED, Y_TIED = np.round(X * 4) / 4, np.round(Y * 4) / 4   # leaves with exact ties (clamp's ties pass no gradient)
HALVES = np.array([0.35, 2.35, -7.45, 1.45, 0.15, 123.456, 0.55], np.float32)   # round(decimals=1): torch's 0.4 ...
SIGNED_NAN = np.array([0.5, -np.nan, -np.inf, 2.0, np.nan, -1.0], np.float32)   # -nan: the sign bit set, as x86's 0/0
TENSOR_CASES = {
    "clamp": (lambda x: x.clamp(min=-0.3, max=0.5), [X]),
    "clamp_min/clamp_max": (lambda x: (x.clamp_min(0.1), x.clamp_max(-0.1)), [X]),
    "expand/repeat": (lambda x: (x[:, :1].expand(5, 3), x.repeat(2, 1, 3)), [X]),
    "rpow/pow tensor": (lambda x, y: (2.0 ** x, x.abs() ** y), [X, Y]),
    "min/argmin": (lambda x: (x.min(dim=1)[0], x.argmin(dim=0), x.min()), [X]),
    "max with ties": (lambda x: x.clamp(max=0.2).max(), [X]),
    "var/std": (lambda x: (x.var(dim=1), x.std(dim=0, keepdim=True), x.var(correction=0)), [X]),
    "norm": (lambda x: (x.norm(), x.norm(p=1, dim=1)), [X]),
    "clone/casts": (lambda x: (x.clone() * 2, x.double().float()), [X]),
    # tests/nn/test_tensor_methods.py's methods (CuPy's where/take_along_axis/scatter_add/argsort/cumprod)
    "add/sub/mul/div methods": (lambda x, y: (x.add(y, alpha=2.0), x.sub(y, alpha=0.5), x.mul(y).div(y.abs() + 1.0),
                                              x.neg().pow(2), x.matmul(y.t())), [X, Y]),
    "maximum/minimum with ties": (lambda x, y: (x.maximum(y), x.minimum(y)), [X_TIED, Y_TIED]),
    "where/masked_fill": (lambda x, y: (nn.where(x > y, x, y), x.where(x > 0, 0.5), x.masked_fill(y > 0, -1.0),
                                        x.masked_fill(y[0] > 0, y.sum())), [X, Y]),
    "comparisons/isnan": (lambda x, y: (x.eq(y[0]), x.lt(y), x.ge(0.1), x.ne(x), x.isnan()), [X, Y]),
    "unary maths": (lambda x: (x.square(), x.abs().rsqrt(), x.sin(), x.cos(), x.log1p(), x.expm1(), x.reciprocal(),
                               x.sign(), (x * 3).round(), x.round(decimals=1), (x * 2).floor()), [X]),
    "prod/cumsum": (lambda x: (x.prod(1), (x + 1).prod(), x.clamp(min=0).prod(0), x.cumsum(0), x.cumsum(-1)), [X]),
    "amax/amin with ties": (lambda x: (x.amax(1), x.amin((0, 1)), x.amin(0, keepdim=True)), [X_TIED]),
    "round(decimals) in float32, sign of NaN": (lambda x, y: (x.round(decimals=1), x.round(decimals=-1), y.sign()),
                                                [HALVES, SIGNED_NAN]),
    "1-D sort/topk with signed NaNs": (lambda y: (*y.sort(), *y.sort(descending=True), *y.topk(2), y.argsort()),
                                       [SIGNED_NAN]),
    "flip/roll/chunk/split/unbind": (lambda x: (x.flip(0, 1), x.roll(2, 1), x.roll(-3), *x.chunk(3, 1),
                                                *x.split([2, 3]), *x.unbind(1)), [X]),
    "gather/index_select repeats": (lambda x: (
        x.gather(1, nn.Tensor(_like(x, np.array([[0, 0, 6], [3, 3, 3], [1, 2, 1], [6, 5, 4], [0, 1, 0]])))),
        x.index_select(0, nn.Tensor(_like(x, np.array([4, 0, 4, 4]))))), [X]),
    "sort/argsort/topk": (lambda x: (x.sort(1).values, x.sort(0, descending=True).indices, x.argsort(1),
                                     *x.topk(3), *x.topk(2, dim=0, largest=False)), [X]),
    "sort with nans and ties": (lambda x: (*x.masked_fill(x > 0.5, float("nan")).clamp(min=-0.2).sort(1, stable=True),
                                           *x.masked_fill(x < -0.5, float("nan")).sort(0, descending=True, stable=True),
                                           x.masked_fill(x > 0.5, float("nan")).topk(2).values), [X]),
    "new_*/int/bool": (lambda x: (x.new_zeros(2, 3), x.new_full((7,), 1.5) * x[0], x.new_tensor([1, 2]), x.int(),
                                  x.bool(), x.new_ones(3, dtype=np.int64)), [X]),
}


@pytest.mark.parametrize("name", list(TENSOR_CASES))
def test_tensor_methods_on_gpu_match_cpu(name):
    fn, arrays = TENSOR_CASES[name]
    _assert_gpu_matches_cpu(fn, arrays, name)


def test_in_place_ops_under_no_grad_write_into_gpu_arrays():
    import cupy
    expected = X + 0.5 * Y
    x = nn.Tensor(cupy.asarray(X), requires_grad=True)
    data = x.data
    with nn.no_grad():
        x.add_(nn.Tensor(cupy.asarray(Y)), alpha=0.5)
        x[0] = 1.0
        x[1:3] = np.full((2, 7), -2.0, np.float32)     # a host array is moved to the device
        x.mul_(3.0)
    assert x.data is data
    expected[0], expected[1:3] = 1.0, -2.0
    assert_close(cupy.asnumpy(x.data), expected * 3.0, np.float32, **GPU_TOLERANCE)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        x.zero_()


def test_tensor_methods_keep_data_on_the_gpu():
    import cupy
    x = nn.Tensor(cupy.asarray(X))
    assert x.is_cuda and x.cuda() is x and not x.cpu().is_cuda and x.cpu().cuda().is_cuda
    for made in (x.new_zeros(2), x.new_tensor([1.0]), x.new_full((1,), 2), x.int(), x.sort().indices, x.isnan(),
                 x.topk(1).indices, x.masked_fill(x > 0, 0.0), nn.where(x > 0, 1.0, 0.0)):
        assert isinstance(made.data, cupy.ndarray)
    assert isinstance(nn.Tensor(X).new_zeros(2, device="cuda").data, cupy.ndarray)
    data = x.data
    expected = np.where(Y > 0, -1.0, X).astype(np.float32)
    x.masked_fill_(nn.Tensor(cupy.asarray(Y > 0)), -1.0)
    assert x.data is data
    assert_close(cupy.asnumpy(x.data), expected, np.float32, **GPU_TOLERANCE)
    with pytest.raises(IndexError, match="gather: index 7 is out of bounds"):
        x.gather(1, nn.Tensor(cupy.asarray(np.full((5, 1), 7))))
    with pytest.raises(ValueError, match="where: condition is on cpu but the tensor is on cuda"):
        nn.where(nn.Tensor(X > 0), x, x)


LOGITS = random_array((6, 4, 3), seed=3)
LOSS_CASES = {
    "nll_loss": (lambda x: nn.functional.nll_loss(x.log_softmax(1), _targets(x), weight=_class_weight(x),
                                                  ignore_index=2), [LOGITS]),
    "nll_loss none": (lambda x: nn.functional.nll_loss(x[:, :, 0].log_softmax(1), _targets(x)[:, 0],
                                                       reduction="none"), [LOGITS]),
    "bce_with_logits": (lambda x, y: nn.functional.binary_cross_entropy_with_logits(
        x, y.sigmoid(), pos_weight=_pos_weight(x)), [X, Y]),
    "l1/smooth_l1": (lambda x, y: (nn.functional.l1_loss(x, y), nn.functional.smooth_l1_loss(x, y, beta=0.3)),
                     [X, Y]),
}


def _targets(x):
    targets = np.random.default_rng(4).integers(0, 4, size=(6, 3))
    return _like(x, targets)


def _class_weight(x):
    return _like(x, np.array([0.5, 1.5, 1.0, 2.0], np.float32))


def _pos_weight(x):
    return _like(x, np.linspace(0.5, 2.0, 7).astype(np.float32))


def _like(x, array):
    if x.device == "cuda":
        import cupy
        return cupy.asarray(array)
    return array


@pytest.mark.parametrize("name", list(LOSS_CASES))
def test_losses_on_gpu_match_cpu(name):
    fn, arrays = LOSS_CASES[name]
    _assert_gpu_matches_cpu(fn, arrays, name)


def _recurrent_twins(build):
    """The same module on the CPU and on the GPU (state dict copied)."""
    nn.manual_seed(0)
    cpu_module = build()
    gpu_module = build()
    gpu_module.load_state_dict(cpu_module.state_dict())
    return cpu_module, gpu_module.to("cuda")


def test_packed_bidirectional_lstm_on_gpu_matches_cpu():
    lengths = [5, 9, 3, 9, 1, 7]                  # unsorted, with a tie
    x = random_array((9, 6, 4), seed=5)
    cpu_lstm, gpu_lstm = _recurrent_twins(lambda: nn.LSTM(4, 8, num_layers=2, bidirectional=True))

    def run(lstm):
        def fn(inputs):
            packed = rnn_utils.pack_padded_sequence(inputs, lengths, enforce_sorted=False)
            output, (h_n, c_n) = lstm(packed)
            padded, out_lengths = rnn_utils.pad_packed_sequence(output, total_length=9)
            np.testing.assert_array_equal(out_lengths.numpy(), lengths)
            return padded, h_n, c_n
        return fn
    cpu_outputs, cpu_grads = _run(run(cpu_lstm), [x], "cpu")
    gpu_outputs, gpu_grads = _run(run(gpu_lstm), [x], "cuda")
    for i, (got, expected) in enumerate(zip(gpu_outputs + gpu_grads, cpu_outputs + cpu_grads)):
        assert_close(got, expected, np.float32, name=f"packed LSTM result {i}", **GPU_TOLERANCE)
    for (name, p), q in zip(gpu_lstm.named_parameters(), cpu_lstm.parameters()):
        assert_close(p.grad.numpy(), q.grad.numpy(), np.float32, name=name, **GPU_TOLERANCE)


@pytest.mark.parametrize("cell", ["LSTMCell", "GRUCell", "RNNCell"])
def test_cells_unrolled_on_gpu_match_cpu(cell):
    steps = [random_array((5, 6), seed=10 + t) for t in range(4)]
    cpu_cell, gpu_cell = _recurrent_twins(lambda: getattr(nn, cell)(6, 9))

    def run(module):
        def fn(*inputs):
            state, outputs = None, []
            for x in inputs:
                state = module(x, state)
                outputs.append(state[0] if cell == "LSTMCell" else state)
            return tuple(outputs)
        return fn
    cpu_outputs, cpu_grads = _run(run(cpu_cell), steps, "cpu")
    gpu_outputs, gpu_grads = _run(run(gpu_cell), steps, "cuda")
    for i, (got, expected) in enumerate(zip(gpu_outputs + gpu_grads, cpu_outputs + cpu_grads)):
        assert_close(got, expected, np.float32, name=f"{cell} result {i}", **GPU_TOLERANCE)
    for (name, p), q in zip(gpu_cell.named_parameters(), cpu_cell.parameters()):
        assert_close(p.grad.numpy(), q.grad.numpy(), np.float32, name=name, **GPU_TOLERANCE)


def test_clip_grad_value_clips_a_flat_gpu_buffer_once():
    import cupy
    nn.manual_seed(0)
    model = nn.Sequential(nn.Linear(7, 5), nn.ReLU(), nn.Linear(5, 3)).to("cuda")
    optimizer = nn.optim.Adam(model.parameters(), lr=1e-2, flat=True)
    x = nn.Tensor(cupy.asarray(X))
    for _ in range(2):                            # the first step packs the group
        optimizer.zero_grad()
        model(x).sum().backward()
        expected = [np.clip(p.grad.numpy(), -0.05, 0.05) for p in model.parameters()]
        nn.utils.clip_grad_value_(model.parameters(), 0.05)
        optimizer.step()
    packed = optimizer.param_groups[0].flat
    assert packed, "Adam(flat=True) did not pack its group on the GPU"
    assert float(cupy.abs(packed.grad_buffer).max()) <= np.float32(0.05)   # (the clip bound in float32)
    for p, e, (_, grad, _) in zip(model.parameters(), expected, packed.views):
        assert p.grad.data is grad
        np.testing.assert_array_equal(p.grad.numpy(), e)
