"""conv2d on the GPU: launchers for the implicit-GEMM kernels of conv_forward.py, conv_backward_data.py and
conv_weight.py, for Winograd F(2x2, 3x3) (conv_winograd.py) on stride-1 3x3 layers with many channels,
where it does 4/9 of the multiplies, and for the explicit GEMM (conv_gemm.py: im2col + kernels.matmul) where
the implicit kernels would launch too few blocks (this module's PTX_SIGNATURES lists every kernel of the five).

Arrays arrive C-contiguous float32 from kernels/conv.py and are passed flat; the geometry (stride and
dilation pairs, padding as top/bottom/left/right, groups) is already checked there. Tile shapes are
chosen from the GEMM's row count (output channels per group, or input channels for backward-data) and
the number of blocks each tile gives.
"""
import math

from numba import float32, int32, int64

from .. import backend
from . import conv_gemm
from . import conv_winograd as winograd
from .conv_backward_data import backward_data_kernel, phase_taps
from .conv_forward import CONFIGS, THREADS, choose_config, forward_kernel
from .conv_weight import (BIAS_THREADS, WEIGHT_CONFIGS, choose_weight_config,
                          conv2d_bias_gradient, weight_gradient_kernel)
from .launch import batch_slices, ceil_div, launch, stream_scratch

TARGET_BLOCKS = 4 * 132       # enough blocks for a few waves on an H100/H200 (132 SMs)
MAX_SPLITS = 256
DETERMINISTIC_PARTIAL_FLOATS = 16 << 20   # 64 MiB of partial weight gradients at most (fewer splits beyond)
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


# Which algorithm a pass runs: Winograd where it takes the layer (conv_winograd.use_winograd), else the explicit
# GEMM (im2col + kernels.matmul) where conv_gemm.use_gemm says the implicit kernel would leave SMs idle, judged by
# the blocks that kernel would launch, computed below from the same tile choice and grid as its launch.
def _forward_launch(k_group, columns, groups):
    """(tile config, grid) of the implicit forward kernel."""
    config = choose_config(k_group, columns, groups)
    return config, (ceil_div(columns, config.block_cols), ceil_div(k_group, config.block_rows), groups)


def forward_algorithm(x_shape, weight_shape, out_hw, stride, dilation, groups):
    """'winograd', 'gemm' or 'implicit' for conv2d of these shapes."""
    if winograd.use_winograd(weight_shape, stride, dilation, groups, out_hw, x_shape[0]):
        return "winograd"
    k, c_group, r, s = weight_shape
    columns = x_shape[0] * out_hw[0] * out_hw[1]
    _, grid = _forward_launch(k // groups, columns, groups)
    reduction = c_group * r * s
    use = conv_gemm.use_gemm(groups, columns * reduction, columns, reduction, math.prod(grid))
    return "gemm" if use else "implicit"


def conv2d(x, weight, bias, y, stride, padding, dilation, groups):
    _check_index_range(x, y)
    algorithm = forward_algorithm(x.shape, weight.shape, y.shape[2:], stride, dilation, groups)
    if algorithm == "winograd":
        return winograd.conv2d(x, weight, bias, y, padding)
    if algorithm == "gemm":
        return conv_gemm.conv2d(x, weight, bias, y, stride, padding, dilation)
    config, grid = _forward_launch(weight.shape[0] // groups, y.shape[0] * y.shape[2] * y.shape[3], groups)
    kernel = forward_kernel(config)
    has_bias = 0 if bias is None else 1
    # An absent bias: the kernels take a fixed argument list and read bias only when has_bias, so any
    # float32 array stands in (no allocation and fill on every call).
    bias = _flat(weight) if bias is None else bias
    launch(kernel, grid, THREADS, _flat(x), _flat(weight), bias, _flat(y),
           *_geometry_arguments(x.shape, weight.shape, y.shape[2:], stride, padding, dilation, groups), has_bias)


def _backward_data_config(x_shape, weight_shape, stride, groups):
    n, _, h, w = x_shape
    return choose_config(weight_shape[1], n * h * w // (stride[0] * stride[1]), groups)


def _phase_grid(config, n, phase_rows, phase_cols, c_group, groups):
    """The grid of the implicit backward-data kernel's launch for one stride phase."""
    return (ceil_div(n * phase_rows * phase_cols, config.block_cols), ceil_div(c_group, config.block_rows), groups)


def backward_input_algorithm(x_shape, weight_shape, out_hw, stride, dilation, groups):
    """'winograd', 'gemm' or 'implicit' for the input gradient (judged, for Winograd, by what this pass computes,
    grad_x: the forward's output size differs only for padding 0)."""
    n, _, h, w = x_shape
    if winograd.use_winograd(weight_shape, stride, dilation, groups, (h, w), n):
        return "winograd"
    k, c_group, r, s = weight_shape
    config = _backward_data_config(x_shape, weight_shape, stride, groups)
    blocks = sum(math.prod(_phase_grid(config, n, ceil_div(h - phase_h, stride[0]), ceil_div(w - phase_w, stride[1]),
                                       c_group, groups))
                 for phase_h in range(min(stride[0], h)) for phase_w in range(min(stride[1], w)))
    rows = n * out_hw[0] * out_hw[1]
    use = conv_gemm.use_gemm(groups, rows * c_group * r * s, rows, k // groups * r * s, blocks)
    return "gemm" if use else "implicit"


def conv2d_backward_input(grad_out, weight, grad_x, stride, padding, dilation, groups):
    """One launch per stride phase (a single one for stride 1); every pixel of grad_x is written once."""
    _check_index_range(grad_out, grad_x)
    algorithm = backward_input_algorithm(grad_x.shape, weight.shape, grad_out.shape[2:], stride, dilation, groups)
    if algorithm == "winograd":
        return winograd.conv2d_backward_input(grad_out, weight, grad_x, padding)
    if algorithm == "gemm":
        return conv_gemm.conv2d_backward_input(grad_out, weight, grad_x, stride, padding, dilation)
    n, c, h, w = grad_x.shape
    k, c_group, r, s = weight.shape
    config = _backward_data_config(grad_x.shape, weight.shape, stride, groups)
    kernel = backward_data_kernel(config)
    common = (_flat(grad_out), _flat(weight), _flat(grad_x), n, c, h, w, k, r, s, grad_out.shape[2],
              grad_out.shape[3], groups, stride[0], stride[1])
    for phase_h in range(min(stride[0], h)):
        rows_h = phase_taps(phase_h, padding[0], stride[0], dilation[0], r)
        phase_rows = ceil_div(h - phase_h, stride[0])
        for phase_w in range(min(stride[1], w)):
            cols_w = phase_taps(phase_w, padding[2], stride[1], dilation[1], s)
            phase_cols = ceil_div(w - phase_w, stride[1])
            grid = _phase_grid(config, n, phase_rows, phase_cols, c_group, groups)
            launch(kernel, grid, THREADS, *common, phase_h, phase_w, phase_rows, phase_cols,
                   rows_h[0], cols_w[0], rows_h[1], cols_w[1], rows_h[2], cols_w[2], rows_h[3], cols_w[3],
                   rows_h[4], cols_w[4])


def weight_gradient_splits(tiles, steps):
    """How many blocks share one output tile's reduction: enough blocks to fill the GPU, each with work."""
    return max(1, min(MAX_SPLITS, ceil_div(TARGET_BLOCKS, tiles), ceil_div(steps, 4)))


def _weight_launch(weight_shape, groups):
    """(tile config, grid before the reduction's splits) of the implicit weight-gradient kernel."""
    k_group = weight_shape[0] // groups
    columns = weight_shape[1] * weight_shape[2] * weight_shape[3]
    config = choose_weight_config(k_group, columns)
    return config, (ceil_div(columns, config.block_cols), ceil_div(k_group, config.block_rows))


def backward_weight_algorithm(x_shape, weight_shape, out_hw, stride, dilation, groups):
    """'winograd', 'gemm' (only when forced) or 'implicit' for the weight gradient. The implicit kernel splits its
    pixel reduction over blocks already; on an H200 (sixteenth session) it took the CRNN's 3x2 layer's weight
    gradient in 0.246 ms against 0.279 for im2col + GEMM, so the explicit GEMM runs it only when forced."""
    if winograd.use_winograd(weight_shape, stride, dilation, groups, out_hw, x_shape[0], weight_gradient=True):
        return "winograd"
    columns = x_shape[0] * out_hw[0] * out_hw[1] * weight_shape[1] * weight_shape[2] * weight_shape[3]
    if winograd.force_algorithm == "gemm" and conv_gemm.eligible(groups, columns):
        return "gemm"
    return "implicit"


def conv2d_backward_weight(grad_out, x, grad_weight, stride, padding, dilation, groups):
    _check_index_range(grad_out, x)
    algorithm = backward_weight_algorithm(x.shape, grad_weight.shape, grad_out.shape[2:], stride, dilation, groups)
    if algorithm == "winograd":
        return winograd.conv2d_backward_weight(grad_out, x, grad_weight, padding)
    if algorithm == "gemm":
        return conv_gemm.conv2d_backward_weight(grad_out, x, grad_weight, stride, padding, dilation)
    config, grid_xy = _weight_launch(grad_weight.shape, groups)
    pixels = grad_out.shape[0] * grad_out.shape[2] * grad_out.shape[3]
    splits = weight_gradient_splits(grid_xy[0] * grid_xy[1] * groups, ceil_div(pixels, config.block_k))
    target, partial_size = _flat(grad_weight), 0
    if splits > 1 and backend.are_deterministic_algorithms_enabled():
        # each split stores its partial gW, then one fixed-order sum: the same bits every run
        splits = max(1, min(splits, DETERMINISTIC_PARTIAL_FLOATS // grad_weight.size))
        if splits > 1:
            partial_size = grad_weight.size
            target = _weight_scratch(splits * partial_size)[:splits * partial_size]
    elif splits > 1:
        grad_weight[...] = 0  # blocks add their partial sums atomically
    launch(weight_gradient_kernel(config), grid_xy + (groups * splits,), THREADS,
           _flat(grad_out), _flat(x), target,
           *_geometry_arguments(x.shape, grad_weight.shape, grad_out.shape[2:], stride, padding, dilation, groups),
           splits, partial_size)
    if partial_size:
        backend.array_module(target).sum(target.reshape(splits, partial_size), axis=0, out=_flat(grad_weight))


_weight_buffers = {}   # (array module, stream pointer) -> the deterministic weight gradient's partials


def _weight_scratch(size):
    return stream_scratch(_weight_buffers, size, 0)[0]


def conv2d_backward_bias(grad_out, grad_bias):
    """Per-channel sums over (N, P, Q), each channel's batch split over grid y (launch.batch_slices)."""
    n, k, p, q = grad_out.shape
    images_per_slice, slices = batch_slices(n, k, p * q, BIAS_THREADS)
    partials, counters = _bias_scratch(k * slices if slices > 1 else 0)
    launch(conv2d_bias_gradient, (k, slices), BIAS_THREADS, _flat(grad_out), grad_bias, partials, counters, n, k,
           p * q, images_per_slice)


_bias_buffers = {}   # (array module, stream pointer) -> the bias kernel's partial sums and channel counters


def _bias_scratch(size):
    """Partial sums and zeroed channel counters (the kernel resets them) of at least `size` entries
    (launch.stream_scratch: one-element stand-ins for size 0)."""
    return stream_scratch(_bias_buffers, size, size)


_vector = float32[::1]
_geometry_types = (int64,) * 16
PTX_SIGNATURES = (
    [(f"forward_{c.block_rows}x{c.block_cols}", forward_kernel(c),
      (_vector,) * 4 + _geometry_types + (int64,)) for _, c in CONFIGS]
    + [(f"backward_data_{c.block_rows}x{c.block_cols}", backward_data_kernel(c), (_vector,) * 3 + (int64,) * 26)
       for _, c in CONFIGS]
    + [(f"backward_weight_{c.block_rows}x{c.block_cols}", weight_gradient_kernel(c),
        (_vector,) * 3 + _geometry_types + (int64, int64)) for _, _, c in WEIGHT_CONFIGS]
    + [("backward_bias", conv2d_bias_gradient, (_vector, _vector, _vector, int32[::1], int64, int64, int64, int64))]
    + winograd.PTX_SIGNATURES
    + conv_gemm.PTX_SIGNATURES
)
