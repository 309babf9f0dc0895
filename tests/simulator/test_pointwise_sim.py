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
