"""Module's state dicts (nn/module.py mixes StateDicts in): state_dict and load_state_dict with torch's keys,
every name of a shared module or array having its entry, as in torch."""
import warnings
from collections import OrderedDict, namedtuple

import numpy as np

from kernels import backend

from .autograd import note_in_place
from .tensor import Tensor


class _IncompatibleKeys(namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])):
    """load_state_dict's result, as torch's."""
    __slots__ = ()

    def __repr__(self):
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return super().__repr__()

    __str__ = __repr__


class StateDicts:
    def state_dict(self, *args, destination=None, prefix="", keep_vars=False):
        """An ordered name -> NumPy array copy of every parameter and persistent buffer (PyTorch's keys).

        keep_vars=True: the Parameters themselves and the buffers as they are (no copies, on their device).
        destination: a mapping the entries are added to (and returned); prefix: put before every key, as
        torch ('model.' gives 'model.fc.weight'). Positional arguments are taken in that order, as torch
        (which warns that they are deprecated)."""
        if args:
            if len(args) > 3:
                raise TypeError(f"{type(self).__name__}.state_dict: takes at most 3 positional arguments "
                                f"(destination, prefix, keep_vars), got {len(args)}")
            warnings.warn(f"{type(self).__name__}.state_dict: positional arguments are deprecated (as in torch); "
                          f"pass destination, prefix and keep_vars by keyword", FutureWarning, stacklevel=2)
            destination, prefix, keep_vars = (tuple(args) + (destination, prefix, keep_vars)[len(args):])
        state = OrderedDict() if destination is None else destination
        for module_prefix, module in self.named_modules(remove_duplicate=False):
            for name, parameter in module._parameters.items():
                if parameter is not None:
                    state[prefix + _join(module_prefix, name)] = \
                        parameter if keep_vars else backend.to_numpy(parameter.data).copy()
            skipped = _non_persistent(module)
            for name, buffer in module._buffers.items():
                if buffer is not None and name not in skipped:
                    state[prefix + _join(module_prefix, name)] = \
                        buffer if keep_vars else np.array(backend.to_numpy(buffer), copy=True)
        return state

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays (NumPy, CuPy, or anything with .numpy(), e.g. torch tensors) into this module's own
        arrays, in place and cast to their dtype, as torch does: nothing here aliases the caller's arrays, and
        whatever points at the module's arrays (optimizers, a flat optimizer's buffers, captured CUDA graphs)
        sees the new values.

        strict: missing, unexpected or misshaped entries raise a KeyError/ValueError listing them;
        nothing is changed unless every entry fits. Returns (missing_keys, unexpected_keys), a named
        tuple as torch's.
        """
        targets = {}
        for module_prefix, module in self.named_modules(remove_duplicate=False):
            for name, parameter in module._parameters.items():
                if parameter is not None:
                    targets[_join(module_prefix, name)] = (module, "param", name, parameter.data)
            skipped = _non_persistent(module)
            for name, buffer in module._buffers.items():
                if buffer is not None and name not in skipped:
                    targets[_join(module_prefix, name)] = (module, "buffer", name, buffer)
        incoming = {key: _as_numpy(value) for key, value in state_dict.items()}
        missing = [key for key in targets if key not in incoming]
        unexpected = [key for key in incoming if key not in targets]
        misshaped = [f"{key}: expected {tuple(targets[key][3].shape)}, got {tuple(incoming[key].shape)}"
                     for key in targets if key in incoming and tuple(incoming[key].shape) != tuple(targets[key][3].shape)]
        if misshaped:
            raise ValueError(f"load_state_dict for {type(self).__name__}: wrong shapes: " + "; ".join(misshaped))
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict for {type(self).__name__}: missing keys {missing}, unexpected keys {unexpected}")
        for key, value in incoming.items():
            if key not in targets:
                continue
            module, kind, name, current = targets[key]
            device = "cuda" if backend.is_gpu_array(current) else "cpu"
            value = backend.to_device(np.asarray(value).reshape(current.shape), device)
            if getattr(current.flags, "writeable", True):
                current[...] = value
                note_in_place(current)   # a graph recorded before the load cannot backward through it
            elif kind == "param":   # a read-only array (e.g. memory-mapped): replaced by a copy
                module._parameters[name].data = value.astype(current.dtype, copy=True)
            else:
                module._buffers[name] = value.astype(current.dtype, copy=True)
        return _IncompatibleKeys(missing, unexpected)


def _non_persistent(module):
    """The module's non-persistent buffer names (torch's _non_persistent_buffers_set; made here for a module
    unpickled from before it existed)."""
    names = module.__dict__.get("_non_persistent_buffers_set")
    if names is None:
        names = set()
        object.__setattr__(module, "_non_persistent_buffers_set", names)
    return names


def _join(prefix, name):
    return f"{prefix}.{name}" if prefix else name


def _as_numpy(value):
    if isinstance(value, Tensor):
        return value.numpy()
    if backend.is_array(value):
        return backend.to_numpy(value)
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor
        return value.detach().cpu().numpy()
    return np.asarray(value)
