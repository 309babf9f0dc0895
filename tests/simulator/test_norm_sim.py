"""CUDA batch-norm kernels in the simulator against the CPU path (tiny shapes, every kernel)."""
import numpy as np
import pytest

import kernels
from kernels.cpu import norm as cpu
from tests.oracle import assert_close, random_array


def _reference(x, weight, bias, running_mean, running_var, training, grad_out, eps=1e-5, momentum=0.1):
    x3, grad3 = x.reshape(x.shape[0], x.shape[1], -1), grad_out.reshape(x.shape[0], x.shape[1], -1)
    if training:
        mean, var, invstd = cpu.batch_norm_statistics(x3, eps)
        cpu.update_running_stats(running_mean, running_var, mean, var, x3.shape[0] * x3.shape[2], momentum)
    else:
        mean, invstd = running_mean.copy(), 1 / np.sqrt(running_var + eps)
    y = cpu.normalise(x3, mean, invstd, weight, bias).reshape(x.shape)
    grad_x, grad_weight, grad_bias = cpu.batch_norm_backward(grad3, x3, weight, mean, invstd, training)
    return y, mean, invstd, grad_x.reshape(x.shape), grad_weight, grad_bias


@pytest.mark.parametrize("shape,training,affine", [((7, 3), True, True), ((3, 2, 5, 3), True, False),
                                                   ((4, 3, 6), False, True), ((2, 2, 3, 3), False, False)])
def test_batch_norm_kernels_match_cpu(shape, training, affine):
    channels = shape[1]
    x = random_array(shape, seed=1, low=2.0, high=5.0)   # |mean| > std: the two-pass variance matters
    grad_out = random_array(shape, seed=2)
    weight = random_array((channels,), seed=3) if affine else None
    bias = random_array((channels,), seed=4) if affine else None
    running_mean = random_array((channels,), seed=5)
    running_var = random_array((channels,), seed=6, low=0.5, high=2.0)
    expected_mean, expected_var = running_mean.copy(), running_var.copy()
    y_ref, mean_ref, invstd_ref, gx_ref, gw_ref, gb_ref = _reference(
        x, weight, bias, expected_mean, expected_var, training, grad_out)
    y, mean, invstd = kernels.batch_norm(x, weight, bias, running_mean, running_var, training)
    assert_close(y, y_ref, np.float32, name="y")
    assert_close(mean, mean_ref, np.float32, name="saved_mean")
    assert_close(invstd, invstd_ref, np.float32, name="saved_invstd")
    assert_close(running_mean, expected_mean, np.float32, name="running_mean")
    assert_close(running_var, expected_var, np.float32, name="running_var")
    grad_x, grad_weight, grad_bias = kernels.batch_norm_backward(grad_out, x, weight, mean, invstd, training)
    assert_close(grad_x, gx_ref, np.float32, scale=4, name="grad_x")
    if affine:
        assert_close(grad_weight, gw_ref, np.float32, scale=4, name="grad_weight")
        assert_close(grad_bias, gb_ref, np.float32, scale=4, name="grad_bias")
        outs = np.full(channels, np.nan, np.float32), np.full(channels, np.nan, np.float32)
        given = kernels.batch_norm_backward(grad_out, x, weight, mean, invstd, training, grad_weight_out=outs[0],
                                            grad_bias_out=outs[1])
        assert given[1] is outs[0] and given[2] is outs[1]   # written by the kernels
        assert_close(outs[0], gw_ref, np.float32, scale=4, name="grad_weight_out")
        assert_close(outs[1], gb_ref, np.float32, scale=4, name="grad_bias_out")
    else:
        assert grad_weight is None and grad_bias is None


def test_batch_norm_kernels_more_values_than_threads_and_no_running_stats():
    x = random_array((3, 2, 230), seed=7)   # 690 values per channel: the strided loop wraps
    y, mean, invstd = kernels.batch_norm(x, None, np.ones(2, np.float32), None, None, True)
    mean_ref, _, invstd_ref = cpu.batch_norm_statistics(x, 1e-5)
    assert_close(mean, mean_ref, np.float32)
    assert_close(invstd, invstd_ref, np.float32)
    assert_close(y, cpu.normalise(x, mean_ref, invstd_ref, None, np.ones(2, np.float32)), np.float32)


@pytest.mark.parametrize("shape,training,affine", [((7, 3), True, True), ((3, 2, 5, 3), True, False),
                                                   ((4, 3, 6), False, True)])
def test_batch_norm_kernels_with_relu_match_cpu(shape, training, affine):
    # the fused ReLU: the forward clamps, both backward kernels mask the gradient by the output
    from kernels.cpu import pointwise
    channels = shape[1]
    x = random_array(shape, seed=8, low=-2.0, high=3.0)
    x.reshape(-1)[3] = np.nan   # kept by the forward, and passes its gradient on (as torch's ReLU)
    grad_out = random_array(shape, seed=9)
    weight = random_array((channels,), seed=10) if affine else None
    bias = random_array((channels,), seed=11) if affine else None
    running_mean = random_array((channels,), seed=12)
    running_var = random_array((channels,), seed=13, low=0.5, high=2.0)
    if training:
        x.reshape(-1)[3] = 0.5   # (a NaN would make its channel's statistics NaN)
    x3 = x.reshape(shape[0], channels, -1)
    y, mean, invstd = kernels.batch_norm(x, weight, bias, running_mean.copy(), running_var.copy(), training,
                                         activation="relu")
    y_ref = pointwise.relu(cpu.normalise(x3, mean, invstd, weight, bias)).reshape(shape)
    assert_close(y, y_ref, np.float32, name="y")
    assert 0 < np.mean(y == 0) < 1 and (training or np.isnan(y.reshape(-1)[3]))
    masked = pointwise.relu_backward(grad_out, y).reshape(x3.shape)
    gx_ref, gw_ref, gb_ref = cpu.batch_norm_backward(masked, x3, weight, mean, invstd, training)
    grad_x, grad_weight, grad_bias = kernels.batch_norm_backward(grad_out, x, weight, mean, invstd, training,
                                                                 output=y)
    assert_close(grad_x, gx_ref.reshape(shape), np.float32, scale=4, name="grad_x")
    if affine:
        assert_close(grad_weight, gw_ref, np.float32, scale=4, name="grad_weight")
        assert_close(grad_bias, gb_ref, np.float32, scale=4, name="grad_bias")


def test_batch_norm_reductions_split_over_the_batch_agree_and_repeat():
    # 9 images of 300 values: two slices a channel (7 images and 2), combined by the last block of each channel.
    # Values near 1000 with a spread of 0.3, the last two images 2 higher: the slices' variances must be merged
    # without cancellation, and with the part their different means add.
    from kernels.cuda import norm as gpu_norm
    from kernels.cuda.launch import batch_slices
    x = random_array((9, 2, 300), seed=14, low=1000.0, high=1001.0)
    x[7:] += 2.0
    grad_out = random_array((9, 2, 300), seed=15)
    assert batch_slices(9, 2, 300, gpu_norm.REDUCE_THREADS) == (7, 2)
    running_mean, running_var = np.zeros(2, np.float32), np.ones(2, np.float32)
    y, mean, invstd = kernels.batch_norm(x, None, None, running_mean, running_var, True)
    x64 = x.astype(np.float64)
    mean64, var64 = x64.mean(axis=(0, 2)), x64.var(axis=(0, 2))
    assert_close(mean, mean64, np.float32, name="mean")
    assert np.allclose(invstd, 1 / np.sqrt(var64 + 1e-5), rtol=1e-4), (invstd, 1 / np.sqrt(var64 + 1e-5))
    assert np.allclose(running_var, 0.9 + 0.1 * var64 * 2700 / 2699, rtol=1e-5)
    grad_x, _, _ = kernels.batch_norm_backward(grad_out, x, None, mean, invstd, True)
    xhat = (x64 - mean64[None, :, None]) / np.sqrt(var64 + 1e-5)[None, :, None]
    g = grad_out.astype(np.float64)
    expected = (g - g.mean(axis=(0, 2), keepdims=True)
                - xhat * (g * xhat).mean(axis=(0, 2), keepdims=True)) / np.sqrt(var64 + 1e-5)[None, :, None]
    assert_close(grad_x, expected, np.float32, scale=4, name="grad_x")
    again = kernels.batch_norm(x, None, None, None, None, True)
    assert np.array_equal(again[1], mean) and np.array_equal(again[2], invstd)   # the same sums every run
    assert np.array_equal(kernels.batch_norm_backward(grad_out, x, None, mean, invstd, True)[0], grad_x)
    for buffers in gpu_norm._buffers.values():
        assert not buffers["counters"].any()   # reset by the last block of each channel
