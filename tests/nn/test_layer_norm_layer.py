"""nn.LayerNorm and F.layer_norm against torch.nn.LayerNorm with the state dict copied (float64, CPU path): outputs,
gradients of input, weight and bias, torch's parameters, keys and repr, errors naming the layer, the in-place
version check, and an LSTM -> LayerNorm -> Linear model's loss and gradients."""
import numpy as np
import pytest

import nn
from nn import functional as F
from tests.nn.test_layers import compare_step
from tests.oracle import assert_close, random_array, torch_module


def twins(*args, dtype=np.float64, **options):
    """(ours with `dtype` parameters, torch's float64) LayerNorm, torch's parameters randomised and copied into
    ours (tests/simulator and tests/gpu use it too)."""
    torch = torch_module()
    torch.manual_seed(3)
    theirs = torch.nn.LayerNorm(*args, **options).double()
    with torch.no_grad():
        for parameter in theirs.parameters():   # (not ones and zeros: a swapped weight and bias would show)
            parameter.uniform_(0.5, 1.5)
    ours = nn.LayerNorm(*args, **options, dtype=dtype)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def compare_float32_step(ours, theirs, x, grad, to_device=lambda array: array):
    """One forward and backward of float32 `x` through ours (its arrays made by `to_device`: CuPy for tests/gpu)
    and through torch's float64 layer; output and gradients of input, weight and bias compared with float32
    tolerances (the parameters' as float32 sums over the rows)."""
    torch = torch_module()
    x_ours = nn.Tensor(to_device(x), requires_grad=True)
    x_theirs = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    out, out_theirs = ours(x_ours), theirs(x_theirs)
    out.backward(to_device(grad))
    out_theirs.backward(torch.tensor(grad, dtype=torch.float64))
    assert_close(out.data, out_theirs.detach().numpy(), np.float32, scale=8, name="output")
    assert_close(x_ours.grad.data, x_theirs.grad.numpy(), np.float32, scale=16, name="grad of input")
    rows = x.size // int(np.prod(ours.normalized_shape))
    for name, parameter in ours.named_parameters():
        assert_close(parameter.grad.data, getattr(theirs, name).grad.numpy(), np.float32, rtol=1e-3,
                     atol=max(1e-4, 1e-6 * rows), name=f"grad of {name}")


@pytest.mark.parametrize("shape,normalized_shape,options", [
    ((4, 7, 13), 13, {}),
    ((3, 5, 6), (5, 6), {}),
    ((6, 9), [9], {"bias": False}),
    ((2, 3, 11), (11,), {"elementwise_affine": False, "eps": 1e-3}),
])
def test_layer_norm_matches_torch(shape, normalized_shape, options):
    compare_step(*twins(normalized_shape, **options), shape, seed=1)


def test_functional_layer_norm_matches_torch_with_each_vector_alone():
    torch = torch_module()
    x = random_array((3, 4, 5), np.float64, seed=3)
    vectors = {"weight": random_array((4, 5), np.float64, seed=4), "bias": random_array((4, 5), np.float64, seed=5)}
    grad = random_array(x.shape, np.float64, seed=6)
    for present in (("weight",), ("bias",), ()):
        ours = {name: nn.tensor(vectors[name], requires_grad=True) for name in present}
        theirs = {name: torch.tensor(vectors[name], requires_grad=True) for name in present}
        x_ours, x_theirs = nn.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        out_ours = F.layer_norm(x_ours, (4, 5), eps=1e-4, **ours)
        out_theirs = torch.nn.functional.layer_norm(x_theirs, (4, 5), eps=1e-4, **theirs)
        assert_close(out_ours.data, out_theirs.detach().numpy(), np.float64, name=f"output with {present}")
        out_ours.backward(grad)
        out_theirs.backward(torch.from_numpy(grad))
        assert_close(x_ours.grad.data, x_theirs.grad.numpy(), np.float64, name=f"grad of input with {present}")
        for name in present:
            assert_close(ours[name].grad.data, theirs[name].grad.numpy(), np.float64, name=f"grad of {name}")


def test_parameters_keys_and_repr_as_torch():
    torch = torch_module()
    for args, options in (((64,), {}), (((3, 4),), {"eps": 1e-3, "elementwise_affine": False}),
                          ((8,), {"bias": False})):
        ours, theirs = nn.LayerNorm(*args, **options), torch.nn.LayerNorm(*args, **options)
        assert repr(ours) == repr(theirs)
        assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == \
               {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
        assert ours.normalized_shape == theirs.normalized_shape
        for name in ("weight", "bias"):
            mine, reference = getattr(ours, name), getattr(theirs, name)
            assert (mine is None) == (reference is None), name
            if mine is not None:
                assert mine.dtype == np.float32 and np.array_equal(mine.data, reference.detach().numpy()), name


def test_errors_name_the_layer():
    layer = nn.LayerNorm(64)
    with pytest.raises(ValueError, match=r"^LayerNorm: expected input with trailing shape \(64,\), got shape \(3, 5\)"):
        layer(np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match=r"^LayerNorm: expected input with trailing shape \(2, 3\), got shape \(3,\)"):
        nn.LayerNorm((2, 3))(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match=r"^LayerNorm: normalized_shape must be a positive integer, got -1"):
        nn.LayerNorm(-1)
    with pytest.raises(TypeError, match=r"^LayerNorm: dtype must be float32 or float64"):
        nn.LayerNorm(4, dtype=np.int32)
    with pytest.raises(ValueError, match=r"^layer_norm: x must have trailing shape \(4,\)"):
        F.layer_norm(nn.tensor(np.zeros((2, 3), np.float32)), 4)


def test_in_place_write_to_a_saved_parameter_raises_at_backward():
    """As torch (which saves input, weight and bias for this gradient): a write between forward and backward."""
    for name in ("weight", "bias"):
        layer = nn.LayerNorm(5)
        x = nn.tensor(random_array((2, 5), seed=7), requires_grad=True)
        out = layer(x)
        with nn.no_grad():
            getattr(layer, name).add_(1.0)
        with pytest.raises(RuntimeError, match="modified by an in-place operation"):
            out.sum().backward()


def lstm_layer_norm_models(input_size, hidden_size, classes, dtype=np.float64):
    """The same LSTM -> LayerNorm -> Linear sequence classifier in numbanet (parameters of `dtype`) and in torch
    (float64), weights copied from torch's (tests/gpu uses it too)."""
    torch = torch_module()

    class Ours(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.LSTM(input_size, hidden_size, batch_first=True, dtype=dtype)
            self.norm = nn.LayerNorm(hidden_size, dtype=dtype)
            self.head = nn.Linear(hidden_size, classes, dtype=dtype)

        def forward(self, x):
            output, _ = self.rnn(x)
            return self.head(self.norm(output))

    class Theirs(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.LSTM(input_size, hidden_size, batch_first=True)
            self.norm = torch.nn.LayerNorm(hidden_size)
            self.head = torch.nn.Linear(hidden_size, classes)

        def forward(self, x):
            output, _ = self.rnn(x)
            return self.head(self.norm(output))

    torch.manual_seed(11)
    theirs = Theirs().double()
    with torch.no_grad():
        theirs.norm.weight.uniform_(0.5, 1.5)
        theirs.norm.bias.uniform_(-0.5, 0.5)
    ours = Ours()
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def test_lstm_layer_norm_linear_model_matches_torch():
    torch = torch_module()
    ours, theirs = lstm_layer_norm_models(input_size=6, hidden_size=8, classes=5)
    x = random_array((3, 7, 6), np.float64, seed=8)        # (batch, time, features): every step normalised
    labels = np.random.default_rng(9).integers(0, 5, size=(3 * 7,))
    logits_ours, logits_theirs = ours(nn.tensor(x)), theirs(torch.from_numpy(x))
    loss_ours = F.cross_entropy(logits_ours.reshape(-1, 5), labels)
    loss_theirs = torch.nn.functional.cross_entropy(logits_theirs.reshape(-1, 5), torch.from_numpy(labels))
    assert_close(loss_ours.data, loss_theirs.detach().numpy(), np.float64, name="loss")
    loss_ours.backward()
    loss_theirs.backward()
    theirs_params = dict(theirs.named_parameters())
    assert [name for name, _ in ours.named_parameters()] == list(theirs_params)
    for name, parameter in ours.named_parameters():
        assert_close(parameter.grad.data, theirs_params[name].grad.numpy(), np.float64, name=f"grad of {name}")


def test_a_frozen_layer_and_a_plain_input_get_only_the_gradients_torch_gives(monkeypatch):
    """A frozen LayerNorm (weight and bias not requiring grad) gives its input's gradient only, and one fed a
    plain input its weight's and bias's only (the backward is asked for no more): values as torch's."""
    import kernels
    torch = torch_module()
    asked = []
    backward = kernels.layer_norm_backward
    monkeypatch.setattr(kernels, "layer_norm_backward", lambda *args, **options: (
        asked.append((options["need_input"], options["need_weight"], options["need_bias"])),
        backward(*args, **options))[1])
    x = random_array((3, 4, 5), np.float64, seed=31)
    grad = random_array((3, 4, 5), np.float64, seed=32)
    for frozen in (True, False):
        ours, theirs = twins(5)
        ours.requires_grad_(not frozen)
        theirs.requires_grad_(not frozen)
        x_ours, x_theirs = nn.Tensor(x, requires_grad=frozen), torch.tensor(x, requires_grad=frozen)
        (ours(x_ours) * nn.Tensor(grad)).sum().backward()
        (theirs(x_theirs) * torch.tensor(grad)).sum().backward()
        assert asked[-1] == (frozen, not frozen, not frozen)
        if frozen:
            assert_close(x_ours.grad.numpy(), x_theirs.grad.numpy(), np.float64, name="input")
            assert ours.weight.grad is None and ours.bias.grad is None
        else:
            assert x_ours.grad is None
            for name in ("weight", "bias"):
                assert_close(getattr(ours, name).grad.numpy(), getattr(theirs, name).grad.numpy(), np.float64,
                             name=name)
