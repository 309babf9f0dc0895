"""Pooling: bandwidth against PyTorch's own pooling kernels (ATen's, not cuDNN: torch calls no cuDNN pooling), on
the GPU or the CPU. Bytes counted: input read + output written (+ int64 indices written); backward: grad_out read
+ grad_in written (+ indices read). Forward and backward are separate cases on the same input.
torch's max_pool2d always writes int64 indices (ATen runs max_pool2d_with_indices and drops them), so our
forward with indices is the one timed against it; our forward alone has no vendor time. The backward is ATen's
backward op called directly (max_pool2d_with_indices_backward, avg_pool2d_backward), as ours is, not through
autograd's engine."""
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
    f, aten = torch.nn.functional, torch.ops.aten
    out_shape = _output_shape(shape, args)
    in_count, out_count = int(np.prod(shape)), int(np.prod(out_shape))
    tag = f"{label} {'x'.join(map(str, shape))}"
    vendor_name = f"torch {kind}_pool2d (ATen {'CUDA' if device == 'cuda' else 'CPU'})"
    kernel, stride = ([args[name]] * 2 for name in ("kernel_size", "stride"))
    padding = [args.get("padding", 0)] * 2
    xp_rng = np.random.default_rng

    def make_forward(xp, seed):
        x = xp.asarray(xp_rng(seed).standard_normal(shape, dtype=np.float32))
        return x, as_torch(torch, x)

    def make_backward(xp, seed):
        rng = xp_rng(seed)
        x = xp.asarray(rng.standard_normal(shape, dtype=np.float32))
        grad = xp.asarray(rng.standard_normal(out_shape, dtype=np.float32))
        indices = kernels.max_pool2d(x, return_indices=True, **args)[1] if kind == "max" else None
        tx = as_torch(torch, x)
        torch_indices = f.max_pool2d(tx, return_indices=True, **args)[1] if kind == "max" else None
        return x, grad, indices, tx, as_torch(torch, grad), torch_indices

    def vendor_backward(x, grad, indices, tx, tgrad, torch_indices):
        if kind == "max":
            return aten.max_pool2d_with_indices_backward(tgrad, tx, kernel, stride, padding, [1, 1], False,
                                                         torch_indices)
        return aten.avg_pool2d_backward(tgrad, tx, kernel, stride, padding, False, True, None)

    if kind == "max":
        rows = [
            Case(f"{tag} fwd", make_forward, lambda x, tx: kernels.max_pool2d(x, **args), None,
                 "none: torch's max_pool2d writes indices too", bytes=4 * (in_count + out_count),
                 note="compared with torch in the fwd+indices row"),
            Case(f"{tag} fwd+indices", make_forward,
                 lambda x, tx: kernels.max_pool2d(x, return_indices=True, **args),
                 lambda x, tx: f.max_pool2d(tx, **args), vendor_name,
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
