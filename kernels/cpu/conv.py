"""2-D convolution (NCHW) in NumPy: im2col by stride tricks, then BLAS. The reference for kernels/cuda/conv.py.

Geometry arrives already resolved by kernels/conv.py: stride and dilation as (h, w) pairs, padding as
(top, bottom, left, right) so that PyTorch's asymmetric 'same' padding is expressible. The only Python
loops are over the R*S filter taps (col2im) and over groups in the depthwise shortcut.
"""
import numpy as np
from numpy.lib.stride_tricks import as_strided


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


def _columns(x, kernel_hw, stride, padding, dilation, groups, out_hw):
    """The im2col matrix, one per image and group: (N, G, C/G*R*S, P*Q), contiguous."""
    n, c = x.shape[:2]
    windows = _windows(_padded(x, padding), kernel_hw, stride, dilation, out_hw)
    return windows.reshape(n, groups, c // groups * kernel_hw[0] * kernel_hw[1], out_hw[0] * out_hw[1])


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
    else:
        columns = _columns(x, (r, s), stride, padding, dilation, groups, out_hw)
        y = np.matmul(weight.reshape(groups, k // groups, c_group * r * s), columns).reshape((n, k) + out_hw)
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
    columns = _columns(x, (r, s), stride, padding, dilation, groups, out_hw)
    grad_groups = grad_out.reshape(n, groups, k // groups, -1)
    if groups == 1:
        # One GEMM reducing over N*P*Q: (K, N*PQ) @ (N*PQ, C*R*S).
        grad_weight = np.tensordot(grad_groups[:, 0], columns[:, 0], axes=([0, 2], [0, 2]))
    else:
        grad_weight = np.matmul(grad_groups, columns.transpose(0, 1, 3, 2)).sum(axis=0)
    return grad_weight.reshape(weight_shape)


def conv2d_backward_input(grad_out, weight, input_shape, stride, padding, dilation, groups):
    """col2im: the column gradient W^T @ grad_out, scattered back tap by tap onto the padded input."""
    n, c, h, w = input_shape
    k, c_group, r, s = weight.shape
    out_h, out_w = grad_out.shape[2:]
    top, bottom, left, right = padding
    grad_padded = np.zeros((n, c, h + top + bottom, w + left + right), grad_out.dtype)
    if _is_depthwise(weight, groups):
        grad_columns = None
    else:
        weight_t = weight.reshape(groups, k // groups, c_group * r * s).transpose(0, 2, 1)
        grad_columns = np.matmul(weight_t, grad_out.reshape(n, groups, k // groups, out_h * out_w))
        grad_columns = grad_columns.reshape(n, c, r, s, out_h, out_w)
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
                grad_padded[:, :, rows, cols] += grad_columns[:, :, tap_r, tap_s]
    return np.ascontiguousarray(grad_padded[:, :, top:top + h, left:left + w])
