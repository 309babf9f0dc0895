"""Averaged weights, as torch.optim.swa_utils has them: AveragedModel and get_ema_multi_avg_fn.

    averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.999))
    ...  optimizer.step(); averaged.update_parameters(model)
    evaluate averaged.module

Like torch (use_buffers=False), the first update copies the parameters, every later one applies the
average function, and the buffers (BatchNorm's running statistics) are copied from the model at every
update. The state dict has torch's keys: `module.<name>` and `n_averaged`.

The EMA runs on the parameters' device as one fused in-place kernel per parameter, kernels.sgd_update
(see ema_update), with no host value that changes between steps: on the GPU an update can therefore be
recorded inside a captured training step (nn.capture), provided the first update (the copy) ran eagerly.
n_averaged is counted on the device by an in-place add, as nn.optim counts Adam's steps.
"""
import copy

import numpy as np

from kernels import backend, sgd_update

from .module import Module


def get_ema_multi_avg_fn(decay=0.999):
    """The function updating averaged arrays in place: averaged = decay * averaged + (1 - decay) * current,
    rounded as torch's lerp for decay > 0.5: averaged + (1 - decay) * (current - averaged)."""
    op = "get_ema_multi_avg_fn"
    if isinstance(decay, bool) or not isinstance(decay, (int, float, np.integer, np.floating)):
        raise TypeError(f"{op}: decay must be a number, got {type(decay).__name__}")
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"{op}: decay must be in [0, 1), got {decay!r}")
    weight = 1.0 - float(decay)

    def ema_update(averaged_arrays, current_arrays, num_averaged=None):
        # An SGD step on averaged with gradient current, weight decay 1 and maximize is
        # averaged - lr * (averaged - current): the lerp in one fused kernel, on any device.
        for averaged, current in zip(averaged_arrays, current_arrays, strict=True):
            sgd_update(averaged, current, lr=weight, weight_decay=1.0, maximize=True)

    return ema_update


class AveragedModel(Module):
    """An averaged copy of `model` (torch.optim.swa_utils.AveragedModel with use_buffers=False and a
    multi_avg_fn). Call update_parameters(model) after every optimizer step; use .module to evaluate."""

    def __init__(self, model, multi_avg_fn=None):
        super().__init__()
        if multi_avg_fn is None:
            raise ValueError("AveragedModel: give multi_avg_fn (e.g. get_ema_multi_avg_fn(0.999)); "
                             "the equal-weight SWA average is not implemented")
        self.module = copy.deepcopy(model)
        self.module.eval()
        for parameter in self.module.parameters():
            parameter.requires_grad = False
            parameter.grad = None
        first = next(iter(self.module.parameters()), None)
        if first is None:
            raise ValueError("AveragedModel: the model has no parameters to average")
        self.register_buffer("n_averaged", backend.array_module(first.data).zeros((), dtype=np.int64))
        self.multi_avg_fn = multi_avg_fn
        self._started = False   # whether n_averaged > 0 is known on the host (read once, then kept)

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def load_state_dict(self, state_dict, strict=True):
        result = super().load_state_dict(state_dict, strict)
        self._started = False
        return result

    def update_parameters(self, model):
        averaged = [p.data for p in self.module.parameters()]
        current = [p.data for p in model.parameters()]
        if len(averaged) != len(current):
            raise ValueError(f"AveragedModel.update_parameters: the model has {len(current)} parameters, "
                             f"the averaged copy {len(averaged)}")
        if not self._started:
            if backend.is_capturing():
                raise RuntimeError("AveragedModel.update_parameters: the first update (a copy, or reading "
                                   "n_averaged) cannot be recorded into a CUDA graph, whose replays would "
                                   "repeat it; run an eager step first")
            self._started = int(backend.to_numpy(self.n_averaged)) > 0
        if self._started:
            self.multi_avg_fn(averaged, current, self.n_averaged)
        else:
            for target, source in zip(averaged, current):
                target[...] = source
            self._started = True
        for (_, target), (_, source) in zip(self.module.named_buffers(), model.named_buffers(), strict=True):
            target[...] = source
        self.n_averaged += 1   # in place on its device (a captured step replays the add)
