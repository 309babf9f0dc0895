"""Module: parameters, buffers and submodules registered by attribute assignment, as in PyTorch.

state_dict keys and shapes follow PyTorch's (`features.0.weight`, `bn.running_mean`, ...), so a
PyTorch model's state dict loads into the matching model here and back.
"""
from collections import OrderedDict

import numpy as np

from kernels import backend

from .tensor import Tensor


class Parameter(Tensor):
    """A Tensor that a Module registers as trainable (requires_grad=True by default)."""

    def __init__(self, data, requires_grad=True):
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter" + super().__repr__()[len("Tensor"):]


class Module:
    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # ---- registration ------------------------------------------------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}: call super().__init__() before assigning attributes")
        if name in self._buffers and (value is None or backend.is_array(value)):
            self._buffers[name] = value  # e.g. BatchNorm's running statistics
            return
        if name in self._parameters and value is None:
            self._parameters[name] = None
            return
        for table in (self._parameters, self._buffers, self._modules):
            table.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        for table in ("_parameters", "_buffers", "_modules"):
            entries = self.__dict__.get(table)
            if entries is not None and name in entries:
                return entries[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __delattr__(self, name):
        for table in (self._parameters, self._buffers, self._modules):
            if name in table:
                del table[name]
                return
        object.__delattr__(self, name)

    def register_parameter(self, name, parameter):
        """Register a Parameter (or None, for an absent optional parameter such as bias=False)."""
        self._parameters[name] = parameter

    def register_buffer(self, name, array):
        """A non-trainable array saved in the state dict (running statistics), or None."""
        self._buffers[name] = array

    def add_module(self, name, module):
        self._modules[name] = module

    # ---- traversal ---------------------------------------------------------------------------
    def named_modules(self, prefix=""):
        yield prefix, self
        for name, module in self._modules.items():
            if module is not None:
                yield from module.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        return (module for _, module in self.named_modules())

    def children(self):
        return (module for module in self._modules.values() if module is not None)

    def named_parameters(self, prefix=""):
        for module_prefix, module in self.named_modules(prefix):
            for name, parameter in module._parameters.items():
                if parameter is not None:
                    yield (f"{module_prefix}.{name}" if module_prefix else name), parameter

    def parameters(self):
        return (parameter for _, parameter in self.named_parameters())

    def named_buffers(self, prefix=""):
        for module_prefix, module in self.named_modules(prefix):
            for name, buffer in module._buffers.items():
                if buffer is not None:
                    yield (f"{module_prefix}.{name}" if module_prefix else name), buffer

    # ---- modes and devices -------------------------------------------------------------------
    def train(self, mode=True):
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self):
        return self.train(False)

    def to(self, device):
        """Move every parameter and buffer to 'cpu' or 'cuda' in place; returns self."""
        for module in self.modules():
            for parameter in module._parameters.values():
                if parameter is not None:
                    parameter.data = backend.to_device(parameter.data, device)
                    if parameter.grad is not None:
                        parameter.grad.data = backend.to_device(parameter.grad.data, device)
            for name, buffer in module._buffers.items():
                if buffer is not None:
                    module._buffers[name] = backend.to_device(buffer, device)
        return self

    @property
    def device(self):
        for parameter in self.parameters():
            return parameter.device
        return "cpu"

    def zero_grad(self, set_to_none=True):
        for parameter in self.parameters():
            if set_to_none or parameter.grad is None:
                parameter.grad = None
            else:
                parameter.grad.data[...] = 0

    # ---- state dicts -------------------------------------------------------------------------
    def state_dict(self):
        """An ordered name -> NumPy array copy of every parameter and buffer (PyTorch's keys)."""
        state = OrderedDict()
        for module_prefix, module in self.named_modules():
            for name, parameter in module._parameters.items():
                if parameter is not None:
                    state[_join(module_prefix, name)] = backend.to_numpy(parameter.data).copy()
            for name, buffer in module._buffers.items():
                if buffer is not None:
                    state[_join(module_prefix, name)] = np.array(backend.to_numpy(buffer), copy=True)
        return state

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays (NumPy, CuPy, or anything with .numpy(), e.g. torch tensors) into this module.

        strict: missing, unexpected or misshaped entries raise a KeyError/ValueError listing them;
        nothing is changed unless every entry fits.
        """
        targets = {}
        for module_prefix, module in self.named_modules():
            for name, parameter in module._parameters.items():
                if parameter is not None:
                    targets[_join(module_prefix, name)] = (module, "param", name, parameter.data)
            for name, buffer in module._buffers.items():
                if buffer is not None:
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
            array = backend.to_device(np.ascontiguousarray(value, dtype=current.dtype).reshape(current.shape), device)
            if kind == "param":
                module._parameters[name].data = array
            else:
                module._buffers[name] = array
        return {"missing_keys": missing, "unexpected_keys": unexpected}

    # ---- calling -----------------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):  # pragma: no cover - every subclass defines it
        raise NotImplementedError(f"{type(self).__name__} defines no forward")

    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, module in self._modules.items():
            child = repr(module).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child}")
        return "\n".join(lines) + (")" if len(lines) == 1 else "\n)")


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


class Sequential(Module):
    """Modules applied in order; keys are their positions ('0.weight'), as in torch.nn.Sequential."""

    def __init__(self, *modules):
        super().__init__()
        for index, module in enumerate(modules):
            self.add_module(str(index), module)

    def __getitem__(self, index):
        return list(self._modules.values())[index]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def forward(self, x):
        from .layers import fuses_with_relu
        modules = tuple(self._modules.values())
        index = 0
        while index < len(modules):
            module = modules[index]
            # a batch norm then a ReLU: the ReLU runs inside the batch norm's kernels, forward and backward
            # (the same values; one pass over the activations and two launches fewer)
            if index + 1 < len(modules) and fuses_with_relu(module, modules[index + 1]):
                x = module.forward_then_relu(x)
                index += 2
            else:
                x = module(x)
                index += 1
        return x


class ModuleList(Module):
    def __init__(self, modules=()):
        super().__init__()
        for index, module in enumerate(modules):
            self.add_module(str(index), module)

    def append(self, module):
        self.add_module(str(len(self._modules)), module)
        return self

    def __getitem__(self, index):
        return list(self._modules.values())[index]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())
