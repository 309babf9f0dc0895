"""conv_transpose2d and its gradients on the CPU path against torch.nn.functional.conv_transpose2d (float64 and
float32) and float64 finite differences; bad inputs."""
import numpy as np
import pytest

import kernels
from tests.oracle import assert_close, finite_difference_gradient, random_array, torch_reference

# (input shape (N, C_in, H, W), weight shape (C_in, C_out/groups, kH, kW), keyword arguments)
CONFIGURATIONS = [
    ((2, 3, 5, 7), (3, 4, 3, 3), dict()),                                              # stride 1
    ((2, 3, 5, 7), (3, 4, 3, 3), dict(stride=2, padding=1, output_padding=1)),         # the usual x2 up-sampling
    ((2, 4, 4, 5), (4, 3, 4, 4), dict(stride=2, padding=1)),                           # DCGAN's 4x4 stride 2
    ((2, 5, 3, 6), (5, 2, 2, 2), dict(stride=2)),                                      # U-Net's 2x2 stride 2
    ((2, 3, 4, 5), (3, 2, 3, 2), dict(stride=3, padding=(1, 0), output_padding=(2, 1))),  # stride 3, rectangular
    ((1, 2, 5, 4), (2, 3, 3, 3), dict(stride=(1, 2), dilation=2, padding=1)),          # dilation 2
    ((2, 2, 5, 4), (2, 3, 3, 2), dict(dilation=(2, 3), output_padding=(1, 2))),         # output_padding >= stride
    ((2, 4, 5, 6), (4, 3, 3, 3), dict(stride=2, padding=1, output_padding=1, groups=2)),  # groups 2
    ((2, 6, 4, 5), (6, 1, 3, 3), dict(stride=2, groups=6)),                            # depthwise
    ((2, 5, 7, 6), (5, 3, 1, 1), dict()),                                              # 1x1
    ((2, 5, 4, 6), (5, 3, 1, 1), dict(stride=2, output_padding=1)),                    # 1x1 stride 2
    ((3, 1, 1, 1), (1, 2, 3, 4), dict()),                                              # one input pixel
    ((1, 3, 9, 11), (3, 2, 5, 3), dict(stride=2, padding=(2, 1), output_padding=(1, 0))),  # odd sizes
    ((1, 64, 7, 8), (64, 64, 3, 3), dict(padding=3)),   # 3x3 stride 1, 64 channels: the CPU's Winograd route
]
IDS = [f"{i}-{c[2]}" for i, c in enumerate(CONFIGURATIONS)]


def _torch_conv_transpose(**kwargs):
    import torch.nn.functional as F
    return lambda x, w, b=None: F.conv_transpose2d(x, w, b, **kwargs)


def _arrays(input_shape, weight_shape, kwargs, dtype, seed=0):
    x = random_array(input_shape, dtype, seed=seed + 1)
    weight = random_array(weight_shape, dtype, seed=seed + 2)
    bias = random_array((weight_shape[1] * kwargs.get("groups", 1),), dtype, seed=seed + 3)
    return x, weight, bias


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("input_shape,weight_shape,kwargs", CONFIGURATIONS, ids=IDS)
def test_conv_transpose2d_matches_torch(input_shape, weight_shape, kwargs, dtype):
    x, weight, bias = _arrays(input_shape, weight_shape, kwargs, dtype)
    y = kernels.conv_transpose2d(x, weight, bias, **kwargs)
    assert y.dtype == dtype and y.shape == kernels.conv_transpose2d_output_shape(x.shape, weight.shape, **kwargs)
    grad_out = random_array(y.shape, dtype, seed=4)
    expected, (grad_x, grad_weight, grad_bias) = torch_reference(_torch_conv_transpose(**kwargs), x, weight, bias,
                                                                 grad_output=grad_out)
    scale = np.sqrt(np.prod(weight_shape))
    assert_close(y, expected, dtype, scale=scale, name="y")
    ours = kernels.conv_transpose2d_backward(grad_out, x, weight, **kwargs)
    assert all(g.dtype == dtype for g in ours) and ours[0].flags.c_contiguous
    pixels = np.sqrt(grad_out.shape[0] * grad_out.shape[2] * grad_out.shape[3])
    assert_close(ours[0], grad_x, dtype, scale=scale, name="grad_x")
    assert_close(ours[1], grad_weight, dtype, scale=pixels, name="grad_weight")
    assert_close(ours[2], grad_bias, dtype, scale=pixels, name="grad_bias")


def test_without_bias_and_only_the_gradients_asked_for():
    kwargs = dict(stride=2, padding=1, output_padding=1)
    x, weight, _ = _arrays((2, 3, 4, 5), (3, 2, 3, 3), kwargs, np.float64)
    y = kernels.conv_transpose2d(x, weight, None, **kwargs)
    grad_out = random_array(y.shape, np.float64, seed=5)
    expected, (grad_x, grad_weight) = torch_reference(_torch_conv_transpose(**kwargs), x, weight,
                                                      grad_output=grad_out)
    assert_close(y, expected, name="y")
    grads = kernels.conv_transpose2d_backward(grad_out, x, weight, **kwargs, need_input=False, need_bias=False)
    assert grads[0] is None and grads[2] is None
    assert_close(grads[1], grad_weight, name="grad_weight")
    grads = kernels.conv_transpose2d_backward(grad_out, x, weight, **kwargs, need_weight=False, need_bias=False)
    assert grads[1] is None and grads[2] is None
    assert_close(grads[0], grad_x, name="grad_x")


def test_gradients_written_into_the_given_out_arrays():
    kwargs = dict(stride=2, groups=2, output_padding=1)
    x, weight, bias = _arrays((2, 4, 3, 4), (4, 3, 3, 3), kwargs, np.float32)
    grad_out = random_array(kernels.conv_transpose2d(x, weight, bias, **kwargs).shape, np.float32, seed=6)
    expected = kernels.conv_transpose2d_backward(grad_out, x, weight, **kwargs)
    buffer = np.full(weight.size + bias.size + 3, np.nan, np.float32)  # a flat buffer, as nn's optimizers have
    grad_weight_out = buffer[:weight.size].reshape(weight.shape)
    grad_bias_out = buffer[weight.size:weight.size + bias.size]
    grads = kernels.conv_transpose2d_backward(grad_out, x, weight, **kwargs, grad_weight_out=grad_weight_out,
                                              grad_bias_out=grad_bias_out)
    assert grads[1] is grad_weight_out and grads[2] is grad_bias_out
    assert_close(grad_weight_out, expected[1], name="grad_weight")
    assert_close(grad_bias_out, expected[2], name="grad_bias")
    assert np.isnan(buffer[-3:]).all()


def test_non_contiguous_inputs():
    kwargs = dict(stride=2, padding=1, dilation=2, output_padding=1)
    x = random_array((2, 5, 3, 4), np.float64, seed=7).transpose(0, 1, 3, 2)        # (2, 5, 4, 3)
    weight = random_array((5, 2, 3, 3), np.float64, seed=8)[:, :, ::-1]             # negative strides
    bias = random_array((4,), np.float64, seed=9)[::2]
    y = kernels.conv_transpose2d(x, weight, bias, **kwargs)
    grad_out = random_array(y.shape[::-1], np.float64, seed=10).T
    assert not (x.flags.c_contiguous or weight.flags.c_contiguous or bias.flags.c_contiguous)
    copies = [np.ascontiguousarray(a) for a in (x, weight, bias)]   # torch refuses negative strides
    expected, grads = torch_reference(_torch_conv_transpose(**kwargs), *copies, grad_output=grad_out)
    assert_close(y, expected, name="y")
    for name, ours, theirs in zip(("grad_x", "grad_weight", "grad_bias"),
                                  kernels.conv_transpose2d_backward(grad_out, x, weight, **kwargs), grads):
        assert_close(ours, theirs, name=name)


def test_empty_batch():
    x, weight, bias = _arrays((0, 3, 4, 5), (3, 2, 3, 3), {}, np.float64)
    y = kernels.conv_transpose2d(x, weight, bias, stride=2)
    assert y.shape == (0, 2, 9, 11)
    grad_x, grad_weight, grad_bias = kernels.conv_transpose2d_backward(y, x, weight, stride=2)
    assert grad_x.shape == x.shape
    assert not grad_weight.any() and grad_weight.shape == weight.shape
    assert not grad_bias.any() and grad_bias.shape == (2,)


@pytest.mark.parametrize("kwargs", [dict(stride=2, padding=1, output_padding=1),
                                    dict(dilation=2, output_padding=1, groups=2)], ids=str)
def test_gradients_match_finite_differences(kwargs):
    x, weight, bias = _arrays((2, 2, 3, 2), (2, 2, 2, 3), kwargs, np.float64)
    projection = random_array(kernels.conv_transpose2d(x, weight, bias, **kwargs).shape, np.float64, seed=11)

    def loss():
        return float((kernels.conv_transpose2d(x, weight, bias, **kwargs) * projection).sum())

    grads = kernels.conv_transpose2d_backward(projection, x, weight, **kwargs)
    for name, array, grad in zip(("grad_x", "grad_weight", "grad_bias"), (x, weight, bias), grads):
        assert_close(grad, finite_difference_gradient(loss, array), rtol=1e-6, atol=1e-8, name=name)


X, W = (2, 4, 5, 5), (4, 3, 3, 3)


@pytest.mark.parametrize("x_shape,w_shape,kwargs,message", [
    ((4, 5, 5), W, {}, r"conv_transpose2d: x must be 4-D, got shape \(4, 5, 5\)"),
    (X, (4, 3, 3), {}, r"conv_transpose2d: weight must be 4-D"),
    ((2, 3, 5, 5), W, {}, r"conv_transpose2d: input has 3 channels but weight expects 4"),
    (X, W, dict(groups=3), r"conv_transpose2d: groups=3 must divide the input channels"),
    (X, W, dict(groups=0), r"conv_transpose2d: groups must be a positive integer, got 0"),
    (X, W, dict(stride=2, output_padding=2), r"conv_transpose2d: output_padding must be smaller than either "
                                             r"stride or dilation"),
    (X, W, dict(dilation=2, output_padding=2), r"conv_transpose2d: output_padding must be smaller"),
    (X, W, dict(output_padding=1), r"conv_transpose2d: output_padding must be smaller"),
    (X, W, dict(padding=-1), r"conv_transpose2d: padding must be a non-negative integer, got -1"),
    (X, W, dict(output_padding=(0, -1)), r"conv_transpose2d: output_padding must be a non-negative integer"),
    (X, W, dict(padding="same"), r"conv_transpose2d: padding must be an int or a pair of ints, got 'same'"),
    (X, W, dict(stride=0), r"conv_transpose2d: stride must be a positive integer, got 0"),
    (X, W, dict(stride=(1, 2, 3)), r"conv_transpose2d: stride must be an int or a pair of ints"),
    (X, W, dict(padding=4), r"conv_transpose2d: output size -1x-1 is too small"),
    (X, (4, 0, 3, 3), {}, r"conv_transpose2d: input and weight must have non-empty"),
    ((2, 0, 5, 5), (0, 3, 3, 3), {}, r"conv_transpose2d: input and weight must have non-empty"),
    ((2, 4, 0, 5), W, {}, r"conv_transpose2d: input and weight must have non-empty"),
])
def test_bad_arguments(x_shape, w_shape, kwargs, message):
    x, weight = random_array(x_shape, np.float32, seed=1), random_array(w_shape, np.float32, seed=2)
    with pytest.raises(ValueError, match=message):
        kernels.conv_transpose2d(x, weight, **kwargs)


def test_bad_dtypes_bias_grad_out_and_outs():
    x, weight, bias = _arrays(X, W, {}, np.float32)
    with pytest.raises(TypeError, match="conv_transpose2d: x must be float32 or float64 on cpu, got int32"):
        kernels.conv_transpose2d(x.astype(np.int32), weight)
    with pytest.raises(TypeError, match="conv_transpose2d: all arrays must share one dtype"):
        kernels.conv_transpose2d(x, weight.astype(np.float64))
    with pytest.raises(ValueError, match=r"conv_transpose2d: bias must have shape \(3,\), got \(4,\)"):
        kernels.conv_transpose2d(x, weight, random_array((4,), np.float32))
    grad_out = random_array((2, 3, 7, 7), np.float32)
    with pytest.raises(ValueError, match=r"conv_transpose2d_backward: grad_out must have shape \(2, 3, 7, 7\), "
                                         r"got \(2, 3, 7, 8\)"):
        kernels.conv_transpose2d_backward(random_array((2, 3, 7, 8), np.float32), x, weight)
    with pytest.raises(ValueError, match="conv_transpose2d_backward: grad_weight_out must be"):
        kernels.conv_transpose2d_backward(grad_out, x, weight, grad_weight_out=np.empty((3, 4, 3, 3), np.float32))
    with pytest.raises(ValueError, match="conv_transpose2d_backward: grad_bias_out must be C-contiguous"):
        kernels.conv_transpose2d_backward(grad_out, x, weight, grad_bias_out=np.empty(6, np.float32)[::2])
    with pytest.raises(TypeError, match="conv_transpose2d_backward: grad_out must be float32 or float64"):
        kernels.conv_transpose2d_backward(grad_out.astype(np.int64), x, weight)
    with pytest.raises(ValueError, match="conv_transpose2d: input and weight shapes must have 4 dims"):
        kernels.conv_transpose2d_output_shape((2, 4, 5), W)
