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


def _mlp(lib):
    return lib.Sequential(lib.Linear(5, 6), lib.GELU(), lib.SiLU(), lib.ELU(alpha=0.6), lib.GELU(approximate="tanh"),
                          lib.Linear(6, 3))


def test_layers_run_the_kernels_through_nn():
    """Linear-GELU-SiLU-ELU-GELU(tanh)-Linear on the CUDA kernels: output and gradients against its torch twin
    (float64) with the state dict copied."""
    import nn
    from tests.oracle import torch_module
    torch = torch_module()
    torch.manual_seed(0)
    theirs = _mlp(torch.nn).double()
    ours = _mlp(nn)
    ours.load_state_dict(theirs.state_dict())
    x, grad = random_array((4, 5), seed=56, low=-2, high=2), random_array((4, 3), seed=57)
    x_ours, x_theirs = nn.Tensor(x, requires_grad=True), torch.tensor(x, dtype=torch.float64, requires_grad=True)
    out, expected = ours(x_ours), theirs(x_theirs)
    assert_close(out.data, expected.detach().numpy(), np.float32, name="output")
    out.backward(grad)
    expected.backward(torch.tensor(grad, dtype=torch.float64))
    assert_close(x_ours.grad.data, x_theirs.grad.numpy(), np.float32, name="grad of input")
    for (key, parameter), reference in zip(ours.named_parameters(), theirs.parameters()):
        assert_close(parameter.grad.data, reference.grad.numpy(), np.float32, name=f"grad of {key}")
