"""Pooling: bandwidth against cuDNN/PyTorch's own kernels through torch.nn.functional (GPU) or PyTorch on
the CPU. Bytes counted: input read + output written (+ int64 indices written); backward: grad_out read
+ grad_in written (+ indices read). Forward and backward are separate cases on the same input."""
import numpy as np

import kernels
from .harness import Case, as_torch, vendor_torch

CONFIGS = [
    ("max 3x3/2 pad 1", "max", dict(kernel_size=3, stride=2, padding=1)),
    ("max 2x2/2", "max", dict(kernel_size=2, stride=2)),
    ("avg 3x3/2 pad 1", "avg", dict(kernel_size=3, stride=2, padding=1)),
    ("avg 2x2/2", "avg", dict(kernel_size=2, stride=2)),
]




def _output_shape(shape, args):
    kernel, stride, padding = args["kernel_size"], args["stride"], args.get("padding", 0)
    size = [(d + 2 * padding - kernel) // stride + 1 for d in shape[2:]]
    return shape[:2] + tuple(size)


def _cases_for(device, shape, label, kind, args):
    torch = vendor_torch()
    f = torch.nn.functional
    out_shape = _output_shape(shape, args)
    in_count, out_count = int(np.prod(shape)), int(np.prod(out_shape))
    tag = f"{label} {'x'.join(map(str, shape))}"
    vendor_name = "torch.nn.functional (CUDA)" if device == "cuda" else "torch CPU"
    xp_rng = np.random.default_rng

    def make_forward(xp, seed):
        x = xp.asarray(xp_rng(seed).standard_normal(shape, dtype=np.float32))
        return x, as_torch(torch, x)

    def make_backward(xp, seed):
        rng = xp_rng(seed)
        x = xp.asarray(rng.standard_normal(shape, dtype=np.float32))
        grad = xp.asarray(rng.standard_normal(out_shape, dtype=np.float32))
        indices = kernels.max_pool2d(x, return_indices=True, **args)[1] if kind == "max" else None
        tx = as_torch(torch, x).requires_grad_(True)
        ty = (f.max_pool2d if kind == "max" else f.avg_pool2d)(tx, **args)
        return x, grad, indices, tx, ty, as_torch(torch, grad)

    def vendor_backward(x, grad, indices, tx, ty, tgrad):
        # the autograd graph of one forward call is kept and replayed: only the backward kernel runs
        return torch.autograd.grad(ty, tx, tgrad, retain_graph=True)

    if kind == "max":
        rows = [
            Case(f"{tag} fwd", make_forward, lambda x, tx: kernels.max_pool2d(x, **args),
                 lambda x, tx: f.max_pool2d(tx, **args), vendor_name, bytes=4 * (in_count + out_count)),
            Case(f"{tag} fwd+indices", make_forward,
                 lambda x, tx: kernels.max_pool2d(x, return_indices=True, **args),
                 lambda x, tx: f.max_pool2d(tx, return_indices=True, **args), vendor_name,
                 bytes=4 * (in_count + out_count) + 8 * out_count),
            Case(f"{tag} bwd", make_backward,
                 lambda x, grad, indices, *rest: kernels.max_pool2d_backward(grad, indices, shape, **args),
                 vendor_backward, vendor_name, bytes=4 * (out_count + in_count) + 8 * out_count,
                 note="gather with the window geometry"),
        ]
    else:
        rows = [
            Case(f"{tag} fwd", make_forward, lambda x, tx: kernels.avg_pool2d(x, **args),
                 lambda x, tx: f.avg_pool2d(tx, **args), vendor_name, bytes=4 * (in_count + out_count)),
            Case(f"{tag} bwd", make_backward,
                 lambda x, grad, indices, *rest: kernels.avg_pool2d_backward(grad, shape, **args),
                 vendor_backward, vendor_name, bytes=4 * (out_count + in_count)),
        ]
    return rows


def cases(device, quick=False):
    shape = (8, 64, 56, 56) if quick else (16, 64, 56, 56) if device == "cpu" else (64, 64, 112, 112)
    rows = []
    for label, kind, args in CONFIGS:
        rows.extend(_cases_for(device, shape, label, kind, args))
    return rows
