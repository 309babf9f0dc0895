"""Public fused optimizer updates (torch.optim.SGD and Adam/AdamW rules), applied in place.

All arrays share one shape, dtype and device; the step number and hyper-parameters are Python
scalars. The bias corrections of Adam depend only on the step, so they are computed here once.
"""
import math

import numpy as np

from . import backend
from ._checks import check_shape, float_dtype
from .cpu import optim as cpu
from .cuda import optim as gpu

__all__ = ["sgd_update", "adam_update"]


def _scalar(op, name, value, minimum=None, below=None):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{op}: {name} must be a Python number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{op}: {name} must be finite, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value!r}")
    if below is not None and value >= below:
        raise ValueError(f"{op}: {name} must be < {below}, got {value!r}")
    return value


def _check_arrays(op, param, **others):
    device = backend.device_of(op, param, *others.values())
    float_dtype(op, device, param=param, **others)
    for name, array in others.items():
        if array is not None:
            check_shape(op, name, array, param.shape)
    return device


def _run_in_place(kernel_call, *arrays):
    """Run an update on contiguous arrays, copying back into the callers' non-contiguous ones."""
    dense = [a if a is None or a.flags.c_contiguous else backend.array_module(a).ascontiguousarray(a)
             for a in arrays]
    kernel_call(*dense)
    for original, used in zip(arrays, dense):
        if original is not None and used is not original:
            original[...] = used


def sgd_update(param, grad, momentum_buffer=None, *, lr, momentum=0.0, dampening=0.0, weight_decay=0.0,
               nesterov=False, maximize=False, first_step=False):
    """One torch.optim.SGD step in place on `param` (and `momentum_buffer`).

    On `first_step` the buffer is set to the (decayed) gradient rather than dampened into.
    """
    op = "sgd_update"
    lr = _scalar(op, "lr", lr, minimum=0.0)
    momentum = _scalar(op, "momentum", momentum, minimum=0.0)
    dampening = _scalar(op, "dampening", dampening)
    weight_decay = _scalar(op, "weight_decay", weight_decay, minimum=0.0)
    if nesterov and (momentum <= 0.0 or dampening != 0.0):
        raise ValueError(f"{op}: nesterov needs momentum > 0 and dampening 0, got momentum={momentum}, "
                         f"dampening={dampening}")
    if momentum != 0.0 and momentum_buffer is None:
        raise ValueError(f"{op}: momentum_buffer is required when momentum != 0 (momentum={momentum})")
    if momentum == 0.0:
        momentum_buffer = None  # torch keeps no buffer without momentum
    device = _check_arrays(op, param, grad=grad, momentum_buffer=momentum_buffer)
    flags = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                 nesterov=bool(nesterov), maximize=bool(maximize), first_step=bool(first_step))
    if device == "cpu":
        cpu.sgd_update(param, grad, momentum_buffer, **flags)
        return param
    _run_in_place(lambda p, g, b: gpu.sgd_update(p, g, b, **flags), param, grad, momentum_buffer)
    return param


def adam_update(param, grad, exp_avg, exp_avg_sq, *, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                weight_decay=0.0, decoupled_weight_decay=False, amsgrad=False, max_exp_avg_sq=None,
                maximize=False):
    """One torch.optim.Adam step (or AdamW's with decoupled_weight_decay) in place.

    `step` is the 1-based step count after incrementing, as torch keeps it.
    """
    op = "adam_update"
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 1:
        raise ValueError(f"{op}: step must be a positive integer (1-based), got {step!r}")
    lr = _scalar(op, "lr", lr, minimum=0.0)
    beta1 = _scalar(op, "beta1", beta1, minimum=0.0, below=1.0)
    beta2 = _scalar(op, "beta2", beta2, minimum=0.0, below=1.0)
    eps = _scalar(op, "eps", eps, minimum=0.0)
    weight_decay = _scalar(op, "weight_decay", weight_decay, minimum=0.0)
    if amsgrad and max_exp_avg_sq is None:
        raise ValueError(f"{op}: max_exp_avg_sq is required when amsgrad=True")
    if not amsgrad:
        max_exp_avg_sq = None
    device = _check_arrays(op, param, grad=grad, exp_avg=exp_avg, exp_avg_sq=exp_avg_sq,
                           max_exp_avg_sq=max_exp_avg_sq)
    bias_correction1 = 1.0 - beta1 ** int(step)
    bias_correction2 = 1.0 - beta2 ** int(step)
    hyper = dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay,
                 decoupled_weight_decay=bool(decoupled_weight_decay), maximize=bool(maximize),
                 bias_correction1=bias_correction1, bias_correction2=bias_correction2)
    implementation = cpu if device == "cpu" else gpu
    _run_in_place(lambda p, g, m, v, vmax: implementation.adam_update(p, g, m, v, vmax, **hyper),
                  param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq)
    return param
