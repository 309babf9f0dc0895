"""Fused SGD, Adam/AdamW, RMSprop and Adagrad updates: one thread per parameter, each array read once and
written once.

Launch: `launch_1d` with THREADS threads a block over the flattened (contiguous) arrays. Purely
memory-bound. Two forms of each kernel share one inlined element update: the scalar form takes lr and
Adam's step factors as float32 host scalars (computed in float64 on the host); the array form reads lr
and the step count from 1-element device arrays, so that a CUDA graph replay uses their current values,
and computes the bias corrections 1 - beta**step = -expm1(step * log(beta)) itself in float32 (Adagrad:
its decayed rate lr / (1 + (step - 1) * lr_decay)). RMSprop's update does not depend on the step: only lr.
"""
import math

import numpy as np
from numba import cuda, float32, int32

from .device import device_function
from .jit import cached_jit
from .launch import launch_1d

THREADS = 256
SGD_PLAIN, SGD_FIRST_STEP, SGD_MOMENTUM = 0, 1, 2   # no buffer / buffer := d_p / buffer dampened


@device_function
def _sgd_element(i, param, grad, momentum_buffer, lr, momentum, one_minus_dampening, weight_decay, sign, mode,
                 nesterov):
    p = param[i]
    d_p = sign * grad[i]
    if weight_decay != float32(0.0):   # (skipped at 0, as torch: an infinite p stays inf, not 0 * inf = NaN)
        d_p = d_p + weight_decay * p
    if mode != SGD_PLAIN:
        if mode == SGD_FIRST_STEP:
            buf = d_p
        else:
            buf = momentum * momentum_buffer[i] + one_minus_dampening * d_p
        momentum_buffer[i] = buf
        if nesterov != 0:
            d_p = d_p + momentum * buf
        else:
            d_p = buf
    param[i] = p - lr * d_p


@cached_jit(fastmath=False)
def sgd_kernel(param, grad, momentum_buffer, lr, momentum, one_minus_dampening, weight_decay, sign, mode,
               nesterov):
    i = cuda.grid(1)
    if i < param.shape[0]:
        _sgd_element(i, param, grad, momentum_buffer, lr, momentum, one_minus_dampening, weight_decay, sign,
                     mode, nesterov)


@cached_jit(fastmath=False)
def sgd_kernel_device_lr(param, grad, momentum_buffer, lr, momentum, one_minus_dampening, weight_decay, sign,
                         mode, nesterov):
    i = cuda.grid(1)
    if i < param.shape[0]:
        _sgd_element(i, param, grad, momentum_buffer, lr[0], momentum, one_minus_dampening, weight_decay,
                     sign, mode, nesterov)


# fastmath off: sqrt and the division must stay IEEE so results track torch's to float32 rounding.
@device_function
def _adam_element(i, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, one_minus_beta1, beta2, one_minus_beta2,
                  step_size, inverse_sqrt_bias_correction2, eps, weight_decay, decay_factor, sign, amsgrad):
    p = param[i]
    g = sign * grad[i]
    if weight_decay != float32(0.0):   # 0 for AdamW (decoupled); skipped at 0 as torch (no 0 * inf = NaN)
        g = g + weight_decay * p
    m = exp_avg[i]
    m = m + one_minus_beta1 * (g - m)
    v = beta2 * exp_avg_sq[i] + one_minus_beta2 * g * g
    exp_avg[i] = m
    exp_avg_sq[i] = v
    if amsgrad != 0:
        v = max(max_exp_avg_sq[i], v)
        max_exp_avg_sq[i] = v
    denom = math.sqrt(v) * inverse_sqrt_bias_correction2 + eps
    param[i] = p * decay_factor - step_size * m / denom


@cached_jit(fastmath=False)
def adam_kernel(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, one_minus_beta1, beta2, one_minus_beta2,
                step_size, inverse_sqrt_bias_correction2, eps, weight_decay, decay_factor, sign, amsgrad):
    i = cuda.grid(1)
    if i < param.shape[0]:
        _adam_element(i, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, one_minus_beta1, beta2,
                      one_minus_beta2, step_size, inverse_sqrt_bias_correction2, eps, weight_decay, decay_factor,
                      sign, amsgrad)


@cached_jit(fastmath=False)
def adam_kernel_device_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, step, lr, one_minus_beta1, beta2,
                            one_minus_beta2, log_beta1, log_beta2, eps, weight_decay, decoupled_weight_decay,
                            sign, amsgrad):
    i = cuda.grid(1)
    if i >= param.shape[0]:
        return
    # Every thread derives the step factors from the two device scalars (broadcast loads): a few
    # float32 operations against ~20 bytes of memory traffic per element, and no extra launch.
    count = step[0]
    rate = lr[0]
    bias_correction1 = -math.expm1(count * log_beta1)      # 1 - beta1**step without cancellation
    bias_correction2 = -math.expm1(count * log_beta2)
    _adam_element(i, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, one_minus_beta1, beta2, one_minus_beta2,
                  rate / bias_correction1, float32(1.0) / math.sqrt(bias_correction2), eps, weight_decay,
                  float32(1.0) - rate * decoupled_weight_decay, sign, amsgrad)


# RMSprop in torch's single-tensor order (kernels/cpu/optim.py's loop); fastmath off as Adam's.
@device_function
def _rmsprop_element(i, param, grad, square_avg, grad_avg, momentum_buffer, negative_lr, sign, weight_decay, alpha,
                     one_minus_alpha, eps, momentum, centered, use_momentum):
    p = param[i]
    g = sign * grad[i]
    if weight_decay != float32(0.0):   # (skipped at 0, as torch)
        g = g + weight_decay * p
    v = square_avg[i] * alpha + one_minus_alpha * g * g
    square_avg[i] = v
    if centered != 0:
        a = grad_avg[i]
        if one_minus_alpha < float32(0.5):          # torch's lerp(a, g, 1 - alpha): exact at either end
            a = a + one_minus_alpha * (g - a)
        else:
            a = g - (g - a) * alpha
        grad_avg[i] = a
        v = v - a * a
    denom = math.sqrt(v) + eps
    if use_momentum != 0:
        buf = momentum_buffer[i] * momentum + g / denom
        momentum_buffer[i] = buf
        param[i] = p + negative_lr * buf
    else:
        param[i] = p + negative_lr * g / denom


@cached_jit(fastmath=False)
def rmsprop_kernel(param, grad, square_avg, grad_avg, momentum_buffer, negative_lr, sign, weight_decay, alpha,
                   one_minus_alpha, eps, momentum, centered, use_momentum):
    i = cuda.grid(1)
    if i < param.shape[0]:
        _rmsprop_element(i, param, grad, square_avg, grad_avg, momentum_buffer, negative_lr, sign, weight_decay,
                         alpha, one_minus_alpha, eps, momentum, centered, use_momentum)


@cached_jit(fastmath=False)
def rmsprop_kernel_device_lr(param, grad, square_avg, grad_avg, momentum_buffer, lr, sign, weight_decay, alpha,
                             one_minus_alpha, eps, momentum, centered, use_momentum):
    i = cuda.grid(1)
    if i < param.shape[0]:
        _rmsprop_element(i, param, grad, square_avg, grad_avg, momentum_buffer, -lr[0], sign, weight_decay, alpha,
                         one_minus_alpha, eps, momentum, centered, use_momentum)


@device_function
def _adagrad_element(i, param, grad, state_sum, negative_clr, sign, weight_decay, eps):
    p = param[i]
    g = sign * grad[i]
    if weight_decay != float32(0.0):   # (skipped at 0, as torch)
        g = g + weight_decay * p
    s = state_sum[i] + g * g
    state_sum[i] = s
    param[i] = p + negative_clr * g / (math.sqrt(s) + eps)


@cached_jit(fastmath=False)
def adagrad_kernel(param, grad, state_sum, negative_clr, sign, weight_decay, eps):
    i = cuda.grid(1)
    if i < param.shape[0]:
        _adagrad_element(i, param, grad, state_sum, negative_clr, sign, weight_decay, eps)


@cached_jit(fastmath=False)
def adagrad_kernel_device_step(param, grad, state_sum, step, lr, lr_decay, sign, weight_decay, eps):
    i = cuda.grid(1)
    if i < param.shape[0]:
        # the decayed rate from the two device scalars in every thread, as Adam's bias corrections
        clr = lr[0] / (float32(1.0) + (step[0] - float32(1.0)) * lr_decay)
        _adagrad_element(i, param, grad, state_sum, -clr, sign, weight_decay, eps)


def _log(beta):
    return math.log(beta) if beta > 0.0 else -math.inf   # beta 0: beta**step is 0 from step 1 on


def sgd_update(param, grad, momentum_buffer, *, lr, momentum, dampening, weight_decay, nesterov, maximize,
               first_step):
    """`lr` is a number or a 1-element float32 device array (read by the kernel)."""
    if momentum_buffer is None:
        mode, momentum_buffer = SGD_PLAIN, grad   # never written in this mode
    else:
        mode = SGD_FIRST_STEP if first_step else SGD_MOMENTUM
    on_device = not isinstance(lr, float)
    launch_1d(sgd_kernel_device_lr if on_device else sgd_kernel, param.size, param.reshape(-1), grad.reshape(-1),
              momentum_buffer.reshape(-1), lr if on_device else np.float32(lr), np.float32(momentum),
              np.float32(1.0 - dampening), np.float32(weight_decay), np.float32(-1.0 if maximize else 1.0),
              np.int32(mode), np.int32(nesterov), threads=THREADS)


def adam_update(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, *, lr, beta1, beta2, eps, weight_decay,
                decoupled_weight_decay, maximize, bias_correction1=None, bias_correction2=None, step=None):
    """Either host scalars (lr a number, the two bias corrections given) or device scalars (`step` and
    `lr` 1-element float32 device arrays, the bias corrections computed by the kernel)."""
    amsgrad = max_exp_avg_sq is not None
    if not amsgrad:
        # Never touched when amsgrad is off. Not exp_avg_sq: an alias of an array the kernel writes
        # would be copied back over it by the simulator.
        max_exp_avg_sq = grad
    arrays = (param.reshape(-1), grad.reshape(-1), exp_avg.reshape(-1), exp_avg_sq.reshape(-1),
              max_exp_avg_sq.reshape(-1))
    sign = np.float32(-1.0 if maximize else 1.0)
    if step is not None:
        launch_1d(adam_kernel_device_step, param.size, *arrays, step, lr,
                  np.float32(1.0 - beta1), np.float32(beta2), np.float32(1.0 - beta2), np.float32(_log(beta1)),
                  np.float32(_log(beta2)), np.float32(eps), np.float32(0.0 if decoupled_weight_decay else weight_decay),
                  np.float32(weight_decay if decoupled_weight_decay else 0.0), sign, np.int32(amsgrad),
                  threads=THREADS)
        return
    launch_1d(adam_kernel, param.size, *arrays,
              np.float32(1.0 - beta1), np.float32(beta2), np.float32(1.0 - beta2),
              np.float32(lr / bias_correction1), np.float32(1.0 / math.sqrt(bias_correction2)), np.float32(eps),
              np.float32(0.0 if decoupled_weight_decay else weight_decay),
              np.float32(1.0 - lr * weight_decay if decoupled_weight_decay else 1.0),
              sign, np.int32(amsgrad), threads=THREADS)


def rmsprop_update(param, grad, square_avg, grad_avg, momentum_buffer, *, lr, alpha, eps, weight_decay, momentum,
                   maximize):
    """`lr` is a number or a 1-element float32 device array (read by the kernel); grad_avg and momentum_buffer
    may be None (then never touched: grad stands in, which the kernel only reads)."""
    centered, use_momentum = grad_avg is not None, momentum_buffer is not None
    on_device = not isinstance(lr, float)
    launch_1d(rmsprop_kernel_device_lr if on_device else rmsprop_kernel, param.size, param.reshape(-1),
              grad.reshape(-1), square_avg.reshape(-1), (grad_avg if centered else grad).reshape(-1),
              (momentum_buffer if use_momentum else grad).reshape(-1), lr if on_device else np.float32(-lr),
              np.float32(-1.0 if maximize else 1.0), np.float32(weight_decay), np.float32(alpha),
              np.float32(1.0 - alpha), np.float32(eps), np.float32(momentum), np.int32(centered),
              np.int32(use_momentum), threads=THREADS)


def adagrad_update(param, grad, state_sum, *, eps, weight_decay, maximize, clr=None, step=None, lr=None,
                   lr_decay=None):
    """Either the decayed rate `clr` as a host number, or `step` and `lr` 1-element float32 device arrays with
    `lr_decay` (the kernel computes the rate)."""
    arrays = (param.reshape(-1), grad.reshape(-1), state_sum.reshape(-1))
    tail = (np.float32(-1.0 if maximize else 1.0), np.float32(weight_decay), np.float32(eps))
    if step is not None:
        launch_1d(adagrad_kernel_device_step, param.size, *arrays, step, lr, np.float32(lr_decay), *tail,
                  threads=THREADS)
    else:
        launch_1d(adagrad_kernel, param.size, *arrays, np.float32(-clr), *tail, threads=THREADS)


_vector = float32[::1]
PTX_SIGNATURES = [
    ("sgd", sgd_kernel, (_vector, _vector, _vector) + (float32,) * 5 + (int32, int32)),
    ("sgd_device_lr", sgd_kernel_device_lr, (_vector,) * 4 + (float32,) * 4 + (int32, int32)),
    ("adam", adam_kernel, (_vector,) * 5 + (float32,) * 9 + (int32,)),
    ("adam_device_step", adam_kernel_device_step, (_vector,) * 7 + (float32,) * 9 + (int32,)),
    ("rmsprop", rmsprop_kernel, (_vector,) * 5 + (float32,) * 7 + (int32, int32)),
    ("rmsprop_device_lr", rmsprop_kernel_device_lr, (_vector,) * 6 + (float32,) * 6 + (int32, int32)),
    ("adagrad", adagrad_kernel, (_vector,) * 3 + (float32,) * 4),
    ("adagrad_device_step", adagrad_kernel_device_step, (_vector,) * 5 + (float32,) * 4),
]
