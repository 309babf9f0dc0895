"""Layers with PyTorch's constructor arguments, parameter names, buffers and default initialisation.

Each layer checks its input before calling nn.functional: a wrong rank or channel count, or
parameters on another device than the input, raise a ValueError that names the layer, what it
expected and what it got, e.g. "Conv2d(3, 16): expected input of shape (N, 3, H, W), got (8, 1, 28, 28)".
`dtype` (float32 by default; float64 for checks on the CPU) sets the parameters' dtype, and `device` ('cpu',
the default, or 'cuda') where they live, as torch's factory arguments. Constructor arguments are checked when the
layer is made, and a bad one names the layer.
"""
import numbers

import numpy as np

from kernels import backend
from kernels._checks import positive_int
from kernels.conv import _non_negative_int, _pair as _checked_pair

from . import functional as F
from . import init
from .module import Module, Parameter
from .tensor import Tensor


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


class _Layer(Module):
    """Input checks shared by the layers below."""

    def label(self):
        return f"{type(self).__name__}({self.extra_repr()})"

    def _input(self, x, ranks=None, channels=None, expected=None):
        """x as a Tensor on the parameters' device, of one of `ranks`, with `channels` on axis 1."""
        x = x if isinstance(x, Tensor) else Tensor(x) if backend.is_array(x) else \
            _raise(TypeError(f"{self.label()}: expected a Tensor or an array, got {type(x).__name__}"))
        for name, parameter in self._parameters.items():  # these layers have no submodules
            if parameter is not None and parameter.device != x.device:
                raise ValueError(f"{self.label()}: parameter {name} is on {parameter.device} but the input is on "
                                 f"{x.device}; move the module with .to({x.device!r}) or the input with "
                                 f".to({parameter.device!r})")
        if ranks is not None:
            if x.ndim not in ranks or (channels is not None and x.shape[1] != channels):
                raise ValueError(f"{self.label()}: expected input of shape {expected}, got {x.shape}")
        return x


def _raise(error):
    raise error


def _dtype(dtype, owner="layers"):
    """The parameters' dtype: float32 when None, else float32 or float64 (a TypeError naming `owner` otherwise)."""
    try:
        dtype = np.dtype(np.float32 if dtype is None else dtype)
    except TypeError:
        raise TypeError(f"{owner}: dtype must be float32 or float64, got {dtype!r}") from None
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"{owner}: dtype must be float32 or float64, got {dtype}")
    return dtype


def _on_device(module, device):
    """torch's device= argument of a layer: made on the CPU, then moved (None leaves it there)."""
    if device is not None:
        module.to(device=device)   # (by keyword: a device string .to cannot read is refused as a device)


class Linear(_Layer):
    def __init__(self, in_features, out_features, bias=True, device=None, dtype=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            _non_negative_int(self.label(), name, value)
        dtype = _dtype(dtype, self.label())
        self.weight = Parameter(np.empty((out_features, in_features), dtype))
        self.register_parameter("bias", Parameter(np.empty(out_features, dtype)) if bias else None)
        self.reset_parameters()
        _on_device(self, device)

    def reset_parameters(self):
        init.default_weight_and_bias_(self.weight, self.bias)

    def label(self):
        return f"Linear({self.in_features}, {self.out_features})"

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"

    def forward(self, x):
        x = self._input(x)
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"{self.label()}: expected input of shape (*, {self.in_features}), got {x.shape}")
        return F.linear(x, self.weight, self.bias)


class _ConvNd(_Layer):
    """What nn.Conv1d, nn.Conv2d and nn.ConvTranspose2d share, as torch's _ConvNd does: the arguments checked when
    the layer is made (errors name it), kept as torch keeps them (kernel_size, stride, padding, dilation and
    output_padding as tuples of `dims` ints, or padding 'same'/'valid'; groups, padding_mode, transposed), the
    weight (out_channels, in_channels / groups, *kernel) or, transposed, (in_channels, out_channels / groups,
    *kernel), torch's default initialisation, torch's repr, and the device/dtype arguments."""
    dims = 2

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                 padding_mode, device, dtype, transposed=False, output_padding=0):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        label = self.label()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
            positive_int(label, name, value)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{label}: in_channels and out_channels must be divisible by groups, got groups={groups}")
        if padding_mode != "zeros":
            raise ValueError(f"{label}: only padding_mode='zeros' is supported, got {padding_mode!r}")
        self.kernel_size = self._tuple(label, "kernel_size", kernel_size, positive=True)
        self.stride = self._tuple(label, "stride", stride, positive=True)
        self.dilation = self._tuple(label, "dilation", dilation, positive=True)
        self.padding = self._padding(label, padding, transposed)
        self.output_padding = self._tuple(label, "output_padding", output_padding, positive=False)
        self.groups, self.padding_mode, self.transposed = groups, padding_mode, transposed
        dtype = _dtype(dtype, label)
        channels = (in_channels, out_channels // groups) if transposed else (out_channels, in_channels // groups)
        self.weight = Parameter(np.empty(channels + self.kernel_size, dtype))
        self.register_parameter("bias", Parameter(np.empty(out_channels, dtype)) if bias else None)
        self.reset_parameters()
        _on_device(self, device)

    def _tuple(self, label, name, value, positive):
        """`dims` ints from an int or a sequence of them (one stands for all dims, as torch's)."""
        return _checked_pair(label, name, value, positive_int if positive else _non_negative_int)

    def _padding(self, label, padding, transposed):
        if not isinstance(padding, str) or transposed:   # (a transposed convolution takes no string)
            return self._tuple(label, "padding", padding, positive=False)
        if padding not in ("same", "valid"):
            form = "a 1-tuple" if self.dims == 1 else "a pair"
            raise ValueError(f"{label}: padding must be an int, {form}, 'same' or 'valid', got {padding!r}")
        if padding == "same" and self.stride != (1,) * self.dims:
            stride = self.stride[0] if self.dims == 1 else self.stride
            raise ValueError(f"{label}: padding='same' needs stride 1, got stride {stride}")
        return padding

    def reset_parameters(self):
        init.default_weight_and_bias_(self.weight, self.bias)

    def label(self):
        return f"{type(self).__name__}({self.in_channels}, {self.out_channels})"

    def extra_repr(self):
        """torch's: the channels, kernel_size and stride, then only the arguments that differ from the defaults."""
        zeros, ones = (0,) * self.dims, (1,) * self.dims
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != zeros:
            text += f", padding={self.padding}"
        if self.dilation != ones:
            text += f", dilation={self.dilation}"
        if self.output_padding != zeros:
            text += f", output_padding={self.output_padding}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        return text


class Conv2d(_ConvNd):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, device, dtype)

    def forward(self, x):
        x = self._input(x)
        if x.ndim not in (3, 4) or x.shape[-3] != self.in_channels:   # (C, H, W) unbatched, as torch
            raise ValueError(f"{self.label()}: expected input of shape (N, {self.in_channels}, H, W) or "
                             f"({self.in_channels}, H, W), got {x.shape}")
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class _Pool(_Layer):
    def _check(self, x):
        return self._input(x, (3, 4), None, "(N, C, H, W) or (C, H, W)")


class _MaxPoolArguments:
    """torch's MaxPool1d / MaxPool2d arguments, kept as given (stride defaults to kernel_size), and their repr."""

    def _keep_arguments(self, kernel_size, stride, padding, dilation, return_indices, ceil_mode):
        self.kernel_size, self.stride = kernel_size, stride if stride is not None else kernel_size
        self.padding, self.dilation = padding, dilation
        self.return_indices, self.ceil_mode = return_indices, ceil_mode

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class MaxPool2d(_MaxPoolArguments, _Pool):
    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False):
        super().__init__()
        self._keep_arguments(kernel_size, stride, padding, dilation, return_indices, ceil_mode)

    def forward(self, x):
        return F.max_pool2d(self._check(x), self.kernel_size, self.stride, self.padding, self.dilation,
                            self.ceil_mode, self.return_indices)


class AvgPool2d(_Pool):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None):
        super().__init__()
        # (stride=0 is kept, for F.avg_pool2d to refuse as torch does; `or` made it the kernel size)
        self.kernel_size, self.padding = kernel_size, padding
        self.stride = kernel_size if stride is None else stride
        self.ceil_mode, self.count_include_pad, self.divisor_override = ceil_mode, count_include_pad, divisor_override

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"

    def forward(self, x):
        return F.avg_pool2d(self._check(x), self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad, self.divisor_override)


class AdaptiveAvgPool2d(_Pool):
    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def extra_repr(self):
        return f"output_size={self.output_size}"

    def forward(self, x):
        return F.adaptive_avg_pool2d(self._check(x), self.output_size)


class _BatchNorm(_Layer):
    """Running statistics as torch keeps them; momentum=None gives their cumulative average."""
    shapes = ""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, device=None,
                 dtype=None, *, bias=True):
        super().__init__()
        _non_negative_int(f"{type(self).__name__}({num_features!r})", "num_features", num_features)
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(f"{type(self).__name__}({num_features}): momentum must be in [0, 1] or None, "
                             f"got {momentum!r}")
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        dtype = _dtype(dtype, f"{type(self).__name__}({num_features})")
        self.register_parameter("weight", Parameter(np.ones(num_features, dtype)) if affine else None)
        self.register_parameter("bias", Parameter(np.zeros(num_features, dtype)) if affine and bias else None)
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, dtype))
            self.register_buffer("running_var", np.ones(num_features, dtype))
            self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))
        else:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(name, None)
        _on_device(self, device)

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean[...] = 0
            self.running_var[...] = 1
            self.num_batches_tracked[...] = 0

    def reset_parameters(self):
        """torch's: running statistics reset, weight ones and bias zeros (a model-wide re-initialisation loop
        over modules with reset_parameters reaches batch norms too)."""
        self.reset_running_stats()
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def label(self):
        return f"{type(self).__name__}({self.num_features})"

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}")

    def forward(self, x):
        return self._normalise(x, F.batch_norm)

    def forward_then_relu(self, x):
        """relu(self(x)) in batch norm's own passes (nn.Sequential's path for a BatchNorm followed by a ReLU)."""
        return self._normalise(x, F.batch_norm_relu)

    def _normalise(self, x, batch_norm):
        c = self.num_features
        x = self._input(x, self.ranks, c, self.shapes.format(c=c))
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked += 1  # in place, on the buffers' device
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked)
        # eval mode normalises with the running statistics, unless there are none
        use_batch_stats = self.training or self.running_mean is None
        return batch_norm(x, self.running_mean if not self.training or self.track_running_stats else None,
                          self.running_var if not self.training or self.track_running_stats else None,
                          self.weight, self.bias, use_batch_stats, factor, self.eps)


class BatchNorm1d(_BatchNorm):
    ranks = (2, 3)
    shapes = "(N, {c}) or (N, {c}, L)"


class BatchNorm2d(_BatchNorm):
    ranks = (4,)
    shapes = "(N, {c}, H, W)"


class Dropout(_Layer):
    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= p <= 1.0:   # (NumPy scalars too)
            raise ValueError(f"Dropout: p must be a probability in [0, 1], got {p!r}")
        self.p, self.inplace = p, inplace   # as given, as torch keeps it (its repr shows p=0 for 0)

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"

    def forward(self, x):
        return F.dropout(self._input(x), self.p, self.training)


class ReLU(_Layer):
    def __init__(self, inplace=False):
        super().__init__()

    def forward(self, x):
        return F.relu(self._input(x))


_LIBRARY_FORWARDS = (_BatchNorm.forward, ReLU.forward)   # as defined here (a patched class no longer has them)


def fuses_with_relu(module, following):
    """Whether nn.Sequential may run `module` and then `following` as one op, the ReLU inside batch norm's
    kernels: a batch norm and a plain ReLU whose calls and forwards are this library's own, not overridden
    in a subclass, nor replaced on the class or the instance (as a user debugging or profiling may do), and
    neither with forward hooks (they would not be called)."""
    return (isinstance(module, _BatchNorm) and type(following) is ReLU
            and module._call_hooks is None and following._call_hooks is None
            and type(module).forward is _LIBRARY_FORWARDS[0] and ReLU.forward is _LIBRARY_FORWARDS[1]
            and type(module).__call__ is Module.__call__ and ReLU.__call__ is Module.__call__
            and not any(name in vars(m) for m in (module, following) for name in ("forward", "__call__")))


class LeakyReLU(_Layer):
    def __init__(self, negative_slope=0.01, inplace=False):
        super().__init__()
        self.negative_slope = negative_slope

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"

    def forward(self, x):
        return F.leaky_relu(self._input(x), self.negative_slope)


class Tanh(_Layer):
    def forward(self, x):
        return F.tanh(self._input(x))


class Sigmoid(_Layer):
    def forward(self, x):
        return F.sigmoid(self._input(x))


def _legacy_softmax_dim(ndim):
    return 0 if ndim in (0, 1, 3) else 1  # torch's choice when no dim is given


class Softmax(_Layer):
    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def extra_repr(self):
        return f"dim={self.dim}"

    def forward(self, x):
        x = self._input(x)
        return F.softmax(x, _legacy_softmax_dim(x.ndim) if self.dim is None else self.dim)


class LogSoftmax(Softmax):
    def forward(self, x):
        x = self._input(x)
        return F.log_softmax(x, _legacy_softmax_dim(x.ndim) if self.dim is None else self.dim)


class Flatten(_Layer):
    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"

    def forward(self, x):
        x = self._input(x)
        if x.ndim <= max(self.start_dim, self.end_dim if self.end_dim >= 0 else 0):
            raise ValueError(f"{self.label()}: expected an input with more than {self.start_dim} dims, got {x.shape}")
        return F.flatten(x, self.start_dim, self.end_dim)


class Identity(_Layer):
    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        return x


from .layers_embedding import Embedding  # noqa: E402,F401  (nn.Embedding; it extends _Layer, above)
