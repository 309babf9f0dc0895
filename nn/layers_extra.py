"""torch.nn's Softplus, ReLU6, Hardtanh, PReLU, Softsign, Mish, Hardswish, Hardsigmoid, Unflatten, BCELoss,
KLDivLoss and HuberLoss over functional_extra.py, with torch's arguments, defaults, parameter names and reprs.
`inplace=True` is kept for the repr and, as nn.ReLU's here, gives a new tensor. The losses take no deprecated
size_average / reduce: BCELoss's and KLDivLoss's options after `weight` are keyword-only, so a positional
reduction meant for torch's signature cannot land in the wrong slot."""
import numbers

import numpy as np

from . import functional as F
from .functional_losses import _check_reduction
from .layers import _dtype, _Layer, _on_device
from .losses import _as_buffer, _buffer_for
from .module import Module, Parameter

__all__ = ["BCELoss", "Hardsigmoid", "Hardswish", "Hardtanh", "HuberLoss", "KLDivLoss", "Mish", "PReLU", "ReLU6",
           "Softplus", "Softsign", "Unflatten"]


class Softplus(_Layer):
    def __init__(self, beta=1.0, threshold=20.0):
        super().__init__()
        self.beta, self.threshold = beta, threshold

    def extra_repr(self):
        return f"beta={self.beta}, threshold={self.threshold}"

    def forward(self, x):
        return F.softplus(self._input(x), self.beta, self.threshold)


class Hardtanh(_Layer):
    def __init__(self, min_val=-1.0, max_val=1.0, inplace=False):
        super().__init__()
        if min_val > max_val:
            raise ValueError(f"Hardtanh: min_val must not be greater than max_val, got min_val={min_val} and "
                             f"max_val={max_val}")
        self.min_val, self.max_val, self.inplace = min_val, max_val, inplace

    def extra_repr(self):
        return f"min_val={self.min_val}, max_val={self.max_val}" + (", inplace=True" if self.inplace else "")

    def forward(self, x):
        return F.hardtanh(self._input(x), self.min_val, self.max_val)


class ReLU6(Hardtanh):
    """Hardtanh(0, 6), as torch's (so no gradient at 0 or 6)."""

    def __init__(self, inplace=False):
        super().__init__(0.0, 6.0, inplace)

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""


class PReLU(_Layer):
    """x where x > 0, else weight * x: `weight` (num_parameters,) filled with `init`, one per channel (dim 1)
    or shared by all when num_parameters is 1."""

    def __init__(self, num_parameters=1, init=0.25, device=None, dtype=None):
        super().__init__()
        if isinstance(num_parameters, bool) or not isinstance(num_parameters, (int, np.integer)) \
                or num_parameters < 1:
            raise ValueError(f"PReLU: num_parameters must be a positive int, got {num_parameters!r}")
        self.num_parameters, self.init = int(num_parameters), init
        self.weight = Parameter(np.empty(self.num_parameters, _dtype(dtype, "PReLU")))
        self.reset_parameters()
        _on_device(self, device)

    def reset_parameters(self):
        self.weight.data[...] = self.init

    def extra_repr(self):
        return f"num_parameters={self.num_parameters}"

    def forward(self, x):
        return F.prelu(self._input(x), self.weight)


class Softsign(_Layer):
    def forward(self, x):
        return F.softsign(self._input(x))


class Mish(_Layer):
    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""

    def forward(self, x):
        return F.mish(self._input(x))


class Hardswish(_Layer):
    def __init__(self, inplace=False):   # (torch's repr leaves inplace out)
        super().__init__()
        self.inplace = inplace

    def forward(self, x):
        return F.hardswish(self._input(x))


class Hardsigmoid(_Layer):
    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x):
        return F.hardsigmoid(self._input(x))


class Unflatten(_Layer):
    """Dim `dim` split into `unflattened_size` (a tuple or list of ints, one of them -1 at most)."""

    def __init__(self, dim, unflattened_size):
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
            raise TypeError(f"Unflatten: dim must be an int, got {type(dim).__name__}")
        if not isinstance(unflattened_size, (tuple, list)):
            raise TypeError(f"Unflatten: unflattened_size must be a tuple or list of ints, got "
                            f"{type(unflattened_size).__name__}")
        for size in unflattened_size:
            if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
                raise TypeError(f"Unflatten: unflattened_size must be a tuple or list of ints, got an element "
                                f"of type {type(size).__name__} in {unflattened_size!r}")
        if not unflattened_size:
            raise ValueError("Unflatten: unflattened_size must be non-empty, got ()")
        self.dim, self.unflattened_size = int(dim), unflattened_size

    def extra_repr(self):
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"

    def forward(self, x):
        x = self._input(x)
        bound = max(x.ndim, 1)
        if not -bound <= self.dim < bound:
            raise IndexError(f"{self.label()}: dim {self.dim} is out of range for input of shape {x.shape} "
                             f"(expected in [{-bound}, {bound - 1}])")
        dim = self.dim % bound
        sizes = tuple(int(size) for size in self.unflattened_size)
        length = x.shape[dim] if x.ndim else 1
        known = int(np.prod([size for size in sizes if size != -1]))
        if sizes.count(-1) > 1 or any(size < -1 for size in sizes):
            raise ValueError(f"{self.label()}: unflattened_size may hold one -1 at most and no other negative "
                             f"size, got {self.unflattened_size}")
        if (-1 in sizes and (known == 0 or length % known)) or (-1 not in sizes and known != length):
            raise ValueError(f"{self.label()}: sizes {list(sizes)} don't multiply up to the size of dim {dim} "
                             f"({length}) of the input of shape {x.shape}")
        return x.reshape(x.shape[:dim] + sizes + x.shape[dim + 1:])


def _check_number(loss, name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{loss}: {name} must be a real number, got {value!r}")


class BCELoss(Module):
    """Probabilities and float targets of one shape; `weight` is a buffer, as in torch."""

    def __init__(self, weight=None, *, reduction="mean"):
        super().__init__()
        _check_reduction("BCELoss", reduction)
        self.register_buffer("weight", _as_buffer(weight))
        self.reduction = reduction

    def forward(self, input, target):
        weight = _buffer_for("BCELoss", "weight", self.weight, input)
        return F.binary_cross_entropy(input, target, weight, self.reduction)


class KLDivLoss(Module):
    """Log-probabilities and a target (probabilities, or log-probabilities when log_target); use
    reduction='batchmean' for the KL divergence ('mean', the default, divides by every element and warns)."""

    def __init__(self, *, reduction="mean", log_target=False):
        super().__init__()
        if reduction not in ("mean", "batchmean", "sum", "none"):
            raise ValueError(f"KLDivLoss: reduction must be one of ('mean', 'batchmean', 'sum', 'none'), "
                             f"got {reduction!r}")
        self.reduction, self.log_target = reduction, log_target

    def forward(self, input, target):
        return F.kl_div(input, target, self.reduction, self.log_target)


class HuberLoss(Module):
    def __init__(self, reduction="mean", delta=1.0):
        super().__init__()
        _check_reduction("HuberLoss", reduction)
        _check_number("HuberLoss", "delta", delta)
        if not delta > 0:
            raise ValueError(f"HuberLoss: delta must be a positive number, got {delta!r}")
        self.reduction, self.delta = reduction, delta

    def forward(self, input, target):
        return F.huber_loss(input, target, self.reduction, self.delta)
