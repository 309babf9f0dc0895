"""GELU (erf and tanh forms), SiLU and ELU CUDA kernels in the simulator against the CPU path (tiny sizes that
fill no whole block). The simulator's math runs in float64, so ulps are checked on the GPU (tests/gpu)."""
import numpy as np
import pytest

import kernels
from kernels.cpu import pointwise as cpu
from tests.oracle import assert_close, random_array

KERNELS = {
    # name: (forward, backward, CPU forward, CPU backward), each backward from (grad_out, x)
    "gelu": (kernels.gelu, kernels.gelu_backward,
             lambda x: cpu.gelu(x, "none"), lambda g, x: cpu.gelu_backward(g, x, "none")),
    "gelu_tanh": (lambda x: kernels.gelu(x, approximate="tanh"), lambda g, x: kernels.gelu_backward(g, x, "tanh"),
                  lambda x: cpu.gelu(x, "tanh"), lambda g, x: cpu.gelu_backward(g, x, "tanh")),
    "silu": (kernels.silu, kernels.silu_backward, cpu.silu, cpu.silu_backward),
    "elu": (lambda x: kernels.elu(x, alpha=0.7), lambda g, x: kernels.elu_backward(g, x, alpha=0.7),
            lambda x: cpu.elu(x, 0.7), lambda g, x: cpu.elu_backward(g, x, 0.7)),
}


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_kernels_match_cpu(name):
    forward, backward, cpu_forward, cpu_backward = KERNELS[name]
    x = random_array((3, 43), seed=51, low=-7, high=7)
    grad_out = random_array(x.shape, seed=52)
    y = forward(x)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert_close(y, cpu_forward(x), np.float32, name=f"{name} forward")
    assert_close(backward(grad_out, x), cpu_backward(grad_out, x), np.float32, name=f"{name} backward")


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_kernels_take_non_contiguous_input(name):
    forward, backward, cpu_forward, cpu_backward = KERNELS[name]
    x = random_array((5, 7), seed=53, low=-4, high=4).T
    grad_out = random_array((5, 7), seed=54).T
    assert_close(forward(x), cpu_forward(x), np.float32)
    assert_close(backward(grad_out, x), cpu_backward(grad_out, x), np.float32)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")   # (the simulator's NumPy scalars: inf * 0)
@pytest.mark.parametrize("name", sorted(KERNELS))
def test_kernels_handle_nan_inf_and_large_inputs_as_the_cpu_path(name):
    forward, backward, cpu_forward, cpu_backward = KERNELS[name]
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, -100.0, 100.0, -1e-6, 1e-6, -30.0, 30.0], np.float32)
    grad_out = random_array(x.shape, seed=55)
    y, grad_in = forward(x), backward(grad_out, x)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(cpu_forward(x)))
    np.testing.assert_array_equal(np.isnan(grad_in), np.isnan(cpu_backward(grad_out, x)))
    assert_close(y, cpu_forward(x), np.float32)
    assert_close(grad_in, cpu_backward(grad_out, x), np.float32)
    assert np.all(np.isfinite(y[5:])) and np.all(np.isfinite(grad_in[5:]))
