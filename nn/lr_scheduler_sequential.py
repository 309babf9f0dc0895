"""torch.optim.lr_scheduler.SequentialLR with torch's rules and state dict (exported from nn.optim.lr_scheduler, whose
LRScheduler it extends): schedulers that take turns on one optimizer, each from the epoch its milestone names,
as in the usual warm-up recipe SequentialLR(opt, [LinearLR(opt, ...), CosineAnnealingLR(opt, ...)], [warmup])."""
import bisect

from .lr_scheduler import LRScheduler, _copy, _milestones
from .lr_scheduler_plateau import ReduceLROnPlateau


class SequentialLR(LRScheduler):
    """schedulers[i] sets the lr from epoch milestones[i - 1] on (schedulers[0] from epoch 0). At its milestone a
    scheduler starts again from its own epoch 0, at its closed form there (torch's _update_lr(0)), then steps on."""

    def __init__(self, optimizer, schedulers, milestones, last_epoch=-1):
        name = "SequentialLR"
        schedulers = list(schedulers)
        if not schedulers:
            raise ValueError(f"{name}: expected at least one scheduler, got none")
        for index, scheduler in enumerate(schedulers):
            if isinstance(scheduler, ReduceLROnPlateau):   # its step needs a metric
                raise ValueError(f"{name}: expected schedulers stepped per epoch, got ReduceLROnPlateau at index "
                                 f"{index}")
            if getattr(scheduler, "optimizer", None) is not optimizer:
                raise ValueError(f"{name}: expected every scheduler to schedule the optimizer given to it, got "
                                 f"{type(scheduler).__name__} at index {index} with another one")
        milestones = _milestones(name, milestones)
        if len(milestones) != len(schedulers) - 1:
            raise ValueError(f"{name}: expected {len(schedulers) - 1} milestones (one fewer than the schedulers), "
                             f"got {len(milestones)}")
        self._schedulers, self._milestones = schedulers, milestones
        self.last_epoch = last_epoch + 1
        self.optimizer = optimizer
        for group in optimizer.param_groups:   # undo the schedulers' own initial steps ...
            group["lr"] = group["initial_lr"]
        self.recursive_undo()
        first = schedulers[bisect.bisect_right(milestones, 0)]   # ... and make only the first one's
        first._initial_step()
        self._last_lr = first.get_last_lr()

    def recursive_undo(self, scheduler=None):
        """Take back the epoch each scheduler (and those inside a nested SequentialLR) counted when built."""
        scheduler = self if scheduler is None else scheduler
        if hasattr(scheduler, "_schedulers"):
            for inner in scheduler._schedulers:
                self.recursive_undo(inner)
        elif hasattr(scheduler, "last_epoch"):
            scheduler.last_epoch -= 1

    def step(self):
        self.last_epoch += 1
        index = bisect.bisect_right(self._milestones, self.last_epoch)
        scheduler = self._schedulers[index]
        if index > 0 and self._milestones[index - 1] == self.last_epoch:
            scheduler._update_lr(0)   # its turn begins: its epoch 0
        else:
            scheduler.step()
        self._last_lr = scheduler.get_last_lr()

    def state_dict(self):
        """As torch's: everything but the optimizer, with each scheduler's own state dict under '_schedulers'."""
        state = {key: _copy(value) for key, value in self.__dict__.items() if key not in ("optimizer", "_schedulers")}
        state["_schedulers"] = [scheduler.state_dict() for scheduler in self._schedulers]
        return state

    def load_state_dict(self, state_dict):
        state = dict(state_dict)
        saved_schedulers = state.pop("_schedulers")
        self.__dict__.update({key: value for key, value in state.items() if key != "optimizer"})
        for scheduler, saved in zip(self._schedulers, saved_schedulers):
            scheduler.load_state_dict(saved)
