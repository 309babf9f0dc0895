"""Pooling on the CPU path against torch.nn.functional (float64) and float64 finite differences."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import kernels
from tests.oracle import assert_close, finite_difference_gradient, random_array, torch_module, torch_reference

F = torch_module().nn.functional

# (input shape, keyword arguments shared by ours and torch's)
MAX_CONFIGS = [
    ((2, 3, 8, 8), dict(kernel_size=2, stride=2)),
    ((2, 3, 9, 11), dict(kernel_size=3, stride=2, padding=1)),
    ((1, 2, 10, 9), dict(kernel_size=2, stride=3)),                       # stride > kernel
    ((2, 2, 11, 12), dict(kernel_size=3, stride=1, padding=1, dilation=2)),
    ((1, 3, 9, 13), dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 0))),
    ((2, 1, 7, 10), dict(kernel_size=(2, 4), stride=(1, 3), padding=(1, 2), dilation=(2, 1))),
    ((2, 2, 10, 10), dict(kernel_size=3, stride=2, ceil_mode=True)),
    ((1, 2, 6, 6), dict(kernel_size=2, stride=2, padding=1, ceil_mode=True)),  # last window would start in the padding
    ((1, 1, 5, 7), dict(kernel_size=3, stride=3, padding=1, ceil_mode=True)),
    ((3, 5, 7), dict(kernel_size=3, stride=2, padding=1)),                  # CHW input
    ((1, 1, 1, 1), dict(kernel_size=1)),
    ((2, 3, 13, 5), dict(kernel_size=(5, 1), stride=(2, 1), padding=(2, 0))),
]

AVG_CONFIGS = [
    ((2, 3, 8, 8), dict(kernel_size=2)),
    ((2, 3, 9, 11), dict(kernel_size=3, stride=2, padding=1)),
    ((2, 3, 9, 11), dict(kernel_size=3, stride=2, padding=1, count_include_pad=False)),
    ((1, 2, 10, 9), dict(kernel_size=2, stride=3)),
    ((1, 3, 9, 13), dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 1))),
    ((2, 2, 10, 10), dict(kernel_size=3, stride=2, ceil_mode=True)),
    ((1, 2, 6, 6), dict(kernel_size=2, stride=2, padding=1, ceil_mode=True)),
    ((1, 2, 7, 7), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)),
    ((2, 2, 7, 8), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=True)),
    ((2, 2, 9, 7), dict(kernel_size=(3, 2), padding=(1, 1), divisor_override=5)),
    ((3, 5, 7), dict(kernel_size=2, stride=1)),
    ((1, 1, 1, 1), dict(kernel_size=1)),
]

ADAPTIVE_CONFIGS = [
    ((2, 3, 7, 5), (3, 2)),
    ((2, 3, 7, 5), 1),
    ((1, 2, 8, 8), (4, 4)),
    ((2, 2, 5, 6), (None, 4)),
    ((1, 2, 3, 4), (7, 6)),           # larger than the input: overlapping windows
    ((4, 9, 11), (2, 5)),             # CHW input
    ((2, 4, 13, 3), (1, 1)),
]


def _grad_tensor(shape, dtype, seed):
    return random_array(shape, dtype, seed=seed)


def _check_max(shape, args, dtype, seed=0):
    x = random_array(shape, dtype, seed=seed)
    y, indices = kernels.max_pool2d(x, return_indices=True, **args)
    torch = torch_module()
    expected, expected_indices = F.max_pool2d(torch.tensor(x, dtype=torch.float64), return_indices=True, **args)
    assert_close(y, expected.numpy(), dtype, name="max_pool2d")
    assert indices.dtype == np.int64
    np.testing.assert_array_equal(indices, expected_indices.numpy())
    assert_close(kernels.max_pool2d(x, **args), expected.numpy(), dtype, name="max_pool2d without indices")
    grad_out = _grad_tensor(y.shape, dtype, seed + 1)
    _, (expected_grad,) = torch_reference(lambda t: F.max_pool2d(t, **args), x, grad_output=grad_out)
    assert_close(kernels.max_pool2d_backward(grad_out, indices, x.shape), expected_grad, dtype,
                 name="max_pool2d_backward")
    assert_close(kernels.max_pool2d_backward(grad_out, indices, x.shape, **args), expected_grad, dtype,
                 name="max_pool2d_backward with the window geometry")


def _check_avg(shape, args, dtype, seed=0):
    x = random_array(shape, dtype, seed=seed)
    y = kernels.avg_pool2d(x, **args)
    grad_out = _grad_tensor(y.shape, dtype, seed + 1)
    expected, (expected_grad,) = torch_reference(lambda t: F.avg_pool2d(t, **args), x, grad_output=grad_out)
    assert_close(y, expected, dtype, name="avg_pool2d")
    assert_close(kernels.avg_pool2d_backward(grad_out, x.shape, **args), expected_grad, dtype,
                 name="avg_pool2d_backward")


def _check_adaptive(shape, output_size, dtype, seed=0):
    x = random_array(shape, dtype, seed=seed)
    y = kernels.adaptive_avg_pool2d(x, output_size)
    grad_out = _grad_tensor(y.shape, dtype, seed + 1)
    expected, (expected_grad,) = torch_reference(lambda t: F.adaptive_avg_pool2d(t, output_size), x,
                                                 grad_output=grad_out)
    assert_close(y, expected, dtype, name="adaptive_avg_pool2d")
    assert_close(kernels.adaptive_avg_pool2d_backward(grad_out, x.shape), expected_grad, dtype,
                 name="adaptive_avg_pool2d_backward")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,args", MAX_CONFIGS, ids=[str(a) for _, a in MAX_CONFIGS])
def test_max_pool2d_matches_torch(shape, args, dtype):
    _check_max(shape, args, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,args", AVG_CONFIGS, ids=[str(a) for _, a in AVG_CONFIGS])
def test_avg_pool2d_matches_torch(shape, args, dtype):
    _check_avg(shape, args, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,output_size", ADAPTIVE_CONFIGS, ids=[str(c) for c in ADAPTIVE_CONFIGS])
def test_adaptive_avg_pool2d_matches_torch(shape, output_size, dtype):
    _check_adaptive(shape, output_size, dtype)


def test_pooling_an_empty_batch():
    """N = 0, as torch: empty outputs of the right shape, and empty gradients (adaptive pooling's CPU path once
    failed on it)."""
    x = np.ones((0, 3, 5, 6), np.float32)
    y, indices = kernels.max_pool2d(x, 2, return_indices=True)
    assert y.shape == indices.shape == (0, 3, 2, 3)
    assert kernels.max_pool2d_backward(y, indices, x.shape).shape == x.shape
    assert kernels.avg_pool2d(x, 2).shape == (0, 3, 2, 3)
    assert kernels.avg_pool2d_backward(kernels.avg_pool2d(x, 2), x.shape, 2).shape == x.shape
    y = kernels.adaptive_avg_pool2d(x, (2, 4))
    assert y.shape == (0, 3, 2, 4)
    assert kernels.adaptive_avg_pool2d_backward(y, x.shape).shape == x.shape


@pytest.mark.parametrize("output_size", [(0, 2), (3, 0), 0])
def test_adaptive_avg_pool2d_to_an_empty_output_as_torch(output_size):
    """An output size of 0: an empty output of torch's shape (torch's forward accepts it), and a zero input
    gradient, as no window reads anything (torch's backward raises there instead)."""
    x = random_array((2, 3, 5, 4), np.float64, seed=9)
    y = kernels.adaptive_avg_pool2d(x, output_size)
    expected, _ = torch_reference(lambda t: F.adaptive_avg_pool2d(t, output_size), x)
    assert y.shape == tuple(expected.shape) and y.size == 0
    grad = kernels.adaptive_avg_pool2d_backward(np.ones(y.shape), x.shape)
    assert grad.shape == x.shape and grad.dtype == x.dtype and not grad.any()


@pytest.mark.parametrize("args", [dict(kernel_size=2, stride=2), dict(kernel_size=3, stride=2, padding=1),
                                  dict(kernel_size=3, stride=1, dilation=2, padding=1)])
def test_max_pool2d_ties_go_to_the_first_maximum(args):
    rng = np.random.default_rng(3)
    x = rng.integers(0, 3, size=(2, 3, 9, 10)).astype(np.float64)  # many repeated maxima
    x[0, 0] = 1.0                                                  # a plane that is one big tie
    y, indices = kernels.max_pool2d(x, return_indices=True, **args)
    torch = torch_module()
    expected, expected_indices = F.max_pool2d(torch.tensor(x), return_indices=True, **args)
    np.testing.assert_array_equal(y, expected.numpy())
    np.testing.assert_array_equal(indices, expected_indices.numpy())
    grad_out = random_array(y.shape, np.float64, seed=4)
    _, (expected_grad,) = torch_reference(lambda t: F.max_pool2d(t, **args), x, grad_output=grad_out)
    assert_close(kernels.max_pool2d_backward(grad_out, indices, x.shape), expected_grad, np.float64)


def test_max_pool2d_nan_and_infinity_follow_torch():
    x = random_array((1, 2, 6, 7), np.float64, seed=12)
    x[0, 0, 1, 1] = np.nan
    x[0, 0, 2, 2] = np.nan          # two NaNs in one window: torch keeps the last one
    x[0, 1, :3, :3] = -np.inf       # windows of only -inf: the first tap inside the input
    args = dict(kernel_size=3, stride=2, padding=1)
    y, indices = kernels.max_pool2d(x, return_indices=True, **args)
    torch = torch_module()
    expected, expected_indices = F.max_pool2d(torch.tensor(x), return_indices=True, **args)
    np.testing.assert_array_equal(y, expected.numpy())
    np.testing.assert_array_equal(indices, expected_indices.numpy())
    np.testing.assert_array_equal(kernels.max_pool2d(x, **args), expected.numpy())


def test_max_pool2d_of_non_contiguous_input():
    x = random_array((2, 3, 11, 9), np.float32, seed=5).transpose(0, 1, 3, 2)
    torch = torch_module()
    expected = F.max_pool2d(torch.tensor(np.ascontiguousarray(x), dtype=torch.float64), 3, 2, 1)
    assert_close(kernels.max_pool2d(x, 3, 2, 1), expected.numpy(), np.float32)
    assert_close(kernels.avg_pool2d(x, 3, 2, 1), F.avg_pool2d(torch.tensor(np.ascontiguousarray(x), dtype=torch.float64),
                                                               3, 2, 1).numpy(), np.float32)


pool_geometry = st.tuples(
    st.integers(1, 4), st.integers(1, 4),     # kernel
    st.integers(1, 4), st.integers(1, 4),     # stride
    st.integers(0, 2), st.integers(0, 2),     # padding (clipped to half the kernel)
    st.integers(1, 2), st.integers(1, 2),     # dilation (max only)
    st.booleans(), st.booleans(),             # ceil_mode, count_include_pad
    st.integers(4, 12), st.integers(4, 12),   # input height, width
)


@given(pool_geometry)
@settings(max_examples=20)
def test_pooling_with_drawn_geometry(geometry):
    kh, kw, sh, sw, ph, pw, dh, dw, ceil_mode, count_include_pad, height, width = geometry
    padding = (min(ph, kh // 2), min(pw, kw // 2))
    shape = (2, 2, height, width)
    if (height + 2 * padding[0] - dh * (kh - 1) - 1 >= 0) and (width + 2 * padding[1] - dw * (kw - 1) - 1 >= 0):
        _check_max(shape, dict(kernel_size=(kh, kw), stride=(sh, sw), padding=padding, dilation=(dh, dw),
                               ceil_mode=ceil_mode), np.float64, seed=height * width)
    _check_avg(shape, dict(kernel_size=(kh, kw), stride=(sh, sw), padding=padding, ceil_mode=ceil_mode,
                           count_include_pad=count_include_pad), np.float64, seed=height + width)


@given(st.integers(1, 9), st.integers(1, 9), st.integers(1, 6), st.integers(1, 6))
@settings(max_examples=15)
def test_adaptive_with_drawn_sizes(height, width, out_h, out_w):
    _check_adaptive((2, 3, height, width), (out_h, out_w), np.float64, seed=height * 10 + width)


def _directional_check(forward, backward, x, seed):
    weights = random_array(forward().shape, np.float64, seed=seed)
    numeric = finite_difference_gradient(lambda: float((forward() * weights).sum()), x)
    assert_close(backward(weights), numeric, rtol=1e-6, atol=1e-8)


def test_avg_pool2d_gradient_by_finite_differences():
    x = random_array((1, 2, 7, 6), np.float64, seed=6)
    args = dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
    _directional_check(lambda: kernels.avg_pool2d(x, **args),
                       lambda g: kernels.avg_pool2d_backward(g, x.shape, **args), x, seed=7)


def test_adaptive_avg_pool2d_gradient_by_finite_differences():
    x = random_array((2, 1, 7, 5), np.float64, seed=8)
    _directional_check(lambda: kernels.adaptive_avg_pool2d(x, (3, 2)),
                       lambda g: kernels.adaptive_avg_pool2d_backward(g, x.shape), x, seed=9)


def test_max_pool2d_gradient_by_finite_differences():
    # distinct, well separated values: no ties, so the max is differentiable everywhere nearby
    rng = np.random.default_rng(10)
    x = (rng.permutation(1 * 2 * 7 * 8).reshape(1, 2, 7, 8) * 0.01).astype(np.float64)
    args = dict(kernel_size=3, stride=2, padding=1)
    _, indices = kernels.max_pool2d(x, return_indices=True, **args)
    _directional_check(lambda: kernels.max_pool2d(x, **args),
                       lambda g: kernels.max_pool2d_backward(g, indices, x.shape), x, seed=11)


def test_pooling_rejects_bad_input():
    x = random_array((2, 3, 8, 8), np.float32)
    with pytest.raises(ValueError, match="max_pool2d: padding must be at most half the kernel size"):
        kernels.max_pool2d(x, 2, padding=2)
    with pytest.raises(ValueError, match="avg_pool2d: stride must be positive"):
        kernels.avg_pool2d(x, 2, stride=0)
    with pytest.raises(ValueError, match="max_pool2d: kernel_size must be positive"):
        kernels.max_pool2d(x, (0, 2))
    with pytest.raises(ValueError, match="max_pool2d: dilation must be positive"):
        kernels.max_pool2d(x, 2, dilation=0)
    with pytest.raises(ValueError, match=r"max_pool2d: output size \(0, 0\) is too small for input shape \(2, 3, 8, 8\)"):
        kernels.max_pool2d(x, 5, dilation=2)
    with pytest.raises(ValueError, match=r"max_pool2d: x must be 3-D or 4-D, got shape \(8, 8\)"):
        kernels.max_pool2d(x[0, 0], 2)
    with pytest.raises(TypeError, match="avg_pool2d: x must be float32 or float64"):
        kernels.avg_pool2d(x.astype(np.int32), 2)
    with pytest.raises(ValueError, match="avg_pool2d: divisor_override must be a non-zero int"):
        kernels.avg_pool2d(x, 2, divisor_override=0)
    with pytest.raises(ValueError, match="avg_pool2d: kernel_size must be an int or a pair"):
        kernels.avg_pool2d(x, (2, 2, 2))
    with pytest.raises(ValueError, match="max_pool2d: kernel_size must be an int or a pair"):
        kernels.max_pool2d(x, np.array([2, 2]))
    with pytest.raises(ValueError, match="adaptive_avg_pool2d: output_size must be non-negative"):
        kernels.adaptive_avg_pool2d(x, (-1, 2))
    y, indices = kernels.max_pool2d(x, 2, return_indices=True)
    with pytest.raises(TypeError, match="max_pool2d_backward: indices must be int64"):
        kernels.max_pool2d_backward(y, indices.astype(np.int32), x.shape)
    with pytest.raises(ValueError, match="max_pool2d_backward: indices must lie in"):
        kernels.max_pool2d_backward(y, indices + 64, x.shape)
    with pytest.raises(ValueError, match="max_pool2d_backward: grad_out of shape"):
        kernels.max_pool2d_backward(y, indices, (2, 4, 8, 8))
    with pytest.raises(ValueError, match=r"max_pool2d_backward: grad_out must have shape \(2, 3, 2, 2\)"):
        kernels.max_pool2d_backward(y, indices, x.shape, kernel_size=3, stride=3)
    with pytest.raises(ValueError, match=r"avg_pool2d_backward: grad_out must have shape \(2, 3, 4, 4\)"):
        kernels.avg_pool2d_backward(y[:, :, :3], x.shape, 2)
    with pytest.raises(ValueError, match="adaptive_avg_pool2d_backward: grad_out must be 3-D"):
        kernels.adaptive_avg_pool2d_backward(y, (3, 8, 8))
    with pytest.raises(ValueError, match="adaptive_avg_pool2d_backward: grad_out of shape"):
        kernels.adaptive_avg_pool2d_backward(y, (2, 4, 8, 8))


@pytest.mark.parametrize("planes,rows,cols,per_thread", [
    (32768, 1, 1, 1), (64 * 512, 7, 7, 4), (3, 1, 1, 1), (200000, 2, 2, 1), (5, 300, 1, 4), (1, 1, 5000, 1)])
def test_pooling_launch_layout_stays_within_cuda_limits(planes, rows, cols, per_thread):
    """The block must fit CUDA's limits (z at most 64, found on an H200 for 1x1 outputs of 32768
    planes) and the launches together must cover every position."""
    from kernels.cuda.pool import MAX_GRID_Z, _layout
    grid, block, per_launch = _layout(planes, rows, cols, per_thread)
    assert block[0] <= 1024 and block[1] <= 1024 and block[2] <= 64
    assert block[0] * block[1] * block[2] <= 1024
    assert grid[1] <= 65535 and grid[2] <= MAX_GRID_Z
    assert grid[0] * block[0] >= cols and grid[1] * block[1] >= rows
    assert grid[2] * block[2] * per_thread >= per_launch and 0 < per_launch <= planes


def test_max_pool2d_backward_on_the_cpu_rejects_an_index_outside_its_plane():
    # (the public op checks indices first; the CPU loop itself must not write outside its plane either)
    from kernels.cpu import pool as cpu
    grad_out = random_array((1, 2, 2, 2), np.float32, seed=3)
    indices = np.zeros((1, 2, 2, 2), np.int64)
    indices[0, 1, 1, 1] = 16                      # the plane of a 4x4 input has 16 positions
    for geometry in (None, ((2, 2), (2, 2), (0, 0), (1, 1))):
        with pytest.raises(IndexError, match="max_pool2d_backward"):
            cpu.max_pool2d_backward(grad_out, indices, (1, 2, 4, 4), geometry)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("stride,padding,dilation,ceil_mode", [
    ((2, 2), 0, 1, False), ((2, 1), (0, 1), 1, False), ((1, 1), 1, 1, True), ((2, 2), 1, (1, 2), True),
    ((1, 2), (1, 0), 2, False), ((3, 1), 1, (2, 1), True)])
def test_max_pool2d_2x2_rows_wider_than_a_block_match_torch_exactly(stride, padding, dilation, ceil_mode, dtype):
    # the 2x2 kernel with stride_w 1 or 2 takes its own path, whose inside windows go BLOCK at a time (the
    # last block overlapping): rows of 17 to 45 windows, with ties, NaNs (the last one wins) and -inf windows
    from kernels.cpu import pool as cpu
    x = np.round(random_array((2, 3, 7, 45), dtype, seed=31) * 2)
    x[0, 0, 1, 3], x[0, 0, 1, 4], x[1, 2, 4, 30] = np.nan, np.nan, np.nan
    x[1, 1, :3, :6] = -np.inf
    args = dict(kernel_size=2, stride=stride, padding=padding, dilation=dilation, ceil_mode=ceil_mode)
    y, indices = kernels.max_pool2d(x, return_indices=True, **args)
    assert y.shape[-1] > cpu.BLOCK
    torch = torch_module()
    expected, expected_indices = F.max_pool2d(torch.tensor(x), return_indices=True, **args)
    np.testing.assert_array_equal(y, expected.numpy())
    np.testing.assert_array_equal(indices, expected_indices.numpy())
    np.testing.assert_array_equal(kernels.max_pool2d(x[:, :, :, ::-1], **args),
                                  F.max_pool2d(torch.tensor(x[:, :, :, ::-1].copy()), **args).numpy())


def test_max_pool2d_backward_sums_overlapping_windows_in_float64():
    """Where windows overlap, an input's gradient is the float64 sum of its windows' gradients, rounded
    once: 1 + 8 * 2^-24 is 1 + 2^-21 in float32, where a float32 running sum reaching 1 halfway (in
    either window order) gives 1 + 2^-22."""
    x = np.zeros((1, 1, 5, 5), np.float32)
    x[0, 0, 2, 2] = 1.0   # the maximum of all nine 3x3 windows
    _, indices = kernels.max_pool2d(x, 3, stride=1, return_indices=True)
    grad_out = np.full((1, 1, 3, 3), 2.0 ** -24, np.float32)
    grad_out[0, 0, 1, 1] = 1.0   # the middle window: four small gradients before it and four after
    grad_x = kernels.max_pool2d_backward(grad_out, indices, x.shape, kernel_size=3, stride=1)
    assert grad_x[0, 0, 2, 2] == np.float32(1.0 + 2.0 ** -21)
    assert np.count_nonzero(grad_x) == 1
