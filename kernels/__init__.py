"""numbanet kernels: arrays in, arrays out. Each op runs where its inputs live (see backend.py).

The ops follow torch.nn.functional's names; each differentiable op has a `*_backward` partner.
"""
from . import backend
from .backend import (are_deterministic_algorithms_enabled, is_deterministic_algorithms_warn_only_enabled,  # noqa: F401
                      use_deterministic_algorithms)
from .pointwise import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .optim import *  # noqa: F401,F403
from .gemm import *  # noqa: F401,F403
from .pool import *  # noqa: F401,F403
from .rnn import *  # noqa: F401,F403
from .norm import *  # noqa: F401,F403
from .reduce import *  # noqa: F401,F403
from .ctc import *  # noqa: F401,F403
from .embedding import *  # noqa: F401,F403
from .layer_norm import *  # noqa: F401,F403
from .conv_transpose import *  # noqa: F401,F403
