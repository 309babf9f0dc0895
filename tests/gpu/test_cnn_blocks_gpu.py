"""The CNN building blocks on CuPy arrays at image-model sizes, against PyTorch in float64 on the CPU on the same
float32 values: F.group_norm (values, gradients of input, weight and bias), nn.GroupNorm with a torch twin's state
dict, F.pad and F.interpolate (nearest) and their layers, dropout2d's statistics and seed, a conv -> GroupNorm ->
ReLU -> Upsample -> ZeroPad2d -> conv model's outputs and gradients, that model's SGD steps replayed from a CUDA
graph (nn.capture) against eager steps, and device/dtype errors. Tolerances are relative to the largest reference
value (float32 sums over up to ~130k values a group). Needs a GPU (skipped elsewhere)."""
import numpy as np
import pytest

import nn
from tests.nn.test_cnn_blocks import cnn_block_model, group_norm_twins
from tests.nn.test_layers_1d import compare_with_torch
from tests.oracle import assert_close, random_array, torch_module

F = nn.functional


def _close(actual, expected, name):
    assert_close(actual, expected, rtol=1e-3, atol=1e-4 * max(float(np.abs(expected).max()), 1.0), name=name)


def _compare(ours, theirs, arrays, parameters=()):
    compare_with_torch(ours, theirs, arrays, np.float32, parameters, device="cuda", close=_close)


def _twin_parameters(ours, theirs):
    their_parameters = dict(theirs.named_parameters())
    parameters = [(p, their_parameters[key]) for key, p in ours.named_parameters()]
    assert all(p.device == "cuda" for p, _ in parameters)
    return parameters


GROUP_NORM_CASES = {   # input shape, num_groups, affine
    "resnet 32 groups": ((16, 64, 32, 32), 32, True),
    "odd sizes 8 groups": ((8, 96, 17, 19), 8, True),
    "large groups (unet 64x64)": ((4, 128, 64, 64), 4, True),
    "sequence, no affine": ((8, 48, 301), 6, False),
}


@pytest.mark.parametrize("name", GROUP_NORM_CASES)
def test_group_norm_on_gpu_matches_torch(name):
    torch = torch_module()
    shape, groups, affine = GROUP_NORM_CASES[name]
    arrays = [random_array(shape, seed=1, low=-2.0, high=3.0)]
    if affine:
        arrays += [random_array(shape[1], seed=2, low=0.5, high=1.5), random_array(shape[1], seed=3)]
    _compare(lambda *t: F.group_norm(t[0], groups, *t[1:]),
             lambda *t: torch.nn.functional.group_norm(t[0], groups, *t[1:]), arrays)


def test_group_norm_of_a_strided_gpu_input_matches_torch():
    torch = torch_module()
    arrays = [random_array((8, 64, 33, 66), seed=4), random_array(64, seed=5), random_array(64, seed=6)]
    _compare(lambda x, w, b: F.group_norm(x[:, :, 1:, ::2], 16, w, b),
             lambda x, w, b: torch.nn.functional.group_norm(x[:, :, 1:, ::2], 16, w, b), arrays)


@pytest.mark.parametrize("options", [{}, {"bias": False}])
def test_group_norm_module_on_gpu_matches_torch_twin(options):
    ours, theirs = group_norm_twins(8, 64, dtype=np.float32, **options)
    ours.to("cuda")
    _compare(ours, theirs, [random_array((8, 64, 28, 28), seed=7)], _twin_parameters(ours, theirs))


def test_conv_group_norm_model_on_gpu_matches_torch():
    torch = torch_module()
    torch.manual_seed(0)
    theirs = cnn_block_model(torch.nn).double()
    ours = cnn_block_model(nn)
    ours.load_state_dict(theirs.state_dict())
    ours.to("cuda")
    _compare(ours, theirs, [random_array((8, 3, 32, 32), seed=8)], _twin_parameters(ours, theirs))


def test_group_norm_gradients_land_in_a_flat_gpu_buffer_as_eager_cpu_steps():
    """Two SGD steps with flat=True on the GPU (the weight and bias gradients summed into the flat buffer) give the
    weights of the same steps on the CPU path in float64."""
    import cupy
    x, target = random_array((8, 32, 16, 16), seed=9), random_array((8, 32, 16, 16), seed=10)
    results = []
    for device, dtype, flat in (("cuda", np.float32, True), ("cpu", np.float64, False)):
        layer = nn.GroupNorm(8, 32, dtype=dtype).to(device)
        optimizer = nn.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9, flat=flat)
        inputs = [nn.Tensor(a.astype(dtype)).to(device) for a in (x, target)]
        for _ in range(2):
            optimizer.zero_grad()
            F.mse_loss(layer(inputs[0]), inputs[1]).backward()
            optimizer.step()
        if device == "cuda":   # packed at the first step: the second backward's gradients landed in the buffer
            packed = optimizer.param_groups[0].flat
            assert packed and packed.gradients_in_place(list(layer.parameters()))
        results.append([p.data for p in layer.parameters()])
    assert isinstance(results[0][0], cupy.ndarray)
    for got, expected in zip(*results, strict=True):
        assert_close(cupy.asnumpy(got), expected, np.float32, rtol=1e-4, atol=1e-5)


def test_dropout2d_on_gpu_statistics_and_seed():
    import cupy
    nn.manual_seed(5)   # (reseeds CuPy's generator too)
    x = nn.Tensor(cupy.ones((128, 256, 5, 3), np.float32), requires_grad=True)
    y = F.dropout2d(x, 0.2)
    values = cupy.asnumpy(y.data).reshape(128, 256, -1)
    kept = values[:, :, 0] != 0
    assert np.array_equal(np.broadcast_to(kept[:, :, None], values.shape), values != 0), "whole channels"
    assert abs(kept.mean() - 0.8) < 0.01
    np.testing.assert_allclose(values[kept], 1 / 0.8, rtol=1e-6)
    y.sum().backward()
    np.testing.assert_allclose(cupy.asnumpy(x.grad.data).reshape(values.shape), values, rtol=1e-6)
    nn.manual_seed(5)
    np.testing.assert_array_equal(cupy.asnumpy(F.dropout2d(x, 0.2).data), cupy.asnumpy(y.data))
    layer = nn.Dropout2d(0.5).eval()
    assert layer(x) is x


PAD_CASES = {   # input shape, pad, value
    "same border": ((16, 64, 32, 32), (1, 1, 1, 1), 0.0),
    "crops and a value": ((16, 64, 33, 31), (-2, 3, 1, -1), 1.5),
    "three dims": ((8, 32, 9, 10, 11), (1, 0, 2, 1, 0, 3), -0.5),
}


@pytest.mark.parametrize("name", PAD_CASES)
def test_pad_on_gpu_matches_torch(name):
    torch = torch_module()
    shape, padding, value = PAD_CASES[name]
    _compare(lambda x: F.pad(x, padding, value=value), lambda x: torch.nn.functional.pad(x, padding, value=value),
             [random_array(shape, seed=11)])


INTERPOLATE_CASES = {   # input shape, keyword arguments
    "x2 (repeat path)": ((16, 64, 32, 32), {"scale_factor": 2}),
    "x(3, 2) (repeat path)": ((8, 32, 17, 23), {"scale_factor": (3, 2)}),
    "to a size (gather, scatter-add)": ((8, 32, 24, 20), {"size": (57, 45)}),
    "x1.5": ((8, 32, 25, 31), {"scale_factor": 1.5}),
    "down": ((8, 32, 64, 48), {"size": (20, 17)}),
}


@pytest.mark.parametrize("name", INTERPOLATE_CASES)
def test_interpolate_on_gpu_matches_torch(name):
    torch = torch_module()
    shape, kwargs = INTERPOLATE_CASES[name]
    _compare(lambda x: F.interpolate(x, **kwargs), lambda x: torch.nn.functional.interpolate(x, **kwargs),
             [random_array(shape, seed=12)])


def test_strided_gpu_input_pad_and_interpolate_match_torch():
    torch = torch_module()
    _compare(lambda x: F.interpolate(F.pad(x[:, ::2, 1:], (1, 2, 0, 1)), size=(41, 29)),
             lambda x: torch.nn.functional.interpolate(torch.nn.functional.pad(x[:, ::2, 1:], (1, 2, 0, 1)),
                                                       size=(41, 29)),
             [random_array((8, 64, 21, 17), seed=13)])


@pytest.mark.parametrize("make", [lambda lib: lib.Upsample(scale_factor=2), lambda lib: lib.Upsample(size=(45, 50)),
                                  lambda lib: lib.ZeroPad2d((1, 0, 2, 1)), lambda lib: lib.ConstantPad2d(2, 0.5)])
def test_shape_layers_on_gpu_match_torch(make):
    _compare(make(nn), make(torch_module().nn), [random_array((8, 32, 30, 25), seed=14)])


def _block_step(model, optimizer, x, target):
    optimizer.zero_grad()
    loss = F.mse_loss(model(x), target)
    loss.backward()
    optimizer.step()
    return loss


def test_captured_cnn_block_steps_agree_with_eager_steps():
    """SGD steps (flat=True) of a conv -> GroupNorm -> ReLU -> Upsample(size: the gather and scatter-add path) ->
    ZeroPad2d -> conv model replayed from a CUDA graph give the weights of the same steps run eagerly (the nearest
    index arrays are made at the eager warm-up and kept, so the graph replays no host copy)."""
    import cupy

    def build():
        nn.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.GroupNorm(4, 16), nn.ReLU(),
                              nn.Upsample(size=(27, 21)), nn.ZeroPad2d((1, 0, 0, 1)),
                              nn.Conv2d(16, 2, 3)).to("cuda")
        return model, nn.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, flat=True)

    eager_model, eager_optimizer = build()
    model, optimizer = build()
    captured = nn.capture(lambda x, target: _block_step(model, optimizer, x, target))
    rng = np.random.default_rng(3)
    for index in range(5):
        x = nn.Tensor(cupy.asarray(rng.random((8, 3, 12, 10), dtype=np.float32)))
        target = nn.Tensor(cupy.asarray(rng.random((8, 2, 26, 20), dtype=np.float32)))
        eager_loss = float(_block_step(eager_model, eager_optimizer, x, target).numpy())
        captured_loss = float(captured(x, target).numpy())
        assert captured.captured == (index >= 1)
        assert_close(np.float32(captured_loss), np.float32(eager_loss), np.float32, rtol=1e-4, atol=1e-6,
                     name=f"loss at step {index}")
    for (key, p), (_, q) in zip(eager_model.named_parameters(), model.named_parameters(), strict=True):
        assert_close(q.data, p.data, np.float32, rtol=1e-3, atol=1e-5, name=key)


def test_gpu_input_errors_name_the_op():
    import cupy
    with pytest.raises(TypeError, match="group_norm: input must be float32 on cuda, got float64"):
        F.group_norm(nn.Tensor(cupy.ones((2, 4, 9))), 2)
    with pytest.raises(ValueError, match="group_norm: arrays live on different devices"):
        F.group_norm(nn.Tensor(cupy.ones((2, 4, 9), np.float32)), 2, nn.Tensor(np.ones(4, np.float32)))
    with pytest.raises(ValueError, match=r"GroupNorm\(2, 4\): parameter weight is on cpu but the input is on cuda"):
        nn.GroupNorm(2, 4)(nn.Tensor(cupy.ones((2, 4, 9), np.float32)))
    with pytest.raises(TypeError, match="pad: input must be float32 on cuda, got float64"):
        F.pad(nn.Tensor(cupy.ones((2, 4, 9))), (1, 1))
    with pytest.raises(TypeError, match="interpolate: input must be float32 on cuda, got float64"):
        F.interpolate(nn.Tensor(cupy.ones((2, 4, 9, 3))), scale_factor=2)
