"""Public elementwise ops (torch.nn.functional names): validate, then run where the inputs live."""
from . import backend
from ._checks import contiguous, empty, float_dtype, check_shape
from .cpu import pointwise as cpu
from .cuda import pointwise as gpu

__all__ = ["relu", "relu_backward"]


def relu(x):
    """max(x, 0), elementwise."""
    device = backend.device_of("relu", x)
    float_dtype("relu", device, x=x)
    if device == "cpu":
        return cpu.relu(x)
    x = contiguous(x)
    out = empty(x, x.shape)
    gpu.relu(x, out)
    return out


def relu_backward(grad_out, x):
    """Gradient of relu at `x`: grad_out where x > 0, else 0."""
    device = backend.device_of("relu_backward", grad_out, x)
    float_dtype("relu_backward", device, grad_out=grad_out, x=x)
    check_shape("relu_backward", "grad_out", grad_out, x.shape)
    if device == "cpu":
        return cpu.relu_backward(grad_out, x)
    grad_out, x = contiguous(grad_out), contiguous(x)
    grad_in = empty(x, x.shape)
    gpu.relu_backward(grad_out, x, grad_in)
    return grad_in
