"""conv2d on the GPU: launchers for the implicit-GEMM kernels of conv_forward.py, conv_backward_data.py and
conv_weight.py, and for Winograd F(2x2, 3x3) (conv_winograd.py) on stride-1 3x3 layers with many channels,
where it does 4/9 of the multiplies (this module's PTX_SIGNATURES lists every kernel of the four).

Arrays arrive C-contiguous float32 from kernels/conv.py and are passed flat; the geometry (stride and
dilation pairs, padding as top/bottom/left/right, groups) is already checked there. Tile shapes are
chosen from the GEMM's row count (output channels per group, or input channels for backward-data) and
the number of blocks each tile gives.
"""
from numba import float32, int64

from . import conv_winograd as winograd
from .conv_backward_data import backward_data_kernel, phase_taps
from .conv_forward import CONFIGS, THREADS, choose_config, forward_kernel
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


def _geometry_arguments(x_shape, weight_shape, out_hw, stride, padding, dilation, groups):
    n, c, h, w = x_shape
    k, _, r, s = weight_shape
    return (n, c, h, w, k, r, s, out_hw[0], out_hw[1], stride[0], stride[1], padding[0], padding[2],
            dilation[0], dilation[1], groups)


def conv2d(x, weight, bias, y, stride, padding, dilation, groups):
    _check_index_range(x, y)
    if winograd.use_winograd(weight.shape, stride, dilation, groups, y.shape[2:], y.shape[0]):
        return winograd.conv2d(x, weight, bias, y, padding)
    k_group = weight.shape[0] // groups
    columns = y.shape[0] * y.shape[2] * y.shape[3]
    config = choose_config(k_group, columns, groups)
    kernel = forward_kernel(config)
    grid = (ceil_div(columns, config.block_cols), ceil_div(k_group, config.block_rows), groups)
    has_bias = 0 if bias is None else 1
    # An absent bias: the kernels take a fixed argument list and read bias only when has_bias, so any
    # float32 array stands in (no allocation and fill on every call).
    bias = _flat(weight) if bias is None else bias
    launch(kernel, grid, THREADS, _flat(x), _flat(weight), bias, _flat(y),
           *_geometry_arguments(x.shape, weight.shape, y.shape[2:], stride, padding, dilation, groups), has_bias)


def conv2d_backward_input(grad_out, weight, grad_x, stride, padding, dilation, groups):
    """One launch per stride phase (a single one for stride 1); every pixel of grad_x is written once."""
    _check_index_range(grad_out, grad_x)
    # judged by what this pass computes, grad_x (the forward's output size differs only for padding 0)
    if winograd.use_winograd(weight.shape, stride, dilation, groups, grad_x.shape[2:], grad_x.shape[0]):
        return winograd.conv2d_backward_input(grad_out, weight, grad_x, padding)
    n, c, h, w = grad_x.shape
    k, c_group, r, s = weight.shape
    config = choose_config(c_group, n * h * w // (stride[0] * stride[1]), groups)
    kernel = backward_data_kernel(config)
    common = (_flat(grad_out), _flat(weight), _flat(grad_x), n, c, h, w, k, r, s, grad_out.shape[2],
              grad_out.shape[3], groups, stride[0], stride[1])
    for phase_h in range(min(stride[0], h)):
        rows_h = phase_taps(phase_h, padding[0], stride[0], dilation[0], r)
        phase_rows = ceil_div(h - phase_h, stride[0])
        for phase_w in range(min(stride[1], w)):
            cols_w = phase_taps(phase_w, padding[2], stride[1], dilation[1], s)
            phase_cols = ceil_div(w - phase_w, stride[1])
            grid = (ceil_div(n * phase_rows * phase_cols, config.block_cols), ceil_div(c_group, config.block_rows),
                    groups)
            launch(kernel, grid, THREADS, *common, phase_h, phase_w, phase_rows, phase_cols,
                   rows_h[0], cols_w[0], rows_h[1], cols_w[1], rows_h[2], cols_w[2], rows_h[3], cols_w[3],
                   rows_h[4], cols_w[4])


def weight_gradient_splits(tiles, steps):
    """How many blocks share one output tile's reduction: enough blocks to fill the GPU, each with work."""
    return max(1, min(MAX_SPLITS, ceil_div(TARGET_BLOCKS, tiles), ceil_div(steps, 4)))


def conv2d_backward_weight(grad_out, x, grad_weight, stride, padding, dilation, groups):
    _check_index_range(grad_out, x)
    if winograd.use_winograd(grad_weight.shape, stride, dilation, groups, grad_out.shape[2:],
                            grad_out.shape[0]):
        return winograd.conv2d_backward_weight(grad_out, x, grad_weight, padding)
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
    n, k, p, q = grad_out.shape
    launch(conv2d_bias_gradient, k, BIAS_THREADS, _flat(grad_out), grad_bias, n, k, p * q)


_vector = float32[::1]
_geometry_types = (int64,) * 16
PTX_SIGNATURES = (
    [(f"forward_{c.block_rows}x{c.block_cols}", forward_kernel(c),
      (_vector,) * 4 + _geometry_types + (int64,)) for _, c in CONFIGS]
    + [(f"backward_data_{c.block_rows}x{c.block_cols}", backward_data_kernel(c), (_vector,) * 3 + (int64,) * 26)
       for _, c in CONFIGS]
    + [(f"backward_weight_{c.block_rows}x{c.block_cols}", weight_gradient_kernel(c),
        (_vector,) * 3 + _geometry_types + (int64,)) for _, _, c in WEIGHT_CONFIGS]
    + [("backward_bias", conv2d_bias_gradient, (_vector, _vector, int64, int64, int64))]
    + winograd.PTX_SIGNATURES
)
