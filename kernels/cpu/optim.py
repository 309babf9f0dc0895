"""Optimizer updates on the CPU, in place, following torch.optim's single-tensor code path step by step:
the reference for kernels/cuda/optim.py. SGD in NumPy; Adam as one Numba-CPU loop (see adam_update)."""
import math

from numba import njit


def sgd_update(param, grad, momentum_buffer, *, lr, momentum, dampening, weight_decay, nesterov, maximize,
               first_step):
    step = -grad if maximize else grad.copy()
    if weight_decay != 0.0:
        step += weight_decay * param
    if momentum != 0.0:
        if first_step:
            momentum_buffer[...] = step
        else:
            momentum_buffer *= momentum
            momentum_buffer += (1.0 - dampening) * step
        if nesterov:
            step += momentum * momentum_buffer
        else:
            step = momentum_buffer
    param -= lr * step


def adam_update(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, *, lr, beta1, beta2, eps, weight_decay,
                decoupled_weight_decay, maximize, bias_correction1, bias_correction2):
    """Contiguous arrays only (the public op copies others). One fused loop: NumPy needs about a dozen
    full passes over the arrays here, which made a 10M-parameter step 8x slower than torch's fused one."""
    amsgrad = max_exp_avg_sq is not None
    scalar = param.dtype.type   # float32 arithmetic for float32 arrays, as torch
    _adam_loop(param.reshape(-1), grad.reshape(-1), exp_avg.reshape(-1), exp_avg_sq.reshape(-1),
               (max_exp_avg_sq if amsgrad else grad).reshape(-1), amsgrad,
               *[scalar(value) for value in (-1.0 if maximize else 1.0, 0.0 if decoupled_weight_decay else weight_decay,
                                             1.0 - lr * weight_decay if decoupled_weight_decay else 1.0,
                                             1.0 - beta1, beta2, 1.0 - beta2, eps, lr / bias_correction1,
                                             math.sqrt(bias_correction2))])


# error_model="numpy": no ZeroDivisionError check per division, so the loop vectorises.
@njit(cache=True, error_model="numpy")
def _adam_loop(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, amsgrad, sign, weight_decay, decay_factor,
               one_minus_beta1, beta2, one_minus_beta2, eps, step_size, sqrt_bias_correction2):
    # torch's order: grad (+ wd * param); exp_avg.lerp_(grad, 1 - beta1); exp_avg_sq = beta2 * v + (1 - beta2) g^2;
    # param (* (1 - lr * wd) for AdamW) - step_size * m / (sqrt(v) / sqrt(bc2) + eps)
    for i in range(param.shape[0]):
        p = param[i]
        g = sign * grad[i] + weight_decay * p
        m = exp_avg[i]
        m = m + one_minus_beta1 * (g - m)
        v = beta2 * exp_avg_sq[i] + one_minus_beta2 * g * g
        exp_avg[i] = m
        exp_avg_sq[i] = v
        if amsgrad:
            v = max(max_exp_avg_sq[i], v)
            max_exp_avg_sq[i] = v
        param[i] = p * decay_factor - step_size * m / (math.sqrt(v) / sqrt_bias_correction2 + eps)
