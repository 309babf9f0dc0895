"""nn.functional.conv_transpose2d and nn.ConvTranspose2d against PyTorch on the CPU path: values and the gradients
of input, weight and bias in float64 and float32, unbatched input, output_size, torch's attributes, repr, state
dict and initialisation, bad-input messages, and a small decoder trained a few SGD steps beside torch's twin."""
import numpy as np
import pytest

import nn
from tests.nn.test_layers import test_default_initialisation_is_pytorchs as check_default_initialisation
from tests.nn.test_layers_1d import compare_with_torch
from tests.oracle import assert_close, random_array, torch_module

F = nn.functional

# name: (input shape, weight shape, bias?, keyword arguments)
FUNCTIONAL = {
    "plain": ((2, 3, 4, 5), (3, 2, 3, 3), True, {}),
    "dcgan 4x4/2": ((2, 4, 3, 4), (4, 3, 4, 4), True, dict(stride=2, padding=1)),
    "unet 2x2/2 no bias": ((2, 4, 3, 5), (4, 2, 2, 2), False, dict(stride=2)),
    "stride 3 output_padding": ((1, 2, 3, 4), (2, 3, 3, 2), True, dict(stride=3, padding=1, output_padding=(2, 1))),
    "groups dilation": ((2, 4, 4, 3), (4, 2, 3, 3), True, dict(stride=(2, 1), groups=2, dilation=2,
                                                                output_padding=1)),
    "unbatched": ((3, 4, 5), (3, 2, 3, 3), True, dict(stride=2, output_padding=1)),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", FUNCTIONAL)
def test_functional_matches_torch(name, dtype):
    torch = torch_module()
    input_shape, weight_shape, has_bias, kwargs = FUNCTIONAL[name]
    arrays = [random_array(input_shape, np.float64, seed=1), random_array(weight_shape, np.float64, seed=2)]
    if has_bias:
        arrays.append(random_array((weight_shape[1] * kwargs.get("groups", 1),), np.float64, seed=3))
    y = compare_with_torch(lambda *t: F.conv_transpose2d(*t, **kwargs),
                           lambda *t: torch.nn.functional.conv_transpose2d(*t, **kwargs), arrays, dtype)
    assert y[0].ndim == len(input_shape)


def test_functional_takes_arrays_and_gives_the_weight_alone_a_gradient():
    torch = torch_module()
    x, weight = random_array((2, 3, 4, 4), np.float64, seed=4), random_array((3, 2, 3, 3), np.float64, seed=5)
    w = nn.Parameter(weight.copy())
    F.conv_transpose2d(x, w, stride=2).sum().backward()
    w_t = torch.tensor(weight, requires_grad=True)
    torch.nn.functional.conv_transpose2d(torch.tensor(x), w_t, stride=2).sum().backward()
    assert_close(w.grad.data, w_t.grad.numpy(), np.float64)


# name: (constructor, input shape, output_size or None)
MODULES = {
    "dcgan": (lambda lib, **d: lib.ConvTranspose2d(4, 3, 4, stride=2, padding=1, **d), (2, 4, 3, 5), None),
    "unet": (lambda lib, **d: lib.ConvTranspose2d(6, 3, 2, stride=2, **d), (2, 6, 4, 3), None),
    "groups no bias": (lambda lib, **d: lib.ConvTranspose2d(4, 6, (3, 2), stride=(2, 3), padding=(1, 0), groups=2,
                                                            bias=False, dilation=(1, 2), **d), (2, 4, 3, 4), None),
    "output_padding": (lambda lib, **d: lib.ConvTranspose2d(2, 3, 3, stride=3, output_padding=(2, 1), **d),
                       (1, 2, 3, 3), None),
    "output_size": (lambda lib, **d: lib.ConvTranspose2d(3, 2, 3, stride=2, padding=1, **d), (2, 3, 4, 5), (8, 10)),
    "output_size 4-D": (lambda lib, **d: lib.ConvTranspose2d(3, 2, 3, stride=3, **d), (2, 3, 2, 3),
                        (2, 2, 8, 9)),
    "unbatched": (lambda lib, **d: lib.ConvTranspose2d(3, 4, 3, stride=2, **d), (3, 4, 3), (10, 7)),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", MODULES)
def test_module_matches_torch_twin(name, dtype):
    torch = torch_module()
    make, shape, output_size = MODULES[name]
    torch.manual_seed(0)
    theirs = make(torch.nn).double()
    ours = make(nn, dtype=dtype)
    ours.load_state_dict(theirs.state_dict())
    assert repr(ours) == repr(theirs)
    their_parameters = dict(theirs.named_parameters())
    assert [key for key, _ in ours.named_parameters()] == list(their_parameters)
    parameters = [(p, their_parameters[key]) for key, p in ours.named_parameters()]
    y = compare_with_torch(lambda x: ours(x, output_size), lambda x: theirs(x, output_size),
                           [random_array(shape, np.float64, seed=12)], dtype, parameters)
    if output_size is not None:
        assert y[0].shape[-2:] == tuple(output_size)[-2:]


def test_attributes_repr_and_state_dict_are_torchs():
    torch = torch_module()
    arguments = [((3, 5, 3), {}), ((4, 6, (4, 2)), dict(stride=(2, 1), padding=(1, 0), output_padding=(1, 0),
                                                         groups=2, bias=False, dilation=(1, 3))),
                 ((2, 2, 1), dict(stride=3, dilation=2, output_padding=2)), ((8, 4, 2), dict(stride=2))]
    attributes = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "output_padding", "dilation",
                  "groups", "padding_mode", "transposed")
    for args, kwargs in arguments:
        ours, theirs = nn.ConvTranspose2d(*args, **kwargs), torch.nn.ConvTranspose2d(*args, **kwargs)
        assert repr(ours) == repr(theirs)
        for attribute in attributes:
            assert getattr(ours, attribute) == getattr(theirs, attribute), (repr(theirs), attribute)
        assert list(ours.state_dict()) == list(theirs.state_dict())
        for key, value in theirs.state_dict().items():
            assert ours.state_dict()[key].shape == tuple(value.shape)
    assert repr(nn.Sequential(nn.ConvTranspose2d(3, 5, 3))) == repr(torch.nn.Sequential(
        torch.nn.ConvTranspose2d(3, 5, 3)))


# torch's fan_in comes from the weight's second dim: out_channels / groups * kH * kW
@pytest.mark.parametrize("make, fan_in", [(lambda: nn.ConvTranspose2d(64, 8, 3), 72),
                                          (lambda: nn.ConvTranspose2d(8, 64, 3, groups=4), 144),
                                          (lambda: nn.ConvTranspose2d(16, 128, (4, 2), stride=2), 1024)])
def test_default_initialisation_is_pytorchs(make, fan_in):
    check_default_initialisation(make, fan_in)   # bounds, spread, dtype and seeding, as for Linear and Conv2d


def test_default_initialisation_has_torchs_statistics():
    """Side by side with torch's layer (not only the formula): the same bounds and spread of weight and bias."""
    torch = torch_module()
    torch.manual_seed(0)
    nn.manual_seed(0)
    theirs = torch.nn.ConvTranspose2d(32, 256, 4, stride=2, groups=2)
    ours = nn.ConvTranspose2d(32, 256, 4, stride=2, groups=2)
    for key, tolerance in (("weight", 0.03), ("bias", 0.12)):   # 65536 and 256 values: mean within 4 sigma
        mine, expected = getattr(ours, key).data, getattr(theirs, key).detach().numpy()
        assert mine.shape == expected.shape
        assert abs(np.abs(mine).max() - np.abs(expected).max()) < 0.02 * np.abs(expected).max(), key
        assert abs(mine.std() - expected.std()) < tolerance * expected.std(), key
        assert abs(mine.mean()) < 4 * expected.std() / np.sqrt(mine.size), key


def test_dtype_and_device_arguments():
    layer = nn.ConvTranspose2d(2, 3, 3, dtype=np.float64, device="cpu")
    assert layer.weight.dtype == layer.bias.dtype == np.float64 and layer.weight.device == "cpu"
    assert layer.weight.shape == (2, 3, 3, 3)
    with pytest.raises(TypeError, match=r"ConvTranspose2d\(2, 3\): dtype must be float32 or float64"):
        nn.ConvTranspose2d(2, 3, 3, dtype=np.int32)


@pytest.mark.parametrize("call, error, message", [
    (lambda: nn.ConvTranspose2d(3, 4, 3, groups=2), ValueError,
     r"ConvTranspose2d\(3, 4\): in_channels and out_channels must be divisible by groups, got groups=2"),
    (lambda: nn.ConvTranspose2d(0, 4, 3), ValueError, r"ConvTranspose2d\(0, 4\): in_channels must be a positive"),
    (lambda: nn.ConvTranspose2d(2, 4, 3, padding_mode="reflect"), ValueError,
     r"ConvTranspose2d\(2, 4\): only padding_mode='zeros' is supported"),
    (lambda: nn.ConvTranspose2d(2, 4, 0), ValueError, r"ConvTranspose2d\(2, 4\): kernel_size must be a positive"),
    (lambda: nn.ConvTranspose2d(2, 4, 3, padding=-1), ValueError,
     r"ConvTranspose2d\(2, 4\): padding must be a non-negative integer, got -1"),
    (lambda: nn.ConvTranspose2d(2, 4, 3, padding="same"), ValueError,
     r"ConvTranspose2d\(2, 4\): padding must be a non-negative integer, got 'same'"),
    (lambda: nn.ConvTranspose2d(2, 4, 3)(np.ones((1, 3, 4, 4), np.float32)), ValueError,
     r"ConvTranspose2d\(2, 4\): expected input of shape \(N, 2, H, W\) or \(2, H, W\), got \(1, 3, 4, 4\)"),
    (lambda: nn.ConvTranspose2d(2, 4, 3)(np.ones((3, 4, 4), np.float32)), ValueError,
     r"ConvTranspose2d\(2, 4\): expected input of shape"),
    (lambda: nn.ConvTranspose2d(2, 4, 3)(np.ones((2, 4), np.float32)), ValueError,
     r"ConvTranspose2d\(2, 4\): expected input of shape"),
    (lambda: nn.ConvTranspose2d(2, 4, 3)([1.0]), TypeError, r"ConvTranspose2d\(2, 4\): expected a Tensor or an array"),
    (lambda: nn.ConvTranspose2d(2, 4, 3, stride=2, padding=1)(np.ones((1, 2, 4, 4), np.float32), (9, 9)),
     ValueError, r"ConvTranspose2d\(2, 4\): requested an output size of \(9, 9\), but valid sizes range from "
                 r"\(7, 7\) to \(8, 8\)"),
    (lambda: nn.ConvTranspose2d(2, 4, 3)(np.ones((1, 2, 4, 4), np.float32), (1, 6, 6)), ValueError,
     r"ConvTranspose2d\(2, 4\): for 4-D input, output_size must have 2 or 4 elements"),
    (lambda: nn.ConvTranspose2d(2, 4, 3, output_padding=1)(np.ones((1, 2, 4, 4), np.float32)), ValueError,
     r"conv_transpose2d: output_padding must be smaller than either stride or dilation"),
    (lambda: F.conv_transpose2d(np.ones((2, 4), np.float32), np.ones((2, 1, 1, 1), np.float32)), ValueError,
     r"conv_transpose2d: input must be 3-D \(C, H, W\) or 4-D \(N, C, H, W\), got shape \(2, 4\)"),
    (lambda: F.conv_transpose2d(None, np.ones((2, 1, 1, 1), np.float32)), TypeError,
     r"conv_transpose2d: input must be a Tensor or an array, got NoneType"),
    (lambda: F.conv_transpose2d(np.ones((1, 2, 3, 3), np.float32), [1.0]), TypeError,
     r"conv_transpose2d: weight must be a Tensor or an array, got list"),
    (lambda: F.conv_transpose2d(np.ones((1, 2, 3, 3), np.int64), np.ones((2, 1, 1, 1), np.int64)), TypeError,
     r"conv_transpose2d: x must be float32 or float64 on cpu, got int64"),
])
def test_bad_input_names_the_layer_or_op_and_what_it_expected(call, error, message):
    with pytest.raises(error, match=message):
        call()


def _decoder(lib, dtype=None):
    kw = {} if dtype is None else {"dtype": dtype}
    return lib.Sequential(lib.ConvTranspose2d(8, 6, 4, stride=2, padding=1, **kw), lib.BatchNorm2d(6, **kw),
                          lib.ReLU(), lib.ConvTranspose2d(6, 4, 2, stride=2, groups=2, **kw), lib.LeakyReLU(0.1),
                          lib.ConvTranspose2d(4, 1, 3, padding=1, bias=False, **kw), lib.Tanh())


def test_decoder_loss_gradients_and_sgd_steps_match_torch():
    """A DCGAN-like generator tail (4x4 stride 2, batch norm, a 2x2 stride-2 grouped up-sampling, a 3x3 head)
    from 3x3 codes to 12x12 images, trained three SGD steps (momentum, weight decay) beside torch's twin."""
    torch = torch_module()
    torch.manual_seed(0)
    theirs = _decoder(torch.nn).double()
    ours = _decoder(nn, np.float64)
    ours.load_state_dict(theirs.state_dict())
    ours_opt = nn.optim.SGD(ours.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    theirs_opt = torch.optim.SGD(theirs.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    target = random_array((4, 1, 12, 12), np.float64, seed=30)
    code, losses = random_array((4, 8, 3, 3), np.float64, seed=31), []
    for step in range(3):
        loss_ours = F.mse_loss(ours(nn.Tensor(code)), nn.Tensor(target))
        loss_theirs = torch.nn.functional.mse_loss(theirs(torch.tensor(code)), torch.tensor(target))
        assert loss_ours.item() == pytest.approx(loss_theirs.item(), rel=1e-10)
        losses.append(loss_ours.item())
        ours_opt.zero_grad()
        theirs_opt.zero_grad()
        loss_ours.backward()
        loss_theirs.backward()
        for (key, p), q in zip(ours.named_parameters(), theirs.parameters()):
            assert_close(p.grad.data, q.grad.numpy(), np.float64, name=f"step {step} grad of {key}")
        ours_opt.step()
        theirs_opt.step()
    for (key, p), q in zip(ours.named_parameters(), theirs.parameters()):
        assert_close(p.data, q.detach().numpy(), np.float64, name=key)
    assert losses[-1] < losses[0]


def test_output_size_must_hold_ints():
    layer = nn.ConvTranspose2d(2, 3, 3, stride=2)
    with pytest.raises(TypeError, match=r"ConvTranspose2d\(2, 3\): output_size must hold ints, got \(9.5, 9\)"):
        layer(nn.Tensor(np.ones((1, 2, 4, 4), np.float32)), output_size=(9.5, 9))
