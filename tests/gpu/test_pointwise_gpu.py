"""Pointwise kernels on a real GPU against the CPU path at realistic sizes."""
import numpy as np

import kernels
from kernels.cpu import pointwise as cpu
from tests.oracle import assert_close, random_array


def test_relu_on_gpu_matches_cpu():
    import cupy
    x = random_array((64, 64, 56, 57), seed=7)
    grad_out = random_array(x.shape, seed=8)
    assert_close(kernels.relu(cupy.asarray(x)), cpu.relu(x), np.float32)
    assert_close(kernels.relu_backward(cupy.asarray(grad_out), cupy.asarray(x)), cpu.relu_backward(grad_out, x), np.float32)


def test_activations_on_gpu_match_cpu():
    import cupy
    x = random_array((64, 64, 56, 57), seed=9, low=-8, high=8)
    grad_out = random_array(x.shape, seed=10)
    x_gpu, grad_gpu = cupy.asarray(x), cupy.asarray(grad_out)
    assert_close(kernels.leaky_relu(x_gpu, 0.2), cpu.leaky_relu(x, 0.2), np.float32)
    assert_close(kernels.leaky_relu_backward(grad_gpu, x_gpu, 0.2), cpu.leaky_relu_backward(grad_out, x, 0.2),
                 np.float32)
    for forward, backward, cpu_forward, cpu_backward in (
            (kernels.sigmoid, kernels.sigmoid_backward, cpu.sigmoid, cpu.sigmoid_backward),
            (kernels.tanh, kernels.tanh_backward, cpu.tanh, cpu.tanh_backward)):
        y_gpu = forward(x_gpu)
        # fastmath exp/tanh: a few ulp, so absolute 1e-6 on values in [-1, 1]
        assert_close(y_gpu, cpu_forward(x.astype(np.float64)), rtol=1e-5, atol=1e-6)
        y = cupy.asnumpy(y_gpu)
        assert_close(backward(grad_gpu, y_gpu), cpu_backward(grad_out, y), np.float32)


def test_sigmoid_on_gpu_saturates():
    import cupy
    x = np.array([-1e4, -100.0, -30.0, 0.0, 30.0, 100.0, 1e4], np.float32)
    y = kernels.sigmoid(cupy.asarray(x))
    assert bool(cupy.all(cupy.isfinite(y)))
    assert_close(y, cpu.sigmoid(x.astype(np.float64)), rtol=1e-5, atol=1e-7)


def test_bias_add_on_gpu_matches_cpu():
    import cupy
    for shape in [(64, 64, 56, 56), (1000, 513), (8, 3, 7, 9, 5)]:
        x = random_array(shape, seed=11)
        bias = random_array((shape[1],), seed=12)
        assert_close(kernels.bias_add(cupy.asarray(x), cupy.asarray(bias)), cpu.bias_add(x, bias), np.float32)
    x = random_array((32, 40, 64), seed=13)
    bias = random_array((64,), seed=14)
    x_gpu = cupy.asarray(x).transpose(0, 2, 1)   # non-contiguous
    assert_close(kernels.bias_add(x_gpu, cupy.asarray(bias)), cpu.bias_add(x.transpose(0, 2, 1), bias), np.float32)
