"""Layer normalisation against torch.nn.functional.layer_norm (CUDA on the GPU, PyTorch CPU otherwise), on the
same memory, forward alone and forward + backward (input, weight and bias gradients). Bytes counted: forward, x
read and y written (the weight, bias and per-row statistics are small); forward + backward, that and the
backward's grad_output and x read and grad_x written: 5 x 4 bytes a value."""
import numpy as np

import kernels
from .harness import Case, as_torch, vendor_torch

# (label, rows, features): a CRNN's time steps (batch 64 x 45 steps of 128), an RNN text batch (32 x 26 of 512),
# a transformer-sized batch of rows (8192 of 1024)
SHAPES = [("crnn", 64 * 45, 128), ("rnn", 32 * 26, 512), ("transformer", 8192, 1024)]
QUICK_SHAPES = [("crnn", 64 * 45, 128), ("rnn", 32 * 26, 512)]


def _cases_for(device, label, rows, features):
    torch = vendor_torch()
    f = torch.nn.functional
    tag = f"{label} {rows}x{features}"
    vendor_name = "torch F.layer_norm (CUDA)" if device == "cuda" else "torch F.layer_norm (CPU)"
    values = rows * features

    def make(xp, seed):
        rng = np.random.default_rng(seed)
        x = xp.asarray(rng.standard_normal((rows, features), dtype=np.float32))
        weight = xp.asarray(rng.uniform(0.5, 1.5, features).astype(np.float32))
        bias = xp.asarray(rng.standard_normal(features, dtype=np.float32))
        grad = xp.asarray(rng.standard_normal((rows, features), dtype=np.float32))
        # (torch's leaves share the arrays' memory; requires_grad only records its graph)
        leaves = [as_torch(torch, a).requires_grad_(True) for a in (x, weight, bias)]
        return x, weight, bias, grad, leaves, as_torch(torch, grad)

    def ours_forward(x, weight, bias, grad, leaves, grad_t):
        return kernels.layer_norm(x, features, weight, bias)

    def vendor_forward(x, weight, bias, grad, leaves, grad_t):
        with torch.no_grad():
            return f.layer_norm(leaves[0], (features,), leaves[1], leaves[2])

    def ours_both(x, weight, bias, grad, leaves, grad_t):
        y, mean, rstd = kernels.layer_norm(x, features, weight, bias)
        return y, kernels.layer_norm_backward(grad, x, features, mean, rstd, weight, bias)

    def vendor_both(x, weight, bias, grad, leaves, grad_t):
        y = f.layer_norm(leaves[0], (features,), leaves[1], leaves[2])
        return y, torch.autograd.grad(y, leaves, grad_t)

    return [
        Case(f"{tag} fwd", make, ours_forward, vendor_forward, vendor_name, bytes=2 * 4 * values),
        Case(f"{tag} fwd+bwd", make, ours_both, vendor_both, vendor_name, bytes=5 * 4 * values,
             note="weight/bias gradients: deterministic column sums" if device == "cuda" else ""),
    ]


def cases(device, quick=False):
    rows = []
    for shape in QUICK_SHAPES if quick else SHAPES:
        rows += _cases_for(device, *shape)
    return rows
