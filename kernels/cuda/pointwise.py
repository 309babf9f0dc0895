"""Elementwise activations and their gradients: one thread per element over the flattened arrays.

Launch: `launch_1d` with THREADS threads a block. Memory-bound, so the only aim is coalesced,
single-pass access; inputs are made contiguous by the public op.
"""
from numba import cuda, float32

from .launch import launch_1d

THREADS = 256


@cuda.jit(fastmath=True)
def relu_kernel(x, y):
    i = cuda.grid(1)
    if i < x.shape[0]:
        y[i] = max(x[i], float32(0.0))


@cuda.jit(fastmath=True)
def relu_backward_kernel(grad_out, x, grad_in):
    i = cuda.grid(1)
    if i < x.shape[0]:
        grad_in[i] = grad_out[i] if x[i] > float32(0.0) else float32(0.0)


def relu(x, out):
    launch_1d(relu_kernel, x.size, x.reshape(-1), out.reshape(-1), threads=THREADS)


def relu_backward(grad_out, x, grad_in):
    launch_1d(relu_backward_kernel, x.size, grad_out.reshape(-1), x.reshape(-1), grad_in.reshape(-1),
              threads=THREADS)


_vector = float32[::1]
PTX_SIGNATURES = [
    ("relu", relu_kernel, (_vector, _vector)),
    ("relu_backward", relu_backward_kernel, (_vector, _vector, _vector)),
]
