"""CNN building blocks against torch (CPU path, float64 unless said): F.group_norm / nn.GroupNorm (values and
gradients of input, weight and bias, twins with copied state dicts, repr, state-dict keys, initialisation, bad
inputs); F.dropout2d / nn.Dropout2d (whole channels, scaling, the mask as gradient, seeds, eval, torch's rank
warnings); F.pad (constant, negative pads) / nn.ZeroPad2d / nn.ConstantPad2d; F.interpolate / nn.Upsample (nearest:
torch's indices for integer and fractional factors and sizes, gradients); and a small conv -> GroupNorm -> ReLU ->
Upsample -> ZeroPad2d -> conv model trained three SGD steps beside torch's twin."""
import inspect
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
    if "bias" in options and "bias" not in inspect.signature(torch.nn.GroupNorm).parameters:
        # torch before 2.12 (the GPU machine has 2.11) has no bias=False: drop its bias as 2.12's does
        theirs = torch.nn.GroupNorm(*args, **{k: v for k, v in options.items() if k != "bias"}).double()
        if theirs.affine and not options["bias"]:
            theirs.register_parameter("bias", None)
    else:
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


def test_writing_the_bias_in_place_before_backward_is_fine_as_in_torch():
    """GroupNorm's backward reads no bias, so it saves none (torch saves none either): an optimizer step or a
    hand-set bias between forward and backward (retain_graph=True, then a second backward) does not raise."""
    torch = torch_module()
    x = random_array((2, 4, 3), np.float64, seed=8)
    grads = []
    for lib in (nn, torch):
        layer = torch.nn.GroupNorm(2, 4).double() if lib is torch else nn.GroupNorm(2, 4, dtype=np.float64)
        leaf = torch.tensor(x, requires_grad=True) if lib is torch else nn.Tensor(x.copy(), requires_grad=True)
        out = (layer(leaf) * lib.tensor(np.arange(24.0).reshape(2, 4, 3))).sum()
        with lib.no_grad():
            layer.bias.add_(1.0)
        out.backward()
        grads.append((leaf.grad.detach().numpy() if lib is torch else leaf.grad.numpy(),
                      layer.weight.grad.detach().numpy() if lib is torch else layer.weight.grad.numpy()))
    for ours, theirs in zip(*grads):
        assert_close(ours, theirs, np.float64)


def test_interpolate_keeps_every_index_array_a_graph_may_read():
    """The gather path's index arrays stay cached however many sizes are seen (a CUDA graph captured with one
    reads it at every replay: freeing it would let its memory be reused under the graph)."""
    import weakref

    from nn import functional_shape_ops
    F.interpolate(np.ones((1, 1, 3, 5), np.float32), size=(7, 11))
    first = weakref.ref(functional_shape_ops._indices[(None, 5, 11, None)])
    for size in range(12, 90):
        F.interpolate(np.ones((1, 1, 3, 5), np.float32), size=(7, size))
    assert first() is not None


# ---- dropout2d ----------------------------------------------------------------------------------

def _channel_dropout(x, p, seed, **kwargs):
    """F.dropout2d of x (float64) under nn.manual_seed(seed): (output, input gradient of the sum of the output)."""
    nn.manual_seed(seed)
    leaf = nn.Tensor(x, requires_grad=True)
    out = F.dropout2d(leaf, p, **kwargs)
    out.sum().backward()
    return out.data, leaf.grad.data


@pytest.mark.filterwarnings("ignore:dropout2d. Received a 3D input")
@pytest.mark.parametrize("shape", [(64, 96, 3, 5), (50, 40, 7)])
def test_dropout2d_zeroes_whole_channels_and_scales_the_rest(shape):
    p = 0.3
    x = random_array(shape, np.float64, seed=30, low=0.5, high=1.5)
    out, grad = _channel_dropout(x, p, seed=4)
    kept = out.reshape(shape[:2] + (-1,)) != 0
    assert np.all(kept.all(axis=2) | ~kept.any(axis=2)), "a channel is either kept whole or zeroed whole"
    channel_kept = kept[:, :, 0]
    assert abs(channel_kept.mean() - (1 - p)) < 0.02   # 6144 / 2000 channels: within ~4-6 standard deviations
    mask = np.where(channel_kept, 1 / (1 - p), 0.0).reshape(shape[:2] + (1,) * (len(shape) - 2))
    assert_close(out, x * mask, np.float64, name="kept values scaled by 1/(1-p)")
    assert_close(grad, np.broadcast_to(mask, shape), np.float64, name="the gradient is the mask")
    again, _ = _channel_dropout(x, p, seed=4)
    other, _ = _channel_dropout(x, p, seed=5)
    assert np.array_equal(again, out) and not np.array_equal(other, out), "nn.manual_seed sets the masks"


def test_dropout2d_identity_when_not_training_or_p_zero_and_zero_at_p_one():
    x = nn.Tensor(random_array((2, 3, 4, 4), np.float64, seed=31))
    assert F.dropout2d(x, 0.5, training=False) is x and F.dropout2d(x, 0.0) is x
    assert np.array_equal(F.dropout2d(x, 1.0).data, np.zeros(x.shape))
    layer = nn.Dropout2d(0.4)
    assert layer(x) is not x
    layer.eval()
    assert np.array_equal(layer(x).data, x.data)


def test_dropout2d_layer_as_torch():
    torch = torch_module()
    for args in ((), (0.25,), (0.1, True)):
        ours, theirs = nn.Dropout2d(*args), torch.nn.Dropout2d(*args)
        assert repr(ours) == repr(theirs) and (ours.p, ours.inplace) == (theirs.p, theirs.inplace)
        assert ours.state_dict() == {} and list(theirs.state_dict()) == []
    # the trainer runs a model with dropout eagerly: no CUDA graph freezes its mask
    from nn.train import _has_dropout
    assert _has_dropout(nn.Dropout2d(0.2)) and not _has_dropout(nn.Dropout2d(0.0))


def test_dropout2d_rank_rules_and_errors_as_torch():
    torch = torch_module()
    for shape, message in (((4, 6), "Received a 2-D input to dropout2d"), ((2, 3, 2, 2, 2), "Received a 5-D input"),
                           ((2, 3, 5), "Received a 3D input to dropout2d and assuming that channel-wise 1D")):
        with pytest.warns(UserWarning, match=message):
            out = F.dropout2d(np.ones(shape), 0.5)
        with pytest.warns(UserWarning, match=message):
            torch.nn.functional.dropout2d(torch.ones(shape), 0.5)
        assert out.shape == shape
    with pytest.raises(ValueError, match=r"^dropout2d: expected an input of at least 2 dims \(N, C, \*\), got shape "
                                         r"\(5,\)"):
        F.dropout2d(np.ones(5), 0.5)
    with pytest.raises(ValueError, match=r"^dropout2d: p must be a probability in \[0, 1\], got 1.5"):
        F.dropout2d(np.ones((2, 3, 4, 4)), 1.5)
    with pytest.raises(ValueError, match=r"^Dropout2d: p must be a probability in \[0, 1\], got -0.1"):
        nn.Dropout2d(-0.1)


# ---- pad ----------------------------------------------------------------------------------------

PAD_CASES = {   # input shape, pad, value
    "last dim": ((2, 3, 5), (1, 2), None),
    "2-D image": ((2, 3, 4, 5), (1, 2, 3, 0), 0.0),
    "3 dims, a value": ((2, 3, 4, 2, 3), (2, 1, 0, 3, 1, 1), 2.5),
    "negative pads crop": ((2, 3, 6, 7), (-1, 2, 0, -2), -1.0),
    "crop to nothing": ((2, 3, 4), (-2, -2), 0.0),
    "every dim of a 2-D input": ((3, 4), (1, -1, 2, 1), 0.5),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", PAD_CASES)
def test_pad_matches_torch(name, dtype):
    torch = torch_module()
    shape, padding, value = PAD_CASES[name]
    compare_with_torch(lambda x: F.pad(x, padding, value=value),
                       lambda x: torch.nn.functional.pad(x, padding, value=value),
                       [random_array(shape, np.float64, seed=40)], dtype)


def test_pad_of_a_strided_input_matches_torch():
    torch = torch_module()
    compare_with_torch(lambda x: F.pad(x[:, ::2, 1:], (2, 1, -1, 1)),
                       lambda x: torch.nn.functional.pad(x[:, ::2, 1:], (2, 1, -1, 1)),
                       [random_array((2, 5, 6, 7), np.float64, seed=41)])


@pytest.mark.parametrize("make,shape", [
    (lambda lib: lib.ZeroPad2d(2), (2, 3, 4, 5)),
    (lambda lib: lib.ZeroPad2d((1, 0, 3, 2)), (3, 5, 4)),
    (lambda lib: lib.ConstantPad2d((2, -1, 0, 1), 3.5), (2, 3, 4, 5)),
    (lambda lib: lib.ConstantPad2d(1, -2), (3, 4)),
])
def test_pad_layers_match_torch(make, shape):
    torch = torch_module()
    ours, theirs = make(nn), make(torch.nn)
    assert repr(ours) == repr(theirs) and ours.padding == theirs.padding and ours.value == theirs.value
    assert ours.state_dict() == {}
    compare_step(ours, theirs, shape, seed=42)


def test_pad_errors_say_expected_and_given():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"^pad: padding \(2, -4\) of dim 1 \(size 3\) crops more than the dim "
                                         r"holds"):
        F.pad(x, (2, -4))   # (a size of 1 left, but torch's narrow() refuses the crop)
    with pytest.raises(ValueError, match=r"^pad: padding length must be divisible by 2, got 3 values \(1, 2, 3\)"):
        F.pad(x, (1, 2, 3))
    with pytest.raises(ValueError, match=r"^pad: padding length must be at most twice the input's dims, got 6 values "
                                         r"for an input of 2 dims"):
        F.pad(x, (1, 2, 3, 4, 5, 6))
    with pytest.raises(ValueError, match=r"^pad: padding \(-2, -2\) of dim 1 \(size 3\) gives a negative size -1"):
        F.pad(x, (-2, -2))
    with pytest.raises(TypeError, match=r"^pad: pad must be a tuple of ints, got \(1.5, 1\)"):
        F.pad(x, (1.5, 1))
    with pytest.raises(ValueError, match=r"^pad: mode 'reflect' is not implemented here \(only 'constant' is\)"):
        F.pad(x, (1, 1), mode="reflect")
    with pytest.raises(ValueError, match=r"^pad: mode must be one of \('constant', 'reflect', 'replicate', "
                                         r"'circular'\), got 'foo'"):
        F.pad(x, (1, 1), mode="foo")
    with pytest.raises(TypeError, match=r"^pad: value must be a real number, got 'a'"):
        F.pad(x, (1, 1), value="a")
    with pytest.raises(ValueError, match=r"^ZeroPad2d: padding must be an int or a tuple of 4 ints \(left, right, "
                                         r"top, bottom\), got \(1, 2\)"):
        nn.ZeroPad2d((1, 2))
    with pytest.raises(ValueError, match=r"^ConstantPad2d\(\(1, 1, 1, 1\)\): expected input of shape \(N, C, H, W\) "
                                         r"or \(C, H, W\), got \(3,\)"):
        nn.ConstantPad2d(1, 0.5)(np.ones(3, np.float32))


# ---- interpolate (nearest) ----------------------------------------------------------------------

INTERPOLATE_CASES = {   # input shape, keyword arguments
    "size up, not integer factors": ((2, 3, 5, 4), {"size": (7, 11)}),
    "size down": ((2, 3, 7, 5), {"size": (3, 2)}),
    "size as one int": ((1, 2, 4, 6), {"size": 5}),
    "size equal to the input's": ((2, 2, 3, 4), {"size": (3, 4)}),
    "scale 2 (repeat path)": ((2, 3, 4, 5), {"scale_factor": 2}),
    "scales 3 and 2 (repeat path)": ((2, 3, 3, 4), {"scale_factor": (3, 2)}),
    "scale 1.5": ((2, 3, 5, 7), {"scale_factor": 1.5}),
    "scales 0.5 and 1.7": ((2, 3, 9, 5), {"scale_factor": (0.5, 1.7)}),
    "scale 2.5 recomputed": ((1, 2, 5, 3), {"scale_factor": 2.5, "recompute_scale_factor": True}),
    "scale 1/3 up to a third": ((1, 2, 9, 10), {"scale_factor": 1 / 3}),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", INTERPOLATE_CASES)
def test_interpolate_nearest_matches_torch(name, dtype):
    torch = torch_module()
    shape, kwargs = INTERPOLATE_CASES[name]
    compare_with_torch(lambda x: F.interpolate(x, **kwargs), lambda x: torch.nn.functional.interpolate(x, **kwargs),
                       [random_array(shape, np.float64, seed=50)], dtype)


def test_interpolate_nearest_indices_are_torchs_over_many_sizes():
    """Outputs for every input size 1..9 to every output size 1..25, for fractional scale factors (1/3, 2/3, 0.7,
    1.1, ...), and for sizes and factors where float64 index arithmetic would pick another row than torch's
    float32."""
    torch = torch_module()
    for height in range(1, 10):
        x = random_array((1, 1, height, 3), np.float64, seed=height)
        ours = [F.interpolate(x, size=(out, 3)).data for out in range(1, 26)]
        theirs = [torch.nn.functional.interpolate(torch.from_numpy(x), size=(out, 3)).numpy() for out in range(1, 26)]
        for out, (got, expected) in enumerate(zip(ours, theirs, strict=True), start=1):
            assert np.array_equal(got, expected), (height, out)
        for factor in (1 / 3, 2 / 3, 0.7, 1.1, 1.3, 1.7, 2.2, 3.3, 4.5, 7.0):
            if int(height * factor) < 1:
                continue
            got = F.interpolate(x, scale_factor=(factor, 1.0)).data
            expected = torch.nn.functional.interpolate(torch.from_numpy(x), scale_factor=(factor, 1.0)).numpy()
            assert got.shape == expected.shape and np.array_equal(got, expected), (height, factor)
    # where float32 index products round differently from float64 ones (torch computes in float32)
    for height, kwargs in ((14, {"size": (46, 3)}), (6, {"size": (74, 3)}), (2, {"size": (82, 3)}),
                           (11, {"scale_factor": (3.7, 1.0)}), (16, {"scale_factor": (2.6, 1.0)})):
        x = random_array((1, 1, height, 3), np.float64, seed=height)
        expected = torch.nn.functional.interpolate(torch.from_numpy(x), **kwargs).numpy()
        assert np.array_equal(F.interpolate(x, **kwargs).data, expected), (height, kwargs)


@pytest.mark.parametrize("args,shape", [
    ({"scale_factor": 2}, (2, 3, 4, 5)),
    ({"size": (7, 3)}, (2, 3, 4, 5)),
    ({"scale_factor": (1.5, 0.5)}, (1, 2, 5, 6)),
    ({"size": 6, "mode": "nearest"}, (1, 2, 4, 3)),
])
def test_upsample_layer_matches_torch(args, shape):
    torch = torch_module()
    ours, theirs = nn.Upsample(**args), torch.nn.Upsample(**args)
    assert repr(ours) == repr(theirs)
    assert (ours.size, ours.scale_factor, ours.mode) == (theirs.size, theirs.scale_factor, theirs.mode)
    assert ours.state_dict() == {}
    compare_step(ours, theirs, shape, seed=51)


def test_interpolate_errors_say_expected_and_given():
    x = np.ones((1, 2, 3, 4), np.float32)
    with pytest.raises(ValueError, match=r"^interpolate: recompute_scale_factor is not meaningful with an explicit "
                                         r"size, got size=6"):
        F.interpolate(x, size=6, recompute_scale_factor=True)
    for bad in (float("inf"), float("nan"), (2.0, -1.0)):
        with pytest.raises(ValueError, match=r"^interpolate: scale_factor must be finite and positive"):
            F.interpolate(x, scale_factor=bad)
    with pytest.raises(ValueError, match=r"^interpolate: mode 'bilinear' is not implemented here \(only 'nearest' "
                                         r"is\)"):
        F.interpolate(x, scale_factor=2, mode="bilinear")
    with pytest.raises(ValueError, match=r"^interpolate: mode must be one of .*, got 'foo'"):
        F.interpolate(x, scale_factor=2, mode="foo")
    with pytest.raises(ValueError, match=r"^interpolate: exactly one of size and scale_factor must be given, got "
                                         r"size=None and scale_factor=None"):
        F.interpolate(x)
    with pytest.raises(ValueError, match=r"^interpolate: exactly one of size and scale_factor must be given, got "
                                         r"size=3 and scale_factor=2"):
        F.interpolate(x, size=3, scale_factor=2)
    with pytest.raises(ValueError, match=r"^interpolate: size must have one value per spatial dim of the 4-D input "
                                         r"\(2\), got \(3, 4, 5\)"):
        F.interpolate(x, size=(3, 4, 5))
    with pytest.raises(TypeError, match=r"^interpolate: size must be an int or a pair of them, got \(2.5, 3\)"):
        F.interpolate(x, size=(2.5, 3))
    with pytest.raises(ValueError, match=r"^interpolate: input and output sizes must be greater than 0, got input "
                                         r"\(H: 3, W: 4\) and output \(H: 0, W: 0\)"):
        F.interpolate(x, scale_factor=0.1)
    with pytest.raises(ValueError, match=r"^interpolate: expected a 4-D input \(N, C, H, W\) for mode 'nearest', got "
                                         r"shape \(2, 3, 4\)"):
        F.interpolate(np.ones((2, 3, 4), np.float32), scale_factor=2)
    with pytest.raises(ValueError, match=r"^interpolate: align_corners can only be set with the interpolating modes"):
        F.interpolate(x, size=(5, 7), align_corners=True)
    with pytest.raises(ValueError, match=r"^Upsample: mode 'bicubic' is not implemented here"):
        nn.Upsample(scale_factor=2, mode="bicubic")
    with pytest.raises(ValueError, match=r"^Upsample\(scale_factor=2.0, mode='nearest'\): expected input of shape "
                                         r"\(N, C, H, W\), got \(2, 3\)"):
        nn.Upsample(scale_factor=2)(np.ones((2, 3), np.float32))


# ---- a small model trained beside torch's twin --------------------------------------------------

def cnn_block_model(lib, dtype=None):
    """conv -> GroupNorm -> ReLU -> Upsample x2 -> ZeroPad2d -> conv, in numbanet (parameters of `dtype`) or torch
    (tests/simulator and tests/gpu use it too): (N, 3, H, W) -> (N, 2, 2H - 1, 2W - 1)."""
    options = {} if dtype is None else {"dtype": dtype}
    return lib.Sequential(lib.Conv2d(3, 8, 3, padding=1, **options), lib.GroupNorm(4, 8, **options), lib.ReLU(),
                          lib.Upsample(scale_factor=2), lib.ZeroPad2d((1, 0, 0, 1)),
                          lib.Conv2d(8, 2, 3, **options))


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


def test_conv_group_norm_upsample_model_trains_as_torch():
    train_beside_torch(cnn_block_model, random_array((4, 3, 6, 5), np.float64, seed=20),
                       random_array((4, 2, 11, 9), np.float64, seed=21))
