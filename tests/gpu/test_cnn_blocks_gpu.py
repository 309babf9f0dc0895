"""The CNN building blocks on CuPy arrays at image-model sizes, against PyTorch in float64 on the CPU on the same
float32 values: F.group_norm (values, gradients of input, weight and bias), nn.GroupNorm with a torch twin's state
dict, a conv -> GroupNorm -> ReLU -> conv model's outputs and gradients, and device/dtype errors. Tolerances are
relative to the largest reference value (float32 sums over up to ~65k values a group). Needs a GPU (skipped
elsewhere)."""
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
        results.append([p.data for p in layer.parameters()])
    assert isinstance(results[0][0], cupy.ndarray)
    for got, expected in zip(*results, strict=True):
        assert_close(cupy.asnumpy(got), expected, np.float32, rtol=1e-4, atol=1e-5)


def test_gpu_input_errors_name_the_op():
    import cupy
    with pytest.raises(TypeError, match="group_norm: input must be float32 on cuda, got float64"):
        F.group_norm(nn.Tensor(cupy.ones((2, 4, 9))), 2)
    with pytest.raises(ValueError, match="group_norm: arrays live on different devices"):
        F.group_norm(nn.Tensor(cupy.ones((2, 4, 9), np.float32)), 2, nn.Tensor(np.ones(4, np.float32)))
    with pytest.raises(ValueError, match=r"GroupNorm\(2, 4\): parameter weight is on cpu but the input is on cuda"):
        nn.GroupNorm(2, 4)(nn.Tensor(cupy.ones((2, 4, 9), np.float32)))
