"""Reverse-mode autodiff: a Function records its inputs; backward walks the graph in reverse order.

A Function subclass implements `forward(ctx, *arrays, **options) -> array or tuple of arrays` and
`backward(ctx, *grad_outputs) -> one gradient (or None) per input`, on raw NumPy/CuPy arrays.
`apply` wraps the results in Tensors that remember the Function when a gradient is needed.
"""
import contextlib
import threading
import weakref

import numpy as np

from kernels import backend

class _State(threading.local):
    enabled = True     # grad mode (no_grad sets it False)
    collecting = 0     # > 0 while autograd.grad runs: no gradient may land in a flat optimizer's buffer


_state = _State()

# torch's version counters, in the small: every in-place write is numbered and remembered with the bytes it
# reached; a Function recorded before a write checks, at its backward, that no array it saved for its gradient
# (`saved`: the losses also save their class weights and targets there, as torch's do) overlaps a write made
# since. What counts as a write: Tensor's in-place ops, Module.load_state_dict, nn.init, an embedding's
# max_norm, every optimizer step (one note per parameter stepped, or one per flat buffer of a group stepped in
# one launch; packing a flat group notes the arrays its parameters leave), zero_grad(set_to_none=False) and
# AveragedModel.update_parameters. Notes are host bookkeeping only: a step recorded into a CUDA graph notes
# once, at capture, and replays note nothing (no Python runs). Bytes, not whole buffers: a flat optimizer's
# parameters are views of one buffer, and writing one of them must not count as writing the others. Nothing is
# checked when nothing was written since the forward (one integer compare a node): a forward after the step
# records the new count, so a usual loop (zero_grad, forward, backward, step) never checks.
# As torch's, linear, matmul, * and / save an operand only for a gradient that reads it (needs_input_grad is
# known before forward), so a first Linear fed a plain input keeps no weight and an optimizer step between a
# retained backward and the next is fine there; conv and batch norm always save the weight, as torch's do.
_writes = [0]
_written = {}   # id(the array that owns the memory) -> (weak reference to it, [(first byte, end, write number)])
RANGES_KEPT = 64           # per owner: the latest writes (older ones are forgotten: a missed error, never a false one)
_sweep_at = [4096]         # owners noted before dead ones are swept out (doubles when most are alive)


def note_in_place(array):
    """Record that the memory `array` reaches (so every view overlapping it) was just written in place."""
    _note_span(*_span(array))


def _note_span(owner, first, end):
    try:
        reference = weakref.ref(owner)
    except TypeError:   # an owner without weak references: not tracked
        return
    _writes[0] += 1
    entry = _written.get(id(owner))
    if entry is None or entry[0]() is not owner:
        if len(_written) >= _sweep_at[0]:
            for key in [key for key, (ref, _) in _written.items() if ref() is None]:
                del _written[key]
            _sweep_at[0] = max(4096, 2 * len(_written))
        entry = _written[id(owner)] = (reference, [])
    ranges = entry[1]
    ranges.append((first, end, _writes[0]))
    if len(ranges) > RANGES_KEPT:
        del ranges[0]


def _memory_owner(array):
    while type(getattr(array, "base", None)) is type(array):   # a view's base is the array it was made from
        array = array.base
    return array


def _span(array):
    """(owner, first byte, one past the last byte) of the memory that `array`'s elements occupy."""
    first = end = backend.data_address(array)
    if array.size:
        for size, stride in zip(array.shape, array.strides):
            if stride < 0:
                first += (size - 1) * stride
            else:
                end += (size - 1) * stride
        end += array.itemsize
    return _memory_owner(array), first, end


def _saved_arrays(saved, depth=0):
    """The arrays in what a Function saved: a tuple of arrays, or an object holding them (the recurrent
    layers' RecurrentSaved), searched two levels deep."""
    if backend.is_array(saved):
        yield saved
    elif depth < 3 and isinstance(saved, (tuple, list)):
        for item in saved:
            yield from _saved_arrays(item, depth + 1)
    elif depth < 2 and hasattr(saved, "__dict__"):
        for item in vars(saved).values():
            yield from _saved_arrays(item, depth + 1)


def _check_saved_arrays_unwritten(ctx):
    for array in _saved_arrays(getattr(ctx, "saved", None)):
        owner, first, end = _span(array)
        entry = _written.get(id(owner))
        if entry is None or entry[0]() is not owner:
            continue
        for written_first, written_end, number in entry[1]:
            if number > ctx.version and written_first < end and first < written_end:
                raise RuntimeError(f"backward: an array that {type(ctx).__name__} saved for its gradient was "
                                   f"modified by an in-place operation after the forward (as torch, this is an "
                                   f"error): modify a clone, or make the change after backward")


def grad_enabled():
    return _state.enabled


@contextlib.contextmanager
def no_grad():
    """Inside this block no graph is recorded (evaluation, optimizer steps)."""
    previous = grad_enabled()
    _state.enabled = False
    try:
        yield
    finally:
        _state.enabled = previous


@contextlib.contextmanager
def enable_grad():
    previous = grad_enabled()
    _state.enabled = True
    try:
        yield
    finally:
        _state.enabled = previous


class Function:
    """One differentiable op. `ctx` is the Function instance: forward stores what backward needs on it."""
    _output_hooks = None   # {output index: that output's nn.hooks.GradientHooks}, once an output has hooks

    def __init__(self):
        self.inputs = ()          # the Tensor inputs, in order (non-Tensor arguments excluded)
        self.needs_input_grad = ()
        self.output_count = 1
        self.freed = False

    def save_for_backward(self, *arrays):
        self.saved = arrays

    def gradient_out(self, index):
        """Where backward may write the gradient of Tensor input `index`, or None (make a new array): the
        parameter's view of a flat optimizer's gradient buffer (its `_grad_slot`) when that gradient will be
        its first since zero_grad, so no copy follows (Tensor._accumulate keeps the view as .grad). Never for an
        input given more than once (linear(w, w), w * w): the engine adds the inputs' gradients in order, so the
        gradient of another position could land in the slot before this one is added. Never for a tensor with
        hooks (they must see the gradient before it lands, and what they return is what lands) nor inside
        autograd.grad (which lands nothing). Ask once per input."""
        tensor = self.inputs[index]
        slot = tensor._grad_slot
        if slot is None or tensor.grad is not None or tensor._creator is not None or slot[0] is not tensor.data:
            return None
        if tensor._hooks is not None or _state.collecting:
            return None
        if sum(t is tensor for t in self.inputs) > 1:
            return None
        return slot[1]

    @classmethod
    def apply(cls, *args, **options):
        from .tensor import Tensor
        ctx = cls()
        tensors = tuple(a for a in args if isinstance(a, Tensor))
        raw = tuple(a.data if isinstance(a, Tensor) else a for a in args)
        _check_same_device(cls.__name__, tensors)
        record = grad_enabled() and any(t.requires_grad for t in tensors)
        if record and _stale_tensors[0]:
            _refuse_stale(cls.__name__, tensors)
        # Known before forward, so that it saves only what the wanted gradients read (as torch does: a weight
        # is not kept for the gradient of an input that needs none, and so cannot trip the version check).
        ctx.needs_input_grad = tuple(record and t.requires_grad for t in tensors)
        outputs = ctx.forward(*raw, **options)
        single = not isinstance(outputs, tuple)
        outputs = (outputs,) if single else outputs
        wrapped = []
        for index, array in enumerate(outputs):
            # (integer outputs, such as pooling indices, need no gradient: torch's rule)
            needs_grad = record and array is not None and array.dtype.kind in "fc"
            tensor = Tensor(array, requires_grad=needs_grad)
            if needs_grad:
                tensor._creator = (ctx, index)
                del tensor.grad   # a non-leaf has no .grad unless retained: reading it warns, as torch (nn/hooks.py)
            wrapped.append(tensor)
        if record:
            ctx.version = _writes[0]
            ctx.inputs = tensors
            ctx.output_count = len(outputs)
            ctx.output_shapes = [None if o is None else (o.shape, o.dtype) for o in outputs]
        return wrapped[0] if single else tuple(wrapped)

    def forward(self, *args, **options):  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def backward(self, *grad_outputs):  # pragma: no cover
        raise NotImplementedError


_stale_tensors = [0]   # how many tensors were ever marked stale (0: Function.apply checks nothing)


def mark_stale(tensor, op):
    """`tensor` was written through a view by a recorded x op= y (nn/tensor_in_place.py): its values are new, but
    its recorded history is not, so a gradient through it would miss the write."""
    tensor._stale_by = op
    _stale_tensors[0] += 1


def _refuse_stale(op, tensors):
    for t in tensors:
        if getattr(t, "_stale_by", None) is not None:
            raise RuntimeError(f"{op}: an input was changed in place through a view of it ({t._stale_by} on a slice "
                               f"or reshape) after autograd recorded how it was made, so its gradient would miss "
                               f"that change; compute it out of place (x = x + y, nn.cat, nn.where) or detach() it")


def _check_same_device(op, tensors):
    devices = {t.device for t in tensors}
    if len(devices) > 1:
        raise ValueError(f"{op}: inputs live on different devices ({', '.join(sorted(devices))}); "
                         f"move them with .to(device) first")


def _topological_order(root_contexts):
    order, seen = [], set()
    stack = [(ctx, False) for ctx in reversed(root_contexts)]
    while stack:
        ctx, expanded = stack.pop()
        if expanded:
            order.append(ctx)
            continue
        if id(ctx) in seen:
            continue
        seen.add(id(ctx))
        stack.append((ctx, True))
        for tensor in ctx.inputs:
            if tensor._creator is not None and id(tensor._creator[0]) not in seen:
                stack.append((tensor._creator[0], False))
    return order[::-1]  # outputs before inputs


def backward(tensor, gradient=None, retain_graph=False):
    """Accumulate d(tensor)/d(leaf) * gradient into every leaf's `.grad`."""
    if not tensor.requires_grad:
        raise RuntimeError("backward: this tensor does not require grad (no graph was recorded for it)")
    gradient = _output_gradient("backward", tensor, gradient)
    begin_backward()
    try:
        if tensor._creator is None:  # a leaf
            if tensor._hooks is not None:
                from .hooks import run_hooks
                gradient = run_hooks(tensor._hooks, gradient)
            tensor._accumulate(gradient)
            return
        _run_graph(((tensor, gradient),), retain_graph)
    finally:
        flush_accumulated()


_accumulated = []     # flat buffer gradient views written by the running backward
_backward_number = [0]


def begin_backward():
    """A backward starts: .grad Tensors made from now on are this backward's (Tensor._accumulate)."""
    _backward_number[0] += 1


def backward_number():
    return _backward_number[0]


def note_accumulated(array):
    """A first gradient written into a flat optimizer's gradient view (Tensor._accumulate, or a Function's
    gradient_out): an array from before this backward, which a graph recorded earlier may have saved as .grad.
    Noted as a write when the backward ends (flush_accumulated), not at once, so that every training step's
    backward keeps the version check's fast path; a node of the graph being run that saved the previous step's
    gradient view is the one case this misses (torch raises there)."""
    _accumulated.append(array)


def flush_accumulated():
    """Note the gradient views written by the backward that ends: the views of one buffer that touch are one
    note (a flat group's parameters are consecutive: usually one note a group, not one a parameter)."""
    if not _accumulated:
        return
    spans = sorted((_span(array) for array in _accumulated), key=lambda span: (id(span[0]), span[1]))
    _accumulated.clear()
    owner, first, end = spans[0]
    for next_owner, next_first, next_end in spans[1:]:
        if next_owner is owner and next_first <= end:
            end = max(end, next_end)
        else:
            _note_span(owner, first, end)
            owner, first, end = next_owner, next_first, next_end
    _note_span(owner, first, end)


def _output_gradient(op, tensor, gradient, position=None):
    """The gradient of an output to start from, as an array of its dtype (cast, as torch's engine casts it): ones
    for a one-element output. Its shape must be the output's, as torch checks it (neither broadcast nor summed)."""
    from .tensor import Tensor
    xp = tensor.xp
    if gradient is None:
        if tensor.data.size != 1:
            which = "" if position is None else f" (outputs[{position}])"
            raise RuntimeError(f"{op}: grad must be given for a non-scalar output{which} of shape {tensor.shape} "
                               f"(grad can be implicitly created only for scalar outputs)")
        return xp.ones_like(tensor.data)
    gradient = gradient.data if isinstance(gradient, Tensor) else gradient
    gradient = gradient if backend.is_array(gradient) else xp.asarray(gradient, dtype=tensor.dtype)
    given, output = ("the gradient", "the tensor") if position is None else \
        (f"grad_outputs[{position}]", f"outputs[{position}]")
    if tuple(gradient.shape) != tensor.shape:
        raise RuntimeError(f"{op}: Mismatch in shape: {given} has shape {tuple(gradient.shape)}, but {output} has "
                           f"shape {tensor.shape}")
    if backend.is_gpu_array(gradient) != backend.is_gpu_array(tensor.data):
        raise ValueError(f"{op}: {given} is on another device than {output} ({tensor.device})")
    if (gradient.dtype.kind == "c") != (tensor.dtype.kind == "c"):
        raise RuntimeError(f"{op}: Mismatch in dtype: {given} is {gradient.dtype}, but {output} is {tensor.dtype} "
                           f"(complex and real do not mix)")
    return gradient.astype(tensor.dtype, copy=False)


def _run_graph(roots, retain_graph, wanted=None, leaf_roots=()):
    """Send each root's (non-leaf tensor, gradient) back through the graph. wanted None: backward, gradients
    accumulate into the leaves' .grad. wanted {id: tensor}: autograd.grad, only the nodes that lead to those
    tensors run, nothing lands in a .grad (nor a flat buffer), and their gradients are returned by id."""
    pending = {}
    for tensor, gradient in roots:
        ctx, index = tensor._creator
        slots = pending.setdefault(id(ctx), [None] * ctx.output_count)
        slots[index] = gradient if slots[index] is None else _sum(slots[index], gradient)
    order = _topological_order([tensor._creator[0] for tensor, _ in roots])
    collected = runs = captured = leaves = None
    if wanted is not None:
        collected = {}
        from .gradients import prune
        order, runs, captured = prune(order, wanted)
    if leaf_roots:   # outputs that are leaves: their given gradient is summed with what the graph sends them
        from .hooks import LeafGradients
        leaves = LeafGradients(order, wanted)
        for tensor, gradient in leaf_roots:
            leaves.add(tensor, gradient)
    for position, ctx in enumerate(order):
        grads_out = pending.pop(id(ctx), None)
        if grads_out is None:
            continue
        if ctx._output_hooks is not None:
            from .hooks import run_output_hooks
            run_output_hooks(ctx, grads_out)
        if collected is not None:
            for index, key in captured.get(id(ctx), ()):
                if grads_out[index] is not None:
                    collected[key] = grads_out[index]
            if id(ctx) not in runs:
                continue
        if ctx.freed:
            raise RuntimeError(f"backward: trying to backward through the graph of {type(ctx).__name__} a second "
                               f"time; its saved arrays were freed (use backward(retain_graph=True))")
        if ctx.version != _writes[0]:
            _check_saved_arrays_unwritten(ctx)
        grads_in = ctx.backward(*grads_out)
        if not isinstance(grads_in, tuple):
            grads_in = (grads_in,)
        if len(grads_in) != len(ctx.inputs):
            raise RuntimeError(f"{type(ctx).__name__}.backward returned {len(grads_in)} gradients "
                               f"for {len(ctx.inputs)} inputs")
        if not retain_graph:
            ctx.freed = True
            ctx.saved = None
        for tensor_in, grad_in, needed in zip(ctx.inputs, grads_in, ctx.needs_input_grad):
            if not needed or grad_in is None:
                continue
            if isinstance(grad_in, np.generic):   # NumPy's arithmetic on 0-d arrays gives scalars: keep arrays
                grad_in = np.asarray(grad_in)
            if grad_in.shape != tensor_in.shape:
                raise RuntimeError(f"{type(ctx).__name__}.backward gave a gradient of shape {grad_in.shape} "
                                   f"for an input of shape {tensor_in.shape}")
            if grad_in.dtype != tensor_in.data.dtype:   # as torch's engine: a float32 leaf gets a float32 .grad
                grad_in = grad_in.astype(tensor_in.data.dtype)
            if tensor_in._creator is None:
                if tensor_in._hooks is None and collected is None:
                    tensor_in._accumulate(grad_in)
                else:   # its hooks (or autograd.grad) need the leaf's whole gradient: summed, landed when complete
                    if leaves is None:
                        from .hooks import LeafGradients
                        leaves = LeafGradients(order, wanted)
                    leaves.add(tensor_in, grad_in)
            else:
                parent, index = tensor_in._creator
                slots = pending.setdefault(id(parent), [None] * parent.output_count)
                slots[index] = grad_in if slots[index] is None else _sum(slots[index], grad_in)
        if leaves is not None:
            leaves.land(position)
    if leaves is not None:
        leaves.land()
        if collected is not None:
            collected.update(leaves.collected)
    return collected


def _sum(a, b):
    total = a + b
    return np.asarray(total) if isinstance(total, np.generic) else total   # (0-d + 0-d)


from .gradients import grad  # noqa: E402,F401  (nn.autograd.grad, as torch.autograd.grad; it uses the above)
