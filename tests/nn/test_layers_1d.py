"""1-D convolution and pooling (nn.functional's conv1d, max_pool1d, avg_pool1d, adaptive_avg_pool1d and the
modules Conv1d, MaxPool1d, AvgPool1d, AdaptiveAvgPool1d) against PyTorch on the CPU path: values and the
gradients of input, weight and bias in float64 and float32, max_pool1d's indices, torch's attributes, repr,
state dict and initialisation, bad-input messages that name the 1-D op, and a Conv1d -> BatchNorm1d -> ReLU ->
MaxPool1d -> LSTM -> Linear model's loss and gradients."""
import numpy as np
import pytest

import nn
from tests.nn.test_layers import test_default_initialisation_is_pytorchs as check_default_initialisation
from tests.oracle import TOLERANCE, assert_close, random_array, torch_module

F = nn.functional
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")   # torch's


def _float_outputs(result):
    """(differentiable outputs, integer outputs) of an op that returns one Tensor or a (values, indices) pair."""
    outputs = result if isinstance(result, tuple) else (result,)
    floating = ["float" in str(o.dtype) for o in outputs]   # NumPy's float64 and torch.float64 alike
    return [o for o, f in zip(outputs, floating) if f], [o for o, f in zip(outputs, floating) if not f]


def compare_with_torch(ours, theirs, arrays, dtype=np.float64, parameters=(), seed=40, device="cpu", close=None):
    """ours(*Tensors) in `dtype` on `device` against theirs(*torch tensors) in float64 on the CPU, on the same
    values: outputs (integer outputs exactly), the gradients of sum(output * w) for a random w with respect to
    every array, and those of the (our parameter, their parameter) pairs in `parameters`. `close(actual,
    expected, name)` compares; by default with the tolerances of `dtype`."""
    torch = torch_module()
    if close is None:
        rtol, atol = TOLERANCE[np.dtype(dtype)]
        scale = 1.0 if dtype == np.float64 else 4.0   # float32 sums over a window or a kernel

        def close(actual, expected, name):
            assert_close(actual, expected, rtol=rtol * scale, atol=atol * scale, name=name)
    arrays = [a.astype(dtype) for a in arrays]
    leaves = [nn.Tensor(a.copy(), requires_grad=True) for a in arrays]
    inputs = leaves if device == "cpu" else [leaf.to(device) for leaf in leaves]   # .to is differentiable
    their_leaves = [torch.tensor(a.astype(np.float64), requires_grad=True) for a in arrays]
    ours_values, ours_integers = _float_outputs(ours(*inputs))
    their_values, their_integers = _float_outputs(theirs(*their_leaves))
    for got, expected in zip(ours_integers, their_integers, strict=True):
        assert got.dtype == np.int64 and got.device == device
        np.testing.assert_array_equal(got.numpy(), expected.numpy(), err_msg="indices")
    terms, their_terms = [], []
    for i, (got, expected) in enumerate(zip(ours_values, their_values, strict=True)):
        assert got.dtype == dtype and got.device == device
        close(got.data, expected.detach().numpy(), f"output {i}")
        weight = random_array(got.shape, np.float64, seed=seed + i)
        terms.append((got * nn.Tensor(weight.astype(dtype)).to(device)).sum())
        their_terms.append((expected * torch.tensor(weight)).sum())
    sum(terms[1:], terms[0]).backward()
    sum(their_terms[1:], their_terms[0]).backward()
    pairs = list(zip(leaves, their_leaves)) + list(parameters)
    for i, (mine, theirs_leaf) in enumerate(pairs):
        assert mine.grad.dtype == dtype
        close(mine.grad.data, theirs_leaf.grad.numpy(), f"gradient {i}")
    return ours_values


# ---- functional ops -----------------------------------------------------------------------------

CONV_CASES = {   # input shape, weight shape, bias, keyword arguments
    "plain odd length": ((2, 3, 11), (4, 3, 3), True, {}),
    "stride padding dilation groups": ((2, 4, 13), (6, 2, 3), True, dict(stride=2, padding=1, dilation=2, groups=2)),
    "same even kernel": ((2, 3, 10), (5, 3, 4), True, dict(padding="same")),
    "same even kernel dilated": ((1, 3, 9), (2, 3, 4), False, dict(padding="same", dilation=3)),
    "valid": ((2, 3, 9), (4, 3, 4), True, dict(padding="valid", stride=3)),
    "unbatched": ((3, 9), (4, 3, 5), True, dict(padding=2)),
    "depthwise": ((2, 4, 7), (8, 1, 3), False, dict(groups=4, stride=3, padding=1)),
    "pointwise": ((3, 3, 5), (5, 3, 1), True, {}),
    "tuples": ((2, 2, 12), (3, 2, 3), True, dict(stride=(2,), padding=(1,), dilation=(1,))),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", CONV_CASES)
def test_conv1d_matches_torch(name, dtype):
    torch = torch_module()
    input_shape, weight_shape, bias, kwargs = CONV_CASES[name]
    arrays = [random_array(input_shape, np.float64, seed=1), random_array(weight_shape, np.float64, seed=2)]
    arrays += [random_array(weight_shape[:1], np.float64, seed=3)] if bias else []
    values = compare_with_torch(lambda *t: F.conv1d(*t, **kwargs),
                                lambda *t: torch.nn.functional.conv1d(*t, **kwargs), arrays, dtype)
    assert values[0].ndim == len(input_shape)


MAX_CASES = {   # input shape, keyword arguments (kernel_size first)
    "default stride": ((2, 3, 11), dict(kernel_size=3)),
    "stride padding ceil": ((2, 3, 11), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    "dilation ceil": ((2, 2, 14), dict(kernel_size=4, stride=3, padding=2, dilation=2, ceil_mode=True)),
    "overlapping": ((1, 2, 9), dict(kernel_size=3, stride=1, padding=1)),
    "unbatched": ((3, 10), dict(kernel_size=2)),
    "tuples": ((2, 2, 10), dict(kernel_size=(3,), stride=(2,), padding=(1,), dilation=(1,))),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", MAX_CASES)
def test_max_pool1d_values_indices_and_gradients_match_torch(name, dtype):
    torch = torch_module()
    shape, kwargs = MAX_CASES[name]
    x = random_array(shape, np.float64, seed=4)
    compare_with_torch(lambda t: F.max_pool1d(t, **kwargs), lambda t: torch.nn.functional.max_pool1d(t, **kwargs),
                       [x], dtype)
    compare_with_torch(lambda t: F.max_pool1d(t, **kwargs, return_indices=True),
                       lambda t: torch.nn.functional.max_pool1d(t, **kwargs, return_indices=True), [x], dtype)


def test_max_pool1d_ties_give_torchs_indices():
    """Many equal values: the first maximum of each window wins, in torch's numbering (position in L)."""
    torch = torch_module()
    x = np.round(random_array((2, 3, 13), np.float64, seed=5) * 2) / 2
    for kwargs in (dict(kernel_size=3, stride=1, padding=1), dict(kernel_size=4, stride=2, dilation=2, ceil_mode=True)):
        _, indices = F.max_pool1d(nn.Tensor(x), **kwargs, return_indices=True)
        _, expected = torch.nn.functional.max_pool1d(torch.tensor(x), **kwargs, return_indices=True)
        np.testing.assert_array_equal(indices.data, expected.numpy())
        assert not indices.requires_grad


AVG_CASES = {
    "default stride": ((2, 3, 11), dict(kernel_size=3)),
    "padding ceil excluded": ((2, 3, 11), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True,
                                               count_include_pad=False)),
    "padding ceil included": ((2, 2, 13), dict(kernel_size=4, stride=3, padding=2, ceil_mode=True)),
    "padding floor excluded": ((1, 2, 12), dict(kernel_size=5, stride=2, padding=2, count_include_pad=False)),
    "unbatched": ((3, 10), dict(kernel_size=2, stride=1)),
    "tuples": ((2, 2, 9), dict(kernel_size=(3,), stride=(2,), padding=(1,))),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", AVG_CASES)
def test_avg_pool1d_matches_torch(name, dtype):
    torch = torch_module()
    shape, kwargs = AVG_CASES[name]
    compare_with_torch(lambda t: F.avg_pool1d(t, **kwargs), lambda t: torch.nn.functional.avg_pool1d(t, **kwargs),
                       [random_array(shape, np.float64, seed=6)], dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape, output_size", [((2, 3, 11), 3), ((2, 3, 10), 4), ((2, 2, 5), 7), ((1, 2, 9), 1),
                                                ((3, 10), (4,)), ((2, 2, 13), 13)])
def test_adaptive_avg_pool1d_matches_torch(shape, output_size, dtype):
    torch = torch_module()
    compare_with_torch(lambda t: F.adaptive_avg_pool1d(t, output_size),
                       lambda t: torch.nn.functional.adaptive_avg_pool1d(t, output_size),
                       [random_array(shape, np.float64, seed=7)], dtype)


def test_adaptive_avg_pool1d_to_length_0_as_torch_with_a_zero_gradient():
    """output_size 0: torch's empty output; the input's gradient is zero (torch's backward raises there)."""
    torch = torch_module()
    x = nn.Tensor(random_array((2, 3, 5), np.float64, seed=8), requires_grad=True)
    y = F.adaptive_avg_pool1d(x, 0)
    assert y.shape == tuple(torch.nn.functional.adaptive_avg_pool1d(torch.tensor(x.numpy()), 0).shape) == (2, 3, 0)
    y.sum().backward()
    assert x.grad.shape == x.shape and not x.grad.numpy().any()


def test_non_contiguous_input_is_viewed_not_copied_and_its_base_gets_the_gradient():
    """The (N, C, L) -> (N, C, 1, L) reshape is a view even of a strided slice (a unit axis needs no copy)."""
    torch = torch_module()
    base = random_array((2, 3, 19), np.float64, seed=8)
    weight = random_array((4, 3, 3), np.float64, seed=9)
    x = nn.Tensor(base.copy(), requires_grad=True)
    sliced = x[:, :, ::2]
    assert not sliced.data.flags.c_contiguous
    assert np.shares_memory(sliced.reshape(2, 3, 1, 10).data, x.data)
    compare_with_torch(lambda t, w: F.conv1d(t[:, :, ::2], w, padding=1),
                       lambda t, w: torch.nn.functional.conv1d(t[:, :, ::2], w, padding=1), [base, weight])
    compare_with_torch(lambda t: F.max_pool1d(t[:, 1:, ::2], 3, 2, return_indices=True),
                       lambda t: torch.nn.functional.max_pool1d(t[:, 1:, ::2], 3, 2, return_indices=True), [base])


def test_empty_batch_gives_empty_results_and_gradients():
    torch = torch_module()
    x, w = np.ones((0, 3, 9)), random_array((4, 3, 3), np.float64, seed=15)
    compare_with_torch(lambda t, v: F.conv1d(t, v, padding=1), lambda t, v: torch.nn.functional.conv1d(t, v, padding=1),
                       [x, w])
    for name, args in (("max_pool1d", (2,)), ("avg_pool1d", (3, 2, 1)), ("adaptive_avg_pool1d", (4,))):
        compare_with_torch(lambda t, name=name, args=args: getattr(F, name)(t, *args),
                           lambda t, name=name, args=args: getattr(torch.nn.functional, name)(t, *args), [x])


def test_input_written_in_place_before_backward_raises_as_in_torch_naming_the_1d_op():
    torch = torch_module()
    x, w = random_array((2, 3, 9), np.float64, seed=16), random_array((4, 3, 3), np.float64, seed=17)
    ours, theirs = nn.Tensor(x.copy()), torch.tensor(x)
    y = F.conv1d(ours, nn.Tensor(w, requires_grad=True))
    expected = torch.nn.functional.conv1d(theirs, torch.tensor(w, requires_grad=True))
    ours.add_(1.0)
    theirs.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        expected.sum().backward()
    with pytest.raises(RuntimeError, match="Conv1dFunction saved for its gradient was modified") as raised:
        y.sum().backward()
    assert "2d" not in str(raised.value).lower()


def test_arrays_are_accepted_and_weight_alone_gets_a_gradient():
    torch = torch_module()
    x, w = random_array((2, 3, 8), np.float64, seed=10), random_array((2, 3, 3), np.float64, seed=11)
    weight = nn.Tensor(w.copy(), requires_grad=True)
    y = F.conv1d(x, weight, padding="same")
    y.sum().backward()
    their_weight = torch.tensor(w, requires_grad=True)
    torch.nn.functional.conv1d(torch.tensor(x), their_weight, padding="same").sum().backward()
    assert_close(weight.grad.data, their_weight.grad.numpy(), np.float64)
    assert_close(F.avg_pool1d(x, 2).data, torch.nn.functional.avg_pool1d(torch.tensor(x), 2).numpy(), np.float64)


# ---- modules ------------------------------------------------------------------------------------

MODULES = {   # make(lib, dtype or None), input shape
    "conv": (lambda lib, **d: lib.Conv1d(3, 4, 3, **d), (2, 3, 11)),
    "conv strided padded dilated grouped": (
        lambda lib, **d: lib.Conv1d(4, 6, 3, stride=2, padding=1, dilation=2, groups=2, **d), (2, 4, 13)),
    "conv same even kernel no bias": (lambda lib, **d: lib.Conv1d(3, 5, 4, padding="same", bias=False, **d),
                                      (2, 3, 10)),
    "conv valid unbatched": (lambda lib, **d: lib.Conv1d(3, 2, 5, padding="valid", **d), (3, 9)),
    "max pool": (lambda lib, **d: lib.MaxPool1d(3, 2, 1, ceil_mode=True), (2, 3, 11)),
    "max pool unbatched with indices": (lambda lib, **d: lib.MaxPool1d(2, return_indices=True), (3, 9)),
    "avg pool": (lambda lib, **d: lib.AvgPool1d(3, 2, 1, ceil_mode=True, count_include_pad=False), (2, 3, 11)),
    "avg pool unbatched": (lambda lib, **d: lib.AvgPool1d(4, padding=2), (3, 9)),
    "adaptive avg pool": (lambda lib, **d: lib.AdaptiveAvgPool1d(4), (2, 3, 10)),
    "adaptive avg pool unbatched": (lambda lib, **d: lib.AdaptiveAvgPool1d((3,)), (2, 7)),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", MODULES)
def test_module_matches_torch_twin(name, dtype):
    torch = torch_module()
    make, shape = MODULES[name]
    torch.manual_seed(0)
    theirs = make(torch.nn).double()
    ours = make(nn, dtype=dtype) if isinstance(theirs, torch.nn.Conv1d) else make(nn)
    ours.load_state_dict(theirs.state_dict())
    assert repr(ours) == repr(theirs)
    their_parameters = dict(theirs.named_parameters())
    assert [name for name, _ in ours.named_parameters()] == list(their_parameters)
    parameters = [(p, their_parameters[name]) for name, p in ours.named_parameters()]
    compare_with_torch(ours, theirs, [random_array(shape, np.float64, seed=12)], dtype, parameters)


def test_attributes_repr_and_state_dict_are_torchs():
    torch = torch_module()
    pairs = [(nn.Conv1d(4, 6, 3), torch.nn.Conv1d(4, 6, 3)),
             (nn.Conv1d(4, 6, (5,), stride=(2,), padding=(2,), dilation=3, groups=2, bias=False),
              torch.nn.Conv1d(4, 6, (5,), stride=(2,), padding=(2,), dilation=3, groups=2, bias=False)),
             (nn.Conv1d(2, 2, 4, padding="same"), torch.nn.Conv1d(2, 2, 4, padding="same")),
             (nn.MaxPool1d(3), torch.nn.MaxPool1d(3)), (nn.MaxPool1d((3,), 2, 1), torch.nn.MaxPool1d((3,), 2, 1)),
             (nn.AvgPool1d(3), torch.nn.AvgPool1d(3)), (nn.AvgPool1d(3, 2, 1, True, False),
                                                        torch.nn.AvgPool1d(3, 2, 1, True, False)),
             (nn.AdaptiveAvgPool1d(5), torch.nn.AdaptiveAvgPool1d(5))]
    attributes = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups",
                  "padding_mode", "output_padding", "transposed", "return_indices", "ceil_mode",
                  "count_include_pad", "output_size")
    for ours, theirs in pairs:
        assert repr(ours) == repr(theirs)
        for attribute in attributes:
            if hasattr(theirs, attribute):
                assert getattr(ours, attribute) == getattr(theirs, attribute), (repr(theirs), attribute)
        assert list(ours.state_dict()) == list(theirs.state_dict())
        for key, value in theirs.state_dict().items():
            assert ours.state_dict()[key].shape == tuple(value.shape)


@pytest.mark.parametrize("make, fan_in", [(lambda: nn.Conv1d(8, 64, 5), 40),
                                          (lambda: nn.Conv1d(8, 64, 3, groups=4), 6)])
def test_default_initialisation_is_pytorchs(make, fan_in):
    check_default_initialisation(make, fan_in)   # bounds, spread, dtype and seeding, as for Linear and Conv2d


def test_dtype_and_device_arguments():
    layer = nn.Conv1d(2, 3, 3, dtype=np.float64, device="cpu")
    assert layer.weight.dtype == layer.bias.dtype == np.float64 and layer.weight.device == "cpu"
    assert layer.weight.shape == (3, 2, 3)
    with pytest.raises(TypeError, match=r"Conv1d\(2, 3\): dtype must be float32 or float64"):
        nn.Conv1d(2, 3, 3, dtype=np.int32)


# ---- bad input ----------------------------------------------------------------------------------

def _ones(*shape, dtype=np.float32):
    return nn.Tensor(np.ones(shape, dtype))


BAD_CALLS = [
    (lambda: F.conv1d(_ones(2, 3, 4, 5), _ones(4, 3, 3)), ValueError,
     r"conv1d: input must be 2-D \(C, L\) or 3-D \(N, C, L\) with C, L >= 1, got shape \(2, 3, 4, 5\)"),
    (lambda: F.conv1d(_ones(5), _ones(4, 3, 3)), ValueError, r"conv1d: input must be 2-D .* got shape \(5,\)"),
    (lambda: F.conv1d(_ones(2, 3, 0), _ones(4, 3, 3)), ValueError, r"conv1d: input .* got shape \(2, 3, 0\)"),
    (lambda: F.conv1d(_ones(2, 3, 9), _ones(4, 3, 3, 3)), ValueError,
     r"conv1d: weight must be 3-D \(out_channels, in_channels / groups, kernel_size\), got shape \(4, 3, 3, 3\)"),
    (lambda: F.conv1d(_ones(2, 8, 9), _ones(4, 16, 3)), ValueError,
     r"conv1d: input has 8 channels but weight expects 16 x groups=1 = 16 \(input \(2, 8, 9\), weight \(4, 16, 3\)\)"),
    (lambda: F.conv1d(_ones(2, 4, 9), _ones(3, 2, 3), groups=2), ValueError,
     r"conv1d: groups=2 must divide both the input channels and the output channels"),
    (lambda: F.conv1d(_ones(2, 3, 9), _ones(4, 3, 3), _ones(3)), ValueError, r"conv1d: bias must have shape \(4,\)"),
    (lambda: F.conv1d(_ones(2, 3, 9), _ones(4, 3, 3), stride=2, padding="same"), ValueError,
     r"conv1d: padding='same' needs stride 1, got stride 2"),
    (lambda: F.conv1d(_ones(2, 3, 9), _ones(4, 3, 3), padding="full"), ValueError,
     r"conv1d: padding must be an int, a 1-tuple, 'same' or 'valid', got 'full'"),
    (lambda: F.conv1d(_ones(2, 3, 9), _ones(4, 3, 3), stride=0), ValueError, r"conv1d: stride must be positive"),
    (lambda: F.conv1d(_ones(2, 3, 9), _ones(4, 3, 3), stride=(1, 2)), ValueError,
     r"conv1d: stride must be an int or a 1-tuple of ints, got \(1, 2\)"),
    (lambda: F.conv1d(_ones(2, 3, 9), _ones(4, 3, 3), padding=-1), ValueError, r"conv1d: padding must be non-negative"),
    (lambda: F.conv1d(_ones(2, 3, 9), _ones(4, 3, 3), groups=0), ValueError, r"conv1d: groups must be a positive"),
    (lambda: F.conv1d(_ones(2, 3, 4), _ones(4, 3, 3), dilation=2), ValueError,
     r"conv1d: kernel size 3 \(dilated 5\) is larger than the padded input length 4"),
    (lambda: F.conv1d(_ones(2, 3, 9, dtype=np.float64), _ones(4, 3, 3)), TypeError,
     r"conv1d: all arrays must share one dtype"),
    (lambda: F.conv1d(_ones(2, 3, 9, dtype=np.int64), _ones(4, 3, 3)), TypeError,
     r"conv1d: input must be float32 or float64 on cpu, got int64"),
    (lambda: F.conv1d([[1.0, 2.0]], _ones(4, 3, 3)), TypeError, r"conv1d: input must be a Tensor or an array, got list"),
    (lambda: F.max_pool1d(_ones(2, 3, 9), 3, padding=2), ValueError,
     r"max_pool1d: padding must be at most half the kernel size, got padding 2 for kernel_size 3"),
    (lambda: F.max_pool1d(_ones(2, 3, 2), 5), ValueError,
     r"max_pool1d: output length 0 is too small for input shape \(2, 3, 2\) with kernel_size 5"),
    (lambda: F.max_pool1d(_ones(2, 3, 9), (2, 2)), ValueError,
     r"max_pool1d: kernel_size must be an int or a 1-tuple of ints, got \(2, 2\)"),
    (lambda: F.max_pool1d(_ones(2, 3, 9), 2, stride=0), ValueError, r"max_pool1d: stride must be positive"),
    (lambda: F.max_pool1d(_ones(1, 2, 3, 9), 2), ValueError, r"max_pool1d: input must be 2-D .* \(1, 2, 3, 9\)"),
    (lambda: F.avg_pool1d(_ones(1, 2, 3, 9), 2), ValueError, r"avg_pool1d: input must be 2-D .* \(1, 2, 3, 9\)"),
    (lambda: F.avg_pool1d(_ones(2, 3, 9), 2, padding=2), ValueError, r"avg_pool1d: padding must be at most half"),
    (lambda: F.avg_pool1d(_ones(2, 3, 9, dtype=np.int32), 2), TypeError, r"avg_pool1d: input must be float32"),
    (lambda: F.adaptive_avg_pool1d(_ones(2, 3, 9), -1), ValueError,
     r"adaptive_avg_pool1d: output_size must be non-negative"),
    (lambda: F.adaptive_avg_pool1d(_ones(2, 3, 9), (2, 3)), ValueError,
     r"adaptive_avg_pool1d: output_size must be an int or a 1-tuple of ints, got \(2, 3\)"),
    (lambda: F.adaptive_avg_pool1d(_ones(2, 3, 9), None), ValueError,
     r"adaptive_avg_pool1d: output_size must be an int or a 1-tuple of ints, got None"),
    (lambda: nn.Conv1d(16, 33, 3)(_ones(4, 8, 50)), ValueError,
     r"Conv1d\(16, 33\): expected 16 input channels, got 8 \(input shape \(4, 8, 50\)\)"),
    (lambda: nn.Conv1d(16, 33, 3)(_ones(8, 50)), ValueError, r"Conv1d\(16, 33\): expected 16 input channels, got 8"),
    (lambda: nn.Conv1d(16, 33, 3)(_ones(2, 16, 3, 50)), ValueError,
     r"Conv1d\(16, 33\): expected input of shape \(N, 16, L\) or \(16, L\), got \(2, 16, 3, 50\)"),
    (lambda: nn.Conv1d(2, 3, 3)(_ones(1, 2, 9, dtype=np.float64)), TypeError, r"conv1d: all arrays must share one dtype"),
    (lambda: nn.MaxPool1d(2)(_ones(2, 3, 4, 4)), ValueError,
     r"MaxPool1d\(kernel_size=2, .*\): expected input of shape \(N, C, L\) or \(C, L\), got \(2, 3, 4, 4\)"),
    (lambda: nn.AvgPool1d(2)(_ones(4)), ValueError, r"AvgPool1d\(kernel_size=\(2,\), .*\): expected input of shape"),
    (lambda: nn.AdaptiveAvgPool1d(2)(_ones(1, 1, 1, 4)), ValueError, r"AdaptiveAvgPool1d\(output_size=2\): expected"),
    (lambda: nn.Conv1d(3, 16, 3, groups=2), ValueError,
     r"Conv1d\(3, 16\): in_channels and out_channels must be divisible by groups, got groups=2"),
    (lambda: nn.Conv1d(3, 16, 3, padding_mode="reflect"), ValueError,
     r"Conv1d\(3, 16\): only padding_mode='zeros' is supported, got 'reflect'"),
    (lambda: nn.Conv1d(3, 16, 3, stride=2, padding="same"), ValueError,
     r"Conv1d\(3, 16\): padding='same' needs stride 1, got stride 2"),
    (lambda: nn.Conv1d(3, 16, (3, 3)), ValueError, r"Conv1d\(3, 16\): kernel_size must be an int or a 1-tuple"),
]


@pytest.mark.parametrize("call, error, message", BAD_CALLS, ids=range(len(BAD_CALLS)))
def test_bad_input_names_the_1d_op_and_what_it_expected(call, error, message):
    with pytest.raises(error, match=message) as raised:
        call()
    assert "2d" not in str(raised.value).lower(), "the message leaks the 2-D op it runs on"


# ---- a small CRNN -------------------------------------------------------------------------------

def conv_lstm_model(lib, channels=3, features=8, hidden=6, classes=4):
    class SequenceClassifier(lib.Module):
        """Conv1d -> BatchNorm1d -> ReLU -> MaxPool1d over (N, C, L), an LSTM over the pooled time axis,
        a Linear classifier at every step."""

        def __init__(self):
            super().__init__()
            self.features = lib.Sequential(lib.Conv1d(channels, features, 5, padding=2, bias=False),
                                           lib.BatchNorm1d(features), lib.ReLU(), lib.MaxPool1d(2))
            self.lstm = lib.LSTM(features, hidden, batch_first=True)
            self.classifier = lib.Linear(hidden, classes)

        def forward(self, x):
            output, _ = self.lstm(self.features(x).permute(0, 2, 1))
            return self.classifier(output)

    return SequenceClassifier()


def test_conv_lstm_model_loss_and_gradients_match_torch():
    torch = torch_module()
    torch.manual_seed(0)
    theirs = conv_lstm_model(torch.nn).double()
    ours = conv_lstm_model(nn).to(dtype=np.float64)
    ours.load_state_dict(theirs.state_dict())
    x = random_array((3, 3, 15), np.float64, seed=13)
    targets = np.random.default_rng(14).integers(0, 4, size=(3, 7))
    x_ours, x_theirs = nn.Tensor(x.copy(), requires_grad=True), torch.tensor(x, requires_grad=True)
    loss = F.cross_entropy(ours(x_ours).reshape(-1, 4), targets.reshape(-1))
    expected = torch.nn.functional.cross_entropy(theirs(x_theirs).reshape(-1, 4), torch.tensor(targets.reshape(-1)))
    assert_close(loss.data, expected.detach().numpy(), np.float64, name="loss")
    loss.backward()
    expected.backward()
    assert_close(x_ours.grad.data, x_theirs.grad.numpy(), np.float64, name="input gradient")
    their_parameters = dict(theirs.named_parameters())
    assert [name for name, _ in ours.named_parameters()] == list(their_parameters)
    for name, parameter in ours.named_parameters():
        assert_close(parameter.grad.data, their_parameters[name].grad.numpy(), np.float64, name=f"grad of {name}")
    for key, value in theirs.state_dict().items():   # the batch norm's running statistics
        assert_close(np.asarray(ours.state_dict()[key], np.float64), value.numpy().astype(np.float64), np.float64,
                     name=key)
