"""Pooling kernels on a real GPU at the ANCHORS size (64x64x112x112) and odd sizes, against PyTorch on
the same GPU where torch.cuda is usable (same CuPy memory), else against the CPU path."""
import numpy as np
import pytest

import kernels
from kernels.cpu import pool as cpu
from kernels.pool import _window_geometry
from tests.oracle import assert_close, random_array

ANCHOR = (64, 64, 112, 112)
MAX_CASES = [
    (ANCHOR, dict(kernel_size=3, stride=2, padding=1)),
    (ANCHOR, dict(kernel_size=2, stride=2)),
    ((8, 24, 57, 61), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ((4, 16, 33, 40), dict(kernel_size=(2, 3), stride=(3, 1), padding=(1, 1), dilation=(2, 1))),
]
AVG_CASES = [
    (ANCHOR, dict(kernel_size=3, stride=2, padding=1)),
    (ANCHOR, dict(kernel_size=2, stride=2)),
    ((8, 24, 57, 61), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)),
    ((4, 16, 33, 40), dict(kernel_size=(3, 2), stride=(1, 2), padding=(1, 0), divisor_override=7)),
]
ADAPTIVE_CASES = [((64, 512, 7, 7), 1), ((8, 64, 56, 56), 1), ((16, 32, 27, 19), (5, 4)), ((4, 8, 6, 5), (9, 7))]


def _torch_cuda():
    try:
        import torch
        return torch if torch.cuda.is_available() else None
    except ImportError:
        return None


def _on_gpu(array):
    import cupy
    return cupy.asarray(array)


def _torch_view(torch, array):
    return torch.as_tensor(array, device="cuda")


def _max_reference(x_cpu, x_gpu, grad_cpu, grad_gpu, args):
    """(y, indices, grad_in) from torch on the GPU, or from the CPU path."""
    torch = _torch_cuda()
    if torch is not None:
        f = torch.nn.functional
        tx = _torch_view(torch, x_gpu).clone().requires_grad_(True)
        y, indices = f.max_pool2d(tx, return_indices=True, **args)
        y.backward(_torch_view(torch, grad_gpu))
        return y.detach().cpu().numpy(), indices.cpu().numpy(), tx.grad.cpu().numpy()
    kernel, stride, padding, dilation, out_hw = _window_geometry(
        "max_pool2d", x_cpu.shape, args["kernel_size"], args.get("stride"), args.get("padding", 0),
        args.get("dilation", 1), args.get("ceil_mode", False))
    y, indices = cpu.max_pool2d(x_cpu, kernel, stride, padding, dilation, out_hw, return_indices=True)
    return y, indices, cpu.max_pool2d_backward(grad_cpu, indices, x_cpu.shape)


@pytest.mark.parametrize("shape,args", MAX_CASES, ids=[f"{s}-{a}" for s, a in MAX_CASES])
def test_max_pool2d_on_gpu(shape, args):
    x = random_array(shape, seed=1)
    x[:, :, ::7, ::5] = 0.25  # some ties
    x_gpu = _on_gpu(x)
    y, indices = kernels.max_pool2d(x_gpu, return_indices=True, **args)
    assert_close(kernels.max_pool2d(x_gpu, **args), y, np.float32, rtol=0, atol=0, name="with/without indices")
    grad = random_array(y.shape, seed=2)
    grad_gpu = _on_gpu(grad)
    expected_y, expected_indices, expected_grad = _max_reference(x, x_gpu, grad, grad_gpu, args)
    assert_close(y, expected_y, np.float32, rtol=0, atol=0, name="max_pool2d")
    np.testing.assert_array_equal(indices.get(), expected_indices)
    assert_close(kernels.max_pool2d_backward(grad_gpu, indices, shape, **args), expected_grad, np.float32,
                 name="gather backward")
    assert_close(kernels.max_pool2d_backward(grad_gpu, indices, shape), expected_grad, np.float32,
                 name="scatter backward")


def _avg_reference(x_cpu, x_gpu, grad_cpu, grad_gpu, args):
    torch = _torch_cuda()
    if torch is not None:
        f = torch.nn.functional
        tx = _torch_view(torch, x_gpu).clone().requires_grad_(True)
        y = f.avg_pool2d(tx, **args)
        y.backward(_torch_view(torch, grad_gpu))
        return y.detach().cpu().numpy(), tx.grad.cpu().numpy()
    kernel, stride, padding, _, out_hw = _window_geometry(
        "avg_pool2d", x_cpu.shape, args["kernel_size"], args.get("stride"), args.get("padding", 0), 1,
        args.get("ceil_mode", False))
    options = (args.get("count_include_pad", True), args.get("divisor_override"))
    return (cpu.avg_pool2d(x_cpu, kernel, stride, padding, out_hw, *options),
            cpu.avg_pool2d_backward(grad_cpu, x_cpu.shape, kernel, stride, padding, *options))


@pytest.mark.parametrize("shape,args", AVG_CASES, ids=[f"{s}-{a}" for s, a in AVG_CASES])
def test_avg_pool2d_on_gpu(shape, args):
    x = random_array(shape, seed=3)
    x_gpu = _on_gpu(x)
    y = kernels.avg_pool2d(x_gpu, **args)
    grad = random_array(y.shape, seed=4)
    grad_gpu = _on_gpu(grad)
    expected_y, expected_grad = _avg_reference(x, x_gpu, grad, grad_gpu, args)
    assert_close(y, expected_y, np.float32, name="avg_pool2d")
    assert_close(kernels.avg_pool2d_backward(grad_gpu, shape, **args), expected_grad, np.float32,
                 name="avg_pool2d_backward")


@pytest.mark.parametrize("shape,output_size", ADAPTIVE_CASES, ids=[str(c) for c in ADAPTIVE_CASES])
def test_adaptive_avg_pool2d_on_gpu(shape, output_size):
    x = random_array(shape, seed=5)
    y = kernels.adaptive_avg_pool2d(_on_gpu(x), output_size)
    out_hw = tuple(y.shape[2:])
    grad = random_array(y.shape, seed=6)
    area = (shape[2] // out_hw[0] + 2) * (shape[3] // out_hw[1] + 2)
    assert_close(y, cpu.adaptive_avg_pool2d(x, out_hw), np.float32, scale=np.sqrt(area),
                 name="adaptive_avg_pool2d")
    assert_close(kernels.adaptive_avg_pool2d_backward(_on_gpu(grad), shape),
                 cpu.adaptive_avg_pool2d_backward(grad, shape), np.float32, name="adaptive_avg_pool2d_backward")


def test_non_contiguous_and_chw_inputs_on_gpu():
    x = random_array((3, 40, 31), seed=7)
    x_gpu = _on_gpu(x).transpose(0, 2, 1)
    expected = kernels.max_pool2d(np.ascontiguousarray(x.transpose(0, 2, 1)), 3, 2, 1)
    assert_close(kernels.max_pool2d(x_gpu, 3, 2, 1), expected, np.float32, rtol=0, atol=0)
