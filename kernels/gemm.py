"""Public GEMM: C = activation(alpha * op(A) @ op(B) + beta * C + bias); validate, then run where the inputs live."""
from . import backend
from ._checks import check_ndim, check_out, empty, float_dtype
from .cpu import gemm as cpu
from .cuda import gemm as gpu

__all__ = ["matmul"]

ACTIVATIONS = (None, "relu", "tanh", "sigmoid")


def _operand(x, trans):
    """(array with C-contiguous rows, trans flag) computing the same op(x).

    A transposed view of a C-contiguous array (x.T, swapaxes) becomes the array itself with the
    flag flipped, so no copy is made; other strided inputs are copied once.
    """
    if x.flags.c_contiguous:
        return x, trans
    swapped = x.T if x.ndim == 2 else x.swapaxes(-1, -2)
    if swapped.flags.c_contiguous:
        return swapped, not trans
    return backend.array_module(x).ascontiguousarray(x), trans


def _matrix_dims(x, trans):
    rows, cols = x.shape[-2], x.shape[-1]
    return (cols, rows) if trans else (rows, cols)


def matmul(a, b, *, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, out=None, bias=None, activation=None):
    """activation(alpha * op(a) @ op(b) + beta * out + bias), op(x) = x or x^T over the last two axes.

    Forms: 2-D @ 2-D -> (M, N); 3-D @ 3-D with equal batch -> (batch, M, N); 3-D @ 2-D or 2-D @ 3-D
    (the 2-D operand is shared by every batch entry, e.g. a weight) -> (batch, M, N).
    `out` receives the result (and is read as C when beta != 0, so it must be given then); `bias`
    has shape (N,) and is added after alpha/beta; `activation` in (None, 'relu', 'tanh', 'sigmoid')
    is applied last. Returns the result (`out` itself when given). On the GPU `out` must not
    overlap `a` or `b`. A transposed view (x.T) costs no copy: it is passed as the C-contiguous array
    it views, with the trans flag flipped.
    """
    device = backend.device_of("matmul", a, b, out, bias)
    dtype = float_dtype("matmul", device, a=a, b=b, out=out, bias=bias)
    check_ndim("matmul", "a", a, 2, 3)
    check_ndim("matmul", "b", b, 2, 3)
    m, k = _matrix_dims(a, trans_a)
    k_b, n = _matrix_dims(b, trans_b)
    if k != k_b:
        raise ValueError(f"matmul: inner dimensions must match, got op(a) {m}x{k} and op(b) {k_b}x{n} "
                         f"(shapes {tuple(a.shape)}, {tuple(b.shape)}, trans_a={trans_a}, trans_b={trans_b})")
    if a.ndim == 3 and b.ndim == 3 and a.shape[0] != b.shape[0]:
        raise ValueError(f"matmul: batched a and b must have the same batch size, got {a.shape[0]} and {b.shape[0]}")
    shape = (m, n) if a.ndim == 2 and b.ndim == 2 else (a.shape[0] if a.ndim == 3 else b.shape[0], m, n)
    if activation not in ACTIVATIONS:
        raise ValueError(f"matmul: activation must be one of {ACTIVATIONS}, got {activation!r}")
    if bias is not None and tuple(bias.shape) != (n,):
        raise ValueError(f"matmul: bias must have shape ({n},), got {tuple(bias.shape)}")
    alpha, beta = float(alpha), float(beta)
    if out is None:
        if beta != 0.0:
            raise ValueError(f"matmul: beta={beta} reads C from out, but out was not given")
    else:
        check_out("matmul", out, shape, dtype, a)
    a, trans_a = _operand(a, trans_a)
    b, trans_b = _operand(b, trans_b)
    if bias is not None and not bias.flags.c_contiguous:
        bias = backend.array_module(bias).ascontiguousarray(bias)
    if device == "cpu":
        result = cpu.matmul(a, b, trans_a, trans_b, alpha, beta, out, bias, activation)
        return result if out is None else out
    if out is None:
        out = empty(a, shape)
    gpu.matmul(a, b, trans_a, trans_b, alpha, beta, out, bias, activation)
    return out
