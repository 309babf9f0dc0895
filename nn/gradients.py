"""nn.autograd.grad: the gradients of outputs with respect to chosen tensors, returned instead of accumulated, as
torch.autograd.grad. It walks the same graph as backward (nn/autograd.py), only the part that leads to the
inputs, and lands nothing: no leaf's .grad changes and no Function writes into a flat optimizer's gradient
buffer. First-order only: no graph is recorded through the backward (create_graph=True is refused)."""
import numbers

from kernels import backend

from . import autograd


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False, only_inputs=True,
         allow_unused=None, is_grads_batched=False, materialize_grads=False):
    """A tuple with the gradient of sum(outputs * grad_outputs) with respect to each of `inputs` (Tensors that
    require grad, leaves or not). outputs, inputs and grad_outputs: a Tensor or a sequence; a grad_outputs
    entry may be None for a one-element output (ones). retain_graph defaults to create_graph (False): the
    graph's saved arrays are freed, as by backward. An input that no gradient reaches raises, unless
    allow_unused=True (then its gradient is None) or materialize_grads=True (zeros). Hooks of the non-leaves on
    the way and of the inputs run (nn/hooks.py); a retained non-leaf's .grad is updated, as torch's."""
    from .tensor import Tensor
    if create_graph:
        raise NotImplementedError("grad: create_graph=True is not supported: the backward here is not "
                                  "differentiable (no double backward); compute higher derivatives another way")
    if is_grads_batched:
        raise NotImplementedError("grad: is_grads_batched=True is not supported")
    if not only_inputs:
        raise ValueError("grad: only_inputs=False is not supported (and deprecated in torch)")
    if allow_unused is None:
        allow_unused = materialize_grads
    elif materialize_grads and not allow_unused:
        raise ValueError("grad: materialize_grads=True needs allow_unused True or None")
    outputs = _tensors("outputs", outputs, Tensor)
    inputs = _tensors("inputs", inputs, Tensor)
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    elif isinstance(grad_outputs, Tensor) or backend.is_array(grad_outputs) or isinstance(grad_outputs, numbers.Number):
        grad_outputs = [grad_outputs]
    else:
        grad_outputs = list(grad_outputs)
    if len(grad_outputs) != len(outputs):
        raise ValueError(f"grad: got {len(grad_outputs)} grad_outputs for {len(outputs)} outputs")
    for position, tensor in enumerate(inputs):
        if not tensor.requires_grad:
            raise RuntimeError(f"grad: inputs[{position}] does not require grad (one of the differentiated Tensors "
                               f"does not require grad)")
    roots, leaf_roots = [], []
    for position, (output, given) in enumerate(zip(outputs, grad_outputs)):
        if not output.requires_grad:
            raise RuntimeError(f"grad: element {position} of outputs does not require grad and does not have a "
                               f"grad_fn")
        gradient = autograd._output_gradient("grad", output, given, position)
        (roots if output._creator is not None else leaf_roots).append((output, gradient))
    wanted = {id(tensor): tensor for tensor in inputs}
    retain_graph = create_graph if retain_graph is None else retain_graph
    autograd._state.collecting += 1
    try:
        collected = autograd._run_graph(roots, retain_graph, wanted, leaf_roots)
    finally:
        autograd._state.collecting -= 1
    result = []
    for position, tensor in enumerate(inputs):
        gradient = collected.get(id(tensor))
        if gradient is None and not allow_unused:
            raise RuntimeError(f"grad: inputs[{position}] appears to not have been used in the graph (no gradient "
                               f"reaches it from the outputs); set allow_unused=True if this is the desired behavior")
        if gradient is None and materialize_grads:
            gradient = tensor.xp.zeros_like(tensor.data)
        result.append(None if gradient is None else Tensor(gradient))
    return tuple(result)


def backward(tensor, gradient=None, retain_graph=None, create_graph=False, inputs=None):
    """Tensor.backward, as torch's: accumulate d(tensor)/d(leaf) * gradient into the leaves' .grad, or only into
    the .grad of `inputs` (Tensors, leaves or not; one that no gradient reaches is left as it is). First order
    only: create_graph=True is refused."""
    from .tensor import Tensor
    if create_graph:
        raise NotImplementedError("backward: create_graph=True is not supported: the backward here is not "
                                  "differentiable (no double backward)")
    if inputs is None:
        autograd.backward(tensor, gradient, retain_graph=bool(retain_graph))
        return
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    if not inputs:
        raise RuntimeError("backward: the `inputs` argument cannot be empty")
    if not tensor.requires_grad:
        raise RuntimeError("backward: this tensor does not require grad (no graph was recorded for it)")
    for position, item in enumerate(inputs):
        if not isinstance(item, Tensor):
            raise TypeError(f"backward: inputs must be Tensors, but inputs[{position}] is {type(item).__name__}")
    unique = list({id(target): target for target in inputs}.values())   # each tensor once, as torch
    for target in unique:
        if target._creator is not None:   # as torch: a non-leaf input retains its gradient (run_hooks sets it)
            target.retain_grad()
    gradients = grad(tensor, unique, gradient, bool(retain_graph), allow_unused=True)
    autograd.begin_backward()
    for target, gradient_in in zip(unique, gradients):
        if gradient_in is not None and target._creator is None:
            target._accumulate(gradient_in.data)
    autograd.flush_accumulated()


def _tensors(name, value, tensor_type):
    values = [value] if isinstance(value, tensor_type) else list(value) if isinstance(value, (tuple, list)) else None
    if values is None:
        raise TypeError(f"grad: {name} must be a Tensor or a sequence of Tensors, got {type(value).__name__}")
    if not values:
        raise RuntimeError(f"grad: `{name}` argument to `grad()` cannot be empty")
    for position, item in enumerate(values):
        if not isinstance(item, tensor_type):
            raise TypeError(f"grad: all {name} have to be Tensors, but {name}[{position}] is {type(item).__name__}")
    return values


def prune(order, wanted):
    """autograd.grad's part of the graph: (the nodes to visit in order, the ids of those whose backward must run:
    they lead to a wanted tensor, {id(node): [(output index, id of a wanted non-leaf it made)]})."""
    captured = {}
    for key, tensor in wanted.items():
        if tensor._creator is not None:
            captured.setdefault(id(tensor._creator[0]), []).append((tensor._creator[1], key))
    runs = set()
    for ctx in reversed(order):   # inputs before outputs
        for tensor, needed in zip(ctx.inputs, ctx.needs_input_grad):
            if needed and (id(tensor) in wanted or (tensor._creator is not None and id(tensor._creator[0]) in runs)):
                runs.add(id(ctx))
                break
    return [ctx for ctx in order if id(ctx) in runs or id(ctx) in captured], runs, captured
