"""Optimizer updates in NumPy, in place, following torch.optim's single-tensor code path step by step:
the reference for kernels/cuda/optim.py."""
import numpy as np


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
    # In-place passes through one scratch array: the nn optimizers call this for every parameter.
    g = -grad if maximize else grad
    if weight_decay != 0.0:
        if decoupled_weight_decay:
            param *= 1.0 - lr * weight_decay
        else:
            g = g + weight_decay * param
    scratch = np.subtract(g, exp_avg)
    scratch *= 1.0 - beta1
    exp_avg += scratch                               # torch: exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq *= beta2
    np.multiply(g, g, out=scratch)
    scratch *= 1.0 - beta2
    exp_avg_sq += scratch
    second_moment = exp_avg_sq
    if max_exp_avg_sq is not None:
        np.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
        second_moment = max_exp_avg_sq
    np.sqrt(second_moment, out=scratch)
    scratch /= np.sqrt(bias_correction2)
    scratch += eps
    np.divide(exp_avg, scratch, out=scratch)
    scratch *= lr / bias_correction1
    param -= scratch
