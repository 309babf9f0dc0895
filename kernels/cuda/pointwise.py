"""Elementwise activations, their gradients and bias_add: one thread per element over flat arrays.

Launch: `launch_1d` with THREADS threads a block. Memory-bound, so the only aim is coalesced,
single-pass access; inputs are made contiguous by the public op.
"""
import math

from numba import cuda, float32, int64

from .jit import cached_jit
from .launch import launch_1d

THREADS = 256


# ReLU without fastmath: as in torch, a NaN input gives a NaN output and passes its gradient on
# (max.f32 and no-NaN compare folding would turn it into 0). The kernels are memory-bound anyway.
@cached_jit
def relu_kernel(x, y):
    i = cuda.grid(1)
    if i < x.shape[0]:
        value = x[i]
        y[i] = float32(0.0) if value < float32(0.0) else value


@cached_jit
def relu_backward_kernel(grad_out, x, grad_in):
    i = cuda.grid(1)
    if i < x.shape[0]:
        grad_in[i] = float32(0.0) if x[i] <= float32(0.0) else grad_out[i]


@cached_jit(fastmath=True)
def leaky_relu_kernel(x, y, negative_slope):
    i = cuda.grid(1)
    if i < x.shape[0]:
        value = x[i]
        y[i] = value if value > float32(0.0) else value * negative_slope


@cached_jit(fastmath=True)
def leaky_relu_backward_kernel(grad_out, x, grad_in, negative_slope):
    i = cuda.grid(1)
    if i < x.shape[0]:
        grad_in[i] = grad_out[i] if x[i] > float32(0.0) else grad_out[i] * negative_slope


@cached_jit(fastmath=True)
def sigmoid_kernel(x, y):
    i = cuda.grid(1)
    if i < x.shape[0]:
        # exp(-|x|) <= 1: no overflow, and no 0/0 for large |x|.
        value = x[i]
        e = math.exp(-abs(value))
        r = float32(1.0) / (float32(1.0) + e)
        y[i] = r if value >= float32(0.0) else e * r


@cached_jit(fastmath=True)
def sigmoid_backward_kernel(grad_out, y, grad_in):
    i = cuda.grid(1)
    if i < y.shape[0]:
        value = y[i]
        grad_in[i] = grad_out[i] * value * (float32(1.0) - value)


@cached_jit(fastmath=True)
def tanh_kernel(x, y):
    i = cuda.grid(1)
    if i < x.shape[0]:
        y[i] = math.tanh(x[i])


@cached_jit(fastmath=True)
def tanh_backward_kernel(grad_out, y, grad_in):
    i = cuda.grid(1)
    if i < y.shape[0]:
        value = y[i]
        grad_in[i] = grad_out[i] * (float32(1.0) - value * value)


@cached_jit(fastmath=True)
def bias_add_kernel(x, bias, y, inner, channels):
    # x is (N, C, inner) flattened; LLVM turns the 64-bit division into a 32-bit one when it fits.
    i = cuda.grid(1)
    if i < x.shape[0]:
        y[i] = x[i] + bias[(i // inner) % channels]


def _flat(*arrays):
    return [a.reshape(-1) for a in arrays]


def relu(x, out):
    launch_1d(relu_kernel, x.size, *_flat(x, out), threads=THREADS)


def relu_backward(grad_out, x, grad_in):
    launch_1d(relu_backward_kernel, x.size, *_flat(grad_out, x, grad_in), threads=THREADS)


def leaky_relu(x, out, negative_slope):
    launch_1d(leaky_relu_kernel, x.size, *_flat(x, out), float32(negative_slope), threads=THREADS)


def leaky_relu_backward(grad_out, x, grad_in, negative_slope):
    launch_1d(leaky_relu_backward_kernel, x.size, *_flat(grad_out, x, grad_in), float32(negative_slope),
              threads=THREADS)


def sigmoid(x, out):
    launch_1d(sigmoid_kernel, x.size, *_flat(x, out), threads=THREADS)


def sigmoid_backward(grad_out, y, grad_in):
    launch_1d(sigmoid_backward_kernel, y.size, *_flat(grad_out, y, grad_in), threads=THREADS)


def tanh(x, out):
    launch_1d(tanh_kernel, x.size, *_flat(x, out), threads=THREADS)


def tanh_backward(grad_out, y, grad_in):
    launch_1d(tanh_backward_kernel, y.size, *_flat(grad_out, y, grad_in), threads=THREADS)


def bias_add(x, bias, out):
    channels = x.shape[1]
    inner = x.size // (x.shape[0] * channels) if x.size else 1
    launch_1d(bias_add_kernel, x.size, *_flat(x, bias, out), int(inner), int(channels), threads=THREADS)


_vector = float32[::1]
PTX_SIGNATURES = [
    ("relu", relu_kernel, (_vector, _vector)),
    ("relu_backward", relu_backward_kernel, (_vector, _vector, _vector)),
    ("leaky_relu", leaky_relu_kernel, (_vector, _vector, float32)),
    ("leaky_relu_backward", leaky_relu_backward_kernel, (_vector, _vector, _vector, float32)),
    ("sigmoid", sigmoid_kernel, (_vector, _vector)),
    ("sigmoid_backward", sigmoid_backward_kernel, (_vector, _vector, _vector)),
    ("tanh", tanh_kernel, (_vector, _vector)),
    ("tanh_backward", tanh_backward_kernel, (_vector, _vector, _vector)),
    ("bias_add", bias_add_kernel, (_vector, _vector, _vector, int64, int64)),
]
