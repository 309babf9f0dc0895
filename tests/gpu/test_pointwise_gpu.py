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
