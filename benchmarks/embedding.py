"""Embedding lookup and its weight gradient against torch.nn.functional.embedding (CUDA on the GPU, PyTorch CPU
otherwise), on the same memory. Bytes counted: forward, the rows read + the output written + the indices;
backward, grad_output read + the (num_embeddings, D) gradient zero-filled and written + the indices. The backward
cases call ATen's backward op (embedding_dense_backward, what autograd runs) directly, as ours is called."""
import numpy as np

import kernels
from .harness import Case, as_torch, vendor_torch

# (label, num_embeddings, embedding_dim, token shape, share of tokens that are one hot token)
CONFIGS = [
    ("lm", 10000, 512, (64, 35), 0.0),          # a word-level language model's batch (PTB-like)
    ("text", 50000, 300, (128, 64), 0.0),       # a text classifier's batch over a larger vocabulary
    ("text hot", 50000, 300, (128, 64), 0.3),   # 30% of the tokens one token (padding, 'the'): atomic contention
]
QUICK_CONFIGS = [("lm", 2000, 128, (32, 35), 0.0)]


def _tokens(rng, vocabulary, shape, hot):
    tokens = rng.integers(0, vocabulary, size=shape)
    tokens[rng.random(shape) < hot] = 1
    return tokens.astype(np.int64)


def _cases_for(device, label, vocabulary, dim, shape, hot, scale_grad_by_freq=False):
    torch = vendor_torch()
    f = torch.nn.functional
    lookups = int(np.prod(shape))
    tag = f"{label} {vocabulary}x{dim} [{'x'.join(map(str, shape))}]"
    where = "CUDA" if device == "cuda" else "CPU"
    vendor_name, backward_vendor_name = f"torch F.embedding ({where})", f"aten.embedding_dense_backward ({where})"

    def make_forward(xp, seed):
        rng = np.random.default_rng(seed)
        weight = xp.asarray(rng.standard_normal((vocabulary, dim), dtype=np.float32))
        tokens = xp.asarray(_tokens(rng, vocabulary, shape, hot))
        return weight, tokens, as_torch(torch, weight), as_torch(torch, tokens)

    def make_backward(xp, seed):
        tokens = xp.asarray(_tokens(np.random.default_rng(seed), vocabulary, shape, hot))
        grad = xp.asarray(np.random.default_rng(seed + 1).standard_normal(shape + (dim,), dtype=np.float32))
        return grad, tokens, as_torch(torch, grad), as_torch(torch, tokens)

    def vendor_backward(grad, tokens, grad_t, tokens_t):
        # padding_idx -1: none, as F.embedding's default
        return torch.ops.aten.embedding_dense_backward(grad_t, tokens_t, vocabulary, -1, scale_grad_by_freq)

    backward_label = "bwd" + (" freq" if scale_grad_by_freq else "")
    return [
        Case(f"{tag} fwd", make_forward, lambda w, i, wt, it: kernels.embedding(w, i),
             lambda w, i, wt, it: f.embedding(it, wt), vendor_name, bytes=2 * 4 * lookups * dim + 8 * lookups),
        Case(f"{tag} {backward_label}", make_backward,
             lambda grad, tokens, *rest: kernels.embedding_backward(grad, tokens, vocabulary,   # (checked by
                                                                    scale_grad_by_freq=scale_grad_by_freq,  # the forward,
                                                                    check_indices=False),   # as nn's backward)
             vendor_backward, backward_vendor_name, bytes=4 * lookups * dim + 4 * vocabulary * dim + 8 * lookups,
             note="atomic adds (GPU)" if device == "cuda" else ""),
    ]


def cases(device, quick=False):
    rows = []
    for config in QUICK_CONFIGS if quick else CONFIGS:
        rows += _cases_for(device, *config)
    if not quick:
        rows += _cases_for(device, *CONFIGS[0], scale_grad_by_freq=True)[1:]
    return rows
