"""torch.nn.functional's gelu, silu and elu as autograd Functions over the pointwise kernels (re-exported by
functional; the layers are in activations.py). Each saves its input, as torch's do, and its backward calls the
kernel's *_backward at that input. `inplace=True` is accepted and, as F.relu's here, gives a new tensor."""
import kernels

from .autograd import Function
from .functional import _tensor


class _GELU(Function):
    def forward(self, x, approximate):
        self.approximate = approximate
        self.save_for_backward(x)
        return kernels.gelu(x, approximate)

    def backward(self, grad):
        return kernels.gelu_backward(grad, self.saved[0], self.approximate)


class _SiLU(Function):
    def forward(self, x):
        self.save_for_backward(x)
        return kernels.silu(x)

    def backward(self, grad):
        return kernels.silu_backward(grad, self.saved[0])


class _ELU(Function):
    def forward(self, x, alpha):
        self.alpha = alpha
        self.save_for_backward(x)
        return kernels.elu(x, alpha)

    def backward(self, grad):
        return kernels.elu_backward(grad, self.saved[0], self.alpha)


def gelu(input, approximate="none"):
    """x * Phi(x) (Phi the standard normal CDF); approximate='tanh': 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    return _GELU.apply(_tensor(input), approximate=approximate)


def silu(input, inplace=False):
    """x * sigmoid(x)."""
    return _SiLU.apply(_tensor(input))


def elu(input, alpha=1.0, inplace=False):
    """x where x > 0, else alpha * (exp(x) - 1)."""
    return _ELU.apply(_tensor(input), alpha=alpha)
