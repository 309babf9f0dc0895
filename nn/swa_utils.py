"""Averaged weights, as torch.optim.swa_utils has them: AveragedModel, get_ema_multi_avg_fn and
get_swa_multi_avg_fn.

    averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.999))   # or the SWA mean by default
    ...  optimizer.step(); averaged.update_parameters(model)
    evaluate averaged.module

As in torch, the first update copies the parameters and every later one applies the average function;
with use_buffers=False the buffers (BatchNorm's running statistics) are copied from the model at every
update, with use_buffers=True the buffers are averaged with the parameters (integer ones, such as
num_batches_tracked, in floating point and truncated back, as torch does). The state dict has torch's
keys: `module.<name>` and `n_averaged`.

The averages run on the parameters' device as one fused in-place kernel per array, kernels.sgd_update
(an SGD step with weight decay 1 and maximize is averaged - lr * (averaged - current), torch's lerp),
with no host value that changes between steps (the SWA weight 1 / (n + 1) is computed on the device):
on the GPU an update can therefore be recorded inside a captured training step (nn.capture), provided
the first update (the copy) ran eagerly. n_averaged is counted on the device by an in-place add.
"""
import copy

import numpy as np

from kernels import backend, sgd_update

from .autograd import note_in_place
from .module import Module


def _number(op, name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{op}: {name} must be a number, got {type(value).__name__}")
    return float(value)


def _floating(averaged_arrays, current_arrays):
    """The floating-point pairs (averaged by the fused kernel) and the integer ones (use_buffers=True:
    e.g. num_batches_tracked, averaged in floating point and truncated back, as torch does)."""
    pairs = list(zip(averaged_arrays, current_arrays, strict=True))
    return [p for p in pairs if p[0].dtype.kind == "f"], [p for p in pairs if p[0].dtype.kind != "f"]


def _lerp_towards(pairs, weight):
    """averaged += weight * (current - averaged) for each floating pair; weight a number or a device scalar."""
    for averaged, current in pairs:
        sgd_update(averaged, current, lr=weight, weight_decay=1.0, maximize=True)


def get_ema_multi_avg_fn(decay=0.999):
    """The function updating averaged arrays in place: averaged = decay * averaged + (1 - decay) * current,
    rounded as torch's lerp for decay > 0.5: averaged + (1 - decay) * (current - averaged)."""
    op = "get_ema_multi_avg_fn"
    decay = _number(op, "decay", decay)
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"{op}: decay must be in [0, 1], got {decay!r}")
    weight = 1.0 - decay

    def ema_update(averaged_arrays, current_arrays, num_averaged=None):
        floating, integer = _floating(averaged_arrays, current_arrays)
        _lerp_towards(floating, weight)
        for averaged, current in integer:
            averaged[...] = averaged * decay + current * weight

    return ema_update


def get_swa_multi_avg_fn():
    """The equal-weight running mean (torch's default): averaged += (current - averaged) / (n_averaged + 1)."""

    def swa_update(averaged_arrays, current_arrays, num_averaged):
        xp = backend.array_module(num_averaged)
        floating, integer = _floating(averaged_arrays, current_arrays)
        # on the device, so that a captured step replays it with the count of the moment; fp32 on the GPU
        dtype = floating[0][0].dtype if xp is np and floating else xp.float32
        _lerp_towards(floating, (1 / (num_averaged.astype(dtype) + 1)).reshape(1))
        for averaged, current in integer:
            averaged[...] = averaged + (current - averaged) / (num_averaged + 1)

    return swa_update


class AveragedModel(Module):
    """An averaged copy of `model`, torch.optim.swa_utils.AveragedModel's arguments and behaviour: `device`
    moves the copy, `avg_fn(averaged, current, n_averaged)` returns one parameter's new average,
    `multi_avg_fn(averaged_list, current_list, n_averaged)` updates them all in place (it wins over
    avg_fn), neither: the SWA mean. Call update_parameters(model) after every optimizer step; use
    .module to evaluate."""

    def __init__(self, model, device=None, avg_fn=None, multi_avg_fn=None, use_buffers=False):
        super().__init__()
        for name, function in (("avg_fn", avg_fn), ("multi_avg_fn", multi_avg_fn)):
            if function is not None and not callable(function):
                raise TypeError(f"AveragedModel: {name} must be callable, got {type(function).__name__}")
        self.module = copy.deepcopy(model)
        if device is not None:
            self.module.to(device)
        self.module.eval()
        for parameter in self.module.parameters():
            parameter.requires_grad = False
            parameter.grad = None
        first = next(iter(self.module.parameters()), None)
        if first is None:
            raise ValueError("AveragedModel: the model has no parameters to average")
        self.register_buffer("n_averaged", backend.array_module(first.data).zeros((), dtype=np.int64))
        self.avg_fn = avg_fn
        self.multi_avg_fn = multi_avg_fn if multi_avg_fn is not None or avg_fn is not None \
            else get_swa_multi_avg_fn()
        self.use_buffers = bool(use_buffers)
        self._started = False   # whether n_averaged > 0 is known on the host (read once, then kept)

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def _load_from_state_dict(self, *args, **kwargs):
        """Also when a module holding this one loads (torch's loads call this, not load_state_dict): n_averaged is
        read again at the next update."""
        super()._load_from_state_dict(*args, **kwargs)
        self._started = False

    def _pairs(self, model):
        """(averaged arrays, the model's arrays, buffer pairs to copy): what update_parameters touches."""
        averaged = [p.data for p in self.module.parameters()]
        current = [p.data for p in model.parameters()]
        own, theirs = list(self.module.named_buffers()), list(model.named_buffers())
        if len(averaged) != len(current) or len(own) != len(theirs):
            raise ValueError(f"AveragedModel.update_parameters: the model has {len(current)} parameters and "
                             f"{len(theirs)} buffers, the averaged copy {len(averaged)} and {len(own)}")
        copied = []
        for (_, target), (name, source) in zip(own, theirs):
            if self.use_buffers:
                averaged.append(target)
                current.append(source)
            else:
                copied.append((name, target, source))
        for index, (target, source) in enumerate(zip(averaged, current)):
            if target.shape != source.shape:
                raise ValueError(f"AveragedModel.update_parameters: array {index} of the model has shape "
                                 f"{tuple(source.shape)}, the averaged copy's {tuple(target.shape)}")
        return averaged, current, copied

    def update_parameters(self, model):
        averaged, current, copied = self._pairs(model)
        if not self._started:
            if backend.is_capturing():
                raise RuntimeError("AveragedModel.update_parameters: the first update (a copy, or reading "
                                   "n_averaged) cannot be recorded into a CUDA graph, whose replays would "
                                   "repeat it; run an eager step first")
            self._started = int(backend.to_numpy(self.n_averaged)) > 0
        if not self._started:
            for target, source in zip(averaged, current):
                target[...] = source
            self._started = True
        elif self.multi_avg_fn is not None:
            self.multi_avg_fn(averaged, current, self.n_averaged)
        else:
            for target, source in zip(averaged, current):
                target[...] = self.avg_fn(target, source, self.n_averaged)
        for _, target, source in copied:
            target[...] = source
        for target in averaged + [target for _, target, _ in copied]:
            note_in_place(target)   # as torch: a graph that saved the averaged copy's arrays cannot backward now
        self.n_averaged += 1   # in place on its device (a captured step replays the add)
