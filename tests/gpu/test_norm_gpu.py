"""Batch-norm kernels on a real GPU against the CPU path (float64 reference) at realistic sizes."""
import numpy as np
import pytest

import kernels
from tests.oracle import assert_close, random_array


def _problem(shape, affine, first_seed, low, high):
    """(x, grad_out, weight, bias, running_mean, running_var) in float64; weight and bias None without affine."""
    channels = shape[1]
    x = random_array(shape, np.float64, seed=first_seed, low=low, high=high)
    grad_out = random_array(shape, np.float64, seed=first_seed + 1)
    weight = random_array((channels,), np.float64, seed=first_seed + 2) if affine else None
    bias = random_array((channels,), np.float64, seed=first_seed + 3) if affine else None
    running_mean = random_array((channels,), np.float64, seed=first_seed + 4)
    running_var = random_array((channels,), np.float64, seed=first_seed + 5, low=0.5, high=2.0)
    return x, grad_out, weight, bias, running_mean, running_var


def _gpu(a):
    import cupy
    return None if a is None else cupy.asarray(a, dtype=cupy.float32)


def _assert_gradients_close(grads_gpu, grads, count, scale):
    for name, actual, expected in zip(("grad_x", "grad_weight", "grad_bias"), grads_gpu, grads):
        if expected is None:
            assert actual is None, name
        elif name == "grad_x":
            assert_close(actual, expected, np.float32, scale=scale, name=name)
        else:
            # fp32 sums of `count` terms of size ~1: allow ~1e-6 * count absolute.
            assert_close(actual, expected, np.float32, rtol=1e-3, atol=max(1e-4, 1e-6 * count), name=name)


@pytest.mark.parametrize("shape,training,affine", [((64, 64, 56, 57), True, True), ((256, 512), True, False),
                                                   ((32, 128, 26), False, True), ((16, 256, 8, 25), True, True)])
def test_batch_norm_on_gpu_matches_cpu(shape, training, affine):
    x, grad_out, weight, bias, running_mean, running_var = _problem(shape, affine, 1, low=1.0, high=4.0)
    rm_gpu, rv_gpu = _gpu(running_mean), _gpu(running_var)
    y, mean, invstd = kernels.batch_norm(x, weight, bias, running_mean, running_var, training)
    y_gpu, mean_gpu, invstd_gpu = kernels.batch_norm(_gpu(x), _gpu(weight), _gpu(bias), rm_gpu, rv_gpu, training)
    scale = 8   # fp32 statistics over up to 2e5 values per channel
    assert_close(y_gpu, y, np.float32, scale=scale, name="y")
    assert_close(mean_gpu, mean, np.float32, scale=scale, name="saved_mean")
    assert_close(invstd_gpu, invstd, np.float32, scale=scale, name="saved_invstd")
    assert_close(rm_gpu, running_mean, np.float32, scale=scale, name="running_mean")
    assert_close(rv_gpu, running_var, np.float32, scale=scale, name="running_var")
    grads = kernels.batch_norm_backward(grad_out, x, weight, mean, invstd, training)
    grads_gpu = kernels.batch_norm_backward(_gpu(grad_out), _gpu(x), _gpu(weight), mean_gpu, invstd_gpu, training)
    _assert_gradients_close(grads_gpu, grads, x.size // shape[1], scale)


@pytest.mark.parametrize("shape,training,affine", [((64, 64, 56, 57), True, True), ((32, 128, 26), False, True),
                                                   ((16, 256, 8, 25), True, False)])
def test_batch_norm_with_fused_relu_on_gpu_matches_cpu(shape, training, affine):
    """activation='relu' and backward(output=y) at real sizes; both sides mask with the GPU's output (a value
    within rounding of 0 may fall on either side of it); in eval a NaN stays and passes its gradient on (in
    training it would make its channel's statistics NaN)."""
    import cupy
    x, grad_out, weight, bias, running_mean, running_var = _problem(shape, affine, 7, low=-2.0, high=3.0)
    if not training:
        x.reshape(-1)[5] = np.nan
    y, mean, invstd = kernels.batch_norm(x, weight, bias, running_mean.copy(), running_var.copy(), training,
                                         activation="relu")
    y_gpu, mean_gpu, invstd_gpu = kernels.batch_norm(_gpu(x), _gpu(weight), _gpu(bias), _gpu(running_mean),
                                                     _gpu(running_var), training, activation="relu")
    assert_close(y_gpu, y, np.float32, scale=8, name="y")
    assert 0.2 < float((y_gpu == 0).mean()) < 0.8
    if not training:
        assert bool(cupy.isnan(y_gpu.reshape(-1)[5]))
    mask = cupy.asnumpy(y_gpu).astype(np.float64)
    grads = kernels.batch_norm_backward(grad_out, x, weight, mean, invstd, training, output=mask)
    grads_gpu = kernels.batch_norm_backward(_gpu(grad_out), _gpu(x), _gpu(weight), mean_gpu, invstd_gpu, training,
                                            output=y_gpu)
    _assert_gradients_close(grads_gpu, grads, x.size // shape[1], scale=8)
