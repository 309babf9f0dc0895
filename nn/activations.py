"""nn.GELU, nn.SiLU and nn.ELU: torch's layers over nn.functional's gelu, silu and elu (functional_activations.py),
with torch's arguments and repr. `inplace=True` is kept for the repr and, as nn.ReLU's here, gives a new tensor."""
from . import functional as F
from .layers import _Layer


class GELU(_Layer):
    def __init__(self, approximate="none"):
        super().__init__()
        self.approximate = approximate

    def extra_repr(self):
        return f"approximate={self.approximate!r}"

    def forward(self, x):
        return F.gelu(self._input(x), approximate=self.approximate)


class SiLU(_Layer):
    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""

    def forward(self, x):
        return F.silu(self._input(x))


class ELU(_Layer):
    def __init__(self, alpha=1.0, inplace=False):
        super().__init__()
        self.alpha, self.inplace = alpha, inplace

    def extra_repr(self):
        return f"alpha={self.alpha}" + (", inplace=True" if self.inplace else "")

    def forward(self, x):
        return F.elu(self._input(x), self.alpha)
