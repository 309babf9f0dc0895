"""Gradient utilities: clip_grad_norm_ as torch.nn.utils has it."""
import math

from kernels import backend

from .tensor import Tensor


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale the gradients of `parameters` in place so that their joint norm is at most `max_norm`.

    Returns the joint norm before clipping, as a Python float. Like torch, the gradients are
    multiplied by min(1, max_norm / (norm + 1e-6)).
    """
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    grads = [p.grad.data for p in parameters if p.grad is not None]
    max_norm, norm_type = float(max_norm), float(norm_type)
    if not grads:
        return 0.0
    xp = backend.array_module(grads[0])
    if norm_type == math.inf:
        norms = [xp.max(xp.abs(g)) for g in grads]
        total = float(xp.max(xp.stack(norms)))
    else:
        norms = [xp.linalg.norm(g.reshape(-1), ord=norm_type) for g in grads]
        total = float(xp.linalg.norm(xp.stack(norms), ord=norm_type))  # one host sync for all parameters
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"clip_grad_norm_: the total norm of order {norm_type} of the gradients is {total}; "
                           f"set error_if_nonfinite=False to clip anyway")
    scale = max_norm / (total + 1e-6)
    if not scale >= 1.0:  # also a NaN norm, which (as in torch) turns the gradients into NaN
        for g in grads:
            g *= g.dtype.type(scale)
    return total
