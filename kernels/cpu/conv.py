"""2-D convolution (NCHW) in NumPy: im2col by stride tricks, then BLAS. The reference for kernels/cuda/conv.py.

Geometry arrives already resolved by kernels/conv.py: stride and dilation as (h, w) pairs, padding as
(top, bottom, left, right) so that PyTorch's asymmetric 'same' padding is expressible. The only Python
loops are over the R*S filter taps (col2im, depthwise, shifted copies). Large images multiply one image
at a time (a batched matmul over (N, C*R*S, P*Q) columns); small ones lay the whole batch out as one
(C*R*S, N*P*Q) matrix so that one GEMM call does the work instead of N tiny ones. Small, narrow images
(outputs under 32 wide) at stride 1 build that matrix from R*S contiguous shifted slices of the flattened
padded batch (long memcpy-like runs instead of gathers of Q elements), computing the few positions between
images too and dropping them afterwards. The stride-1 data gradient is a convolution of the padded
grad_out unless the input is at least twice the output and the output 16 or more wide (then col2im).
Stride-1 3x3 layers with 16 channels or more on maps of 64 pixels or more (most CRNN layers, and the data
gradient of such layers, which is one) use Winograd F(2x2, 3x3) (conv_winograd.py): 16 batched GEMMs
with 4/9 of the multiplies, for the weight gradient too. Each rule's measurements are beside its constant below.
"""
import numpy as np
from numpy.lib.stride_tricks import as_strided

from . import conv_winograd as winograd


def output_size(size, kernel, stride, pad_before, pad_after, dilation):
    return (size + pad_before + pad_after - dilation * (kernel - 1) - 1) // stride + 1


def _padded(x, padding):
    top, bottom, left, right = padding
    if top == bottom == left == right == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))


def _windows(x_padded, kernel_hw, stride, dilation, out_hw):
    """Read-only view (N, C, R, S, P, Q): [n, c, r, s, p, q] = x_padded[n, c, p*sh + r*dh, q*sw + s*dw]."""
    n, c = x_padded.shape[:2]
    step_n, step_c, step_h, step_w = x_padded.strides
    return as_strided(x_padded, (n, c, kernel_hw[0], kernel_hw[1], out_hw[0], out_hw[1]),
                      (step_n, step_c, dilation[0] * step_h, dilation[1] * step_w,
                       stride[0] * step_h, stride[1] * step_w), writeable=False)


BATCHED_MIN_PIXELS = 256   # from this many output pixels per image on, one GEMM per image is efficient
CHUNK_BYTES = 4 * 2**20    # im2col columns built and multiplied a few images at a time, while in cache


def _column_chunks(x, kernel_hw, stride, padding, dilation, groups, out_hw):
    """Yield (start, stop, columns (stop-start, G, C/G*R*S, P*Q)) over the batch, one reused buffer."""
    n, c = x.shape[:2]
    windows = _windows(_padded(x, padding), kernel_hw, stride, dilation, out_hw)
    rows, pixels = c // groups * kernel_hw[0] * kernel_hw[1], out_hw[0] * out_hw[1]
    chunk = max(1, min(n, CHUNK_BYTES // (groups * rows * pixels * x.itemsize)))
    buffer = np.empty((chunk,) + windows.shape[1:], x.dtype)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        np.copyto(buffer[:stop - start], windows[start:stop])
        yield start, stop, buffer[:stop - start].reshape(stop - start, groups, rows, pixels)


def _batch_columns(x, kernel_hw, stride, padding, dilation, groups, out_hw):
    """The im2col matrix of the whole batch, per group: (G, C/G*R*S, N*P*Q), contiguous."""
    n, c = x.shape[:2]
    windows = _windows(_padded(x, padding), kernel_hw, stride, dilation, out_hw).transpose(1, 2, 3, 0, 4, 5)
    return windows.reshape(groups, c // groups * kernel_hw[0] * kernel_hw[1], n * out_hw[0] * out_hw[1])


def _flat_columns(x, kernel_hw, padding, dilation, groups, out_hw):
    """Stride 1, whole batch: columns (G, C/G*R*S, N*Hg*Wg) over a compact grid, and the grid (Hg, Wg).

    Each image sits in an Hg x Wg cell whose right/bottom zero band also serves as the next row's/image's
    left/top padding, so the flat batch needs max(top, bottom) rows and max(left, right) columns of
    zeros per image instead of their sums. Row (c, r, s) of the columns is that flat batch shifted by
    r*dh*Wg + s*dw: one contiguous copy per tap. Output (n, p, q) is grid position (n, p, q); positions
    with p >= P or q >= Q are garbage that the caller drops.
    """
    n, c, h, w = x.shape
    top, bottom, left, right = padding
    grid_h = max(h + max(top, bottom), out_hw[0])
    grid_w = max(w + max(left, right), out_hw[1])
    r, s = kernel_hw
    length = n * grid_h * grid_w
    lead = top * grid_w + left
    reach = (r - 1) * dilation[0] * grid_w + (s - 1) * dilation[1]
    flat = np.zeros((c, max(length + reach, lead + length)), x.dtype)
    flat[:, lead:lead + length].reshape(c, n, grid_h, grid_w)[:, :, :h, :w] = x.transpose(1, 0, 2, 3)
    columns = np.empty((c, r * s, length), x.dtype)
    for tap_r in range(r):
        for tap_s in range(s):
            offset = tap_r * dilation[0] * grid_w + tap_s * dilation[1]
            columns[:, tap_r * s + tap_s] = flat[:, offset:offset + length]
    return columns.reshape(groups, c // groups * r * s, length), (grid_h, grid_w)


# Winograd (conv_winograd.py) measured (one thread, forward and both gradients): from 16 channels it wins or ties, e.g. 32 -> 64
# channels on 6x45 maps 1.72 -> 1.39 ms forward, 16 -> 32 on 14x14 1.59 -> 1.28, 32 -> 64 on 8x8 1.91 -> 1.16;
# at 8 the transforms dominate. On 4x4 maps (4 tiles an image) the digits CNN's step gained nothing (3.1 ms
# either way at batch 64, 1.9 against 2.0 at 32).
WINOGRAD_MIN_CHANNELS = 16
WINOGRAD_MIN_PIXELS = 64


def _use_winograd(weight_shape, stride, dilation, groups, out_hw):
    k, c, r, s = weight_shape
    return ((r, s) == (3, 3) and tuple(stride) == (1, 1) and tuple(dilation) == (1, 1) and groups == 1
            and min(c, k) >= WINOGRAD_MIN_CHANNELS and min(out_hw) >= 2
            and out_hw[0] * out_hw[1] >= WINOGRAD_MIN_PIXELS)


# The flat columns hold (H + pad) x (W + pad) grid positions an image for P x Q outputs, but copy each tap
# in one run; im2col copies runs of Q. Measured: flat wins while Q is short (4x4 to 14x14 maps), the two
# tie for Q of 20-36, im2col wins beyond (6x45 maps: 1.80 -> 1.64 ms; 3x46 maps under a 3x2 kernel, 1x45
# outputs: 1.00 -> 0.36 ms).
FLAT_MAX_WIDTH = 32


def _use_flat(stride, out_hw):
    return (tuple(stride) == (1, 1) and out_hw[0] * out_hw[1] < BATCHED_MIN_PIXELS
            and out_hw[1] < FLAT_MAX_WIDTH)


def _out_hw(x_hw, kernel_hw, stride, padding, dilation):
    return (output_size(x_hw[0], kernel_hw[0], stride[0], padding[0], padding[1], dilation[0]),
            output_size(x_hw[1], kernel_hw[1], stride[1], padding[2], padding[3], dilation[1]))


def _is_depthwise(weight, groups):
    return groups > 1 and weight.shape[1] == 1 and weight.shape[0] == groups


def conv2d(x, weight, bias, stride, padding, dilation, groups):
    n, c, h, w = x.shape
    k, c_group, r, s = weight.shape
    out_hw = _out_hw((h, w), (r, s), stride, padding, dilation)
    if _is_depthwise(weight, groups):
        # One channel per group: a GEMM per (image, channel) would be 1 x R*S, so sum the taps instead.
        windows = _windows(_padded(x, padding), (r, s), stride, dilation, out_hw)
        y = np.zeros((n, k) + out_hw, x.dtype)
        for tap_r in range(r):
            for tap_s in range(s):
                y += windows[:, :, tap_r, tap_s] * weight[None, :, 0, tap_r, tap_s, None, None]
    elif _use_winograd(weight.shape, stride, dilation, groups, out_hw):
        return winograd.conv3x3(x, weight, bias, padding, out_hw, CHUNK_BYTES)
    elif _use_flat(stride, out_hw):
        columns, grid_hw = _flat_columns(x, (r, s), padding, dilation, groups, out_hw)
        y = np.matmul(weight.reshape(groups, k // groups, c_group * r * s), columns).reshape((k, n) + grid_hw)
        y = np.ascontiguousarray(y[:, :, :out_hw[0], :out_hw[1]].transpose(1, 0, 2, 3))
    elif out_hw[0] * out_hw[1] >= BATCHED_MIN_PIXELS:
        y = np.empty((n, k) + out_hw, x.dtype)
        weight_groups = weight.reshape(groups, k // groups, c_group * r * s)
        for start, stop, columns in _column_chunks(x, (r, s), stride, padding, dilation, groups, out_hw):
            np.matmul(weight_groups, columns, out=y[start:stop].reshape(columns.shape[:2] + (k // groups, -1)))
    else:
        columns = _batch_columns(x, (r, s), stride, padding, dilation, groups, out_hw)
        y = np.matmul(weight.reshape(groups, k // groups, c_group * r * s), columns)
        y = np.ascontiguousarray(y.reshape((k, n) + out_hw).transpose(1, 0, 2, 3))
    if bias is not None:
        y += bias[None, :, None, None]
    return y


def conv2d_backward_bias(grad_out):
    return grad_out.sum(axis=(0, 2, 3))


def conv2d_backward_weight(grad_out, x, weight_shape, stride, padding, dilation, groups):
    k, c_group, r, s = weight_shape
    n = x.shape[0]
    out_hw = grad_out.shape[2:]
    if groups > 1 and c_group == 1 and k == groups:
        windows = _windows(_padded(x, padding), (r, s), stride, dilation, out_hw)
        grad_weight = np.empty(weight_shape, x.dtype)
        for tap_r in range(r):
            for tap_s in range(s):
                grad_weight[:, 0, tap_r, tap_s] = np.einsum("nkpq,nkpq->k", grad_out, windows[:, :, tap_r, tap_s])
        return grad_weight
    if _use_winograd(weight_shape, stride, dilation, groups, out_hw):
        return winograd.weight_gradient3x3(grad_out, x, padding, out_hw, CHUNK_BYTES)
    if _use_flat(stride, out_hw):
        columns, grid_hw = _flat_columns(x, (r, s), padding, dilation, groups, out_hw)
        grid = np.zeros((k, n) + grid_hw, x.dtype)
        grid[:, :, :out_hw[0], :out_hw[1]] = grad_out.transpose(1, 0, 2, 3)
        grad_weight = np.matmul(grid.reshape(groups, k // groups, -1), columns.transpose(0, 2, 1))
    elif out_hw[0] * out_hw[1] >= BATCHED_MIN_PIXELS:
        # Per image (K, PQ) @ (PQ, C*R*S), BLAS reading the columns transposed in place, then summed.
        grad_groups = grad_out.reshape(n, groups, k // groups, -1)
        grad_weight = np.zeros((groups, k // groups, c_group * r * s), x.dtype)
        for start, stop, columns in _column_chunks(x, (r, s), stride, padding, dilation, groups, out_hw):
            grad_weight += np.matmul(grad_groups[start:stop], columns.transpose(0, 1, 3, 2)).sum(axis=0)
    else:
        # One GEMM per group reducing over the whole batch: (K, N*PQ) @ (N*PQ, C*R*S).
        columns = _batch_columns(x, (r, s), stride, padding, dilation, groups, out_hw)
        grad_groups = grad_out.reshape(n, groups, k // groups, -1).transpose(1, 2, 0, 3)
        grad_groups = grad_groups.reshape(groups, k // groups, -1)
        grad_weight = np.matmul(grad_groups, columns.transpose(0, 2, 1))
    return grad_weight.reshape(weight_shape)


def _pad_or_crop(x, padding):
    """Zero-pad (positive entries) or crop (negative entries) the last two axes by (top, bottom, left, right)."""
    top, bottom, left, right = padding
    x = x[:, :, max(0, -top):x.shape[2] - max(0, -bottom), max(0, -left):x.shape[3] - max(0, -right)]
    return _padded(x, (max(0, top), max(0, bottom), max(0, left), max(0, right)))


# The stride-1 data gradient as a convolution of the padded grad_out computes H*W outputs of C*K*R*S
# products each; col2im's GEMM computes P*Q of them, then scatters R*S taps of rows Q long. Measured:
# col2im wins once H*W >= 2 P*Q with rows of 16 or more (a 3x2 kernel over 3x46 maps: 1.08 -> 0.43 ms;
# 3x3 over 3x20: 0.27 -> 0.12), the convolution on narrower maps (3x3 over 4x4 to 6x6: 18-82 us against
# 34-121) and below that ratio.
FLIPPED_MAX_WORK = 2
COL2IM_MIN_WIDTH = 16


def conv2d_backward_input(grad_out, weight, input_shape, stride, padding, dilation, groups):
    """Stride 1 (unless the input is much larger than a wide output): a convolution of the padded grad_out
    with the flipped, transposed weights (no col2im).

    Otherwise col2im: the column gradient W^T @ grad_out, scattered back tap by tap onto the padded input.
    """
    n, c, h, w = input_shape
    k, c_group, r, s = weight.shape
    out_h, out_w = grad_out.shape[2:]
    top, bottom, left, right = padding
    if tuple(stride) == (1, 1) and (h * w < FLIPPED_MAX_WORK * out_h * out_w or out_w < COL2IM_MIN_WIDTH):
        extent_h, extent_w = dilation[0] * (r - 1), dilation[1] * (s - 1)
        flipped = weight.reshape(groups, k // groups, c_group, r, s)[:, :, :, ::-1, ::-1]
        flipped = np.ascontiguousarray(flipped.transpose(0, 2, 1, 3, 4)).reshape(c, k // groups, r, s)
        pads = (extent_h - top, h - out_h + top, extent_w - left, w - out_w + left)
        if min(pads) >= 0:
            return conv2d(grad_out, flipped, None, (1, 1), pads, dilation, groups)
        return conv2d(_pad_or_crop(grad_out, pads), flipped, None, (1, 1), (0, 0, 0, 0), dilation, groups)
    return _col2im_input_gradient(grad_out, weight, input_shape, stride, padding, dilation, groups)


def _col2im_input_gradient(grad_out, weight, input_shape, stride, padding, dilation, groups):
    n, c, h, w = input_shape
    k, c_group, r, s = weight.shape
    out_h, out_w = grad_out.shape[2:]
    top, bottom, left, right = padding
    grad_padded = np.zeros((n, c, h + top + bottom, w + left + right), grad_out.dtype)
    if _is_depthwise(weight, groups):
        grad_columns = None
    else:   # one GEMM a group over the whole batch (a GEMM an image is up to 2x slower at small maps)
        weight_t = weight.reshape(groups, k // groups, c_group * r * s).transpose(0, 2, 1)
        batch_columns = grad_out.reshape(n, groups, k // groups, out_h * out_w).transpose(1, 2, 0, 3)
        grad_columns = np.matmul(weight_t, batch_columns.reshape(groups, k // groups, n * out_h * out_w))
        grad_columns = grad_columns.reshape(c, r, s, n, out_h, out_w)   # (channel, taps, image, pixels)
    stride_h, stride_w = stride
    for tap_r in range(r):
        row = tap_r * dilation[0]
        rows = slice(row, row + stride_h * (out_h - 1) + 1, stride_h)
        for tap_s in range(s):
            col = tap_s * dilation[1]
            cols = slice(col, col + stride_w * (out_w - 1) + 1, stride_w)
            if grad_columns is None:
                grad_padded[:, :, rows, cols] += grad_out * weight[None, :, 0, tap_r, tap_s, None, None]
            else:
                grad_padded[:, :, rows, cols] += grad_columns[:, tap_r, tap_s].transpose(1, 0, 2, 3)
    return np.ascontiguousarray(grad_padded[:, :, top:top + h, left:left + w])
