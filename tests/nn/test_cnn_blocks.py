"""CNN building blocks against torch (CPU path, float64 unless said): F.group_norm / nn.GroupNorm (values and
gradients of input, weight and bias, twins with copied state dicts, repr, state-dict keys, initialisation, bad
inputs), and a small conv -> GroupNorm -> ReLU model trained three SGD steps beside torch's twin."""
import numpy as np
import pytest

import nn
from tests.nn.test_layers import compare_step
from tests.nn.test_layers_1d import compare_with_torch
from tests.oracle import assert_close, random_array, torch_module

F = nn.functional


# ---- group norm ---------------------------------------------------------------------------------

GROUP_NORM = {   # input shape, num_groups, weight?, bias?, eps
    "image, 3 groups": ((3, 6, 5, 7), 3, True, True, 1e-5),
    "sequence, 2 groups": ((2, 4, 9), 2, True, True, 1e-5),
    "one group (layer norm over C, H, W)": ((2, 5, 3, 3), 1, True, True, 1e-3),
    "a group a channel (instance norm)": ((2, 4, 3, 5), 4, True, True, 1e-5),
    "no spatial dims": ((5, 6), 3, True, True, 1e-5),
    "volume, weight only": ((2, 4, 3, 2, 3), 2, True, False, 1e-5),
    "bias only": ((2, 6, 4, 3), 2, False, True, 1e-5),
    "no affine": ((3, 6, 5, 4), 6, False, False, 1e-2),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", GROUP_NORM)
def test_group_norm_matches_torch(name, dtype):
    torch = torch_module()
    shape, groups, has_weight, has_bias, eps = GROUP_NORM[name]
    arrays = [random_array(shape, np.float64, seed=1, low=-2.0, high=3.0)]
    if has_weight:
        arrays.append(random_array(shape[1], np.float64, seed=2, low=0.5, high=1.5))
    if has_bias:
        arrays.append(random_array(shape[1], np.float64, seed=3))

    def ours(x, *vectors):
        return F.group_norm(x, groups, vectors[0] if has_weight else None, vectors[-1] if has_bias else None, eps)

    def theirs(x, *vectors):
        if has_weight:
            return torch.nn.functional.group_norm(x, groups, vectors[0], vectors[-1] if has_bias else None, eps)
        # (torch 2.13's backward of a bias without a weight fails: 'tensor does not have a device')
        out = torch.nn.functional.group_norm(x, groups, None, None, eps)
        return out + vectors[0].reshape((-1,) + (1,) * (x.ndim - 2)) if has_bias else out

    compare_with_torch(ours, theirs, arrays, dtype)


def test_group_norm_of_a_strided_input_matches_torch():
    torch = torch_module()
    arrays = [random_array((2, 6, 7, 10), np.float64, seed=4), random_array(6, np.float64, seed=5),
              random_array(6, np.float64, seed=6)]
    compare_with_torch(lambda x, w, b: F.group_norm(x[:, :, 1:, ::2], 2, w, b),
                       lambda x, w, b: torch.nn.functional.group_norm(x[:, :, 1:, ::2], 2, w, b), arrays)


def test_group_norm_of_an_empty_batch_is_empty_with_zero_parameter_gradients():
    torch = torch_module()
    arrays = [np.zeros((0, 4, 3, 3)), random_array(4, np.float64, seed=7), random_array(4, np.float64, seed=8)]
    compare_with_torch(lambda x, w, b: F.group_norm(x, 2, w, b), lambda x, w, b: torch.nn.functional.group_norm(
        x, 2, w, b), arrays)


def group_norm_twins(*args, dtype=np.float64, **options):
    """(ours with `dtype` parameters, torch's float64) GroupNorm, torch's parameters randomised and copied into ours
    (tests/simulator and tests/gpu use it too)."""
    torch = torch_module()
    torch.manual_seed(3)
    theirs = torch.nn.GroupNorm(*args, **options).double()
    with torch.no_grad():
        for parameter in theirs.parameters():   # (not ones and zeros: a swapped weight and bias would show)
            parameter.uniform_(0.5, 1.5)
    ours = nn.GroupNorm(*args, **options, dtype=dtype)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


@pytest.mark.parametrize("args,options,shape", [
    ((4, 8), {}, (3, 8, 5, 6)),
    ((2, 6), {"eps": 1e-3}, (2, 6, 11)),
    ((3, 9), {"bias": False}, (2, 9, 4, 3)),
    ((2, 4), {"affine": False}, (2, 4, 5, 5)),
])
def test_group_norm_layer_matches_torch_twin(args, options, shape):
    compare_step(*group_norm_twins(*args, **options), shape, seed=9)


def test_group_norm_parameters_keys_repr_and_initialisation_as_torch():
    torch = torch_module()
    for args, options in (((2, 6), {}), ((3, 6), {"eps": 1e-3, "affine": False}), ((1, 4), {"bias": False})):
        ours, theirs = nn.GroupNorm(*args, **options), torch.nn.GroupNorm(*args, **options)
        assert repr(ours) == repr(theirs)
        assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == \
               {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
        assert (ours.num_groups, ours.num_channels, ours.eps, ours.affine) == \
               (theirs.num_groups, theirs.num_channels, theirs.eps, theirs.affine)
        for name in ("weight", "bias"):
            mine, reference = getattr(ours, name), getattr(theirs, name)
            assert (mine is None) == (reference is None), name
            if mine is not None:
                assert mine.dtype == np.float32 and np.array_equal(mine.data, reference.detach().numpy()), name
    assert nn.GroupNorm(2, 4, dtype=np.float64).weight.dtype == np.float64


def test_group_norm_errors_say_expected_and_given():
    x = nn.Tensor(np.ones((2, 6, 4), np.float32))
    with pytest.raises(ValueError, match=r"^GroupNorm: num_channels \(6\) must be divisible by num_groups \(4\)"):
        nn.GroupNorm(4, 6)
    with pytest.raises(ValueError, match=r"^GroupNorm: num_groups must be a positive integer, got 0"):
        nn.GroupNorm(0, 6)
    with pytest.raises(TypeError, match=r"^GroupNorm\(2, 6\): dtype must be float32 or float64"):
        nn.GroupNorm(2, 6, dtype=np.int32)
    with pytest.raises(ValueError, match=r"^GroupNorm\(2, 6\): expected input of shape \(N, 6, \*\), got \(2, 4, 4\)"):
        nn.GroupNorm(2, 6)(np.ones((2, 4, 4), np.float32))
    assert nn.GroupNorm(2, 6, affine=False)(np.ones((2, 4, 4), np.float32)).shape == (2, 4, 4)   # as torch's
    with pytest.raises(ValueError, match=r"^group_norm: expected the number of channels to be divisible by "
                                         r"num_groups=4, got input of shape \(2, 6, 4\)"):
        F.group_norm(x, 4)
    with pytest.raises(ValueError, match=r"^group_norm: expected input with at least 2 dims \(N, C, \*\), got shape "
                                         r"\(6,\)"):
        F.group_norm(np.ones(6, np.float32), 2)
    with pytest.raises(ValueError, match=r"^group_norm: weight must have shape \(6,\) \(one value per channel of the "
                                         r"input of shape \(2, 6, 4\)\), got \(5,\)"):
        F.group_norm(x, 2, np.ones(5, np.float32))
    with pytest.raises(ValueError, match=r"^group_norm: bias must have shape \(6,\)"):
        F.group_norm(x, 2, None, np.ones((6, 1), np.float32))
    with pytest.raises(ValueError, match=r"^group_norm: num_groups must be a positive integer, got 2.0"):
        F.group_norm(x, 2.0)
    with pytest.raises(ValueError, match=r"^group_norm: expected more than 1 value per group when training, got "
                                         r"input of shape \(1, 2\) and num_groups=2"):
        F.group_norm(np.ones((1, 2), np.float32), 2)
    with pytest.raises(TypeError, match=r"^group_norm: all arrays must share one dtype"):
        F.group_norm(x, 2, np.ones(6))
    with pytest.raises(TypeError, match=r"^group_norm: input must be float32 or float64 on cpu, got int64"):
        F.group_norm(np.ones((2, 6, 4), np.int64), 2)
    with pytest.raises(ValueError, match=r"^group_norm: eps must be a non-negative number, got -1"):
        F.group_norm(x, 2, eps=-1)


def test_in_place_write_to_the_saved_input_raises_at_backward():
    layer = nn.GroupNorm(2, 4)
    x = nn.tensor(random_array((2, 4, 3), seed=7), requires_grad=True)
    y = x * 1.0
    out = layer(y)
    with nn.no_grad():
        y.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        out.sum().backward()


# ---- a small model trained beside torch's twin --------------------------------------------------

def cnn_block_model(lib, dtype=None):
    """conv -> GroupNorm -> ReLU -> conv, in numbanet (parameters of `dtype`) or torch (tests/gpu uses it too)."""
    options = {} if dtype is None else {"dtype": dtype}
    return lib.Sequential(lib.Conv2d(3, 8, 3, padding=1, **options), lib.GroupNorm(4, 8, **options), lib.ReLU(),
                          lib.Conv2d(8, 2, 3, padding=1, **options))


def train_beside_torch(make_model, x, target, steps=3):
    """`steps` SGD steps (momentum, weight decay) of make_model(nn) beside torch's make_model(torch.nn) twin (its
    state dict copied into ours), float64: every loss, every gradient and the final weights agree."""
    torch = torch_module()
    torch.manual_seed(0)
    theirs = make_model(torch.nn).double()
    ours = make_model(nn, np.float64)
    ours.load_state_dict(theirs.state_dict())
    ours_opt = nn.optim.SGD(ours.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    theirs_opt = torch.optim.SGD(theirs.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    losses = []
    for step in range(steps):
        loss_ours = F.mse_loss(ours(nn.Tensor(x)), nn.Tensor(target))
        loss_theirs = torch.nn.functional.mse_loss(theirs(torch.tensor(x)), torch.tensor(target))
        assert loss_ours.item() == pytest.approx(loss_theirs.item(), rel=1e-10)
        losses.append(loss_ours.item())
        ours_opt.zero_grad()
        theirs_opt.zero_grad()
        loss_ours.backward()
        loss_theirs.backward()
        for (key, p), q in zip(ours.named_parameters(), theirs.parameters(), strict=True):
            assert_close(p.grad.data, q.grad.numpy(), np.float64, name=f"step {step} grad of {key}")
        ours_opt.step()
        theirs_opt.step()
    for (key, p), q in zip(ours.named_parameters(), theirs.parameters(), strict=True):
        assert_close(p.data, q.detach().numpy(), np.float64, name=key)
    assert losses[-1] < losses[0]


def test_conv_group_norm_model_trains_as_torch():
    train_beside_torch(cnn_block_model, random_array((4, 3, 6, 5), np.float64, seed=20),
                       random_array((4, 2, 6, 5), np.float64, seed=21))
