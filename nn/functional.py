"""torch.nn.functional's names on Tensors: each op is a small Function whose forward calls a kernel
and whose backward calls that kernel's *_backward partner, so it runs on the CPU, the GPU and the
simulator alike. Convolution, pooling and batch norm live in functional_conv.py, the losses in
functional_losses.py (both re-exported here).

A Function's backward returns one gradient per Tensor input; optional inputs (a missing bias) are
not Tensors, so `_Op` keeps track of which positions are present.
"""
import numbers

import numpy as np

import kernels
from kernels import backend

from . import init
from .autograd import Function
from .tensor import Tensor


def _tensor(x, name="input", optional=True):
    """Tensors pass through; NumPy/CuPy arrays become constant Tensors; None stays None where optional (else a
    TypeError naming `name`, which callers prefix with their op or layer: 'LSTM: input')."""
    if (x is None and optional) or isinstance(x, Tensor):
        return x
    if backend.is_array(x):
        return Tensor(x)
    raise TypeError(f"{name} must be a Tensor or an array, got {type(x).__name__}")


class _Op(Function):
    """A Function with optional (None) array inputs: `present` marks which positions were Tensors."""

    def _mark_present(self, *arrays):
        self.present = tuple(a is not None for a in arrays)

    def needs(self):
        """needs_input_grad expanded to every position (False for absent inputs)."""
        flags = iter(self.needs_input_grad)
        return tuple(next(flags) if present else False for present in self.present)

    def grads(self, *grads):
        """Drop the gradients of absent inputs, as the engine expects."""
        return tuple(g for g, present in zip(grads, self.present) if present)

    def out_for(self, position, needed=True):
        """gradient_out of the input at `position` (absent inputs counted), or None when absent or not needed."""
        if not needed or not self.present[position]:
            return None
        return self.gradient_out(sum(self.present[:position]))


# ---- activations --------------------------------------------------------------------------------

class _ReLU(Function):
    def forward(self, x):
        self.save_for_backward(x)
        return kernels.relu(x)

    def backward(self, grad):
        return kernels.relu_backward(grad, self.saved[0])


class _LeakyReLU(Function):
    def forward(self, x, negative_slope):
        self.negative_slope = negative_slope
        self.save_for_backward(x)
        return kernels.leaky_relu(x, negative_slope)

    def backward(self, grad):
        return kernels.leaky_relu_backward(grad, self.saved[0], self.negative_slope)


class _Sigmoid(Function):
    def forward(self, x):
        y = kernels.sigmoid(x)
        self.save_for_backward(y)
        return y

    def backward(self, grad):
        return kernels.sigmoid_backward(grad, self.saved[0])


class _Tanh(Function):
    def forward(self, x):
        y = kernels.tanh(x)
        self.save_for_backward(y)
        return y

    def backward(self, grad):
        return kernels.tanh_backward(grad, self.saved[0])


class _Softmax(Function):
    def forward(self, x, dim, log):
        self.dim, self.log = dim, log
        y = (kernels.log_softmax if log else kernels.softmax)(x, dim)
        self.save_for_backward(y)
        return y

    def backward(self, grad):
        backward = kernels.log_softmax_backward if self.log else kernels.softmax_backward
        return backward(grad, self.saved[0], self.dim)


def relu(input, inplace=False):
    return _ReLU.apply(_tensor(input))


def leaky_relu(input, negative_slope=0.01, inplace=False):
    return _LeakyReLU.apply(_tensor(input), negative_slope=negative_slope)


def sigmoid(input):
    return _Sigmoid.apply(_tensor(input))


def tanh(input):
    return _Tanh.apply(_tensor(input))


def softmax(input, dim=-1):
    return _Softmax.apply(_tensor(input), dim=dim, log=False)


def log_softmax(input, dim=-1):
    return _Softmax.apply(_tensor(input), dim=dim, log=True)


# ---- dropout ------------------------------------------------------------------------------------

def dropout_mask(x, shape, p):
    """A mask of `shape` on x's device in x's dtype: 0 with probability p, else 1/(1-p) (F.dropout's per
    element, F.dropout2d's per channel). On the CPU and in the simulator from nn.manual_seed's generator."""
    xp = backend.array_module(x)
    if xp is np:  # the seedable generator of nn.manual_seed
        keep = init.default_generator().random(shape, dtype=x.dtype) >= p
    else:
        keep = xp.random.random(shape, dtype=x.dtype) >= p
    return keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - p))  # kept values scaled by 1/(1-p)


class _Dropout(Function):
    def forward(self, x, p):
        mask = dropout_mask(x, x.shape, p)
        self.save_for_backward(mask)
        return x * mask

    def backward(self, grad):
        return grad * self.saved[0]


def dropout(input, p=0.5, training=True, inplace=False):
    """Zero each element with probability p and scale the rest by 1/(1-p); identity when not training."""
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= p <= 1.0:   # (NumPy scalars too)
        raise ValueError(f"dropout: p must be a probability in [0, 1], got {p!r}")
    input = _tensor(input)
    if not training or p == 0.0:
        return input
    if p == 1.0:
        return input * 0.0
    return _Dropout.apply(input, p=float(p))


# ---- linear algebra -----------------------------------------------------------------------------

class _Linear(_Op):
    """y = x @ weight^T + bias on 2-D x (N, in); the bias is fused into the GEMM's epilogue."""

    def forward(self, x, weight, bias):
        self._mark_present(x, weight, bias)
        need_x, need_w, _ = self.needs()
        self.save_for_backward(x if need_w else None, weight if need_x else None)
        return kernels.matmul(x, weight, trans_b=True, bias=bias)

    def backward(self, grad):
        x, weight = self.saved
        need_x, need_w, need_b = self.needs()
        grad_x = kernels.matmul(grad, weight) if need_x else None
        # (the parameters' gradients go straight into a flat optimizer's buffer where it has one: no copy)
        grad_w = kernels.matmul(grad, x, trans_a=True, out=self.out_for(1)) if need_w else None
        grad_b = kernels.reduce_sum(grad, axis=0, out=self.out_for(2)) if need_b else None
        return self.grads(grad_x, grad_w, grad_b)


def linear(input, weight, bias=None):
    """input (..., in_features) @ weight^T (in_features, out_features) + bias."""
    input, weight, bias = _tensor(input), _tensor(weight, "weight"), _tensor(bias, "bias")
    if input.ndim < 1 or weight.ndim != 2 or input.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: input must end in {weight.shape[-1]} features for a weight of shape "
                         f"{weight.shape}, got input of shape {input.shape}")
    if input.ndim == 2:
        return _Linear.apply(input, weight, bias)
    out = _Linear.apply(input.reshape(-1, input.shape[-1]), weight, bias)
    return out.reshape(input.shape[:-1] + (weight.shape[0],))


class _MatMul(Function):
    """The kernel's forms: 2-D @ 2-D, 3-D @ 3-D (same batch), 3-D @ 2-D and 2-D @ 3-D."""

    def forward(self, a, b):
        need_a, need_b = self.needs_input_grad
        self.ndims = (a.ndim, b.ndim)
        self.save_for_backward(a if need_b else None, b if need_a else None)
        return kernels.matmul(a, b)

    def backward(self, grad):
        a, b = self.saved
        need_a, need_b = self.needs_input_grad
        grad_a = grad_b = None
        if need_a:
            grad_a = kernels.matmul(grad, b, trans_b=True)
            if self.ndims[0] == 2 and grad_a.ndim == 3:  # a was shared by every batch entry
                grad_a = kernels.reduce_sum(grad_a, axis=0)
        if need_b:
            if self.ndims == (3, 2):  # b was shared: one GEMM over all batch rows
                grad_b = kernels.matmul(a.reshape(-1, a.shape[-1]), grad.reshape(-1, grad.shape[-1]), trans_a=True)
            else:
                grad_b = kernels.matmul(a, grad, trans_a=True)
        return grad_a, grad_b


def matmul(input, other):
    """torch.matmul for 1-D to N-D operands whose batch dimensions are equal (no batch broadcasting)."""
    a, b = _tensor(input), _tensor(other, "other")
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: both operands need at least 1 dim, got shapes {a.shape} and {b.shape}")
    if a.ndim == 1 and b.ndim == 1:   # the dot product, 0-d as torch's
        if a.shape != b.shape:
            raise ValueError(f"matmul: 1-D operands need the same length, got shapes {a.shape} and {b.shape}")
        return matmul(a.unsqueeze(0), b.unsqueeze(1)).reshape(())
    if a.ndim == 1:
        return matmul(a.unsqueeze(0), b).squeeze(-2)
    if b.ndim == 1:
        return matmul(a, b.unsqueeze(1)).squeeze(-1)
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"matmul: inner dimensions differ: shapes {a.shape} and {b.shape}")
    if a.ndim > 3 and b.ndim == 2:
        return _MatMul.apply(a.reshape(-1, a.shape[-1]), b).reshape(a.shape[:-1] + (b.shape[-1],))
    if a.ndim >= 3 and b.ndim >= 3:
        if a.shape[:-2] != b.shape[:-2]:
            raise ValueError(f"matmul: batch dimensions must be equal (no broadcasting), got shapes {a.shape} "
                             f"and {b.shape}")
        if a.ndim > 3:
            batch = a.shape[:-2]
            out = _MatMul.apply(a.reshape((-1,) + a.shape[-2:]), b.reshape((-1,) + b.shape[-2:]))
            return out.reshape(batch + out.shape[-2:])
    elif b.ndim > 3:
        raise ValueError(f"matmul: a 2-D operand times a {b.ndim}-D one is not supported, got shapes "
                         f"{a.shape} and {b.shape}")
    return _MatMul.apply(a, b)


def flatten(input, start_dim=0, end_dim=-1):
    """torch.flatten: dims start_dim..end_dim merged into one."""
    input = _tensor(input)
    if input.ndim == 0:
        return input.reshape(1)
    start, end = start_dim % input.ndim, end_dim % input.ndim
    if start > end:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} for shape {input.shape}")
    return input.reshape(input.shape[:start] + (-1,) + input.shape[end + 1:])


from .functional_conv import (adaptive_avg_pool2d, avg_pool2d, batch_norm, batch_norm_relu,  # noqa: E402,F401
                              conv2d, max_pool2d)
from .functional_losses import (binary_cross_entropy_with_logits, cross_entropy, l1_loss,  # noqa: E402,F401
                                mse_loss, nll_loss, smooth_l1_loss)
from .ctc import ctc_loss  # noqa: E402,F401
from .functional_embedding import embedding  # noqa: E402,F401
from .functional_layer_norm import layer_norm  # noqa: E402,F401
from .functional_1d import adaptive_avg_pool1d, avg_pool1d, conv1d, max_pool1d  # noqa: E402,F401
from .functional_activations import elu, gelu, silu  # noqa: E402,F401
from .functional_conv import conv_transpose2d  # noqa: E402,F401
from .functional_group_norm import group_norm  # noqa: E402,F401
from .functional_shape_ops import dropout2d, interpolate, pad  # noqa: E402,F401
from .functional_extra import *  # noqa: E402,F401,F403  (one_hot, normalize, BCE, kl_div, huber, softplus...)
