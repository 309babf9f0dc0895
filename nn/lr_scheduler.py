"""Learning-rate schedules with torch.optim.lr_scheduler's rules (StepLR, CosineAnnealingLR), and
CosineAnnealingLR with a linear warm-up over the first epoch (WarmupCosineAnnealingLR, not in torch).

As in torch, a scheduler records each group's starting lr as 'initial_lr', sets the lr for epoch 0
when it is built, and each step() moves to the next epoch, updating the lr from the current one
(the "chainable" form), so that lrs changed by hand are respected.

Setting group["lr"] also writes the new value into the optimizer's device copy of it (nn.optim's
param groups do that where the kernels run on the GPU), so a step() here between replays of a step
captured with nn.capture takes effect at the next replay. Step the scheduler outside the captured
function: Python inside it runs only once, while capturing.
"""
import math


class LRScheduler:
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
        self.step()

    def get_lr(self):  # pragma: no cover - subclasses define it
        raise NotImplementedError

    def step(self):
        self._step_count += 1
        self.last_epoch += 1
        lrs = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self):
        """The lrs set by the latest step (one per parameter group)."""
        return list(self._last_lr)

    def state_dict(self):
        """Everything but the optimizer, as torch keeps it."""
        return {key: (list(value) if isinstance(value, list) else value)
                for key, value in self.__dict__.items() if key != "optimizer"}

    def load_state_dict(self, state_dict):
        self.__dict__.update({key: value for key, value in state_dict.items() if key != "optimizer"})


def _positive_int(scheduler, name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{scheduler}: {name} must be a positive integer, got {value!r}")


class StepLR(LRScheduler):
    """lr = initial_lr * gamma ** (epoch // step_size)."""

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        _positive_int("StepLR", "step_size", step_size)
        if not isinstance(gamma, (int, float)) or not math.isfinite(gamma) or gamma < 0:
            raise ValueError(f"StepLR: gamma must be a finite number >= 0, got {gamma!r}")
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        lrs = [group["lr"] for group in self.optimizer.param_groups]
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return lrs
        return [lr * self.gamma for lr in lrs]


class CosineAnnealingLR(LRScheduler):
    """lr = eta_min + (initial_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2, continued periodically."""

    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1):
        _positive_int("CosineAnnealingLR", "T_max", T_max)
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
