"""CUDA pooling kernels in the simulator against the CPU path (tiny shapes that do not fill a block)."""
import numpy as np
import pytest

import kernels
from kernels.cpu import pool as cpu
from kernels.pool import _window_geometry
from tests.oracle import assert_close, random_array

MAX_CASES = [
    ((1, 3, 7, 9), dict(kernel_size=3, stride=2, padding=1)),
    ((2, 1, 6, 7), dict(kernel_size=(2, 3), stride=(3, 1), padding=(1, 1), dilation=(2, 1), ceil_mode=True)),
]
AVG_CASES = [
    ((1, 3, 7, 9), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ((2, 1, 6, 7), dict(kernel_size=(3, 2), stride=(2, 3), padding=(1, 1), ceil_mode=True, count_include_pad=False)),
    ((1, 2, 5, 6), dict(kernel_size=2, stride=1, divisor_override=3)),
]


def _cpu_max(x, args):
    kernel, stride, padding, dilation, out_hw = _window_geometry("max_pool2d", x.shape, args["kernel_size"],
                                                                 args.get("stride"), args.get("padding", 0),
                                                                 args.get("dilation", 1), args.get("ceil_mode", False))
    return cpu.max_pool2d(x, kernel, stride, padding, dilation, out_hw, return_indices=True)


@pytest.mark.parametrize("shape,args", MAX_CASES)
def test_max_pool2d_kernels_match_cpu(shape, args):
    x = random_array(shape, seed=1)
    x[0, 0, 1:4, 1:4] = 0.5  # ties: the first maximum must win
    x[-1, -1, 2, 2] = np.nan  # NaN wins its windows, as in PyTorch
    x[-1, 0, :2, :] = -np.inf
    expected, expected_indices = _cpu_max(x, args)
    y, indices = kernels.max_pool2d(x, return_indices=True, **args)
    assert_close(y, expected, np.float32)
    np.testing.assert_array_equal(indices, expected_indices)
    assert_close(kernels.max_pool2d(x, **args), expected, np.float32)
    grad_out = random_array(y.shape, seed=2)
    expected_grad = cpu.max_pool2d_backward(grad_out, expected_indices, x.shape)
    gather = kernels.max_pool2d_backward(grad_out, indices, x.shape, **args)
    scatter = kernels.max_pool2d_backward(grad_out, indices, x.shape)
    assert_close(gather, expected_grad, np.float32, name="gather")
    assert_close(scatter, expected_grad, np.float32, name="scatter")


def test_max_pool2d_backward_without_geometry_is_refused_by_deterministic_algorithms(deterministic):
    """Its CUDA form scatters with atomics; the gather (given the geometry) runs as usual."""
    shape, args = MAX_CASES[0]
    x = random_array(shape, seed=3)
    y, indices = kernels.max_pool2d(x, return_indices=True, **args)
    grad_out = random_array(y.shape, seed=4)
    expected = cpu.max_pool2d_backward(grad_out, indices, x.shape)
    assert_close(kernels.max_pool2d_backward(grad_out, indices, x.shape, **args), expected, np.float32)
    with pytest.raises(RuntimeError, match=r"max_pool2d_backward without the window geometry \(kernel_size, ...\): "
                                           r"atomic adds does not have a deterministic implementation"):
        kernels.max_pool2d_backward(grad_out, indices, x.shape)
    kernels.use_deterministic_algorithms(True, warn_only=True)
    with pytest.warns(UserWarning, match="max_pool2d_backward without the window geometry"):
        assert_close(kernels.max_pool2d_backward(grad_out, indices, x.shape), expected, np.float32)


@pytest.mark.parametrize("shape,args", AVG_CASES)
def test_avg_pool2d_kernels_match_cpu(shape, args):
    x = random_array(shape, seed=3)
    geometry = _window_geometry("avg_pool2d", x.shape, args["kernel_size"], args.get("stride"),
                                args.get("padding", 0), 1, args.get("ceil_mode", False))
    kernel, stride, padding, _, out_hw = geometry
    options = (args.get("count_include_pad", True), args.get("divisor_override"))
    y = kernels.avg_pool2d(x, **args)
    assert_close(y, cpu.avg_pool2d(x, kernel, stride, padding, out_hw, *options), np.float32)
    grad_out = random_array(y.shape, seed=4)
    assert_close(kernels.avg_pool2d_backward(grad_out, x.shape, **args),
                 cpu.avg_pool2d_backward(grad_out, x.shape, kernel, stride, padding, *options), np.float32)


@pytest.mark.parametrize("shape,output_size", [((2, 2, 7, 5), (3, 2)), ((1, 3, 4, 5), 1), ((3, 2, 3), (5, 4)),
                                                ((2, 1, 19, 37), 1), ((1, 1, 17, 18), (2, 1))])
def test_adaptive_avg_pool2d_kernels_match_cpu(shape, output_size):
    # the last two cases have windows of 64+ elements: the block-per-output reduction kernel
    x = random_array(shape, seed=5)
    x4 = x.reshape((1,) * (4 - x.ndim) + x.shape)
    y = kernels.adaptive_avg_pool2d(x, output_size)
    out_hw = y.shape[-2:]
    assert_close(y, cpu.adaptive_avg_pool2d(x4, out_hw).reshape(y.shape), np.float32)
    grad_out = random_array(y.shape, seed=6)
    expected = cpu.adaptive_avg_pool2d_backward(grad_out.reshape(x4.shape[:2] + out_hw), x4.shape)
    assert_close(kernels.adaptive_avg_pool2d_backward(grad_out, x.shape), expected.reshape(x.shape), np.float32)


@pytest.mark.parametrize("max_grid_z", [1, 65535])
def test_plane_chunking_and_uneven_plane_counts(monkeypatch, max_grid_z):
    # 7 planes: not a multiple of the 4 planes a backward thread takes; max_grid_z=1 forces one
    # launch per plane slice, the path used for over 65535 z-blocks on a GPU
    from kernels.cuda import pool as gpu
    monkeypatch.setattr(gpu, "MAX_GRID_Z", max_grid_z)
    x = random_array((7, 1, 5, 6), seed=7)
    args = dict(kernel_size=3, stride=2, padding=1)
    expected, expected_indices = _cpu_max(x, args)
    y, indices = kernels.max_pool2d(x, return_indices=True, **args)
    assert_close(y, expected, np.float32)
    np.testing.assert_array_equal(indices, expected_indices)
    grad_out = random_array(y.shape, seed=8)
    assert_close(kernels.max_pool2d_backward(grad_out, indices, x.shape, **args),
                 cpu.max_pool2d_backward(grad_out, expected_indices, x.shape), np.float32)
    assert_close(kernels.avg_pool2d_backward(grad_out, x.shape, **args),
                 cpu.avg_pool2d_backward(grad_out, x.shape, (3, 3), (2, 2), (1, 1)), np.float32)
