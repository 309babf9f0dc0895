"""Learning-rate schedules with torch.optim.lr_scheduler's rules (StepLR, MultiStepLR, ExponentialLR,
LinearLR, LambdaLR, CosineAnnealingLR, OneCycleLR, ReduceLROnPlateau, SequentialLR), and CosineAnnealingLR with a linear
warm-up over the first epoch (WarmupCosineAnnealingLR, not in torch). step(epoch), deprecated in torch, is taken as
torch takes it: with a warning, it sets last_epoch and uses the closed form where the scheduler has one.

ReduceLROnPlateau, stepped with a metric instead of per epoch, is in nn/lr_scheduler_plateau.py, and SequentialLR,
which hands the epochs to one scheduler after another, in nn/lr_scheduler_sequential.py (both exported here).

As in torch, a scheduler records each group's starting lr as 'initial_lr', sets the lr for epoch 0
when it is built, and each step() moves to the next epoch, updating the lr from the current one
(the "chainable" form), so that lrs changed by hand are respected.

Setting group["lr"] also writes the new value into the optimizer's device copy of it (nn.optim's
param groups do that where the kernels run on the GPU), so a step() here between replays of a step
captured with nn.capture takes effect at the next replay. Step the scheduler outside the captured
function: Python inside it runs only once, while capturing.
"""
import bisect
import copy
import math
import numbers
import types
import warnings
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
        self._initial_step()

    def _initial_step(self):
        """The step made when built (and by SequentialLR when a scheduler's turn comes at epoch 0)."""
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def get_lr(self):  # pragma: no cover - subclasses define it
        raise NotImplementedError

    def step(self, epoch=None):
        self._step_count += 1
        if epoch is not None:
            warnings.warn(f"{type(self).__name__}.step(epoch): the epoch argument is deprecated, as in torch; it sets "
                          f"last_epoch and uses the closed form where there is one. Call step() without it",
                          UserWarning, stacklevel=2)
        self._update_lr(epoch)

    def _update_lr(self, epoch=None):
        self._get_lr_called_within_step = True
        try:
            if epoch is None:
                self.last_epoch += 1
                lrs = self.get_lr()
            else:
                self.last_epoch = epoch
                closed_form = getattr(self, "_get_closed_form_lr", None)
                lrs = closed_form() if closed_form is not None else self.get_lr()
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


def _check_number(scheduler, name, value):
    """A real number: int, float or a NumPy scalar (torch takes np.float32(0.5)), not a bool."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{scheduler}: {name} must be a number, got {type(value).__name__}")


def _check_epochs(scheduler, name, value, minimum=1):
    """A number of epochs: torch takes 100.0 and np.int64(100) as well as 100 (kept as given, as torch computes
    with them: np.int64 * np.float32 rounds otherwise than int * np.float32)."""
    _check_number(scheduler, name, value)
    if not float(value).is_integer() or value < minimum:
        expected = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{scheduler}: {name} must be {expected}, got {value!r}")


def _check_gamma(scheduler, gamma):
    _check_number(scheduler, "gamma", gamma)
    if not math.isfinite(gamma) or gamma < 0:
        raise ValueError(f"{scheduler}: gamma must be a finite number >= 0, got {gamma!r}")


class StepLR(LRScheduler):
    """lr = initial_lr * gamma ** (epoch // step_size)."""

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        _check_epochs("StepLR", "step_size", step_size)
        _check_gamma("StepLR", gamma)
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        lrs = [group["lr"] for group in self.optimizer.param_groups]
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return lrs
        return [lr * self.gamma for lr in lrs]

    def _get_closed_form_lr(self):   # (step(epoch))
        return [base * self.gamma ** (self.last_epoch // self.step_size) for base in self.base_lrs]


class MultiStepLR(LRScheduler):
    """lr multiplied by gamma at each milestone epoch (by gamma ** n at a milestone listed n times)."""

    def __init__(self, optimizer, milestones, gamma=0.1, last_epoch=-1):
        self.milestones = Counter(_milestones("MultiStepLR", milestones))
        _check_gamma("MultiStepLR", gamma)
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        lrs = [group["lr"] for group in self.optimizer.param_groups]
        if self.last_epoch not in self.milestones:
            return lrs
        return [lr * self.gamma ** self.milestones[self.last_epoch] for lr in lrs]

    def _get_closed_form_lr(self):   # (step(epoch))
        passed = bisect.bisect_right(sorted(self.milestones.elements()), self.last_epoch)
        return [base * self.gamma ** passed for base in self.base_lrs]


def _milestones(scheduler, milestones):
    """The milestone epochs as a list: torch takes [50.0, 75.0] (epochs * 0.5) and NumPy integer arrays as well as
    ints (kept as given: 50.0 and 50 are one key of MultiStepLR's Counter)."""
    milestones = list(milestones)
    for milestone in milestones:
        _check_number(scheduler, "milestones", milestone)
    if not all(float(m).is_integer() for m in milestones):
        raise ValueError(f"{scheduler}: milestones must be integer epochs, got {milestones!r}")
    return milestones


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

    def _get_closed_form_lr(self):   # (step(epoch))
        return [base * self.gamma ** self.last_epoch for base in self.base_lrs]


class LinearLR(LRScheduler):
    """lr = initial_lr times a factor going linearly from start_factor (epoch 0) to end_factor (epoch
    total_iters), then constant; each step multiplies the current lr by the ratio of successive factors."""

    def __init__(self, optimizer, start_factor=1.0 / 3, end_factor=1.0, total_iters=5, last_epoch=-1):
        _check_number("LinearLR", "start_factor", start_factor)
        if not 0 < start_factor <= 1:
            raise ValueError(f"LinearLR: start_factor must be in (0, 1], got {start_factor!r}")
        _check_number("LinearLR", "end_factor", end_factor)
        if not 0 <= end_factor <= 1:
            raise ValueError(f"LinearLR: end_factor must be in [0, 1], got {end_factor!r}")
        _check_epochs("LinearLR", "total_iters", total_iters, minimum=0)
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

    def _get_closed_form_lr(self):   # (step(epoch))
        factor = self.start_factor + (self.end_factor - self.start_factor) * \
            min(self.total_iters, self.last_epoch) / self.total_iters
        return [base * factor for base in self.base_lrs]


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
        _check_epochs("CosineAnnealingLR", "T_max", T_max)
        _check_number("CosineAnnealingLR", "eta_min", eta_min)
        if not math.isfinite(eta_min) or eta_min < 0:
            raise ValueError(f"CosineAnnealingLR: eta_min must be a finite number >= 0, got {eta_min!r}")
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        epoch, period = self.last_epoch, self.T_max
        groups = self.optimizer.param_groups
        if self._is_initial:   # built, or resumed with last_epoch: the lrs stay as they are (torch 2.13)
            return [group["lr"] for group in groups]
        if self._step_count == 1 and epoch > 0:   # (torch 2.13: a later epoch reached before any counted step)
            return self._get_closed_form_lr()
        if (epoch - 1 - period) % (2 * period) == 0:  # leaving the minimum of a period
            return [group["lr"] + (base - self.eta_min) * (1 - math.cos(math.pi / period)) / 2
                    for base, group in zip(self.base_lrs, groups)]
        ratio = (1 + math.cos(math.pi * epoch / period)) / (1 + math.cos(math.pi * (epoch - 1) / period))
        return [ratio * (group["lr"] - self.eta_min) + self.eta_min for group in groups]

    def _get_closed_form_lr(self):   # (step(epoch))
        cosine = 1 + math.cos(math.pi * self.last_epoch / self.T_max)
        return [self.eta_min + (base - self.eta_min) * cosine / 2 for base in self.base_lrs]


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
from .lr_scheduler_sequential import SequentialLR  # noqa: E402,F401  (it extends LRScheduler, above)
