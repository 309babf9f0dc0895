"""parameters_to_vector and vector_to_parameters, as torch.nn.utils has them.

vector_to_parameters writes into each parameter's array in place (torch replaces `.data` with a view of
`vec`): whatever holds those arrays keeps seeing them, e.g. an optimizer made with flat=True, whose
parameters' `.data` are views of one buffer (nn/optim_flat.py). So, unlike torch, the parameters keep
their dtype and device and do not alias `vec` afterwards.
"""
import numpy as np

from kernels import backend

from ..autograd import note_in_place
from ..tensor import Tensor, cat


def _device(op, parameter, device):
    """parameter's device, checked against the device of the ones before it (torch's _check_param_device)."""
    here = backend.device_of(op, parameter.data)
    if device is not None and here != device:
        raise TypeError(f"{op}: found two parameters on different devices ({device} and {here}), "
                        f"this is not supported")
    return here


def parameters_to_vector(parameters):
    """One 1-D Tensor: the parameters flattened and concatenated in order, on their device (recorded for
    autograd, as torch's view and cat)."""
    device, flat = None, []
    for parameter in parameters:
        if not isinstance(parameter, Tensor):
            raise TypeError(f"parameters_to_vector: expected Tensors, got {type(parameter).__name__}")
        device = _device("parameters_to_vector", parameter, device)
        flat.append(parameter.reshape(-1))
    if not flat:
        raise ValueError("parameters_to_vector: expected a non-empty iterable of parameters, got none")
    return cat(flat)


def vector_to_parameters(vec, parameters):
    """Copy consecutive slices of the 1-D Tensor `vec` into the parameters, in order and in place (cast to
    each parameter's dtype). Elements of `vec` past the parameters are ignored, as torch."""
    if not isinstance(vec, Tensor):
        raise TypeError(f"vector_to_parameters: expected Tensor, but got: {type(vec).__name__}")
    if vec.data.ndim != 1:
        raise ValueError(f"vector_to_parameters: vec must be 1-D, got shape {tuple(vec.data.shape)}")
    source_device = backend.device_of("vector_to_parameters", vec.data)
    device, pointer = None, 0
    for parameter in parameters:
        device = _device("vector_to_parameters", parameter, device)
        if device != source_device:
            raise ValueError(f"vector_to_parameters: vec is on {source_device}, the parameters on {device} "
                             f"(the parameters are written in place: move vec first)")
        size = int(np.prod(parameter.data.shape, dtype=np.int64))
        if pointer + size > vec.data.shape[0]:
            raise ValueError(f"vector_to_parameters: vec has {vec.data.shape[0]} elements, fewer than the "
                             f"parameters' {pointer + size} (at least)")
        parameter.data[...] = vec.data[pointer:pointer + size].reshape(parameter.data.shape)
        note_in_place(parameter.data)   # a graph recorded before this write cannot backward through it
        pointer += size
