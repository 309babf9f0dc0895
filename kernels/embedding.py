"""Public embedding lookup and its weight gradient (torch.nn.functional.embedding's semantics):
validate, then run where the arrays live. CUDA runs float32; the CPU path float32 and float64."""
import numpy as np

from . import backend
from ._checks import check_ndim, check_out, contiguous, empty, float_dtype
from .cpu import embedding as cpu
from .cuda import embedding as gpu

__all__ = ["embedding", "embedding_backward"]

def is_index_dtype(dtype):
    """torch's embedding takes Int and Long indices only (by kind and size: NumPy's longlong is int64 too)."""
    return dtype.kind == "i" and dtype.itemsize in (4, 8)


def _check_indices(op, indices):
    if not is_index_dtype(indices.dtype):
        raise TypeError(f"{op}: indices must be int32 or int64, got {indices.dtype}")


def _padding_index(op, padding_idx, num_embeddings):
    """padding_idx in [0, num_embeddings), negative counted from the end as torch does; -1 for None."""
    if padding_idx is None:
        return -1
    if isinstance(padding_idx, bool) or not isinstance(padding_idx, (int, np.integer)):
        raise TypeError(f"{op}: padding_idx must be None or an int, got {padding_idx!r}")
    if not -num_embeddings <= padding_idx < num_embeddings:
        raise ValueError(f"{op}: padding_idx must be within [-{num_embeddings}, {num_embeddings}) "
                         f"(num_embeddings), got {padding_idx}")
    return int(padding_idx) % num_embeddings


def _raise_out_of_range(op, num_embeddings):
    raise IndexError(f"{op}: indices hold a value outside [0, {num_embeddings}) (num_embeddings); "
                     f"negative indices are not allowed")


def _check_range_on_host(op, indices, num_embeddings):
    """The range check on the host (NumPy; on the GPU only where no kernel thread looks at the indices)."""
    if indices.size and (int(indices.min()) < 0 or int(indices.max()) >= num_embeddings):
        _raise_out_of_range(op, num_embeddings)


def embedding(weight, indices, padding_idx=None):
    """weight[indices]: weight (num_embeddings, D), integer indices of any shape -> indices.shape + (D,).

    padding_idx is only checked here (the padding row is looked up as it is; embedding_backward gives it no
    gradient). An index outside [0, num_embeddings) raises IndexError; on the GPU that verdict is one small
    device-to-host read, skipped while a CUDA graph is being captured (a bad index then gives a row of zeros).
    """
    op = "embedding"
    device = backend.device_of(op, weight, indices)
    float_dtype(op, device, weight=weight)
    check_ndim(op, "weight", weight, 2)
    _check_indices(op, indices)
    num_embeddings = weight.shape[0]
    _padding_index(op, padding_idx, num_embeddings)
    if device == "cpu":
        _check_range_on_host(op, indices, num_embeddings)
        return cpu.embedding(weight, indices)
    weight = contiguous(weight)
    out = empty(weight, tuple(indices.shape) + (weight.shape[1],))
    bad = gpu.embedding(weight, contiguous(indices).reshape(-1), out.reshape(indices.size, weight.shape[1]))
    if not backend.is_capturing():
        if out.size == 0:    # (embedding_dim 0: no thread ran)
            _check_range_on_host(op, indices, num_embeddings)
        elif int(bad[0]):
            _raise_out_of_range(op, num_embeddings)
    return out


def embedding_backward(grad_output, indices, num_embeddings, padding_idx=None, scale_grad_by_freq=False,
                       check_indices=True, *, grad_weight_out=None):
    """Gradient of embedding w.r.t. weight: grad_output (indices.shape + (D,)) summed into the rows its indices
    name -> (num_embeddings, D). The padding_idx row gets zero; scale_grad_by_freq divides each contribution by
    how often its index occurs in `indices`. On the GPU the sum uses float32 atomics (the order of the additions,
    so the last bits, may differ between runs where an index repeats).

    check_indices=False skips, on the GPU, the range check that waits for a device-to-host read: for callers
    whose forward already checked the same indices. Unchecked, an out-of-range index adds nothing. The CPU path
    always checks. grad_weight_out (C-contiguous (num_embeddings, D)): the array that receives the gradient and is
    returned (on the GPU the kernel adds into it after zeroing it: nn puts it straight into a flat optimizer's
    gradient buffer).
    """
    op = "embedding_backward"
    device = backend.device_of(op, grad_output, indices, grad_weight_out)
    float_dtype(op, device, grad_output=grad_output)
    _check_indices(op, indices)
    if isinstance(num_embeddings, bool) or not isinstance(num_embeddings, (int, np.integer)) or num_embeddings < 0:
        raise ValueError(f"{op}: num_embeddings must be a non-negative integer, got {num_embeddings!r}")
    num_embeddings = int(num_embeddings)
    if grad_output.ndim != indices.ndim + 1 or tuple(grad_output.shape[:-1]) != tuple(indices.shape):
        expected = ", ".join([*map(str, indices.shape), "embedding_dim"])
        raise ValueError(f"{op}: grad_output must have shape indices.shape + (embedding_dim,) = ({expected}), "
                         f"got {tuple(grad_output.shape)}")
    padding = _padding_index(op, padding_idx, num_embeddings)
    scale = bool(scale_grad_by_freq)
    dim = grad_output.shape[-1]
    if grad_weight_out is not None:
        check_out(op, grad_weight_out, (num_embeddings, dim), grad_output.dtype, grad_output, "grad_weight_out")
    if device == "cpu":
        _check_range_on_host(op, indices, num_embeddings)
        grad_weight = cpu.embedding_backward(grad_output, indices, num_embeddings, padding, scale)
        if grad_weight_out is None:
            return grad_weight
        grad_weight_out[...] = grad_weight
        return grad_weight_out
    grad_weight, bad = gpu.embedding_backward(contiguous(grad_output).reshape(indices.size, dim),
                                              contiguous(indices).reshape(-1), num_embeddings, padding, scale,
                                              grad_weight_out)
    if check_indices and not backend.is_capturing():
        if grad_output.size == 0:    # (embedding_dim 0: no thread ran)
            _check_range_on_host(op, indices, num_embeddings)
        elif int(bad[0]):
            _raise_out_of_range(op, num_embeddings)
    return grad_weight
