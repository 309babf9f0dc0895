"""Optimizers with torch.optim's rules, hyper-parameters and state-dict layout.

step() hands each parameter to one fused in-place kernel (kernels.sgd_update / adam_update): a
single CUDA kernel per parameter on the GPU, the NumPy reference on the CPU. The per-parameter state
(momentum buffer; step, exp_avg, exp_avg_sq, max_exp_avg_sq) lives on the parameter's device.
state_dict() follows PyTorch: {'state': {index: {...}}, 'param_groups': [{..., 'params': [indices]}]}
with parameters numbered in group order, and arrays as NumPy copies.
"""
import math

import numpy as np

import kernels
from kernels import backend

from .module import _as_numpy
from .tensor import Tensor


class Optimizer:
    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.param_groups = []
        self.state = {}  # id(parameter) -> dict
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
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in params):
            raise ValueError(f"{name}: some parameters appear in more than one parameter group")
        full = {**self.defaults, **{k: v for k, v in group.items() if k != "params"}, "params": params}
        self._validate(full)
        self.param_groups.append(full)

    def _validate(self, group):  # pragma: no cover - subclasses define it
        raise NotImplementedError

    def _parameters(self):
        return [p for group in self.param_groups for p in group["params"]]

    def zero_grad(self, set_to_none=True):
        for p in self._parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad.data[...] = 0

    # ---- state dicts ---------------------------------------------------------------------------
    def state_dict(self):
        index = {id(p): i for i, p in enumerate(self._parameters())}
        groups, next_index = [], 0
        for group in self.param_groups:
            entry = {k: v for k, v in group.items() if k != "params"}
            entry["params"] = list(range(next_index, next_index + len(group["params"])))
            next_index += len(group["params"])
            groups.append(entry)
        state = {}
        for p in self._parameters():
            if id(p) in self.state:
                state[index[id(p)]] = {k: (backend.to_numpy(v).copy() if backend.is_array(v) else v)
                                       for k, v in self.state[id(p)].items()}
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
        new_state = {}
        for key, entry in state_dict["state"].items():
            p = by_index[int(key)]
            new_state[id(p)] = {k: self._load_value(k, v, p) for k, v in entry.items()}
        for saved, group in zip(saved_groups, self.param_groups):
            for key, value in saved.items():
                if key in self.defaults or key == "initial_lr":
                    group[key] = tuple(value) if isinstance(value, list) else value
        self.state = new_state

    @staticmethod
    def _load_value(key, value, param):
        if key == "step":
            return int(round(float(_as_numpy(value))))
        if value is None:
            return None
        array = np.array(_as_numpy(value), dtype=param.dtype, order="C").reshape(param.shape)  # a copy, never a view
        return backend.to_device(array, param.device)

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params"]
        return "\n".join(lines) + "\n)"


def _check_number(optimizer, name, value, minimum=0.0, below=None):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{optimizer}: {name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value < minimum or (below is not None and value >= below):
        bounds = f">= {minimum}" + (f" and < {below}" if below is not None else "")
        raise ValueError(f"{optimizer}: {name} must be {bounds}, got {value!r}")


class SGD(Optimizer):
    """torch.optim.SGD: momentum, dampening, weight_decay, nesterov, maximize."""

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
                 maximize=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov, maximize=maximize))

    def _validate(self, group):
        _check_number("SGD", "lr", group["lr"])
        _check_number("SGD", "momentum", group["momentum"])
        _check_number("SGD", "dampening", group["dampening"], minimum=-math.inf)
        _check_number("SGD", "weight_decay", group["weight_decay"])
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(f"SGD: nesterov momentum needs momentum > 0 and dampening 0, got "
                             f"momentum={group['momentum']}, dampening={group['dampening']}")

    def step(self):
        for group in self.param_groups:
            momentum = group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                buffer, first_step = None, False
                if momentum != 0:
                    state = self.state.setdefault(id(p), {})
                    buffer = state.get("momentum_buffer")
                    if buffer is None:
                        buffer = state["momentum_buffer"] = backend.array_module(p.data).empty_like(p.data)
                        first_step = True
                kernels.sgd_update(p.data, p.grad.data, buffer, lr=group["lr"], momentum=momentum,
                                   dampening=group["dampening"], weight_decay=group["weight_decay"],
                                   nesterov=group["nesterov"], maximize=group["maximize"], first_step=first_step)


class Adam(Optimizer):
    """torch.optim.Adam (L2 weight decay added to the gradient); AdamW decouples it."""
    decoupled_weight_decay = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
                 maximize=False):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize))

    def _validate(self, group):
        name = type(self).__name__
        _check_number(name, "lr", group["lr"])
        _check_number(name, "eps", group["eps"])
        _check_number(name, "weight_decay", group["weight_decay"])
        if len(group["betas"]) != 2:
            raise ValueError(f"{name}: betas must be a pair, got {group['betas']!r}")
        for i, beta in enumerate(group["betas"]):
            _check_number(name, f"betas[{i}]", beta, below=1.0)

    def step(self):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state.setdefault(id(p), {})
                if not state:
                    xp = backend.array_module(p.data)
                    state.update(step=0, exp_avg=xp.zeros_like(p.data), exp_avg_sq=xp.zeros_like(p.data))
                if group["amsgrad"] and state.get("max_exp_avg_sq") is None:
                    state["max_exp_avg_sq"] = backend.array_module(p.data).zeros_like(p.data)
                state["step"] += 1
                kernels.adam_update(p.data, p.grad.data, state["exp_avg"], state["exp_avg_sq"], step=state["step"],
                                    lr=group["lr"], beta1=beta1, beta2=beta2, eps=group["eps"],
                                    weight_decay=group["weight_decay"],
                                    decoupled_weight_decay=self.decoupled_weight_decay, amsgrad=group["amsgrad"],
                                    max_exp_avg_sq=state.get("max_exp_avg_sq"), maximize=group["maximize"])


class AdamW(Adam):
    """torch.optim.AdamW: weight decay applied to the parameter, not the gradient (default 1e-2)."""
    decoupled_weight_decay = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False,
                 maximize=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         maximize=maximize)


from . import lr_scheduler  # noqa: E402  (torch.optim.lr_scheduler's place)
from .lr_scheduler import CosineAnnealingLR, StepLR  # noqa: E402,F401
