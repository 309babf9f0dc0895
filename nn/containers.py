"""The containers, as torch.nn's: Sequential (modules applied in order), ModuleList and ModuleDict. Their keys
lead the state dict keys ('0.weight', 'features.conv.weight'), so torch's state dicts carry over."""
from collections import OrderedDict
from collections.abc import Iterable, Mapping

import numpy as np

from .module import Module


class _ModuleSequence(Module):
    """What Sequential and ModuleList share: modules in order, indexed like a list (negative indices,
    slices, del, insert). Deleting or inserting renumbers the keys '0', '1', ..., as torch does."""

    def _key(self, index):
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"{type(self).__name__}: indices must be integers or slices, got {type(index).__name__}")
        if not -len(self) <= index < len(self):
            raise IndexError(f"{type(self).__name__}: index {index} is out of range for {len(self)} modules")
        return list(self._modules)[index]

    def _renumber(self, modules):
        self._modules.clear()
        self._modules.update((str(position), module) for position, module in enumerate(modules))

    def __getitem__(self, index):
        return self._slice(index) if isinstance(index, slice) else self._modules[self._key(index)]

    def __setitem__(self, index, module):
        name = type(self).__name__
        if isinstance(index, slice):   # torch's containers take none either
            raise TypeError(f"{name}: slice assignment is not supported (nor by torch's {name}); assign one "
                            f"index at a time (m[i] = module), or del the slice and insert")
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"{name}: assignment indices must be integers, got {type(index).__name__}")
        setattr(self, self._key(index), module)

    def __delitem__(self, index):
        for key in list(self._modules)[index] if isinstance(index, slice) else [self._key(index)]:
            del self._modules[key]
        self._renumber(list(self._modules.values()))

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module):
        if str(len(self)) in self._modules:   # after a slice kept keys ('2', '3'): torch would replace '2'
            self._renumber(list(self._modules.values()))
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules):
        if isinstance(modules, (str, bytes)) or not isinstance(modules, Iterable):
            raise TypeError(f"{type(self).__name__}.extend: expected an iterable of Modules, got "
                            f"{type(modules).__name__}")
        for module in modules:
            self.append(module)
        return self

    def __iadd__(self, modules):
        return self.extend(modules)

    def insert(self, index, module):
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"{type(self).__name__}.insert: index must be an integer, got {type(index).__name__}")
        if not -len(self) <= index <= len(self):
            raise IndexError(f"{type(self).__name__}.insert: index {index} is out of range for {len(self)} modules")
        if not isinstance(module, Module):
            raise TypeError(f"{type(self).__name__}.insert: expected a Module, got {type(module).__name__}")
        modules = list(self._modules.values())
        modules.insert(index, module)
        self._renumber(modules)
        return self

    def pop(self, index=-1):
        module = self[index]
        del self[index]
        return module


class Sequential(_ModuleSequence):
    """Modules applied in order; keys are their positions ('0.weight'), as in torch.nn.Sequential, or the
    names of an OrderedDict given instead. A slice is a Sequential keeping the modules' keys (as torch's)."""

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, module in modules[0].items():
                self.add_module(name, module)
        else:
            for index, module in enumerate(modules):
                self.add_module(str(index), module)

    def _slice(self, index):
        return type(self)(OrderedDict(list(self._modules.items())[index]))

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


class ModuleList(_ModuleSequence):
    """Modules held in a list (no forward); a slice is a ModuleList numbered from '0', as torch's."""

    def __init__(self, modules=None):
        super().__init__()
        self.extend(modules if modules is not None else ())

    def _slice(self, index):
        return type(self)(list(self._modules.values())[index])


class ModuleDict(Module):
    """Modules by name in insertion order, as torch.nn.ModuleDict; the names lead their state dict keys."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key):
        return self._modules[key]

    def __setitem__(self, key, module):
        self.add_module(key, module)

    def __delitem__(self, key):
        del self._modules[key]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def __contains__(self, key):
        return key in self._modules

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()

    def pop(self, key):
        return self._modules.pop(key)

    def clear(self):
        self._modules.clear()

    def update(self, modules):
        """Add or replace modules from a mapping or from (name, module) pairs."""
        if isinstance(modules, Mapping):
            modules = modules.items()
        elif not hasattr(modules, "__iter__") or isinstance(modules, (str, Module)):
            raise TypeError(f"ModuleDict.update: expected a mapping or (name, module) pairs, "
                            f"got {type(modules).__name__}")
        for position, pair in enumerate(modules):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise ValueError(f"ModuleDict.update: element {position} must be a (name, module) pair, got {pair!r}")
            self[pair[0]] = pair[1]
