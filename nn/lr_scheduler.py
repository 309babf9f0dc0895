"""Learning-rate schedules with torch.optim.lr_scheduler's rules (StepLR, MultiStepLR, ExponentialLR,
LinearLR, LambdaLR, CosineAnnealingLR, OneCycleLR, ReduceLROnPlateau), and CosineAnnealingLR with a linear warm-up over
the first epoch (WarmupCosineAnnealingLR, not in torch). step() takes no epoch (torch's is deprecated).

ReduceLROnPlateau, stepped with a metric instead of per epoch, is in nn/lr_scheduler_plateau.py (exported here).

As in torch, a scheduler records each group's starting lr as 'initial_lr', sets the lr for epoch 0
when it is built, and each step() moves to the next epoch, updating the lr from the current one
(the "chainable" form), so that lrs changed by hand are respected.

Setting group["lr"] also writes the new value into the optimizer's device copy of it (nn.optim's
param groups do that where the kernels run on the GPU), so a step() here between replays of a step
captured with nn.capture takes effect at the next replay. Step the scheduler outside the captured
function: Python inside it runs only once, while capturing.
"""
import copy
import math
import types
from collections import Counter

from kernels._checks import positive_int


class LRScheduler:
    _is_initial = False                   # True during the step made by __init__ (as torch's)
    _get_lr_called_within_step = False   # torch's flag for a warning; kept so that the state-dict keys are torch's

    def __init__(self, optimizer, last_epoch=-1):
        self.optimizer = optimizer
        name = type(self).__name__
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(f"{name}: param_groups[{i}] has no 'initial_lr' to resume epoch {last_epoch} from")
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def get_lr(self):  # pragma: no cover - subclasses define it
        raise NotImplementedError

    def step(self):
        self._step_count += 1
        self.last_epoch += 1
        self._get_lr_called_within_step = True
        try:
            lrs = self.get_lr()
        finally:
            self._get_lr_called_within_step = False
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self):
        """The lrs set by the latest step (one per parameter group)."""
        return list(self._last_lr)

    def state_dict(self):
        """Everything but the optimizer, as torch keeps it."""
        return {key: _copy(value) for key, value in self.__dict__.items() if key != "optimizer"}

    def load_state_dict(self, state_dict):
        self.__dict__.update({key: value for key, value in state_dict.items() if key != "optimizer"})


def _copy(value):
    """Lists and dicts copied (shallow), so that a state dict does not change with the scheduler; of their own
    type: MultiStepLR's milestones stay a Counter, which torch's MultiStepLR needs when it loads them."""
    return copy.copy(value) if isinstance(value, (list, dict)) else value


def _check_gamma(scheduler, gamma):
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not math.isfinite(gamma) or gamma < 0:
        raise ValueError(f"{scheduler}: gamma must be a finite number >= 0, got {gamma!r}")


class StepLR(LRScheduler):
    """lr = initial_lr * gamma ** (epoch // step_size)."""

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        positive_int("StepLR", "step_size", step_size)
        _check_gamma("StepLR", gamma)
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        lrs = [group["lr"] for group in self.optimizer.param_groups]
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return lrs
        return [lr * self.gamma for lr in lrs]


class MultiStepLR(LRScheduler):
    """lr multiplied by gamma at each milestone epoch (by gamma ** n at a milestone listed n times)."""

    def __init__(self, optimizer, milestones, gamma=0.1, last_epoch=-1):
        milestones = list(milestones)
        if not all(isinstance(m, int) and not isinstance(m, bool) for m in milestones):
            raise ValueError(f"MultiStepLR: milestones must be integer epochs, got {milestones!r}")
        _check_gamma("MultiStepLR", gamma)
        self.milestones, self.gamma = Counter(milestones), gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        lrs = [group["lr"] for group in self.optimizer.param_groups]
        if self.last_epoch not in self.milestones:
            return lrs
        return [lr * self.gamma ** self.milestones[self.last_epoch] for lr in lrs]


class ExponentialLR(LRScheduler):
    """lr multiplied by gamma every epoch."""

    def __init__(self, optimizer, gamma, last_epoch=-1):
        _check_gamma("ExponentialLR", gamma)
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        lrs = [group["lr"] for group in self.optimizer.param_groups]
        if self._is_initial:  # the step made when built (or resumed) keeps the lrs as they are
            return lrs
        return [lr * self.gamma for lr in lrs]


class LinearLR(LRScheduler):
    """lr = initial_lr times a factor going linearly from start_factor (epoch 0) to end_factor (epoch
    total_iters), then constant; each step multiplies the current lr by the ratio of successive factors."""

    def __init__(self, optimizer, start_factor=1.0 / 3, end_factor=1.0, total_iters=5, last_epoch=-1):
        if isinstance(start_factor, bool) or not isinstance(start_factor, (int, float)) or not 0 < start_factor <= 1:
            raise ValueError(f"LinearLR: start_factor must be in (0, 1], got {start_factor!r}")
        if isinstance(end_factor, bool) or not isinstance(end_factor, (int, float)) or not 0 <= end_factor <= 1:
            raise ValueError(f"LinearLR: end_factor must be in [0, 1], got {end_factor!r}")
        if isinstance(total_iters, bool) or not isinstance(total_iters, int) or total_iters < 0:
            raise ValueError(f"LinearLR: total_iters must be an integer >= 0, got {total_iters!r}")
        self.start_factor, self.end_factor, self.total_iters = start_factor, end_factor, total_iters
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        lrs = [group["lr"] for group in self.optimizer.param_groups]
        if self.last_epoch == 0:
            return [lr * self.start_factor for lr in lrs]
        if self._is_initial or self.last_epoch > self.total_iters:
            return lrs
        change = self.end_factor - self.start_factor
        ratio = 1.0 + change / (self.total_iters * self.start_factor + (self.last_epoch - 1) * change)
        return [lr * ratio for lr in lrs]


class LambdaLR(LRScheduler):
    """lr = initial_lr * lr_lambda(epoch), one function for all groups or one per group. As in torch, the
    state dict keeps the attributes of callable objects among them, not functions or lambdas."""

    def __init__(self, optimizer, lr_lambda, last_epoch=-1):
        groups = len(optimizer.param_groups)
        if isinstance(lr_lambda, (list, tuple)):
            if len(lr_lambda) != groups:
                raise ValueError(f"LambdaLR: expected {groups} lr_lambdas (one per param group), got {len(lr_lambda)}")
            self.lr_lambdas = list(lr_lambda)
        else:
            self.lr_lambdas = [lr_lambda] * groups
        if not all(callable(fn) for fn in self.lr_lambdas):
            raise TypeError(f"LambdaLR: lr_lambda must be a function of the epoch, got {lr_lambda!r}")
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        return [base * fn(self.last_epoch) for fn, base in zip(self.lr_lambdas, self.base_lrs)]

    def state_dict(self):
        state = {key: _copy(value) for key, value in self.__dict__.items() if key not in ("optimizer", "lr_lambdas")}
        state["lr_lambdas"] = [None if isinstance(fn, types.FunctionType) else dict(fn.__dict__)
                               for fn in self.lr_lambdas]
        return state

    def load_state_dict(self, state_dict):
        state = dict(state_dict)
        lr_lambdas = state.pop("lr_lambdas")
        super().load_state_dict(state)
        for fn, saved in zip(self.lr_lambdas, lr_lambdas):
            if saved is not None:
                fn.__dict__.update(saved)


class CosineAnnealingLR(LRScheduler):
    """lr = eta_min + (initial_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2, continued periodically."""

    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1):
        positive_int("CosineAnnealingLR", "T_max", T_max)
        if not isinstance(eta_min, (int, float)) or not math.isfinite(eta_min) or eta_min < 0:
            raise ValueError(f"CosineAnnealingLR: eta_min must be a finite number >= 0, got {eta_min!r}")
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        epoch, period = self.last_epoch, self.T_max
        groups = self.optimizer.param_groups
        if epoch == 0:
            return [group["lr"] for group in groups]
        if self._step_count == 1:  # resumed at a later epoch: the closed form
            return [self.eta_min + (base - self.eta_min) * (1 + math.cos(math.pi * epoch / period)) / 2
                    for base in self.base_lrs]
        if (epoch - 1 - period) % (2 * period) == 0:  # leaving the minimum of a period
            return [group["lr"] + (base - self.eta_min) * (1 - math.cos(math.pi / period)) / 2
                    for base, group in zip(self.base_lrs, groups)]
        ratio = (1 + math.cos(math.pi * epoch / period)) / (1 + math.cos(math.pi * (epoch - 1) / period))
        return [ratio * (group["lr"] - self.eta_min) + self.eta_min for group in groups]


class WarmupCosineAnnealingLR(CosineAnnealingLR):
    """CosineAnnealingLR, stepped once an epoch, whose first epoch is a linear warm-up: warm_up(epoch,
    batch, batches) is called before each optimizer step and, in epoch 0, sets each group's lr to
    initial_lr * (batch + 1) / batches, which reaches initial_lr (epoch 0's cosine value) at the last
    batch, so that the cosine steps continue from it. It keeps no state of its own: a run resumed inside
    the first epoch repeats the same lrs. (CTC models can settle on all-blank outputs when full-size
    Adam steps hit freshly initialised weights; a warm-up avoids that plateau.)"""

    def warm_up(self, epoch, batch, batches):
        if epoch != 0:
            return
        factor = (batch + 1) / batches
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * factor


def _per_group(scheduler, name, optimizer, value):
    groups = len(optimizer.param_groups)
    if isinstance(value, (list, tuple)):
        if len(value) != groups:
            raise ValueError(f"{scheduler}: {name} must have one value per param group ({groups}), got {len(value)}")
        return list(value)
    return [value] * groups


class OneCycleLR(LRScheduler):
    """The 1cycle policy, stepped once per batch: lr rises from max_lr / div_factor to max_lr over the first
    pct_start of total_steps, then falls to max_lr / div_factor / final_div_factor (three_phase: back to the
    start, then down), by cosine or linear annealing; momentum (SGD's 'momentum', Adam's first beta) moves
    the opposite way between max_momentum and base_momentum when cycle_momentum. Not chainable.
    A step captured with nn.capture reads only lr from the device: its momentum stays the one it was
    captured with, so use cycle_momentum=False for captured steps."""

    def __init__(self, optimizer, max_lr, total_steps=None, epochs=None, steps_per_epoch=None, pct_start=0.3,
                 anneal_strategy="cos", cycle_momentum=True, base_momentum=0.85, max_momentum=0.95, div_factor=25.0,
                 final_div_factor=1e4, three_phase=False, last_epoch=-1):
        name = "OneCycleLR"
        self.optimizer = optimizer
        if total_steps is not None:
            positive_int(name, "total_steps", total_steps)
            self.total_steps = total_steps
        elif epochs is not None and steps_per_epoch is not None:
            positive_int(name, "epochs", epochs)
            positive_int(name, "steps_per_epoch", steps_per_epoch)
            self.total_steps = epochs * steps_per_epoch
        else:
            raise ValueError(f"{name}: give either total_steps or both epochs and steps_per_epoch")
        if not isinstance(pct_start, float) or not 0 <= pct_start <= 1:
            raise ValueError(f"{name}: pct_start must be a float in [0, 1], got {pct_start!r}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"{name}: anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}")
        # (phase end steps as torch computes them, so that the lrs are its own to the last bit)
        rise_end = float(pct_start * self.total_steps) - 1
        if three_phase:
            self._schedule_phases = [
                dict(end_step=rise_end, start_lr="initial_lr", end_lr="max_lr",
                     start_momentum="max_momentum", end_momentum="base_momentum"),
                dict(end_step=float(2 * pct_start * self.total_steps) - 2, start_lr="max_lr", end_lr="initial_lr",
                     start_momentum="base_momentum", end_momentum="max_momentum"),
                dict(end_step=self.total_steps - 1, start_lr="initial_lr", end_lr="min_lr",
                     start_momentum="max_momentum", end_momentum="max_momentum")]
        else:
            self._schedule_phases = [
                dict(end_step=rise_end, start_lr="initial_lr", end_lr="max_lr",
                     start_momentum="max_momentum", end_momentum="base_momentum"),
                dict(end_step=self.total_steps - 1, start_lr="max_lr", end_lr="min_lr",
                     start_momentum="base_momentum", end_momentum="max_momentum")]
        self._anneal_func_type = anneal_strategy
        if last_epoch == -1:
            for group, peak in zip(optimizer.param_groups, _per_group(name, "max_lr", optimizer, max_lr)):
                group["initial_lr"] = peak / div_factor
                group["max_lr"] = peak
                group["min_lr"] = group["initial_lr"] / final_div_factor
        self.cycle_momentum = cycle_momentum
        if cycle_momentum:
            if "momentum" not in optimizer.defaults and "betas" not in optimizer.defaults:
                raise ValueError(f"{name}: cycle_momentum needs an optimizer with momentum or betas, got "
                                 f"{type(optimizer).__name__}")
            self.use_beta1 = "betas" in optimizer.defaults
            highs = _per_group(name, "max_momentum", optimizer, max_momentum)
            lows = _per_group(name, "base_momentum", optimizer, base_momentum)
            if last_epoch == -1:
                for high, low, group in zip(highs, lows, optimizer.param_groups):
                    if self.use_beta1:
                        group["betas"] = (high, *group["betas"][1:])
                    else:
                        group["momentum"] = high
                    group["max_momentum"], group["base_momentum"] = high, low
        super().__init__(optimizer, last_epoch)

    def _anneal(self, start, end, pct):
        if self._anneal_func_type == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def get_lr(self):
        step = self.last_epoch
        if step > self.total_steps:
            raise ValueError(f"OneCycleLR: stepped {step} times, past total_steps ({self.total_steps})")
        lrs = []
        for group in self.optimizer.param_groups:
            start_step = 0.0
            for i, phase in enumerate(self._schedule_phases):
                end_step = phase["end_step"]
                if step <= end_step or i == len(self._schedule_phases) - 1:
                    pct = (step - start_step) / (end_step - start_step)
                    lrs.append(self._anneal(group[phase["start_lr"]], group[phase["end_lr"]], pct))
                    if self.cycle_momentum:
                        momentum = self._anneal(group[phase["start_momentum"]], group[phase["end_momentum"]], pct)
                        if self.use_beta1:
                            group["betas"] = (momentum, *group["betas"][1:])
                        else:
                            group["momentum"] = momentum
                    break
                start_step = end_step
        return lrs


from .lr_scheduler_plateau import ReduceLROnPlateau  # noqa: E402,F401  (it extends LRScheduler, above)
