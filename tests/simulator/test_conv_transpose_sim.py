"""conv_transpose2d through the CUDA conv kernels in the simulator against the CPU path (the same public op with
NUMBANET_BACKEND=cpu): tiny shapes; each of the op's routes (the data-gradient kernel as forward, the conv2d
forward kernel as input gradient, the weight-gradient and bias kernels with x and grad_out swapped, the 1x1
GEMM, zero rows appended when output_padding >= stride), and the nn layer's gradients written straight into a
flat optimizer's buffer."""
import numpy as np
import pytest

import kernels
from kernels import backend
from tests.oracle import assert_close, random_array
from tests.simulator.test_optim_sim import _flat_gradient_arrivals

# (input shape, weight shape, keyword arguments)
CONFIGURATIONS = [
    ((1, 2, 3, 4), (2, 3, 3, 3), dict(stride=2, padding=1, output_padding=1)),   # x2 up-sampling
    ((1, 4, 3, 3), (4, 1, 2, 3), dict(stride=3, groups=2, output_padding=(2, 0))),  # stride 3, groups 2
    ((1, 2, 3, 2), (2, 2, 2, 2), dict(dilation=2, output_padding=1)),             # output_padding >= stride
    ((2, 3, 3, 4), (3, 2, 1, 1), dict()),                                         # 1x1: the GEMM route
]


def _op_results(x, weight, bias, grad_out, kwargs):
    return (kernels.conv_transpose2d(x, weight, bias, **kwargs),) + \
        kernels.conv_transpose2d_backward(grad_out, x, weight, **kwargs)


@pytest.mark.parametrize("input_shape,weight_shape,kwargs", CONFIGURATIONS, ids=[str(c[2]) for c in CONFIGURATIONS])
def test_conv_transpose2d_kernels_match_cpu(input_shape, weight_shape, kwargs, monkeypatch):
    x = random_array(input_shape, seed=1)
    weight = random_array(weight_shape, seed=2)
    bias = random_array((weight_shape[1] * kwargs.get("groups", 1),), seed=3)
    grad_out = random_array(kernels.conv_transpose2d_output_shape(x.shape, weight.shape, **kwargs), seed=4)
    assert backend.device_of("test", x) == "cuda"
    ours = _op_results(x, weight, bias, grad_out, kwargs)
    monkeypatch.setenv("NUMBANET_BACKEND", "cpu")
    expected = _op_results(x, weight, bias, grad_out, kwargs)
    for name, actual, wanted in zip(("y", "grad_x", "grad_weight", "grad_bias"), ours, expected):
        assert actual.dtype == np.float32
        assert_close(actual, wanted, np.float32, name=name)


def test_layer_gradients_are_written_straight_into_the_flat_buffer(monkeypatch):
    """With flat=True, ConvTranspose2d's weight and bias gradients go into the group's gradient buffer
    (Function.gradient_out), and the weights equal those of an SGD stepping parameter by parameter on the CPU."""
    import nn
    code = nn.Tensor(random_array((2, 2, 2, 2), seed=5))
    target = nn.Tensor(random_array((2, 1, 4, 4), seed=6))
    arrivals, flat, reference = _flat_gradient_arrivals(
        monkeypatch, lambda: [nn.Sequential(nn.ConvTranspose2d(2, 2, 2, stride=2), nn.ReLU(),
                                            nn.ConvTranspose2d(2, 1, 3, padding=1))],
        lambda model: nn.functional.mse_loss(model(code), target))
    assert arrivals == [True] * 4
    for p, q in zip(flat, reference):
        assert_close(p.data, q.data, np.float32)


@pytest.mark.parametrize("padding", [0, 3])
def test_conv_transpose2d_through_the_winograd_kernels_matches_cpu(padding, monkeypatch):
    """A 3x3 stride-1 layer forced onto Winograd (on a GPU, layers from 64 channels take it): the forward through
    its input-gradient kernel (offset 2 - padding: negative for padding 3), the input and weight gradients through
    its forward and weight kernels, against the CPU path."""
    from kernels.cuda import conv_winograd
    monkeypatch.setattr(conv_winograd, "force_algorithm", "winograd")
    x, weight = random_array((1, 2, 7, 8), seed=11), random_array((2, 3, 3, 3), seed=12)   # outputs of 2+ rows
    bias = random_array((3,), seed=13)
    kwargs = dict(padding=padding)
    grad_out = random_array(kernels.conv_transpose2d_output_shape(x.shape, weight.shape, **kwargs), seed=14)
    used = []
    for name in ("conv2d", "conv2d_backward_input", "conv2d_backward_weight"):
        original = getattr(conv_winograd, name)
        monkeypatch.setattr(conv_winograd, name, lambda *args, _original=original, _name=name, **options: (
            used.append(_name), _original(*args, **options))[1])
    ours = _op_results(x, weight, bias, grad_out, kwargs)
    assert sorted(set(used)) == ["conv2d", "conv2d_backward_input", "conv2d_backward_weight"]
    monkeypatch.setenv("NUMBANET_BACKEND", "cpu")
    expected = _op_results(x, weight, bias, grad_out, kwargs)
    for name, actual, wanted in zip(("y", "grad_x", "grad_weight", "grad_bias"), ours, expected):
        assert_close(actual, wanted, np.float32, scale=4, name=name)
