"""Elementwise activations, their gradients and bias_add: one thread per element over flat arrays.

Launch: `launch_1d` with THREADS threads a block. Memory-bound, so the only aim is coalesced,
single-pass access; inputs are made contiguous by the public op.
"""
import math

from numba import cuda, float32, int64

from .. import backend
from .device import device_function
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


# GELU, SiLU, ELU without fastmath: the NaN of a NaN input must survive (fastmath assumes none), and the
# precise erfcf/expf/expm1f keep GELU within a few ulps; memory-bound either way. float32 constants only.
SQRT_HALF = float32(math.sqrt(0.5))
SQRT_HALF_LOW = float32(math.sqrt(0.5) - float(SQRT_HALF))   # what float32 drops of sqrt(1/2)
TWO_OVER_SQRT_PI = float32(2.0 / math.sqrt(math.pi))
INV_SQRT_2PI = float32(1.0 / math.sqrt(2.0 * math.pi))
TWO_BETA = float32(2.0 * math.sqrt(2.0 / math.pi))   # tanh GELU: 1 + tanh(u) = 2 sigmoid(2u), 2u = x (2b + 2bk x^2)
TWO_BETA_KAPPA = float32(2.0 * math.sqrt(2.0 / math.pi) * 0.044715)
THREE_TWO_BETA_KAPPA = float32(3.0 * 2.0 * math.sqrt(2.0 / math.pi) * 0.044715)

if backend.SIMULATOR:   # it has no cuda.fma; float64 holds a product of two float32 values exactly
    @device_function
    def _product_error(a, b, product):
        return float(a) * float(b) - float(product)
else:
    @device_function
    def _product_error(a, b, product):
        """a * b - product, exact for product = fl(a * b): one fma, one rounding of a result that fits."""
        return cuda.fma(a, b, -product)


@device_function
def _normal_cdf_and_density(value):
    """(Phi(x), phi(x)) in float32 as 0.5 erfc(t), t = -x / sqrt(2): no 1 + erf cancelling for x < 0. Rounding t
    costs erfc up to 2 t^2 half-ulps (85 ulps at x = -10), so the exact residual of t (an fma, plus the part
    of sqrt(1/2) float32 drops) is put back through erfc's slope: within 2-3 ulps plus erfcf's own."""
    t = -value * SQRT_HALF
    gauss = math.exp(-t * t)
    complement = math.erfc(t)
    if gauss > float32(0.0):   # (false for an infinite or NaN x, whose residual is NaN: nothing to put back)
        residual = _product_error(-value, SQRT_HALF, t) - value * SQRT_HALF_LOW
        complement -= residual * TWO_OVER_SQRT_PI * gauss
    return float32(0.5) * complement, gauss * INV_SQRT_2PI


@device_function
def _sigmoid_pair(z):
    """(sigmoid(z), 1 - sigmoid(z)): exp(-|z|) <= 1, so no overflow and no cancellation for large |z|."""
    e = math.exp(-abs(z))
    r = float32(1.0) / (float32(1.0) + e)
    if z >= float32(0.0):
        return r, e * r
    return e * r, r


@cached_jit
def gelu_kernel(x, y):
    i = cuda.grid(1)
    if i < x.shape[0]:
        value = x[i]
        y[i] = value * _normal_cdf_and_density(value)[0]


@cached_jit
def gelu_backward_kernel(grad_out, x, grad_in):
    i = cuda.grid(1)
    if i < x.shape[0]:
        value = x[i]
        cdf, density = _normal_cdf_and_density(value)
        grad_in[i] = grad_out[i] * (cdf + value * density)


@cached_jit
def gelu_tanh_kernel(x, y):
    i = cuda.grid(1)
    if i < x.shape[0]:
        value = x[i]
        y[i] = value * _sigmoid_pair(value * (TWO_BETA + TWO_BETA_KAPPA * value * value))[0]


@cached_jit
def gelu_tanh_backward_kernel(grad_out, x, grad_in):
    i = cuda.grid(1)
    if i < x.shape[0]:
        value = x[i]
        square = value * value
        s, one_minus_s = _sigmoid_pair(value * (TWO_BETA + TWO_BETA_KAPPA * square))
        grad_in[i] = grad_out[i] * (s + value * s * one_minus_s * (TWO_BETA + THREE_TWO_BETA_KAPPA * square))


@cached_jit
def silu_kernel(x, y):
    i = cuda.grid(1)
    if i < x.shape[0]:
        value = x[i]
        y[i] = value * _sigmoid_pair(value)[0]


@cached_jit
def silu_backward_kernel(grad_out, x, grad_in):
    i = cuda.grid(1)
    if i < x.shape[0]:
        value = x[i]
        s, one_minus_s = _sigmoid_pair(value)
        grad_in[i] = grad_out[i] * (s * (float32(1.0) + value * one_minus_s))


@cached_jit
def elu_kernel(x, y, alpha):
    # torch's branches: x <= 0 takes alpha * expm1(x) (exp(x) - 1 loses the digits near 0), a NaN stays NaN.
    i = cuda.grid(1)
    if i < x.shape[0]:
        value = x[i]
        y[i] = alpha * math.expm1(value) if value <= float32(0.0) else value


@cached_jit
def elu_backward_kernel(grad_out, x, grad_in, alpha):
    # As torch's: a NaN x passes grad_out on (the x <= 0 test is false).
    i = cuda.grid(1)
    if i < x.shape[0]:
        value = x[i]
        grad_in[i] = grad_out[i] * (alpha * math.exp(value)) if value <= float32(0.0) else grad_out[i]


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


def gelu(x, out, approximate):
    kernel = gelu_tanh_kernel if approximate == "tanh" else gelu_kernel
    launch_1d(kernel, x.size, *_flat(x, out), threads=THREADS)


def gelu_backward(grad_out, x, grad_in, approximate):
    kernel = gelu_tanh_backward_kernel if approximate == "tanh" else gelu_backward_kernel
    launch_1d(kernel, x.size, *_flat(grad_out, x, grad_in), threads=THREADS)


def silu(x, out):
    launch_1d(silu_kernel, x.size, *_flat(x, out), threads=THREADS)


def silu_backward(grad_out, x, grad_in):
    launch_1d(silu_backward_kernel, x.size, *_flat(grad_out, x, grad_in), threads=THREADS)


def elu(x, out, alpha):
    launch_1d(elu_kernel, x.size, *_flat(x, out), float32(alpha), threads=THREADS)


def elu_backward(grad_out, x, grad_in, alpha):
    launch_1d(elu_backward_kernel, x.size, *_flat(grad_out, x, grad_in), float32(alpha), threads=THREADS)


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
    ("gelu", gelu_kernel, (_vector, _vector)),
    ("gelu_backward", gelu_backward_kernel, (_vector, _vector, _vector)),
    ("gelu_tanh", gelu_tanh_kernel, (_vector, _vector)),
    ("gelu_tanh_backward", gelu_tanh_backward_kernel, (_vector, _vector, _vector)),
    ("silu", silu_kernel, (_vector, _vector)),
    ("silu_backward", silu_backward_kernel, (_vector, _vector, _vector)),
    ("elu", elu_kernel, (_vector, _vector, float32)),
    ("elu_backward", elu_backward_kernel, (_vector, _vector, _vector, float32)),
    ("bias_add", bias_add_kernel, (_vector, _vector, _vector, int64, int64)),
]
