"""Parameter initialisation with PyTorch's defaults, drawn from one seedable NumPy generator.

Linear and Conv2d weights: kaiming_uniform_(a=sqrt(5)), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in));
their biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in)). Values are drawn on the CPU (so a seed gives the
same numbers on every device) and written into the tensor where it lives.
`nn.manual_seed(seed)` reseeds the generator used here and by dropout.
Like torch.nn.init, these write into `tensor.data` outside autograd (torch runs them under no_grad).
"""
import math
import warnings

import numpy as np

from kernels import backend

from .autograd import note_in_place

_generator = np.random.default_rng()


def manual_seed(seed):
    """Reseed the generator behind initialisation, dropout masks and the random factories (nn.rand, randn,
    randint: one stream for all, as torch's), and CuPy's, when a GPU is in use."""
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


def calculate_fan_in_and_fan_out(tensor, op="calculate_fan_in_and_fan_out"):
    """fan_in, fan_out of a weight of shape (out, in, *kernel), as torch.nn.init computes them."""
    shape = tensor.shape
    if len(shape) < 2:
        raise ValueError(f"{op}: fan in and fan out need a tensor with at least 2 dims, got shape {tuple(shape)}")
    receptive_field = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive_field, shape[0] * receptive_field


_calculate_fan_in_and_fan_out = calculate_fan_in_and_fan_out   # torch's private name, which user code calls


def _calculate_correct_fan(tensor, mode):
    """torch's private helper: the fan that `mode` ('fan_in' or 'fan_out') names."""
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"_calculate_correct_fan: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor, "_calculate_correct_fan")
    return fan_in if mode == "fan_in" else fan_out


def _writable(op, tensor, drawn=True):
    """The checks before an initialiser writes into `tensor`: not a copy that torch would give as a view (the
    write would not reach the tensor it came from), and floating when values are drawn (torch refuses integer
    tensors there; a cast would truncate them)."""
    copy_of = getattr(tensor, "_copy_of_view", None)
    if copy_of is not None:
        raise RuntimeError(f"{op}: this tensor is a copy made by {copy_of} (a view in torch), so initialising it "
                           f"would not change the tensor it came from; initialise that tensor instead")
    if drawn and tensor.dtype.kind != "f":
        raise TypeError(f"{op}: random values need a floating tensor, got {tensor.dtype}")


def _generator_for(op, generator):
    if generator is None:
        return _generator
    if not isinstance(generator, np.random.Generator):
        raise TypeError(f"{op}: generator must be a numpy.random.Generator (nn draws with NumPy), got "
                        f"{type(generator).__name__}")
    return generator


def _fill(tensor, values):
    values = values.astype(tensor.dtype, copy=False)
    tensor.data[...] = backend.to_device(values, tensor.device)
    note_in_place(tensor.data)
    return tensor


def _uniform(op, tensor, a, b, generator):
    if not a <= b:   # (NaN bounds too)
        raise ValueError(f"{op}: the range [a, b) needs a <= b, got a={a!r}, b={b!r}")
    return _fill(tensor, _generator_for(op, generator).uniform(a, b, size=tensor.shape))


def _normal(op, tensor, mean, std, generator):
    if not std >= 0:
        raise ValueError(f"{op}: std must be >= 0, got {std!r}")
    return _fill(tensor, _generator_for(op, generator).normal(mean, std, size=tensor.shape))


def uniform_(tensor, a=0.0, b=1.0, generator=None):
    """Fill `tensor` in place with U(a, b)."""
    _writable("uniform_", tensor)
    return _uniform("uniform_", tensor, a, b, generator)


def normal_(tensor, mean=0.0, std=1.0, generator=None):
    _writable("normal_", tensor)
    return _normal("normal_", tensor, mean, std, generator)


def constant_(tensor, val):
    """Fill `tensor` with the number `val` (or a 0-d tensor or array holding it), as torch's fill_."""
    _writable("constant_", tensor, drawn=False)
    value = getattr(val, "data", val)   # a Tensor's array
    if np.ndim(value) != 0:
        raise ValueError(f"constant_: val must be a number or 0-d, got shape {np.shape(value)}")
    tensor.data[...] = value if np.isscalar(value) else backend.to_device(value, tensor.device)
    note_in_place(tensor.data)
    return tensor


def zeros_(tensor):
    _writable("zeros_", tensor, drawn=False)
    return constant_(tensor, 0)


def ones_(tensor):
    _writable("ones_", tensor, drawn=False)
    return constant_(tensor, 1)


def eye_(tensor):
    """The identity in a 2-D tensor (ones on the main diagonal of a non-square one too), as torch's eye_."""
    _writable("eye_", tensor, drawn=False)
    if tensor.ndim != 2:
        raise ValueError(f"eye_: needs a 2-D tensor, got shape {tuple(tensor.shape)}")
    return _fill(tensor, np.eye(*tensor.shape))


def dirac_(tensor, groups=1):
    """A 3-, 4- or 5-D convolution weight (out, in, *kernel) that passes its input through (one 1 at the kernel
    centre of channel i for output i, within each of `groups` groups), as torch's dirac_."""
    _writable("dirac_", tensor, drawn=False)
    if tensor.ndim not in (3, 4, 5):
        raise ValueError(f"dirac_: needs a 3-, 4- or 5-D tensor, got shape {tuple(tensor.shape)}")
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1 \
            or tensor.shape[0] % groups:
        raise ValueError(f"dirac_: groups must be a positive integer dividing dim 0 ({tensor.shape[0]}), "
                         f"got {groups!r}")
    per_group = tensor.shape[0] // groups
    values = np.zeros(tensor.shape)
    centre = tuple(size // 2 for size in tensor.shape[2:])
    for group in range(groups):
        for channel in range(min(per_group, tensor.shape[1])):
            values[(group * per_group + channel, channel) + centre] = 1
    return _fill(tensor, values)


_LINEAR = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
           "sigmoid")


def calculate_gain(nonlinearity, param=None):
    """torch.nn.init.calculate_gain: the gain that keeps activations' variance through `nonlinearity`."""
    if nonlinearity in _LINEAR:
        return 1.0
    if nonlinearity == "selu":
        return 3.0 / 4
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is not None and (isinstance(param, bool) or not isinstance(param, (int, float, np.number))):
            raise ValueError(f"calculate_gain: negative_slope must be a number, got {param!r}")
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope ** 2))
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def _kaiming_std(op, tensor, a, mode, nonlinearity):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"{op}: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor, op)
    fan = fan_in if mode == "fan_in" else fan_out
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def _no_op_for_no_elements(tensor):
    """torch's kaiming_* on a tensor with no elements: a warning, and the tensor unchanged (its fan may be 0)."""
    if 0 in tuple(tensor.shape):
        warnings.warn("Initializing zero-element tensors is a no-op", UserWarning, stacklevel=3)
        return True
    return False


def kaiming_uniform_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """U(-bound, bound) with bound = gain * sqrt(3 / fan), as torch.nn.init.kaiming_uniform_."""
    _writable("kaiming_uniform_", tensor)
    if _no_op_for_no_elements(tensor):
        return tensor
    bound = math.sqrt(3.0) * _kaiming_std("kaiming_uniform_", tensor, a, mode, nonlinearity)
    return _uniform("kaiming_uniform_", tensor, -bound, bound, generator)


def kaiming_normal_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """N(0, std^2) with std = gain / sqrt(fan), as torch.nn.init.kaiming_normal_."""
    _writable("kaiming_normal_", tensor)
    if _no_op_for_no_elements(tensor):
        return tensor
    return _normal("kaiming_normal_", tensor, 0.0, _kaiming_std("kaiming_normal_", tensor, a, mode, nonlinearity),
                   generator)


def _xavier_std(op, tensor, gain):
    """The std; 0 for a tensor with no elements whose fans are both 0 (nothing to fill: torch divides by zero)."""
    _writable(op, tensor)
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor, op)
    if fan_in + fan_out == 0:
        return 0.0
    return gain * math.sqrt(2.0 / (fan_in + fan_out))


def xavier_uniform_(tensor, gain=1.0, generator=None):
    """U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out)) (Glorot), as torch.nn.init.xavier_uniform_."""
    bound = math.sqrt(3.0) * _xavier_std("xavier_uniform_", tensor, gain)
    return _uniform("xavier_uniform_", tensor, -bound, bound, generator)


def xavier_normal_(tensor, gain=1.0, generator=None):
    """N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out)), as torch.nn.init.xavier_normal_."""
    return _normal("xavier_normal_", tensor, 0.0, _xavier_std("xavier_normal_", tensor, gain), generator)


def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0, generator=None):
    """N(mean, std^2) restricted to [a, b] (a, b are absolute bounds, as in torch), drawn as torch does: the
    inverse normal CDF of values uniform between the CDFs of the bounds, then clamped to [a, b]."""
    from scipy.special import erfinv   # (SciPy comes with scikit-learn, a dependency)
    _writable("trunc_normal_", tensor)
    if not a < b:
        raise ValueError(f"trunc_normal_: the lower bound a must be below b, got a={a!r}, b={b!r}")

    def normal_cdf(x):
        return (1.0 + math.erf(x / math.sqrt(2.0))) / 2.0

    generator = _generator_for("trunc_normal_", generator)
    low, high = normal_cdf((a - mean) / std), normal_cdf((b - mean) / std)
    values = erfinv(generator.uniform(2 * low - 1, 2 * high - 1, size=tensor.shape)) * (std * math.sqrt(2.0)) + mean
    return _fill(tensor, np.clip(values, a, b))


def orthogonal_(tensor, gain=1.0, generator=None):
    """A (semi-)orthogonal matrix times `gain`, as torch.nn.init.orthogonal_: the Q of the QR decomposition
    of a Gaussian (rows, numel / rows) matrix (transposed when wider than tall), its columns' signs fixed by
    R's diagonal so that Q is uniformly distributed; trailing dims are flattened."""
    _writable("orthogonal_", tensor)
    if tensor.ndim < 2:
        raise ValueError(f"orthogonal_: needs a tensor with at least 2 dims, got shape {tuple(tensor.shape)}")
    rows = tensor.shape[0]
    if rows == 0 or tensor.data.size == 0:
        return tensor
    columns = tensor.data.size // rows
    generator = _generator_for("orthogonal_", generator)
    flattened = generator.normal(0.0, 1.0, size=(rows, columns))
    if rows < columns:
        flattened = flattened.T
    q, r = np.linalg.qr(flattened)
    q *= np.sign(np.diag(r))
    if rows < columns:
        q = q.T
    return _fill(tensor, (gain * q).reshape(tensor.shape))


def default_weight_and_bias_(weight, bias):
    """PyTorch's reset_parameters() for Linear and Conv2d."""
    kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in, _ = calculate_fan_in_and_fan_out(weight)
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        uniform_(bias, -bound, bound)
