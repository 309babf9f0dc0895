"""Optimizers with torch.optim's rules, hyper-parameters and state-dict layout.

step() hands each parameter to one fused in-place kernel (kernels.sgd_update / adam_update, Adam and AdamW in
nn/optim_adam.py; RMSprop and Adagrad, in nn/optim_adaptive.py, kernels.rmsprop_update / adagrad_update): a
single CUDA kernel per parameter on the GPU, the NumPy reference on the CPU; with flat=True, one kernel
for a whole param group on the GPU, over buffers that hold every parameter, gradient and state array of
the group (_FlatGroup, nn/optim_flat.py). The per-parameter state (momentum buffer; step, exp_avg,
exp_avg_sq, max_exp_avg_sq) lives on the parameter's device.
optimizer.state[p] is p's state dict, as in torch (ParamState, nn/optim_state.py). state_dict() follows PyTorch:
{'state': {index: {...}}, 'param_groups': [{..., 'params': [indices]}]} with parameters numbered in group order,
arrays as NumPy copies and 'step' as a number. step(closure) calls the closure first and returns its loss.
A custom optimizer is written as for torch: subclass Optimizer, pass its defaults to __init__, and step through
self.param_groups and self.state[p].

Every step notes the arrays it writes (nn/autograd.py's version check, as torch's version counters): a graph
recorded before a step that saved a parameter raises at its backward instead of using the new values.

torch's foreach=, fused= and capturable= are taken and change nothing here: the update is always one fused
kernel per parameter (or per group, flat=True), and a GPU step is always capture-safe (below).
differentiable=True is refused: the update runs in place outside autograd.

Capture-safe on the GPU (nn.capture replays step() from a CUDA graph, where no Python runs): wherever
the kernels run on the device (CuPy parameters, or the simulator), the values that change from step to
step are kept in device memory and passed to the kernels as 1-element arrays instead of host numbers:
- each group's lr in `group.lr_array` (float32), written when the group's 'lr' is set (a scheduler's
  step, a hand-set lr, load_state_dict), at once, outside any graph, so that the next replay uses it;
  setting a different lr while a graph is being captured raises rather than freezing it into the graph;
- Adam's step counts in `group.step_counts` (one per parameter; state['step'] is a 1-element view of
  it), advanced on the device by step() with one in-place add per group, which a replay repeats. The
  kernel derives the bias corrections from the count, so replays follow eager steps.
State that step() creates (moments, momentum buffers, these arrays) must exist before a capture (a
replay would re-initialise it each time): creating it while capturing raises. On the CPU the plain
numbers are passed, exactly as torch.optim computes with them.
"""
import copy
import math
import warnings

import numpy as np

import kernels
from kernels import backend

from .autograd import enable_grad, note_in_place
from .module import _as_numpy
from .optim_flat import _MOMENTS, _FlatGroup
from .optim_group import _ParamGroup  # noqa: F401  (also imported from here by tests)
from .optim_state import ParamState, _loaded_into, _saved_value, copied_state, restore_copied_state
from .tensor import Tensor


def _refuse_while_capturing(optimizer, what):
    if backend.is_capturing():
        raise RuntimeError(f"{type(optimizer).__name__}.step: {what} would be created while a CUDA graph is "
                           f"being captured, and every replay would re-initialise it; run an eager step first "
                           f"(nn.capture's warm-up does)")


def _closure_loss(closure):
    """torch's step(closure): the closure (which recomputes the loss and its gradients) runs first, with
    autograd on, and its result is what step returns."""
    if closure is None:
        return None
    with enable_grad():
        return closure()


def _refuse_differentiable(optimizer, differentiable):
    """torch's differentiable=True records the update in the autograd graph; here it runs in place outside it."""
    if differentiable:
        raise ValueError(f"{optimizer}: the update runs in place outside autograd, so expected differentiable=False, "
                         f"got differentiable={differentiable!r}")


class Optimizer:
    flat = False   # SGD(flat=True), Adam(flat=True): see Adam's docstring
    # whether the update reads the step counts (Adam's bias corrections, Adagrad's decayed lr): then one launch
    # for a flat group needs every parameter at the same count; RMSprop keeps counts only for its state dict
    update_reads_step_counts = True

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.param_groups = []
        self.state = ParamState()   # parameter -> its state dict
        if isinstance(params, Tensor):
            raise TypeError(f"{type(self).__name__}: params must be an iterable of Tensors or of dicts, "
                            f"got a single Tensor")
        groups = list(params)
        if not groups:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, group):
        name = type(self).__name__
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"{name}: can only optimize Tensors, got {type(p).__name__}")
            if not p.is_leaf:   # its .grad is never set: it would silently never change
                raise ValueError(f"{name}: can't optimize a non-leaf Tensor (the result of an op); expected a leaf "
                                 f"such as a Parameter, got {p!r}")
        if len({id(p) for p in params}) != len(params):
            warnings.warn(f"{name}: a parameter group lists the same parameter more than once; in torch this will "
                          f"become an error (see github.com/pytorch/pytorch/issues/40967)", UserWarning, stacklevel=3)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in params):
            raise ValueError(f"{name}: some parameters appear in more than one parameter group")
        full = _ParamGroup({**self.defaults, **{k: v for k, v in group.items() if k != "params"},
                            "params": params})
        self._validate(full)
        self.param_groups.append(full)

    def _validate(self, group):
        """Check a new param group's values: a custom optimizer (as torch's) checks its own in __init__."""

    def step(self, closure=None):
        raise NotImplementedError(f"{type(self).__name__}: an Optimizer subclass defines step(closure=None)")

    def _parameters(self):
        return [p for group in self.param_groups for p in group["params"]]

    # copy.deepcopy and pickle: the state by position (a copy's parameter ids differ); nn/optim_state.py
    def __getstate__(self):
        return copied_state(self)

    def __setstate__(self, state):
        restore_copied_state(self, state)

    def _uses_device_scalars(self, p):
        """Whether p's update reads lr (and Adam's step) from device arrays: wherever the CUDA kernels run."""
        if backend.is_gpu_array(p.data):
            return True
        # NumPy: on the CPU path unless the simulator runs the kernels (kept cheap: called per parameter per step)
        return backend.SIMULATOR and backend.device_of(type(self).__name__, p.data) == "cuda"

    def _lr_argument(self, group, p, on_device):
        """group['lr'], or on the device the group's lr array (made on first use, then kept current)."""
        if not on_device:
            return group["lr"]
        if group.lr_array is None:
            _refuse_while_capturing(self, "the device copy of lr")
            group.lr_array = backend.array_module(p.data).zeros(1, dtype=p.data.dtype)
            group.lr_array_value = None
        group.write_lr()
        return group.lr_array

    def _device_step(self, group, p, value):
        """p's slot of the group's step counts (made on first use), set to `value`, as a 1-element view."""
        _refuse_while_capturing(self, "the device step count")
        if group.step_counts is None:
            group.step_counts = backend.array_module(p.data).zeros(len(group["params"]), dtype=p.data.dtype)
        index = next(i for i, q in enumerate(group["params"]) if q is p)
        view = group.step_counts[index:index + 1]
        view.fill(value)
        return view

    def _prepared_steps(self, group):
        """What Adam, RMSprop and Adagrad do first for a group: (the parameters that step, each with whether its
        update runs on the device; the group's _FlatGroup for one launch, or None), their state made and their
        step counts advanced."""
        stepping = [(p, self._uses_device_scalars(p)) for p in group["params"] if p.grad is not None]
        for p, on_device in stepping:
            self._prepare_state(group, p, on_device)
        packed = self._packed(group, stepping, [self.state.get(p, {}) for p in group["params"]])
        self._count_steps(group, [self.state[p] for p, _ in stepping])
        return stepping, packed

    @staticmethod
    def _count_steps(group, states):
        """Add 1 to the step of each parameter that steps: on the device one in-place add over the whole
        group when all its parameters step (the usual case), else one per parameter."""
        device_steps = []
        for state in states:
            if backend.is_array(state["step"]):
                device_steps.append(state["step"])
            else:
                state["step"] += 1
        if device_steps and len(device_steps) == len(group["params"]):
            _add_one(group.step_counts)
        else:
            for count in device_steps:
                _add_one(count)   # a view: writes into group.step_counts

    def _packed(self, group, stepping, states):
        """The group's _FlatGroup (flat=True), packed again if something replaced one of its arrays, when
        this step can update the whole group in one launch; else None (the step goes parameter by
        parameter). `stepping`: (parameter, on_device) for those with a gradient; `states`: every
        parameter's state, in group order."""
        params = group["params"]
        if not self.flat or group.flat is False or not stepping or not all(on_device for _, on_device in stepping):
            return None
        if len(stepping) != len(params):
            if group.step_counts is not None and self.update_reads_step_counts:
                # Adam: the parameters without a gradient fall behind the others' step counts, which one
                # launch with one count cannot follow; pack (next time) checks the counts. While capturing,
                # never again: the graph records this step's per-parameter updates of the arrays in place.
                if backend.is_capturing():
                    group.flat, group.captured_unpacked = False, True
                else:
                    group.flat = None
            return None
        packed = group.flat
        if packed is None or not packed.holds(params, states):
            if backend.is_capturing():
                # Packing copies and reads the step counts on the host: not in a graph. The graph records
                # the per-parameter update of the arrays in place now, so no later step may move them.
                group.flat, group.captured_unpacked = False, True
                return None
            group.flat = packed = _FlatGroup.pack(params, states, group, self.update_reads_step_counts)
            if packed is None:
                group.flat = False
                warnings.warn(f"{type(self).__name__}(flat=True): a param group steps parameter by parameter from "
                              f"now on: its parameters have different step counts (some had no gradient in a "
                              f"step), dtypes or devices, or one is listed twice", RuntimeWarning, stacklevel=3)
                return None
        return packed if packed.take_gradients() else None

    def zero_grad(self, set_to_none=True):
        for p in self._parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad.data[...] = 0
                note_in_place(p.grad.data)   # torch's zero_() counts as a write too

    # ---- state dicts ---------------------------------------------------------------------------
    def state_dict(self):
        groups, next_index = [], 0
        for group in self.param_groups:
            entry = {k: v for k, v in group.items() if k != "params"}
            entry["params"] = list(range(next_index, next_index + len(group["params"])))
            next_index += len(group["params"])
            groups.append(entry)
        state = {}
        for index, p in enumerate(self._parameters()):
            if p in self.state:
                state[index] = {k: _saved_value(k, v) for k, v in self.state[p].items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Load a state dict from this class or from the matching torch.optim optimizer."""
        name = type(self).__name__
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"{name}.load_state_dict: expected {len(self.param_groups)} parameter groups, "
                             f"got {len(saved_groups)}")
        for i, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"{name}.load_state_dict: group {i} has {len(group['params'])} parameters, "
                                 f"the state dict has {len(saved['params'])}")
        by_index = {}
        for saved, group in zip(saved_groups, self.param_groups):
            by_index.update(zip(saved["params"], group["params"]))
        loaded = []   # (parameter, entry), every value checked and converted first: a refused load changes nothing
        for key, entry in state_dict["state"].items():
            p = by_index.get(int(key))
            if p is None:
                raise ValueError(f"{name}.load_state_dict: state for parameter {key}, but the param groups number "
                                 f"parameters 0 to {len(by_index) - 1}")
            loaded.append((p, {k: self._load_value(k, v, p, name, key) for k, v in entry.items()}))
        new_state = ParamState()
        for p, entry in loaded:
            current = self.state.get(p, {})
            new_state[p] = {k: _loaded_into(current.get(k), value) for k, value in entry.items()}
        capturing = backend.is_capturing()
        for saved, group in zip(saved_groups, self.param_groups):
            # every saved key, as torch (which replaces the group): a scheduler's keys (OneCycleLR's max_lr, ...)
            # and the user's own survive a resume. Set one by one: a new lr reaches its device copy.
            for key, value in saved.items():
                if key != "params":
                    group[key] = tuple(value) if key == "betas" else copy.deepcopy(value)
            if group.flat is False and not capturing and not group.captured_unpacked:
                group.flat = None   # flat=True: the loaded step counts may allow one launch again
            elif group.flat and self.update_reads_step_counts and group.step_counts is not None and not capturing:
                counts = backend.to_numpy(group.step_counts)   # (loaded into the packed group's own counts)
                if not (counts == counts[0]).all():
                    group.flat = None   # one launch reads one count: pack again, which refuses and says so
        self.state = new_state

    @staticmethod
    def _load_value(key, value, param, name="load_state_dict", index=None):
        if key == "step":
            return int(round(float(_as_numpy(value))))
        if value is None or not (key in _MOMENTS or _is_array_like(value)):
            return copy.deepcopy(value)   # a custom optimizer's own numbers and such: as saved, as torch
        array = np.array(_as_numpy(value), dtype=param.dtype, order="C")  # a copy, never a view
        if key in _MOMENTS and array.shape != param.shape:   # (torch takes it and fails at the next step)
            raise ValueError(f"{name}.load_state_dict: state {key!r} of parameter {index} must have the parameter's "
                             f"shape {param.shape}, got {array.shape}")
        return backend.to_device(array, param.device)

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params"]
        return "\n".join(lines) + "\n)"


def _is_array_like(value):
    """An array or a Tensor (ours or torch's), which load_state_dict puts on the parameter's device and dtype."""
    return isinstance(value, Tensor) or backend.is_array(value) or (hasattr(value, "shape") and
                                                                    not isinstance(value, np.generic))


def _add_one(counts):
    """counts += 1 in place on its device: on the GPU a CuPy kernel on the current stream, which a graph
    capture records, so that every replay advances the counts."""
    counts += 1


def _check_number(optimizer, name, value, minimum=0.0, below=None):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{optimizer}: {name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value < minimum or (below is not None and value >= below):
        bounds = f">= {minimum}" + (f" and < {below}" if below is not None else "")
        raise ValueError(f"{optimizer}: {name} must be {bounds}, got {value!r}")


class SGD(Optimizer):
    """torch.optim.SGD: momentum, dampening, weight_decay, nesterov, maximize. flat=True: as Adam's (optim_adam.py; one
    update launch for a param group on the GPU, from the step after the momentum buffers are made)."""

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
                 maximize=False, flat=False, *, foreach=None, differentiable=False, fused=None):
        _refuse_differentiable("SGD", differentiable)   # foreach, fused: see the module's docstring
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov, maximize=maximize))
        self.flat = bool(flat)

    def _step_packed(self, group):
        """flat=True: the whole group's update in one launch, where it can be (see _packed); False where
        the group must step parameter by parameter (the first step with momentum makes the buffers)."""
        if not self.flat:
            return False
        params, momentum = group["params"], group["momentum"]
        states = [self.state.get(p, {}) for p in params]
        if momentum != 0 and any(state.get("momentum_buffer") is None for state in states):
            return False
        stepping = [(p, self._uses_device_scalars(p)) for p in params if p.grad is not None]
        packed = self._packed(group, stepping, states)
        if packed is None:
            return False
        kernels.sgd_update(packed.param_buffer, packed.grad_buffer,
                           packed.moments.get("momentum_buffer") if momentum != 0 else None,
                           lr=self._lr_argument(group, params[0], True), momentum=momentum,
                           dampening=group["dampening"], weight_decay=group["weight_decay"],
                           nesterov=group["nesterov"], maximize=group["maximize"])
        note_in_place(packed.param_buffer)   # one note: every parameter of the group is a view of it
        return True

    def _validate(self, group):
        _check_number("SGD", "lr", group["lr"])
        _check_number("SGD", "momentum", group["momentum"])
        _check_number("SGD", "dampening", group["dampening"], minimum=-math.inf)
        _check_number("SGD", "weight_decay", group["weight_decay"])
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(f"SGD: nesterov momentum needs momentum > 0 and dampening 0, got "
                             f"momentum={group['momentum']}, dampening={group['dampening']}")

    def step(self, closure=None):
        loss = _closure_loss(closure)
        for group in self.param_groups:
            momentum = group["momentum"]
            if self._step_packed(group):
                continue
            for p in group["params"]:
                if p.grad is None:
                    continue
                buffer, first_step = None, False
                if momentum != 0:
                    state = self.state[p]
                    buffer = state.get("momentum_buffer")
                    if buffer is None:
                        _refuse_while_capturing(self, "a momentum buffer")   # a replay would redo the first step
                        buffer = state["momentum_buffer"] = backend.array_module(p.data).empty_like(p.data)
                        first_step = True
                lr = self._lr_argument(group, p, self._uses_device_scalars(p))
                kernels.sgd_update(p.data, p.grad.data, buffer, lr=lr, momentum=momentum,
                                   dampening=group["dampening"], weight_decay=group["weight_decay"],
                                   nesterov=group["nesterov"], maximize=group["maximize"], first_step=first_step)
                note_in_place(p.data)   # a graph that saved p's old values must not backward through the new ones
            if self.flat and not backend.is_capturing():
                # pack now that the buffers exist, so that the next step, perhaps captured, is one launch
                self._packed(group, [(p, self._uses_device_scalars(p)) for p in group["params"] if p.grad is not None],
                             [self.state.get(p, {}) for p in group["params"]])
        return loss


from . import lr_scheduler  # noqa: E402,F401  (torch.optim.lr_scheduler's place)
from .lr_scheduler import CosineAnnealingLR, StepLR, WarmupCosineAnnealingLR  # noqa: E402,F401
from .optim_adam import Adam, AdamW  # noqa: E402,F401  (they extend Optimizer, above)
from .optim_adaptive import Adagrad, RMSprop  # noqa: E402,F401  (they extend Optimizer, above)
