"""torch.optim.RMSprop and Adagrad: the per-parameter adaptive-rate optimizers, with torch's rules, state names and
state-dict layout (exported from nn.optim, whose Optimizer they extend: see its docstring for param groups, state
dicts, the version-check notes and capture safety).

step() hands each parameter to one fused in-place kernel (kernels.rmsprop_update / adagrad_update), or with
flat=True on the GPU the whole param group to one launch over its flat buffers, as Adam's. Both keep torch's
per-parameter 'step' count; wherever the kernels run on the device it lives in the group's step_counts, advanced
there by one in-place add per step, so that a CUDA graph replaying step() advances it (Adagrad's kernel derives
its decayed rate lr / (1 + (step - 1) * lr_decay) from it; RMSprop's update does not depend on it).
"""
import kernels
from kernels import backend

from .autograd import note_in_place
from .optim import Optimizer, _check_number, _closure_loss, _refuse_differentiable, _refuse_while_capturing


class _AdaptiveOptimizer(Optimizer):
    """One step as Adam's: make missing state, pack the group (flat=True), count the steps, then one update
    launch for the group or one per parameter. Subclasses name their state arrays and run their update."""

    def step(self, closure=None):
        loss = _closure_loss(closure)
        for group in self.param_groups:
            stepping, packed = self._prepared_steps(group)
            if packed is not None:   # the whole group in one launch
                self._update(group, packed.param_buffer, packed.grad_buffer, packed.moments, packed.step_count,
                             self._lr_argument(group, stepping[0][0], True))
                note_in_place(packed.param_buffer)   # one note: every parameter of the group is a view of it
                continue
            for p, on_device in stepping:
                state = self.state[p]
                self._update(group, p.data, p.grad.data, state, state["step"], self._lr_argument(group, p, on_device))
                note_in_place(p.data)   # a graph that saved p's old values must not backward through the new ones
        return loss

    def _prepare_state(self, group, p, on_device):
        state = self.state[p]
        missing = [key for key in self._state_arrays(group) if state.get(key) is None]
        if "step" not in state or missing:
            _refuse_while_capturing(self, f"{type(self).__name__}'s state")
            state.setdefault("step", 0)
            for key in missing:
                state[key] = backend.array_module(p.data).full_like(p.data, self._initial_value(key))
        if on_device and not backend.is_array(state["step"]):   # new, or loaded from a state dict
            state["step"] = self._device_step(group, p, state["step"])

    def _state_arrays(self, group):  # pragma: no cover - subclasses define it
        raise NotImplementedError

    def _initial_value(self, key):
        return 0.0

    def _update(self, group, param, grad, arrays, step, lr):  # pragma: no cover - subclasses define it
        raise NotImplementedError


class RMSprop(_AdaptiveOptimizer):
    """torch.optim.RMSprop: square_avg = alpha * square_avg + (1 - alpha) * g^2 (g: the gradient, negated with
    maximize, plus weight_decay * param), centered: grad_avg lerped towards g and its square taken off;
    param -= lr * g / (sqrt(.) + eps), or through momentum_buffer = momentum * buffer + g / (sqrt(.) + eps).
    flat=True: as Adam's (one update launch for a param group on the GPU). capturable, foreach: taken, changing
    nothing (nn/optim.py's docstring)."""
    update_reads_step_counts = False   # (its step counts are kept for the state dict only)

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False,
                 maximize=False, flat=False, *, capturable=False, foreach=None, differentiable=False):
        _refuse_differentiable("RMSprop", differentiable)
        super().__init__(params, dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered,
                                      weight_decay=weight_decay, maximize=maximize))
        self.flat = bool(flat)

    def _validate(self, group):
        for name in ("lr", "eps", "momentum", "weight_decay", "alpha"):   # torch's order
            _check_number("RMSprop", name, group[name])

    def _state_arrays(self, group):
        return ("square_avg",) + (("momentum_buffer",) if group["momentum"] > 0 else ()) + \
            (("grad_avg",) if group["centered"] else ())

    def _update(self, group, param, grad, arrays, step, lr):
        kernels.rmsprop_update(param, grad, arrays["square_avg"], arrays.get("grad_avg"),
                               arrays.get("momentum_buffer"), lr=lr, alpha=group["alpha"], eps=group["eps"],
                               weight_decay=group["weight_decay"], momentum=group["momentum"],
                               centered=group["centered"], maximize=group["maximize"])


class Adagrad(_AdaptiveOptimizer):
    """torch.optim.Adagrad (dense gradients): sum += g^2 (g: the gradient, negated with maximize, plus
    weight_decay * param); param -= lr / (1 + (step - 1) * lr_decay) * g / (sqrt(sum) + eps).

    As torch, the state (step 0, sum filled with initial_accumulator_value) is made at construction, and every
    sum starts from the constructor's initial_accumulator_value: a param group's own value is kept in the
    group (and its state dict) but not used, as in torch 2.13. flat=True: as Adam's. foreach, fused: taken,
    changing nothing (nn/optim.py's docstring)."""

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10,
                 maximize=False, flat=False, *, foreach=None, differentiable=False, fused=None):
        _refuse_differentiable("Adagrad", differentiable)
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, maximize=maximize))
        self.flat = bool(flat)
        for group in self.param_groups:
            for p in group["params"]:
                self._prepare_state(group, p, on_device=False)   # host counts: a first step moves them

    def _validate(self, group):
        for name in ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps"):   # torch's order
            _check_number("Adagrad", name, group[name])

    def _state_arrays(self, group):
        return ("sum",)

    def _initial_value(self, key):
        return self.defaults["initial_accumulator_value"]

    def _update(self, group, param, grad, arrays, step, lr):
        kernels.adagrad_update(param, grad, arrays["sum"], step=step, lr=lr, lr_decay=group["lr_decay"],
                               weight_decay=group["weight_decay"], eps=group["eps"], maximize=group["maximize"])
