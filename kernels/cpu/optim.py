"""Optimizer updates on the CPU, in place, following torch.optim's single-tensor code path step by step:
the reference for kernels/cuda/optim.py. SGD in NumPy; Adam, RMSprop and Adagrad as one Numba-CPU loop each
(see adam_update)."""
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
        g = sign * grad[i]
        if weight_decay != 0.0:   # (skipped at 0, as torch: an infinite p stays inf, not 0 * inf = NaN)
            g = g + weight_decay * p
        m = exp_avg[i]
        m = m + one_minus_beta1 * (g - m)
        v = beta2 * exp_avg_sq[i] + one_minus_beta2 * g * g
        exp_avg[i] = m
        exp_avg_sq[i] = v
        if amsgrad:
            v = max(max_exp_avg_sq[i], v)
            max_exp_avg_sq[i] = v
        param[i] = p * decay_factor - step_size * m / (math.sqrt(v) / sqrt_bias_correction2 + eps)


def _lerp_weights(weight):
    """torch's lerp(self, end, weight): self + w * (end - self) for w < 0.5, else end - (end - self) * (1 - w)."""
    return (weight, 0.0) if weight < 0.5 else (0.0, 1.0 - weight)


def rmsprop_update(param, grad, square_avg, grad_avg, momentum_buffer, *, lr, alpha, eps, weight_decay, momentum,
                   maximize):
    """torch.optim.RMSprop's single-tensor step; contiguous arrays (the public op copies others). `grad_avg`
    (centered) and `momentum_buffer` (momentum > 0) may be None."""
    centered, use_momentum = grad_avg is not None, momentum_buffer is not None
    scalar = param.dtype.type
    low_weight, high_complement = _lerp_weights(1.0 - alpha)
    _rmsprop_loop(param.reshape(-1), grad.reshape(-1), square_avg.reshape(-1),
                  (grad_avg if centered else grad).reshape(-1), (momentum_buffer if use_momentum else grad).reshape(-1),
                  centered, use_momentum, 1.0 - alpha >= 0.5,
                  *[scalar(value) for value in (-1.0 if maximize else 1.0, weight_decay, alpha, 1.0 - alpha,
                                                low_weight, high_complement, eps, momentum, -lr)])


@njit(cache=True, error_model="numpy")
def _rmsprop_loop(param, grad, square_avg, grad_avg, momentum_buffer, centered, use_momentum, high_weight, sign,
                  weight_decay, alpha, one_minus_alpha, low_weight, high_complement, eps, momentum, negative_lr):
    # torch's order: g = grad (+ wd * param); v = v * alpha + (1 - alpha) * g * g; centered: a.lerp_(g, 1 - alpha),
    # denom = sqrt(v - a * a) + eps, else sqrt(v) + eps; buf = buf * momentum + g / denom, param + (-lr) * buf;
    # without momentum param + (-lr) * g / denom (addcdiv's order: the scaled numerator first)
    for i in range(param.shape[0]):
        p = param[i]
        g = sign * grad[i]
        if weight_decay != 0.0:
            g = g + weight_decay * p
        v = square_avg[i] * alpha + one_minus_alpha * g * g
        square_avg[i] = v
        if centered:
            a = grad_avg[i]
            if high_weight:
                a = g - (g - a) * high_complement
            else:
                a = a + low_weight * (g - a)
            grad_avg[i] = a
            v = v - a * a
        denom = math.sqrt(v) + eps
        if use_momentum:
            buf = momentum_buffer[i] * momentum + g / denom
            momentum_buffer[i] = buf
            param[i] = p + negative_lr * buf
        else:
            param[i] = p + negative_lr * g / denom


def adagrad_update(param, grad, state_sum, *, clr, eps, weight_decay, maximize):
    """torch.optim.Adagrad's single-tensor (dense) step with the decayed rate clr = lr / (1 + (step - 1) * lr_decay),
    computed by the caller; contiguous arrays."""
    scalar = param.dtype.type
    _adagrad_loop(param.reshape(-1), grad.reshape(-1), state_sum.reshape(-1),
                  *[scalar(value) for value in (-1.0 if maximize else 1.0, weight_decay, eps, -clr)])


@njit(cache=True, error_model="numpy")
def _adagrad_loop(param, grad, state_sum, sign, weight_decay, eps, negative_clr):
    # torch's order: g = grad (+ wd * param); sum = sum + g * g; param + (-clr) * g / (sqrt(sum) + eps)
    for i in range(param.shape[0]):
        p = param[i]
        g = sign * grad[i]
        if weight_decay != 0.0:
            g = g + weight_decay * p
        s = state_sum[i] + g * g
        state_sum[i] = s
        param[i] = p + negative_clr * g / (math.sqrt(s) + eps)
