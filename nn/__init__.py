"""numbanet.nn: tensors with autograd, layers, losses, optimizers and models built on `kernels`."""
from .autograd import enable_grad, no_grad
from kernels.backend import (are_deterministic_algorithms_enabled,  # noqa: F401  (torch's top-level names)
                             is_deterministic_algorithms_warn_only_enabled, use_deterministic_algorithms)
from .tensor import Tensor, cat, stack, tensor
from .tensor_methods import where  # noqa: F401
from .module import Module, Parameter
from .containers import ModuleDict, ModuleList, Sequential
from . import init, optim, utils
from .init import manual_seed
from .recurrent import GRU, GRUCell, LSTM, LSTMCell, RNN, RNNCell  # noqa: F401
from . import functional
from .layers import (AdaptiveAvgPool2d, AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Dropout, Embedding, Flatten,
                     Identity, LeakyReLU, Linear, LogSoftmax, MaxPool2d, ReLU, Sigmoid, Softmax, Tanh)
from .losses import BCEWithLogitsLoss, CrossEntropyLoss, L1Loss, MSELoss, NLLLoss, SmoothL1Loss
from .ctc import CTCLoss  # noqa: F401
from .layer_norm import LayerNorm  # noqa: F401
from .capture import capture  # noqa: F401
from . import models  # noqa: F401
from . import swa_utils  # noqa: F401  (nn.swa_utils after `import nn`, as torch.optim.swa_utils after `import torch`)
from .layers_1d import AdaptiveAvgPool1d, AvgPool1d, Conv1d, MaxPool1d  # noqa: F401
from .activations import ELU, GELU, SiLU  # noqa: F401
from .layers_conv_transpose import ConvTranspose2d  # noqa: F401
from .group_norm import GroupNorm  # noqa: F401
from .layers_cnn_blocks import ConstantPad2d, Dropout2d, Upsample, ZeroPad2d  # noqa: F401
from .serialization import load, save  # noqa: F401
from .factories import *  # noqa: F401,F403  (zeros, ones, rand, arange, ..., the dtype aliases)
from .layers_extra import *  # noqa: F401,F403  (Softplus, ReLU6, Hardtanh, PReLU, ..., Unflatten, BCELoss, KLDivLoss)
