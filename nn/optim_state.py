"""nn.optim's per-parameter state: the mapping that holds it (optimizer.state), what state_dict() saves of a state
entry and how load_state_dict() puts a loaded one in place; and an optimizer's state through copy.deepcopy and
pickle (nn/optim.py's Optimizer)."""
from collections import defaultdict

from kernels import backend

from .autograd import note_in_place


class ParamState(defaultdict):
    """optimizer.state, as torch's: a defaultdict(dict) from each parameter (hashed by identity, as torch's Tensors)
    to its state dict, so `state[p]` makes an empty entry where p has none. The values are what the update kernels
    read and write: NumPy or CuPy arrays (exp_avg, momentum_buffer, ...: with flat=True, views into the group's
    buffers) and 'step', a number, or on the device a 1-element view of the group's step counts."""

    def __init__(self, entries=()):
        super().__init__(dict, entries)

    def __reduce__(self):   # (defaultdict's would hand the factory to __init__)
        return type(self), (list(self.items()),)

    def copy(self):   # (defaultdict's would too)
        return type(self)(self.items())

    __copy__ = copy


def _loaded_into(current, loaded):
    """A loaded state value written into the array the optimizer already holds for it, where that array has its
    shape, dtype and device (a device step count: filled), so that a flat group's buffers and a captured step
    (nn.capture), which keep updating the arrays they hold, go on from the loaded values; else the new value."""
    if not backend.is_array(current) or backend.is_capturing():
        return loaded
    if backend.is_array(loaded) and (loaded.shape, loaded.dtype, backend.is_gpu_array(loaded)) == \
            (current.shape, current.dtype, backend.is_gpu_array(current)):
        current[...] = loaded
    elif isinstance(loaded, int) and current.size == 1:   # a step count kept on the device
        current.fill(loaded)
    else:
        return loaded
    note_in_place(current)
    return current


def _saved_value(key, value):
    if key == "step" and backend.is_array(value):   # a device count: a number, as in torch's state dicts
        return int(round(float(backend.to_numpy(value).reshape(-1)[0])))
    return backend.to_numpy(value).copy() if backend.is_array(value) else value


def copied_state(optimizer):
    """Optimizer.__getstate__: its attributes, the per-parameter state listed by position (a copy's parameters
    are new objects with new ids)."""
    state = dict(optimizer.__dict__)
    state["state"] = [optimizer.state.get(p) for p in optimizer._parameters()]
    return state


def restore_copied_state(optimizer, state):
    """Optimizer.__setstate__. The copy's arrays are copies: a flat group's buffers no longer hold its
    parameters, nor are its step counts views of the group's device counts; both are made again at its next
    step (the step counts read back as numbers meanwhile)."""
    entries = state.pop("state")
    optimizer.__dict__.update(state)
    optimizer.state = ParamState((p, entry) for p, entry in zip(optimizer._parameters(), entries) if entry is not None)
    for group in optimizer.param_groups:
        if group.flat:
            group.flat = None
        if group.step_counts is not None:
            for p in group["params"]:
                entry = optimizer.state.get(p)
                if entry is not None and backend.is_array(entry.get("step")):
                    entry["step"] = _saved_value("step", entry["step"])
            group.step_counts = None
