"""Hooks, as torch's: gradient hooks on Tensors (register_hook, retain_grad, retains_grad, a non-leaf's .grad),
mixed into Tensor, and what runs them for the engine (nn/autograd.py); Module's forward (pre-)hooks, run by
ForwardHooks.call from Module.__call__; RemovableHandle, what every register_*hook returns.

A tensor hook is hook(grad) -> a Tensor that replaces the gradient, or None. It runs under no_grad when the
tensor's gradient is complete (the sum of every contribution of one backward, once), before a leaf accumulates
it into .grad (so a replaced gradient is what lands, in a flat optimizer's buffer too: a leaf with hooks never
gets Function.gradient_out's shortcut) or a non-leaf passes it on; a non-leaf's retained .grad is set after its
hooks, whatever the order of registration. autograd.grad runs the hooks of the non-leaves it goes through and
of the inputs it returns, not those of other leaves (they get nothing), as torch's. Not as torch's: a hook
registered on a leaf while a backward runs (from another hook) sees only the contributions that reach the leaf
after it (torch's sees the whole gradient); one that autograd.grad returns for a hooked non-leaf input is the
gradient after its hooks (torch 2.13 returns the one before when other inputs make its node run).

Hooks are Python, module and tensor hooks alike: in a step captured by nn.capture they run in the eager warm-up
steps and once while capturing, never at a replay. What they compute on the device (a gradient scaled, clipped
or replaced, an output changed) is recorded into the graph and replayed; what they do on the host (counting
calls, appending to a list, a number read then) happens at capture only and stays frozen, and a hook that
synchronises (.item(), .numpy()) makes the capture fail. torch's CUDA graphs behave the same way. A module
without hooks is called as before (one attribute check).
"""
import itertools
import warnings
import weakref
from collections import OrderedDict

from kernels import backend

from . import autograd

_handle_ids = itertools.count()


class RemovableHandle:
    """What register_hook and the Module hook registrations return: remove() unregisters the hook (twice is
    harmless); `with handle:` removes it at the end of the block, as torch.utils.hooks.RemovableHandle."""

    def __init__(self, hooks, on_remove=None):
        self.id = next(_handle_ids)
        self._hooks = hooks            # the dicts (id -> hook, or id-keyed option sets) that hold the hook
        self._on_remove = on_remove    # called after removal: lets the owner drop an empty hook table

    def remove(self):
        for table in self._hooks:
            if isinstance(table, dict):
                table.pop(self.id, None)
            else:
                table.discard(self.id)
        if self._on_remove is not None:
            self._on_remove()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.remove()


class GradientHooks:
    """A tensor's hooks (id -> hook, in order) and, for a non-leaf, a weak reference to the tensor whose .grad
    retain_grad() keeps (None otherwise). A non-leaf's record is also its creator's `_output_hooks[index]`, so
    its hooks run even when the tensor itself is gone, as torch's."""
    __slots__ = ("hooks", "retains")

    def __init__(self):
        self.hooks = {}
        self.retains = None


class _NonLeafGrad:
    """Tensor.grad where the instance has none: a non-leaf's, unless retain_grad() set it (Function.apply
    removes the attribute from its outputs). A non-data descriptor: every Tensor that has .grad in its
    __dict__ (every leaf) reads it there, with no call."""

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        if instance._creator is not None:
            warnings.warn("The .grad attribute of a Tensor that is not a leaf Tensor is being accessed. Its .grad "
                          "attribute won't be populated during autograd.backward(). If you indeed want the .grad "
                          "field to be populated for a non-leaf Tensor, use .retain_grad() on the non-leaf Tensor. "
                          "If you access the non-leaf Tensor by mistake, make sure you access the leaf Tensor "
                          "instead.", UserWarning, stacklevel=2)
        return None


class TensorHooks:
    grad = _NonLeafGrad()
    _hooks = None   # GradientHooks once a hook is registered or the gradient retained

    def register_hook(self, hook):
        """Call hook(grad) when this tensor's gradient is computed, before it reaches .grad (a leaf) or the ops
        that made this tensor (a non-leaf); a Tensor returned replaces the gradient (same shape and dtype).
        Returns a handle whose remove() unregisters it. See the module docstring for nn.capture."""
        if not callable(hook):
            raise TypeError(f"register_hook: hook must be callable, got {type(hook).__name__}")
        if not self.requires_grad:
            raise RuntimeError("register_hook: cannot register a hook on a tensor that doesn't require gradient")
        record = self._hook_record()
        handle = RemovableHandle((record.hooks,), on_remove=_dropper(self, record))
        record.hooks[handle.id] = hook
        return handle

    def retain_grad(self):
        """Keep this non-leaf's gradient in .grad after backward (summed over backwards, as torch); nothing for
        a leaf, which keeps its gradient anyway."""
        if not self.requires_grad:
            raise RuntimeError("retain_grad: can't retain_grad on Tensor that has requires_grad=False")
        if self._creator is None or self.retains_grad:
            return
        self._hook_record().retains = weakref.ref(self)
        if "grad" not in self.__dict__:
            self.grad = None

    @property
    def retains_grad(self):
        record = self._hooks
        return record is not None and record.retains is not None

    def _hook_record(self):
        record = self._hooks
        if record is None:
            record = self._hooks = GradientHooks()
        if self._creator is not None:
            ctx, index = self._creator
            if ctx._output_hooks is None:
                ctx._output_hooks = {}
            ctx._output_hooks[index] = record
        return record


def _dropper(tensor, record):
    """After a removal: a tensor left with no hooks and nothing retained forgets its record, so that the engine
    and a flat optimizer's shortcut treat it as a tensor that never had hooks."""
    tensor_reference = weakref.ref(tensor)

    def drop():
        tensor = tensor_reference()
        if record.hooks or record.retains is not None or tensor is None or tensor._hooks is not record:
            return
        tensor._hooks = None
        if tensor._creator is not None:
            ctx, index = tensor._creator
            table = ctx._output_hooks or {}
            if table.get(index) is record:
                del table[index]
            if not table:
                ctx._output_hooks = None
    return drop


# ---- Module's forward hooks ---------------------------------------------------------------------------
class ForwardHooks:
    """A module's forward pre-hooks and forward hooks (handle id -> hook, in calling order) and the ids of those
    registered with_kwargs / always_call; `call` is Module.__call__ with them, as torch's _call_impl."""

    def __init__(self):
        self.pre, self.post = OrderedDict(), OrderedDict()
        self.with_kwargs, self.always_call = set(), set()

    def call(self, module, args, kwargs):
        if not self.pre and not self.post:   # every hook was removed: back to the plain call
            object.__setattr__(module, "_call_hooks", None)
            return module.forward(*args, **kwargs)
        called, output = set(), None
        try:   # (a pre-hook that raises also gets the always_call hooks run, as torch)
            for key, hook in list(self.pre.items()):
                if key in self.with_kwargs:
                    result = hook(module, args, kwargs)
                    if result is not None:
                        if not (isinstance(result, tuple) and len(result) == 2):
                            raise RuntimeError(f"forward pre-hook must return None or a tuple of (new_args, "
                                               f"new_kwargs), but got {result!r}")
                        args, kwargs = result
                else:
                    result = hook(module, args)
                    if result is not None:
                        args = result if isinstance(result, tuple) else (result,)
            output = module.forward(*args, **kwargs)
            for key, hook in list(self.post.items()):
                called.add(key)
                result = hook(module, args, kwargs, output) if key in self.with_kwargs else hook(module, args, output)
                if result is not None:
                    output = result
        except Exception:
            for key, hook in list(self.post.items()):
                if key in self.always_call and key not in called:
                    try:
                        hook(module, args, kwargs, output) if key in self.with_kwargs else hook(module, args, output)
                    except Exception as error:   # the first error is the one raised; this one is warned of, as torch
                        warnings.warn(f"module forward hook with ``always_call=True`` raised an exception that was "
                                      f"silenced as another error was raised in forward: {error!r}", stacklevel=2)
            raise
        return output


# ---- run by the engine (nn/autograd.py) -----------------------------------------------------------------
class LeafGradients:
    """The leaves whose gradient must be whole before it lands: a leaf with hooks (they see the sum of every
    contribution, once, as torch's: a weight used twice, w * w, tied embeddings) and, in autograd.grad, the wanted
    leaves (collected, never accumulated; other leaves get nothing). A leaf lands right after the last node that
    gives it a gradient has run (torch runs its AccumulateGrad as soon as it is ready), any left at the end."""

    def __init__(self, order, wanted):
        self.wanted = wanted
        self.sums = {}        # id(leaf) -> [leaf, gradient so far]
        self.collected = {}   # autograd.grad: id(leaf) -> its gradient
        last = {}
        for position, ctx in enumerate(order):
            for tensor, needed in zip(ctx.inputs, ctx.needs_input_grad):
                if needed and tensor._creator is None:
                    last[id(tensor)] = position
        self.due = {}         # position -> the ids of the leaves whose last contribution comes from that node
        for key, position in last.items():
            self.due.setdefault(position, []).append(key)

    def add(self, tensor, grad):
        if self.wanted is not None and id(tensor) not in self.wanted:
            return
        entry = self.sums.get(id(tensor))
        if entry is None:
            self.sums[id(tensor)] = [tensor, grad]
        else:
            entry[1] = autograd._sum(entry[1], grad)

    def land(self, position=None):
        keys = list(self.sums) if position is None else self.due.get(position, ())
        for key in keys:
            entry = self.sums.pop(key, None)
            if entry is None:
                continue
            tensor, grad = entry
            if tensor._hooks is not None:
                grad = run_hooks(tensor._hooks, grad)
            if self.wanted is None:
                tensor._accumulate(grad)
            else:
                self.collected[key] = grad


def run_output_hooks(ctx, grads_out):
    """The hooks (and retained .grad) of the outputs of `ctx` that have some, on their complete gradients."""
    for index, record in list(ctx._output_hooks.items()):
        if grads_out[index] is not None:
            grads_out[index] = run_hooks(record, grads_out[index])


def run_hooks(record, grad):
    """Run a tensor's hooks (nn/hooks.py) in order under no_grad, each on the gradient the previous left; then
    keep the result as a non-leaf's retained .grad. Returns the gradient to pass on."""
    from .tensor import Tensor
    with autograd.no_grad():
        for hook in list(record.hooks.values()):
            result = hook(Tensor(grad))
            if result is None:
                continue
            name = getattr(hook, "__name__", type(hook).__name__)
            if not isinstance(result, Tensor):
                raise TypeError(f"backward: expected a Tensor or None from hook {name!r}, but it returned "
                                f"{type(result).__name__!r}")
            if result.shape != tuple(grad.shape):
                raise RuntimeError(f"backward: hook {name!r} has changed the size of value (the gradient has shape "
                                   f"{tuple(grad.shape)}, the hook returned {result.shape})")
            if result.dtype != grad.dtype or backend.is_gpu_array(result.data) != backend.is_gpu_array(grad):
                raise RuntimeError(f"backward: hook {name!r} has changed the type of value (was {grad.dtype} on "
                                   f"{'cuda' if backend.is_gpu_array(grad) else 'cpu'}, got {result.dtype} on "
                                   f"{result.device})")
            grad = result.data
    reference = record.retains
    tensor = None if reference is None else reference()
    if tensor is not None:   # as torch's retain_grad: a copy first, then a new sum at each backward
        retained = tensor.__dict__.get("grad")
        tensor.grad = Tensor(grad.copy() if retained is None else retained.data + grad)
    return grad
