"""Module: parameters, buffers and submodules registered by attribute assignment, as in PyTorch.

state_dict keys and shapes follow PyTorch's (`features.0.weight`, `bn.running_mean`, ...), so a
PyTorch model's state dict loads into the matching model here and back. Traversal and conversion follow
torch.nn's names, arguments and orders; the containers live in containers.py.
"""
from collections import OrderedDict

import numpy as np

from kernels import backend

from .autograd import note_in_place
from .hooks import ForwardHooks, RemovableHandle
from .module_state import StateDicts, _as_numpy, _join, _non_persistent  # noqa: F401  (optim imports _as_numpy)
from .tensor import Tensor


class Parameter(Tensor):
    """A Tensor that a Module registers as trainable (requires_grad=True by default)."""

    def __init__(self, data, requires_grad=True):
        # (as torch.nn.Parameter: an integer one must be made with requires_grad=False; Tensor checks)
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter" + super().__repr__()[len("Tensor"):]


class Module(StateDicts):
    _call_hooks = None   # _ForwardHooks once a forward (pre-)hook is registered: __call__ checks only this

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_non_persistent_buffers_set", set())   # torch's name
        object.__setattr__(self, "training", True)

    # ---- registration ------------------------------------------------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}: call super().__init__() before assigning attributes")
        if isinstance(value, (Parameter, Module)):   # registers the name, in its old place if it had one
            target = self._parameters if isinstance(value, Parameter) else self._modules
            for table in (self._parameters, self._buffers, self._modules, self.__dict__):
                if table is not target:
                    table.pop(name, None)
            _non_persistent(self).discard(name)
            target[name] = value
            return
        for table, kind, expected, fits in (
                (self._parameters, "parameter", "a Parameter or None", value is None),
                (self._buffers, "buffer", "an array, a Tensor or None",
                 value is None or backend.is_array(value) or isinstance(value, Tensor)),
                (self._modules, "submodule", "a Module or None", value is None)):
            if name in table:   # a registered name keeps its kind: None marks it absent (bias=False)
                if not fits:
                    raise TypeError(f"{type(self).__name__}: cannot assign {type(value).__name__} to {kind} "
                                    f"{name!r} ({expected} expected)")
                table[name] = value.data if table is self._buffers and isinstance(value, Tensor) else value
                return
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
                _non_persistent(self).discard(name)
                return
        object.__delattr__(self, name)

    def _check_name(self, name, kind, table):
        where = type(self).__name__
        if not isinstance(name, str):
            raise TypeError(f"{where}: {kind} name must be a string, got {type(name).__name__}")
        if not name or "." in name:   # a '.' would make its state dict keys ambiguous
            raise KeyError(f"{where}: {kind} name must be non-empty without '.', got {name!r}")
        if name not in table and hasattr(self, name):
            raise KeyError(f"{where}: attribute {name!r} already exists")

    def register_parameter(self, name, parameter):
        """Register a Parameter (or None, for an absent optional parameter such as bias=False)."""
        self._check_name(name, "parameter", self._parameters)
        if parameter is not None and not isinstance(parameter, Parameter):
            raise TypeError(f"{type(self).__name__}: parameter {name!r} must be a Parameter or None, "
                            f"got {type(parameter).__name__}")
        self._parameters[name] = parameter

    def register_buffer(self, name, array, persistent=True):
        """A non-trainable array (running statistics), or None; a Tensor (torch's form, e.g. nn.zeros(3)) is kept
        as its array. Every buffer moves with .to() and is listed by named_buffers(); persistent=False leaves it
        out of state_dict() and of what load_state_dict() expects."""
        self._check_name(name, "buffer", self._buffers)
        if isinstance(array, Tensor):
            array = array.data   # (buffers are arrays here; autograd never records into them)
        if array is not None and not backend.is_array(array):
            raise TypeError(f"{type(self).__name__}: buffer {name!r} must be an array, a Tensor or None, "
                            f"got {type(array).__name__}")
        self._buffers[name] = array
        if persistent:
            _non_persistent(self).discard(name)
        else:
            _non_persistent(self).add(name)

    def add_module(self, name, module):
        self._check_name(name, "module", self._modules)
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(self).__name__}: module {name!r} must be a Module or None, "
                            f"got {type(module).__name__}")
        self._modules[name] = module

    register_module = add_module

    # ---- traversal (a module or array reached twice is listed once, unless remove_duplicate=False) ---
    def named_modules(self, memo=None, prefix="", remove_duplicate=True):
        memo = set() if memo is None else memo
        if self in memo:
            return
        if remove_duplicate:
            memo.add(self)
        yield prefix, self
        for name, module in self._modules.items():
            if module is not None:
                yield from module.named_modules(memo, _join(prefix, name), remove_duplicate)

    def modules(self):
        return (module for _, module in self.named_modules())

    def named_children(self):
        seen = set()
        for name, module in self._modules.items():
            if module is not None and module not in seen:
                seen.add(module)
                yield name, module

    def children(self):
        return (module for _, module in self.named_children())

    def _named_members(self, table, prefix, recurse, remove_duplicate):
        modules = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) if recurse else [(prefix, self)]
        seen = set()   # ids: arrays are not hashable
        for module_prefix, module in modules:
            for name, value in getattr(module, table).items():
                if value is None or (remove_duplicate and id(value) in seen):
                    continue
                seen.add(id(value))
                yield _join(module_prefix, name), value

    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        return self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse=True):
        return (parameter for _, parameter in self.named_parameters(recurse=recurse))

    def named_buffers(self, prefix="", recurse=True, remove_duplicate=True):
        return self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse=True):
        return (buffer for _, buffer in self.named_buffers(recurse=recurse))

    def apply(self, fn):
        """fn(module) for every submodule, children first, then this module (custom initialisation); self."""
        if not callable(fn):
            raise TypeError(f"{type(self).__name__}.apply: fn must be callable, got {type(fn).__name__}")
        for module in self.children():
            module.apply(fn)
        fn(self)
        return self

    # ---- modes, devices and dtypes -----------------------------------------------------------
    def train(self, mode=True):
        """Set training mode here and, through each child's own train(), below it (a child that overrides
        train(), e.g. to keep a batch norm frozen, is honoured, as in torch); returns self."""
        if not isinstance(mode, bool):
            raise ValueError(f"{type(self).__name__}.train: training mode is expected to be boolean, got {mode!r}")
        object.__setattr__(self, "training", mode)
        for child in self.children():
            child.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        """Set requires_grad on every parameter (False freezes them); returns self."""
        for parameter in self.parameters():
            parameter.requires_grad_(requires_grad)
        return self

    def to(self, *args, device=None, dtype=None, non_blocking=False):
        """to(device), to(dtype), to(device, dtype), or by keyword: move every parameter, its gradient and
        every buffer to 'cpu' or 'cuda', and the floating ones to a floating dtype, in place; returns self.

        Parameters stay the same objects (optimizers keep them) with new `.data`; an array already where
        and as asked is kept, not copied (an optimizer's flat=True packing stays valid), and a replaced
        one is noticed by the optimizer, which packs again. non_blocking is taken for torch's signature."""
        device, dtype = _device_and_dtype(type(self).__name__, args, device, dtype)

        def convert(array):
            if dtype is not None and array.dtype != dtype and np.issubdtype(array.dtype, np.floating):
                array = array.astype(dtype)   # integer buffers (num_batches_tracked) keep theirs
            return array if device is None else backend.to_device(array, device)

        for module in self.modules():
            for parameter in module._parameters.values():
                if parameter is not None:
                    parameter.data = convert(parameter.data)
                    if parameter.grad is not None:
                        parameter.grad.data = convert(parameter.grad.data)
            for name, buffer in module._buffers.items():
                if buffer is not None:
                    module._buffers[name] = convert(buffer)
        return self

    def float(self):
        return self.to(dtype=np.float32)

    def double(self):
        """float64 parameters and floating buffers: the CPU path takes them, the CUDA kernels do not."""
        return self.to(dtype=np.float64)

    def cpu(self):
        return self.to("cpu")

    def cuda(self, device=None):
        """As .to('cuda'): one GPU here, so device may only name it (None, 0, 'cuda', 'cuda:0', a torch.device)."""
        if device is not None and not (device == 0 and not isinstance(device, bool)):
            backend.device_name(f"{type(self).__name__}.cuda", device)
        return self.to("cuda")

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
                note_in_place(parameter.grad.data)   # as the optimizers' zero_grad: torch's zero_() is a write

    # ---- calling and forward hooks ----------------------------------------------------------
    def __call__(self, *args, **kwargs):
        if self._call_hooks is None:
            return self.forward(*args, **kwargs)
        return self._call_hooks.call(self, args, kwargs)

    def register_forward_pre_hook(self, hook, *, prepend=False, with_kwargs=False):
        """hook(module, args) before each forward: None keeps the arguments, a tuple replaces them (anything else
        is wrapped in a 1-tuple); with_kwargs=True: hook(module, args, kwargs) -> None or (args, kwargs).
        Hooks run in registration order (prepend=True: first). Returns a handle whose remove() unregisters it.
        Hooks are not part of the state dict. In a step captured by nn.capture they run at capture only
        (nn/hooks.py)."""
        return self._register_call_hook("register_forward_pre_hook", "pre", hook, prepend, with_kwargs, False)

    def register_forward_hook(self, hook, *, prepend=False, with_kwargs=False, always_call=False):
        """hook(module, args, output) after each forward: None keeps the output, anything else replaces it;
        with_kwargs=True: hook(module, args, kwargs, output). always_call=True: also called (its result
        ignored) when forward raises, before the error goes on. Order, handle, state dict and capture: as
        register_forward_pre_hook."""
        return self._register_call_hook("register_forward_hook", "post", hook, prepend, with_kwargs, always_call)

    def _register_call_hook(self, method, kind, hook, prepend, with_kwargs, always_call):
        if not callable(hook):
            raise TypeError(f"{type(self).__name__}.{method}: hook must be callable, got {type(hook).__name__}")
        hooks = self._forward_hook_record()
        table = hooks.pre if kind == "pre" else hooks.post
        handle = RemovableHandle((table, hooks.with_kwargs, hooks.always_call))
        table[handle.id] = hook
        if prepend:
            table.move_to_end(handle.id, last=False)
        if with_kwargs:
            hooks.with_kwargs.add(handle.id)
        if always_call:
            hooks.always_call.add(handle.id)
        return handle

    def _forward_hook_record(self):
        if self._call_hooks is None:
            object.__setattr__(self, "_call_hooks", ForwardHooks())
        return self._call_hooks

    @property
    def _forward_pre_hooks(self):
        """torch's names: the forward pre-hooks and forward hooks by handle id, in calling order (clear() works)."""
        return self._forward_hook_record().pre

    @property
    def _forward_hooks(self):
        return self._forward_hook_record().post

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


def _device_and_dtype(owner, args, device, dtype, floating_only=True):
    """Module.to's (and Tensor.to's) forms: (device), (dtype), (device, dtype), or keywords; devices are 'cpu'
    and 'cuda'; dtypes floating ones unless floating_only is False (Tensor.to takes integer dtypes too)."""
    if args and device is None and (type(args[0]).__name__ == "device" or isinstance(args[0], str) and
                                    args[0].partition(":")[0] in ("cpu", "cuda")):   # ('cuda:0', torch.device)
        device, args = args[0], args[1:]
    if args and dtype is None:
        dtype, args = args[0], args[1:]
    if args:
        raise TypeError(f"{owner}.to: expected (device), (dtype) or (device, dtype), got {len(args)} more arguments")
    device = backend.device_name(f"{owner}.to", device)
    if dtype is None:
        return device, None
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        kind = "a floating dtype" if floating_only else "a dtype"
        raise TypeError(f"{owner}.to: expected a device ('cpu' or 'cuda') or {kind}, got {dtype!r}") from None
    if floating_only and not np.issubdtype(dtype, np.floating):
        raise TypeError(f"{owner}.to: dtype must be a floating dtype, got {dtype}")
    return device, dtype
