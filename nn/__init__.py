"""numbanet.nn: tensors with autograd, layers, losses, optimizers and models built on `kernels`."""
