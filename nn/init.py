"""Parameter initialisation with PyTorch's defaults, drawn from one seedable NumPy generator.

Linear and Conv2d weights: kaiming_uniform_(a=sqrt(5)), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in));
their biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in)). Values are drawn on the CPU (so a seed gives the
same numbers on every device) and written into the tensor where it lives.
`nn.manual_seed(seed)` reseeds the generator used here and by dropout.
"""
import math

import numpy as np

from kernels import backend

_generator = np.random.default_rng()


def manual_seed(seed):
    """Reseed the generator behind initialisation and dropout masks (and CuPy's, when a GPU is in use)."""
    global _generator
    _generator = np.random.default_rng(seed)
    cupy = backend.cupy_module()
    if cupy is not None:
        cupy.random.seed(seed)
    return _generator


def default_generator():
    return _generator


def rng_state():
    """The generator's state (a dict), for checkpoints; CuPy's generator (dropout on the GPU) is not included."""
    return _generator.bit_generator.state


def set_rng_state(state):
    _generator.bit_generator.state = state


def calculate_fan_in_and_fan_out(tensor):
    """fan_in, fan_out of a weight of shape (out, in, *kernel), as torch.nn.init computes them."""
    shape = tensor.shape
    if len(shape) < 2:
        raise ValueError(f"init: fan in and fan out need a tensor with at least 2 dims, got shape {tuple(shape)}")
    receptive_field = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive_field, shape[0] * receptive_field


def _fill(tensor, values):
    values = values.astype(tensor.dtype, copy=False)
    tensor.data[...] = backend.to_device(values, tensor.device)
    return tensor


def uniform_(tensor, a=0.0, b=1.0, generator=None):
    """Fill `tensor` in place with U(a, b)."""
    generator = generator or _generator
    return _fill(tensor, generator.uniform(a, b, size=tensor.shape))


def normal_(tensor, mean=0.0, std=1.0, generator=None):
    generator = generator or _generator
    return _fill(tensor, generator.normal(mean, std, size=tensor.shape))


def zeros_(tensor):
    tensor.data[...] = 0
    return tensor


def ones_(tensor):
    tensor.data[...] = 1
    return tensor


def calculate_gain(nonlinearity, param=None):
    if nonlinearity in ("linear", "conv2d", "sigmoid"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope ** 2))
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def kaiming_uniform_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """U(-bound, bound) with bound = gain * sqrt(3 / fan), as torch.nn.init.kaiming_uniform_."""
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"kaiming_uniform_: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    fan = fan_in if mode == "fan_in" else fan_out
    bound = calculate_gain(nonlinearity, a) * math.sqrt(3.0 / fan)
    return uniform_(tensor, -bound, bound, generator)


def default_weight_and_bias_(weight, bias):
    """PyTorch's reset_parameters() for Linear and Conv2d."""
    kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in, _ = calculate_fan_in_and_fan_out(weight)
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        uniform_(bias, -bound, bound)
