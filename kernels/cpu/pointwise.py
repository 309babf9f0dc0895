"""Elementwise activations and their gradients in NumPy: the reference for kernels/cuda/pointwise.py."""
import numpy as np


def relu(x):
    return np.maximum(x, x.dtype.type(0))


def relu_backward(grad_out, x):
    return np.where(x > 0, grad_out, grad_out.dtype.type(0))
