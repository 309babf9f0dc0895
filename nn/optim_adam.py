"""torch.optim.Adam and AdamW, with torch's rules, state names and state-dict layout (exported from nn.optim, whose
Optimizer they extend: see its docstring for param groups, state dicts, the version-check notes and capture safety).
step() hands each parameter to kernels.adam_update, or with flat=True on the GPU the whole param group to one launch
over its flat buffers (nn/optim_flat.py)."""
import kernels
from kernels import backend

from .autograd import note_in_place
from .optim import Optimizer, _check_number, _closure_loss, _refuse_differentiable, _refuse_while_capturing


class Adam(Optimizer):
    """torch.optim.Adam (L2 weight decay added to the gradient); AdamW, or decoupled_weight_decay=True (torch 2.13,
    a param group key), decouples it. foreach, capturable, fused: taken, changing nothing (nn/optim.py's docstring).

    flat=True (on the GPU; ignored on the CPU path): each param group's parameters, gradients and moments
    live in one contiguous buffer each (_FlatGroup), so that step() is one kernel launch for the group
    and clip_grad_norm_ of its parameters one norm and one scale, instead of a launch (and a few CuPy ops)
    per parameter. Parameters' `.data` become views into the buffer at the first step (an array taken
    from `.data` before then is no longer the parameter's), and `.grad` is a view into the gradient
    buffer that the next backward after zero_grad() overwrites, as DistributedDataParallel's
    gradient_as_bucket_view does in torch: copy a gradient to keep it. Results are those of flat=False.
    A step in which some parameter of the group has no gradient (a frozen parameter left in the optimizer)
    ends the one launch for that group until load_state_dict, since one launch carries one step count.
    """
    decoupled_weight_decay = False   # the rule of a group without the key (pickled before it was one)

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
                 maximize=False, flat=False, *, foreach=None, capturable=False, differentiable=False, fused=None,
                 decoupled_weight_decay=False):
        _refuse_differentiable(type(self).__name__, differentiable)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize,
                                      decoupled_weight_decay=bool(decoupled_weight_decay)))
        self.flat = bool(flat)

    def _validate(self, group):
        name = type(self).__name__
        _check_number(name, "lr", group["lr"])
        _check_number(name, "eps", group["eps"])
        _check_number(name, "weight_decay", group["weight_decay"])
        if len(group["betas"]) != 2:
            raise ValueError(f"{name}: betas must be a pair, got {group['betas']!r}")
        for i, beta in enumerate(group["betas"]):
            _check_number(name, f"betas[{i}]", beta, below=1.0)

    def step(self, closure=None):
        loss = _closure_loss(closure)
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            decoupled = group.get("decoupled_weight_decay", self.decoupled_weight_decay)
            stepping, packed = self._prepared_steps(group)
            if packed is not None:   # the whole group in one launch
                kernels.adam_update(packed.param_buffer, packed.grad_buffer, packed.moments["exp_avg"],
                                    packed.moments["exp_avg_sq"], step=packed.step_count,
                                    lr=self._lr_argument(group, stepping[0][0], True), beta1=beta1, beta2=beta2,
                                    eps=group["eps"], weight_decay=group["weight_decay"],
                                    decoupled_weight_decay=decoupled, amsgrad=group["amsgrad"],
                                    max_exp_avg_sq=packed.moments.get("max_exp_avg_sq"),
                                    maximize=group["maximize"])
                note_in_place(packed.param_buffer)   # as SGD's: one note for the group
                continue
            for p, on_device in stepping:
                state = self.state[p]
                kernels.adam_update(p.data, p.grad.data, state["exp_avg"], state["exp_avg_sq"], step=state["step"],
                                    lr=self._lr_argument(group, p, on_device), beta1=beta1, beta2=beta2,
                                    eps=group["eps"], weight_decay=group["weight_decay"],
                                    decoupled_weight_decay=decoupled, amsgrad=group["amsgrad"],
                                    max_exp_avg_sq=state.get("max_exp_avg_sq"), maximize=group["maximize"])
                note_in_place(p.data)
        return loss

    def _prepare_state(self, group, p, on_device):
        state = self.state[p]
        if not state:
            _refuse_while_capturing(self, "Adam's state")
            xp = backend.array_module(p.data)
            state.update(step=0, exp_avg=xp.zeros_like(p.data), exp_avg_sq=xp.zeros_like(p.data))
        if group["amsgrad"] and state.get("max_exp_avg_sq") is None:
            _refuse_while_capturing(self, "max_exp_avg_sq")
            state["max_exp_avg_sq"] = backend.array_module(p.data).zeros_like(p.data)
        if on_device and not backend.is_array(state["step"]):   # new, or loaded from a state dict
            state["step"] = self._device_step(group, p, state["step"])


class AdamW(Adam):
    """torch.optim.AdamW: weight decay applied to the parameter, not the gradient (default 1e-2)."""
    decoupled_weight_decay = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False,
                 maximize=False, flat=False, *, foreach=None, capturable=False, differentiable=False, fused=None):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         maximize=maximize, flat=flat, differentiable=differentiable, decoupled_weight_decay=True)

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        for group in self.param_groups:   # as torch's AdamW: always decoupled, even loading an Adam's state
            group["decoupled_weight_decay"] = True
