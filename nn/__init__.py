"""numbanet.nn: tensors with autograd, layers, losses, optimizers and models built on `kernels`."""
from .autograd import enable_grad, no_grad
from .tensor import Tensor, cat, stack, tensor
from .module import Module, ModuleList, Parameter, Sequential
from . import init, optim, utils
from .init import manual_seed
from .recurrent import GRU, LSTM, RNN  # noqa: F401
