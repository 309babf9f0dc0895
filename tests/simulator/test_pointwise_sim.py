"""CUDA pointwise kernels in the simulator against the CPU path (tiny, tile-unfriendly sizes)."""
import numpy as np

import kernels
from kernels.cpu import pointwise as cpu
from tests.oracle import assert_close, random_array


def test_relu_kernels_match_cpu():
    x = random_array((3, 37), seed=5)
    grad_out = random_array((3, 37), seed=6)
    assert_close(kernels.relu(x), cpu.relu(x), np.float32)
    assert_close(kernels.relu_backward(grad_out, x), cpu.relu_backward(grad_out, x), np.float32)


def test_relu_kernels_propagate_nan_as_the_cpu_path():
    x = np.array([np.nan, 1.5, -2.0, 0.0, np.inf, -np.inf], np.float32)
    grad_out = random_array(x.shape, seed=7)
    np.testing.assert_array_equal(kernels.relu(x), cpu.relu(x))
    np.testing.assert_array_equal(kernels.relu_backward(grad_out, x), cpu.relu_backward(grad_out, x))
    assert np.isnan(kernels.relu(x)[0]) and kernels.relu_backward(grad_out, x)[0] == grad_out[0]


def test_activation_kernels_match_cpu():
    x = random_array((5, 29), seed=41, low=-6, high=6)
    grad_out = random_array(x.shape, seed=42)
    assert_close(kernels.leaky_relu(x, 0.2), cpu.leaky_relu(x, 0.2), np.float32)
    assert_close(kernels.leaky_relu_backward(grad_out, x, 0.2), cpu.leaky_relu_backward(grad_out, x, 0.2), np.float32)
    y = kernels.sigmoid(x)
    assert_close(y, cpu.sigmoid(x), np.float32)
    assert_close(kernels.sigmoid_backward(grad_out, y), cpu.sigmoid_backward(grad_out, y), np.float32)
    y = kernels.tanh(x)
    assert_close(y, cpu.tanh(x), np.float32)
    assert_close(kernels.tanh_backward(grad_out, y), cpu.tanh_backward(grad_out, y), np.float32)


def test_sigmoid_kernel_saturates():
    x = np.array([-1e4, -90.0, 0.0, 90.0, 1e4], np.float32)
    assert_close(kernels.sigmoid(x), cpu.sigmoid(x), np.float32)


def test_bias_add_kernel_matches_cpu():
    for shape in [(3, 5), (2, 3, 7, 5), (2, 4, 3)]:
        x = random_array(shape, seed=43)
        bias = random_array((shape[1],), seed=44)
        assert_close(kernels.bias_add(x, bias), cpu.bias_add(x, bias), np.float32)
    x = random_array((3, 5, 4), seed=45).transpose(0, 2, 1)   # non-contiguous
    bias = random_array((4,), seed=46)
    assert_close(kernels.bias_add(x, bias), cpu.bias_add(x, bias), np.float32)
