"""F.gelu/silu/elu and nn.GELU/SiLU/ELU against torch (CPU path, float64 and float32): values and gradients,
torch's repr, errors naming the op, the version check on the saved input, and a Conv2d -> GELU -> ... -> SiLU
-> ... -> ELU model's loss and gradients against a torch twin with the state dict copied."""
import numpy as np
import pytest

import nn
from nn import functional as F
from tests.nn.test_layers import compare_step
from tests.oracle import assert_close, random_array, torch_module

FUNCTIONS = {
    # name: (ours, torch's, keyword arguments)
    "gelu": (F.gelu, "gelu", {}),
    "gelu_tanh": (F.gelu, "gelu", {"approximate": "tanh"}),
    "silu": (F.silu, "silu", {}),
    "elu": (F.elu, "elu", {}),
    "elu_alpha": (F.elu, "elu", {"alpha": 0.3}),
}


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_functional_matches_torch(name, dtype):
    torch = torch_module()
    ours_fn, torch_name, options = FUNCTIONS[name]
    x = random_array((4, 3, 5), dtype, seed=61, low=-5, high=5)
    grad = random_array(x.shape, dtype, seed=62)
    x_ours = nn.tensor(x, requires_grad=True)
    x_theirs = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    out = ours_fn(x_ours, **options)
    out_theirs = getattr(torch.nn.functional, torch_name)(x_theirs, **options)
    assert out.dtype == dtype and out.shape == x.shape
    assert_close(out.data, out_theirs.detach().numpy(), dtype, name="output")
    out.backward(grad)
    out_theirs.backward(torch.tensor(grad, dtype=torch.float64))
    assert_close(x_ours.grad.data, x_theirs.grad.numpy(), dtype, name="grad of input")


def test_functional_takes_arrays_and_inplace_gives_a_new_tensor():
    """As F.relu here: inplace=True is accepted and the input is left as it was."""
    x = random_array((3, 4), np.float64, seed=63, low=-2, high=2)
    before = x.copy()
    for out in (F.silu(x, inplace=True), F.elu(x, 0.5, inplace=True), F.gelu(x)):
        assert isinstance(out, nn.Tensor) and not out.requires_grad
    np.testing.assert_array_equal(x, before)
    t = nn.tensor(x, requires_grad=True)
    y = F.elu(t, alpha=0.5, inplace=True)
    assert y is not t and y.requires_grad
    np.testing.assert_array_equal(t.data, before)


MODULES = {
    "gelu": (nn.GELU, lambda t: t.nn.GELU()),
    "gelu_tanh": (lambda: nn.GELU(approximate="tanh"), lambda t: t.nn.GELU(approximate="tanh")),
    "silu": (nn.SiLU, lambda t: t.nn.SiLU()),
    "elu": (nn.ELU, lambda t: t.nn.ELU()),
    "elu_alpha": (lambda: nn.ELU(alpha=2.0), lambda t: t.nn.ELU(alpha=2.0)),
}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_match_torch(name):
    make_ours, make_theirs = MODULES[name]
    compare_step(make_ours(), make_theirs(torch_module()), (3, 4, 5), seed=64)


def test_repr_as_torch():
    torch = torch_module()
    for args, options in (((), {}), (("tanh",), {}), ((), {"approximate": "none"})):
        assert repr(nn.GELU(*args, **options)) == repr(torch.nn.GELU(*args, **options))
    for args, options in (((), {}), ((True,), {}), ((), {"inplace": False})):
        assert repr(nn.SiLU(*args, **options)) == repr(torch.nn.SiLU(*args, **options))
    for args, options in (((), {}), ((0.5,), {}), ((0.5, True), {}), ((), {"alpha": 1}), ((), {"inplace": True})):
        assert repr(nn.ELU(*args, **options)) == repr(torch.nn.ELU(*args, **options))
    assert nn.ELU(0.5).alpha == 0.5 and nn.SiLU(True).inplace and nn.GELU("tanh").approximate == "tanh"
    assert dict(nn.GELU().state_dict()) == {}


def test_errors_name_the_op():
    x = nn.tensor(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match="gelu: approximate must be 'none' or 'tanh', got 'erf'"):
        F.gelu(x, approximate="erf")
    with pytest.raises(ValueError, match="gelu: approximate must be 'none' or 'tanh', got 'Tanh'"):
        nn.GELU("Tanh")(x)
    with pytest.raises(TypeError, match="elu: alpha must be a real number, got 'big'"):
        nn.ELU("big")(x)
    with pytest.raises(TypeError, match="silu: x must be float32 or float64 on cpu, got int64"):
        F.silu(nn.tensor(np.arange(4)))
    with pytest.raises(TypeError, match=r"GELU\(approximate='none'\): expected a Tensor or an array, got list"):
        nn.GELU()([1.0, 2.0])


def test_writing_the_saved_input_in_place_raises_as_torch():
    """Each saves its input (as torch's): a write to it between forward and backward raises in both."""
    torch = torch_module()
    for ours_fn, torch_fn in ((F.gelu, torch.nn.functional.gelu), (F.silu, torch.nn.functional.silu),
                              (F.elu, torch.nn.functional.elu)):
        x = nn.tensor(random_array((3, 4), np.float64, seed=65), requires_grad=True)
        x_t = torch.tensor(random_array((3, 4), np.float64, seed=65), requires_grad=True)
        y, y_t = ours_fn(x), torch_fn(x_t)
        with nn.no_grad():
            x.mul_(0.5)
        with torch.no_grad():
            x_t.mul_(0.5)
        with pytest.raises(RuntimeError, match="modified by an in-?place operation"):
            y.sum().backward()
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            y_t.sum().backward()


def _model(lib, dtype=None):
    kw = {} if dtype is None else {"dtype": dtype}
    return lib.Sequential(lib.Conv2d(2, 4, 3, padding=1, **kw), lib.GELU(), lib.MaxPool2d(2),
                          lib.Conv2d(4, 6, 3, **kw), lib.SiLU(), lib.Flatten(),
                          lib.Linear(24, 10, **kw), lib.GELU(approximate="tanh"), lib.Linear(10, 7, **kw),
                          lib.ELU(alpha=0.8), lib.Linear(7, 5, **kw))


def activation_models(dtype):
    """(ours with `dtype` parameters, torch's float64) Conv2d-GELU-...-ELU-Linear models, torch's state dict
    copied into ours; inputs (N, 2, 8, 9), 5 classes (tests/gpu uses it too)."""
    torch = torch_module()
    torch.manual_seed(0)
    theirs = _model(torch.nn).double()
    ours = _model(nn, dtype)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_model_loss_and_gradients_match_torch(dtype):
    torch = torch_module()
    ours, theirs = activation_models(dtype)
    x = random_array((3, 2, 8, 9), dtype, seed=66, low=-2, high=2)
    target = np.random.default_rng(0).integers(0, 5, size=3)
    loss = nn.CrossEntropyLoss()(ours(nn.Tensor(x)), target)
    loss_theirs = torch.nn.CrossEntropyLoss()(theirs(torch.tensor(x, dtype=torch.float64)), torch.tensor(target))
    assert loss.item() == pytest.approx(loss_theirs.item(), rel=1e-10 if dtype == np.float64 else 1e-5)
    loss.backward()
    loss_theirs.backward()
    for (key, p), q in zip(ours.named_parameters(), theirs.parameters()):
        assert p.grad.dtype == dtype
        assert_close(p.grad.data, q.grad.numpy(), dtype, scale=1 if dtype == np.float64 else 5, name=f"grad of {key}")
