"""Public fused optimizer updates (torch.optim.SGD, Adam/AdamW, RMSprop and Adagrad rules), applied in place.

All arrays share one shape, dtype and device; the hyper-parameters are Python scalars. The learning
rate (and Adam's and Adagrad's step count) may instead be 1-element arrays on the arrays' device: the CUDA
kernels then read them from device memory, so that a CUDA graph replaying the update (nn.capture) uses
their current values, and compute Adam's bias corrections (Adagrad's decayed rate) themselves in float32.
With host scalars those depend only on the step and lr, so they are computed here once, in float64. On
the CPU an array value is simply read on the host.
"""
import math

import numpy as np

from . import backend
from ._checks import check_shape, float_dtype, positive_int
from .cpu import optim as cpu
from .cuda import optim as gpu

__all__ = ["sgd_update", "adam_update", "rmsprop_update", "adagrad_update"]


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


def _device_scalar(op, name, value, param):
    """A 1-element array argument: on the CUDA path the float32 vector the kernel reads (never read on the
    host, which would synchronise, or fail while capturing); on the CPU path its value as a number."""
    device = backend.device_of(op, param, value)   # on the parameter's device, or a clear error
    if value.size != 1:
        raise ValueError(f"{op}: {name} given as an array must have 1 element, got shape {tuple(value.shape)}")
    if device == "cpu":
        if not (np.issubdtype(value.dtype, np.floating) or np.issubdtype(value.dtype, np.integer)):
            raise TypeError(f"{op}: {name} array must hold a number, got dtype {value.dtype}")
        return value.reshape(-1)[0].item()
    if value.dtype != np.float32:
        raise TypeError(f"{op}: {name} array must be float32 on cuda, got {value.dtype}")
    return value if value.ndim == 1 else value.reshape(1)


def _as_device_scalar(param, value):
    """A host number as the 1-element float32 array the device kernels read (filled by a kernel, so a
    captured graph records the fill rather than a host-to-device copy; the value is frozen, as a host
    scalar is)."""
    return backend.array_module(param).full((1,), value, dtype=np.float32)


def _step_and_lr(op, param, step, lr):
    """(device, on_device, step, lr) of a step-counted update (Adam, Adagrad). On the CUDA path with either
    given as a device array, both as 1-element float32 device arrays (a host number made into one); else a
    positive int step and a number lr (an array read on the host)."""
    device = backend.device_of(op, param)
    on_device = device == "cuda" and (backend.is_array(step) or backend.is_array(lr))
    if backend.is_array(step):
        step = _device_scalar(op, "step", step, param)
    if backend.is_array(lr):
        lr = _device_scalar(op, "lr", lr, param)
    if not on_device:
        if isinstance(step, float) and step.is_integer():
            step = int(step)   # read from a CPU array
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 1:
            raise ValueError(f"{op}: step must be a positive integer (1-based), got {step!r}")
        lr = _scalar(op, "lr", lr, minimum=0.0)
    else:
        if not backend.is_array(step):
            positive_int(op, "step", step)
            step = _as_device_scalar(param, step)
        if not backend.is_array(lr):
            lr = _as_device_scalar(param, _scalar(op, "lr", lr, minimum=0.0))
    return device, on_device, step, lr


def _check_arrays(op, param, **others):
    device = backend.device_of(op, param, *others.values())
    float_dtype(op, device, param=param, **others)
    for name, array in others.items():
        if array is not None:
            check_shape(op, name, array, param.shape)
    return device


def _run_in_place(kernel_call, param, grad, *state):
    """Run an update on contiguous arrays, copying back into the callers' non-contiguous param and state arrays.
    The gradient is only read: never written back (a read-only or broadcast gradient would refuse the write, and a
    gradient that is param's own memory would undo the update)."""
    arrays = (param, grad) + state
    dense = [a if a is None or a.flags.c_contiguous else backend.array_module(a).ascontiguousarray(a)
             for a in arrays]
    kernel_call(*dense)
    for index, (original, used) in enumerate(zip(arrays, dense)):
        if index != 1 and original is not None and used is not original:
            original[...] = used


def sgd_update(param, grad, momentum_buffer=None, *, lr, momentum=0.0, dampening=0.0, weight_decay=0.0,
               nesterov=False, maximize=False, first_step=False):
    """One torch.optim.SGD step in place on `param` (and `momentum_buffer`).

    On `first_step` the buffer is set to the (decayed) gradient rather than dampened into. `lr` is a
    number or a 1-element array on param's device (float32 on cuda, read by the kernel).
    """
    op = "sgd_update"
    if backend.is_array(lr):
        lr = _device_scalar(op, "lr", lr, param)   # on the CPU: its value, checked as a number below
    if not backend.is_array(lr):
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

    `step` is the 1-based step count after incrementing, as torch keeps it. `step` and `lr` may each be
    a 1-element array on param's device (float32 on cuda): the kernel reads them there, which makes the
    update replayable from a CUDA graph while they change (the caller increments the step array).
    """
    op = "adam_update"
    device, on_device, step, lr = _step_and_lr(op, param, step, lr)
    beta1 = _scalar(op, "beta1", beta1, minimum=0.0, below=1.0)
    beta2 = _scalar(op, "beta2", beta2, minimum=0.0, below=1.0)
    eps = _scalar(op, "eps", eps, minimum=0.0)
    weight_decay = _scalar(op, "weight_decay", weight_decay, minimum=0.0)
    if amsgrad and max_exp_avg_sq is None:
        raise ValueError(f"{op}: max_exp_avg_sq is required when amsgrad=True")
    if not amsgrad:
        max_exp_avg_sq = None
    _check_arrays(op, param, grad=grad, exp_avg=exp_avg, exp_avg_sq=exp_avg_sq, max_exp_avg_sq=max_exp_avg_sq)
    hyper = dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay,
                 decoupled_weight_decay=bool(decoupled_weight_decay), maximize=bool(maximize))
    if on_device:
        hyper["step"] = step
    else:
        hyper.update(bias_correction1=1.0 - beta1 ** int(step), bias_correction2=1.0 - beta2 ** int(step))
    implementation = cpu if device == "cpu" else gpu
    _run_in_place(lambda p, g, m, v, vmax: implementation.adam_update(p, g, m, v, vmax, **hyper),
                  param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq)
    return param


def rmsprop_update(param, grad, square_avg, grad_avg=None, momentum_buffer=None, *, lr=1e-2, alpha=0.99, eps=1e-8,
                   weight_decay=0.0, momentum=0.0, centered=False, maximize=False):
    """One torch.optim.RMSprop step in place on `param`, `square_avg` and, where used, `grad_avg` (centered)
    and `momentum_buffer` (momentum > 0; torch starts both at zeros). The step count does not enter the
    update, so only `lr` may be a 1-element array on param's device (float32 on cuda, read by the kernel)."""
    op = "rmsprop_update"
    if backend.is_array(lr):
        lr = _device_scalar(op, "lr", lr, param)
    if not backend.is_array(lr):
        lr = _scalar(op, "lr", lr, minimum=0.0)
    alpha = _scalar(op, "alpha", alpha, minimum=0.0)
    eps = _scalar(op, "eps", eps, minimum=0.0)
    weight_decay = _scalar(op, "weight_decay", weight_decay, minimum=0.0)
    momentum = _scalar(op, "momentum", momentum, minimum=0.0)
    if centered and grad_avg is None:
        raise ValueError(f"{op}: grad_avg is required when centered=True")
    if momentum > 0.0 and momentum_buffer is None:
        raise ValueError(f"{op}: momentum_buffer is required when momentum > 0 (momentum={momentum})")
    grad_avg = grad_avg if centered else None
    momentum_buffer = momentum_buffer if momentum > 0.0 else None
    device = _check_arrays(op, param, grad=grad, square_avg=square_avg, grad_avg=grad_avg,
                           momentum_buffer=momentum_buffer)
    hyper = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum, maximize=bool(maximize))
    implementation = cpu if device == "cpu" else gpu
    _run_in_place(lambda p, g, v, a, b: implementation.rmsprop_update(p, g, v, a, b, **hyper),
                  param, grad, square_avg, grad_avg, momentum_buffer)
    return param


def adagrad_update(param, grad, state_sum, *, step, lr=1e-2, lr_decay=0.0, weight_decay=0.0, eps=1e-10,
                   maximize=False):
    """One torch.optim.Adagrad (dense) step in place on `param` and `state_sum`, at the decayed rate
    lr / (1 + (step - 1) * lr_decay). `step` is the 1-based count after incrementing, as torch keeps it;
    `step` and `lr` may each be a 1-element array on param's device (float32 on cuda), as adam_update's."""
    op = "adagrad_update"
    device, on_device, step, lr = _step_and_lr(op, param, step, lr)
    lr_decay = _scalar(op, "lr_decay", lr_decay, minimum=0.0)
    weight_decay = _scalar(op, "weight_decay", weight_decay, minimum=0.0)
    eps = _scalar(op, "eps", eps, minimum=0.0)
    _check_arrays(op, param, grad=grad, state_sum=state_sum)
    hyper = dict(eps=eps, weight_decay=weight_decay, maximize=bool(maximize))
    if on_device:
        hyper.update(step=step, lr=lr, lr_decay=lr_decay)
    else:
        hyper["clr"] = lr / (1.0 + (int(step) - 1) * lr_decay)   # torch's rate, in float64 on the host
    implementation = cpu if device == "cpu" else gpu
    _run_in_place(lambda p, g, s: implementation.adagrad_update(p, g, s, **hyper), param, grad, state_sum)
    return param
