"""GEMM in NumPy: np.matmul (the machine's BLAS) plus an in-place epilogue.

The reference for kernels/cuda/gemm.py. Transposes are NumPy views, which np.matmul hands to BLAS
as transpose flags rather than copies; the epilogue works in place on the output so that the plain
case costs one BLAS call and nothing else.
"""
import numpy as np


def op(x, trans):
    """x or x^T over the last two axes (a view)."""
    return np.swapaxes(x, -1, -2) if trans else x


def activate(y, activation):
    """Apply the activation to `y` in place."""
    if activation == "relu":
        np.maximum(y, y.dtype.type(0), out=y)
    elif activation == "tanh":
        np.tanh(y, out=y)
    elif activation == "sigmoid":
        # sigmoid(y) = (1 + tanh(y / 2)) / 2: stable for any y and in place (no exp overflow).
        half = y.dtype.type(0.5)
        np.multiply(y, half, out=y)
        np.tanh(y, out=y)
        np.multiply(y, half, out=y)
        np.add(y, half, out=y)
    return y


def matmul(a, b, trans_a, trans_b, alpha, beta, out, bias, activation):
    """activation(alpha * op(a) @ op(b) + beta * out + bias), written into `out` (allocated when None).

    Shapes were checked by the public op; `out` is C-contiguous with the result's shape.
    """
    if a.ndim == 3 and b.ndim == 2 and not trans_a and a.flags.c_contiguous:
        # A shared weight: one (batch*M) x K GEMM instead of `batch` small ones.
        result_shape = (a.shape[0], a.shape[1], b.shape[0] if trans_b else b.shape[1])
        flat_out = None if out is None else out.reshape(result_shape[0] * result_shape[1], result_shape[2])
        flat = matmul(a.reshape(a.shape[0] * a.shape[1], a.shape[2]), b, False, trans_b, alpha, beta, flat_out,
                      bias, activation)   # (explicit rows: -1 is ambiguous for an empty K)
        return flat.reshape(result_shape)
    a_op, b_op = op(a, trans_a), op(b, trans_b)
    if beta == 0.0:
        out = np.matmul(a_op, b_op, out=out)
        if alpha != 1.0:
            np.multiply(out, out.dtype.type(alpha), out=out)
    else:
        product = np.matmul(a_op, b_op)
        if beta != 1.0:
            np.multiply(out, out.dtype.type(beta), out=out)
        if alpha != 1.0:
            np.multiply(product, product.dtype.type(alpha), out=product)
        np.add(out, product, out=out)
    if bias is not None:
        np.add(out, bias, out=out)
    if activation is not None:
        activate(out, activation)
    return out
