"""Module's state dicts (nn/module.py mixes StateDicts in): state_dict and load_state_dict with torch's keys,
every name of a shared module or array having its entry, as in torch."""
import functools
import threading
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


class StateDictError(RuntimeError, KeyError, ValueError):
    """A refused load_state_dict: a RuntimeError as torch's (and a KeyError/ValueError, as it was here before)."""

    __str__ = BaseException.__str__   # (KeyError's would quote the message)


_loads = threading.local()   # .pending: the writes of this thread's load_state_dict under way (innermost last)


class StateDicts:
    """state_dict and load_state_dict walk the modules as torch's do: each module saves and loads its own
    parameters and persistent buffers (_save_to_state_dict, _load_from_state_dict), and asks each child for its
    state_dict, so a submodule's override of any of these (renaming the keys of old checkpoints) takes part."""

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
        self._save_to_state_dict(state, prefix, keep_vars)
        for name, child in self._modules.items():   # (a module shared under two names: both keys, as torch)
            if child is not None:
                child.state_dict(destination=state, prefix=f"{prefix}{name}.", keep_vars=keep_vars)
        return state

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        """This module's own entries (not its children's), as torch's method of that name."""
        for name, parameter in self._parameters.items():
            if parameter is not None:
                destination[prefix + name] = parameter if keep_vars else backend.to_numpy(parameter.data).copy()
        skipped = _non_persistent(self)
        for name, buffer in self._buffers.items():
            if buffer is not None and name not in skipped:
                destination[prefix + name] = buffer if keep_vars else np.array(backend.to_numpy(buffer), copy=True)

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays (NumPy, CuPy, or anything with .numpy(), e.g. torch tensors) into this module's own
        arrays, in place and cast to their dtype, as torch does: nothing here aliases the caller's arrays, and
        whatever points at the module's arrays (optimizers, a flat optimizer's buffers, captured CUDA graphs)
        sees the new values. Each module reads its entries (_load_from_state_dict), in module order, so a tied
        parameter takes the value of its last name, as in torch.

        strict: missing, unexpected or misshaped entries raise a StateDictError (a RuntimeError, as torch's)
        listing them; nothing is changed unless every entry fits. Returns (missing_keys, unexpected_keys), a
        named tuple as torch's.
        """
        if not hasattr(state_dict, "items") or not hasattr(state_dict, "keys"):
            raise TypeError(f"load_state_dict for {type(self).__name__}: expected a mapping of names to arrays, "
                            f"got {type(state_dict).__name__}")
        incoming = OrderedDict((key, _as_numpy(value)) for key, value in state_dict.items())
        missing, unexpected, errors, writes = [], [], [], []
        pending = _loads.__dict__.setdefault("pending", [])
        pending.append(writes)
        try:
            self._load_tree(incoming, "", missing, unexpected, errors)
        finally:
            pending.pop()
        if errors:
            raise StateDictError(f"load_state_dict for {type(self).__name__}: wrong shapes: " + "; ".join(errors))
        if strict and (missing or unexpected):
            raise StateDictError(f"load_state_dict for {type(self).__name__}: missing keys {missing}, unexpected "
                                 f"keys {unexpected}")
        for write in writes:   # every entry fits: now write them, in module order
            write()
        return _IncompatibleKeys(missing, unexpected)

    def _load_tree(self, incoming, prefix, missing, unexpected, errors):
        self._load_from_state_dict(incoming, prefix, {}, True, missing, unexpected, errors)
        for name, child in self._modules.items():
            if child is not None:
                child._load_tree(incoming, f"{prefix}{name}.", missing, unexpected, errors)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        """torch's method of that name: this module's entries of `state_dict` (under `prefix`) checked, and their
        writes queued for load_state_dict (made at once outside one); what is missing, unexpected or misshaped is
        added to the lists. An override may rename keys of `state_dict` first, then call this."""
        targets = {}
        for name, parameter in self._parameters.items():
            if parameter is not None:
                targets[name] = ("param", parameter.data)
        skipped = _non_persistent(self)
        for name, buffer in self._buffers.items():
            if buffer is not None and name not in skipped:
                targets[name] = ("buffer", buffer)
        for name, (kind, current) in targets.items():
            key = prefix + name
            if key not in state_dict:
                missing_keys.append(key)
                continue
            value = _as_numpy(state_dict[key])
            if tuple(value.shape) != tuple(current.shape):
                error_msgs.append(f"{key}: expected {tuple(current.shape)}, got {tuple(value.shape)}")
                continue
            write = functools.partial(_write, self, kind, name, current, value)
            pending = getattr(_loads, "pending", None)
            if pending:
                pending[-1].append(write)
            else:
                write()
        if strict:   # keys under this prefix that name neither an entry of this module nor one of a child's
            for key in state_dict:
                if key.startswith(prefix):
                    parts = key[len(prefix):].split(".", 1)
                    known = parts[0] in self._modules if len(parts) == 2 else parts[0] in targets
                    if not known and key not in unexpected_keys:
                        unexpected_keys.append(key)


def _write(module, kind, name, current, value):
    device = "cuda" if backend.is_gpu_array(current) else "cpu"
    value = backend.to_device(np.asarray(value).reshape(current.shape), device)
    if getattr(current.flags, "writeable", True):
        current[...] = value
        note_in_place(current)   # a graph recorded before the load cannot backward through it
    elif kind == "param":   # a read-only array (e.g. memory-mapped): replaced by a copy
        module._parameters[name].data = value.astype(current.dtype, copy=True)
    else:
        module._buffers[name] = value.astype(current.dtype, copy=True)


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
