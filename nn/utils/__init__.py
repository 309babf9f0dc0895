"""Gradient utilities: clip_grad_norm_ and clip_grad_value_ as torch.nn.utils has them; parameters_to_vector and
vector_to_parameters (convert_parameters.py)."""
import functools
import math
import numbers
import operator

import numpy as np

from kernels import backend

from ..autograd import note_in_place
from ..tensor import Tensor
from .convert_parameters import parameters_to_vector, vector_to_parameters  # noqa: F401


def _gradient_arrays(parameters):
    """The gradients of `parameters` (skipping those without one) as arrays to work on in place: with an
    optimizer made with flat=True whose group is exactly these parameters, that group's one gradient buffer."""
    grads = [p.grad.data for p in parameters if p.grad is not None]
    slot = getattr(parameters[0], "_grad_slot", None) if parameters else None
    packed = slot[2]() if slot is not None else None
    if packed is not None and packed.gradients_in_place(parameters):
        grads = [packed.grad_buffer]   # an optimizer with flat=True: all the gradients, as one array
    return grads


def clip_grad_value_(parameters, clip_value, foreach=None):
    """Clamp the gradients of `parameters` in place to [-clip_value, clip_value], as torch.nn.utils does (a
    NaN stays NaN). Returns None. With Adam/SGD(flat=True), whose gradients share one buffer, one clip runs
    over that buffer. `foreach` is taken for torch's signature: there is one implementation here."""
    if isinstance(clip_value, bool) or not isinstance(clip_value, numbers.Real):
        raise TypeError(f"clip_grad_value_: clip_value must be a number, got {type(clip_value).__name__}")
    parameters = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    clip_value = float(clip_value)
    for g in _gradient_arrays(parameters):
        xp = backend.array_module(g)
        xp.clip(g, g.dtype.type(-clip_value), g.dtype.type(clip_value), out=g)
        note_in_place(g)   # (torch's clamp_ counts as a write: a graph that saved the gradient raises)


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False, foreach=None):
    """Scale the gradients of `parameters` in place so that their joint norm is at most `max_norm`.

    Returns the joint norm before clipping as a 0-d Tensor on the gradients' device, like torch. Like
    torch, the gradients are multiplied by min(1, max_norm / (norm + 1e-6)). On the GPU nothing waits
    for the GPU (the scale stays on the device), so a training step that clips can be captured
    (nn.capture), unless error_if_nonfinite asks to look at the norm on the host. (On the GPU the
    per-parameter sums are added one by one: cupy.stack of many arrays copies a pointer table from
    the host, which a captured step refuses. With Adam(flat=True), whose gradients share one buffer,
    the norm and the scale run once over that buffer.) `foreach` is taken for torch's signature: there
    is one implementation here.
    """
    parameters = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    grads = _gradient_arrays(parameters)
    max_norm, norm_type = float(max_norm), float(norm_type)
    if not grads:
        return Tensor(np.zeros((), np.float32))
    empty = [p.grad.shape for p in parameters if p.grad is not None and p.grad.data.size == 0]
    if math.isinf(norm_type) and empty:   # as torch: max and min of nothing are undefined (per parameter: flat=True
        # optimizers hand over one buffer)
        raise RuntimeError(f"clip_grad_norm_: cannot compute the {norm_type} norm of an empty gradient (the operation "
                           f"has no identity); expected gradients with elements, got shapes {empty}")
    xp = backend.array_module(grads[0])
    if xp is np:
        if norm_type == math.inf:
            total = np.max(np.stack([np.max(np.abs(g)) for g in grads]))
        else:
            total = np.linalg.norm(np.stack([np.linalg.norm(g.reshape(-1), ord=norm_type) for g in grads]),
                                   ord=norm_type)
    elif norm_type == math.inf:  # on the GPU: no stack, whose pointer table CuPy copies from the host
        total = functools.reduce(xp.maximum, [xp.abs(g).max() for g in grads])
    elif norm_type == 2.0:
        total = xp.sqrt(functools.reduce(operator.add, [(g * g).sum() for g in grads]))
    else:
        total = functools.reduce(operator.add, [(xp.abs(g) ** norm_type).sum() for g in grads]) ** (1 / norm_type)
    if error_if_nonfinite and not math.isfinite(float(total)):
        raise RuntimeError(f"clip_grad_norm_: the total norm of order {norm_type} of the gradients is "
                           f"{float(total)}; set error_if_nonfinite=False to clip anyway")
    if xp is np:
        scale = max_norm / (float(total) + 1e-6)
        for g in grads:
            if not scale >= 1.0:  # also a NaN norm, which (as in torch) turns the gradients into NaN
                g *= g.dtype.type(scale)
            note_in_place(g)   # (torch multiplies by the clamped scale whatever it is: always a write)
    else:
        scale = xp.minimum(max_norm / (total + 1e-6), 1.0)  # NaN stays NaN, as in torch
        for g in grads:
            g *= scale.astype(g.dtype, copy=False)
            note_in_place(g)
    return Tensor(xp.asarray(total))
