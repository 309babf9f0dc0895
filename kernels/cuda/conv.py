"""conv2d on the GPU: launchers for the implicit-GEMM kernels of conv_implicit_gemm.py and conv_weight.py.

Arrays arrive C-contiguous float32 from kernels/conv.py and are passed flat; the geometry (stride and
dilation pairs, padding as top/bottom/left/right, groups) is already checked there. Tile shapes are
chosen from the GEMM's row count (output channels per group, or input channels for backward-data).
"""
from numba import float32, int64

from .. import backend
from .conv_implicit_gemm import BACKWARD_DATA, CONFIGS, FORWARD, THREADS, choose_config, implicit_gemm_kernel
from .conv_weight import (BIAS_THREADS, WEIGHT_CONFIGS, choose_weight_config, conv2d_bias_gradient,
                          weight_gradient_kernel)
from .launch import ceil_div, launch

TARGET_BLOCKS = 4 * 132       # enough blocks for a few waves on an H100/H200 (132 SMs)
MAX_SPLITS = 256
INDEX_LIMIT = 2**31           # the kernels' shared index tables are int32


def _check_index_range(*arrays):
    for array in arrays:
        if array.size >= INDEX_LIMIT:
            raise ValueError(f"conv2d: arrays of {INDEX_LIMIT} elements or more are not supported on the GPU, "
                             f"got shape {tuple(array.shape)}")


def _flat(array):
    return array.reshape(-1)


def _placeholder(like):
    """A one-element array standing in for an absent bias (kernels take a fixed argument list)."""
    return backend.array_module(like).zeros(1, like.dtype)


def _geometry_arguments(x_shape, weight_shape, out_hw, stride, padding, dilation, groups):
    n, c, h, w = x_shape
    k, _, r, s = weight_shape
    return (n, c, h, w, k, r, s, out_hw[0], out_hw[1], stride[0], stride[1], padding[0], padding[2],
            dilation[0], dilation[1], groups)


def conv2d(x, weight, bias, y, stride, padding, dilation, groups):
    _check_index_range(x, y)
    k_group = weight.shape[0] // groups
    config = choose_config(k_group)
    kernel = implicit_gemm_kernel(FORWARD, config, True)
    columns = y.shape[0] * y.shape[2] * y.shape[3]
    grid = (ceil_div(columns, config.block_cols), ceil_div(k_group, config.block_rows), groups)
    has_bias = 0 if bias is None else 1
    bias = _placeholder(x) if bias is None else bias
    launch(kernel, grid, THREADS, _flat(x), _flat(weight), bias, _flat(y),
           *_geometry_arguments(x.shape, weight.shape, y.shape[2:], stride, padding, dilation, groups), has_bias)


def conv2d_backward_input(grad_out, weight, grad_x, stride, padding, dilation, groups):
    _check_index_range(grad_out, grad_x)
    c_group = weight.shape[1]
    config = choose_config(c_group)
    kernel = implicit_gemm_kernel(BACKWARD_DATA, config, tuple(stride) == (1, 1))
    columns = grad_x.shape[0] * grad_x.shape[2] * grad_x.shape[3]
    grid = (ceil_div(columns, config.block_cols), ceil_div(c_group, config.block_rows), groups)
    launch(kernel, grid, THREADS, _flat(grad_out), _flat(weight), _placeholder(grad_out), _flat(grad_x),
           *_geometry_arguments(grad_x.shape, weight.shape, grad_out.shape[2:], stride, padding, dilation, groups),
           0)


def weight_gradient_splits(tiles, steps):
    """How many blocks share one output tile's reduction: enough blocks to fill the GPU, each with work."""
    return max(1, min(MAX_SPLITS, ceil_div(TARGET_BLOCKS, tiles), ceil_div(steps, 4)))


def conv2d_backward_weight(grad_out, x, grad_weight, stride, padding, dilation, groups):
    _check_index_range(grad_out, x)
    k_group = grad_weight.shape[0] // groups
    columns = grad_weight.shape[1] * grad_weight.shape[2] * grad_weight.shape[3]
    config = choose_weight_config(k_group, columns)
    grid_xy = (ceil_div(columns, config.block_cols), ceil_div(k_group, config.block_rows))
    pixels = grad_out.shape[0] * grad_out.shape[2] * grad_out.shape[3]
    splits = weight_gradient_splits(grid_xy[0] * grid_xy[1] * groups, ceil_div(pixels, config.block_k))
    if splits > 1:
        grad_weight[...] = 0  # blocks add their partial sums atomically
    launch(weight_gradient_kernel(config), grid_xy + (groups * splits,), THREADS,
           _flat(grad_out), _flat(x), _flat(grad_weight),
           *_geometry_arguments(x.shape, grad_weight.shape, grad_out.shape[2:], stride, padding, dilation, groups),
           splits)


def conv2d_backward_bias(grad_out, grad_bias):
    grad_bias[...] = 0
    n, k, p, q = grad_out.shape
    launch(conv2d_bias_gradient, (k, n), BIAS_THREADS, _flat(grad_out), grad_bias, k, p * q)


_vector = float32[::1]
_geometry_types = (int64,) * 16
PTX_SIGNATURES = (
    [(f"forward_{c.block_rows}x{c.block_cols}", implicit_gemm_kernel(FORWARD, c, True),
      (_vector,) * 4 + _geometry_types + (int64,)) for _, c in CONFIGS]
    + [(f"backward_data_{c.block_rows}x{c.block_cols}{'' if unit else '_strided'}",
        implicit_gemm_kernel(BACKWARD_DATA, c, unit), (_vector,) * 4 + _geometry_types + (int64,))
       for _, c in CONFIGS for unit in (True, False)]
    + [(f"backward_weight_{c.block_rows}x{c.block_cols}", weight_gradient_kernel(c),
        (_vector,) * 3 + _geometry_types + (int64,)) for _, _, c in WEIGHT_CONFIGS]
    + [("backward_bias", conv2d_bias_gradient, (_vector, _vector, int64, int64))]
)
