"""Elementwise ops, reductions, softmax and cross-entropy: bandwidth against the vendor libraries.

GPU: CuPy's own kernels (maximum, broadcast add, sum) and PyTorch/CUDA (sigmoid, gelu, silu, elu, the gelu and
silu backwards, softmax, cross_entropy) on the same memory (torch.as_tensor of the CuPy arrays). CPU: NumPy /
PyTorch CPU.
`bytes` counts the compulsory traffic: every input read once and every output written once.
"""
import numpy as np

import kernels
from .harness import Case

MEASURE_HOST_COST = True


def _torch_view(xp, array):
    """A torch tensor sharing `array`'s memory (CuPy on the GPU, NumPy on the CPU)."""
    import torch
    if xp is np:
        return torch.from_numpy(array)
    return torch.as_tensor(array, device="cuda")


def _label(name, shape):
    return f"{name} {'x'.join(map(str, shape))}"


def _activation_cases(device, shape):
    count = int(np.prod(shape))
    on_gpu = device == "cuda"

    def make(xp, seed):
        rng = np.random.default_rng(seed)
        x = xp.asarray(rng.standard_normal(shape, dtype=np.float32))
        return x, _torch_view(xp, x)

    def make_bias(xp, seed):
        rng = np.random.default_rng(seed)
        x = xp.asarray(rng.standard_normal(shape, dtype=np.float32))
        return x, xp.asarray(rng.standard_normal(shape[1], dtype=np.float32))

    def vendor_bias_add(x, bias):
        return x + bias.reshape((1, -1) + (1,) * (x.ndim - 2))

    import torch
    return [
        Case(label=_label("relu", shape), make_inputs=make, ours=lambda x, t: kernels.relu(x),
             vendor=lambda x, t: kernels.backend.array_module(x).maximum(x, 0),
             vendor_name="cupy.maximum" if on_gpu else "numpy.maximum", bytes=2 * 4 * count),
        Case(label=_label("sigmoid", shape), make_inputs=make, ours=lambda x, t: kernels.sigmoid(x),
             vendor=lambda x, t: torch.sigmoid(t), vendor_name="torch.sigmoid (cuda)" if on_gpu else "torch.sigmoid (cpu)",
             bytes=2 * 4 * count),
        Case(label=_label("bias_add", shape), make_inputs=make_bias, ours=kernels.bias_add, vendor=vendor_bias_add,
             vendor_name="cupy broadcast add" if on_gpu else "numpy broadcast add", bytes=2 * 4 * count + 4 * shape[1]),
    ]


def _gelu_silu_elu_cases(device, shape):
    """GELU (both forms), SiLU and ELU forward against torch.nn.functional's, and the backwards of GELU and SiLU
    against torch's own (aten's gelu_backward, silu_backward), on the same memory."""
    import torch
    functional = torch.nn.functional
    count = int(np.prod(shape))

    def make(xp, seed):
        rng = np.random.default_rng(seed)
        x = xp.asarray(rng.standard_normal(shape, dtype=np.float32) * 2)
        grad = xp.asarray(rng.standard_normal(shape, dtype=np.float32))
        return x, grad, _torch_view(xp, x), _torch_view(xp, grad)

    forwards = [("gelu", lambda x: kernels.gelu(x), lambda t: functional.gelu(t), "F.gelu"),
                ("gelu tanh", lambda x: kernels.gelu(x, approximate="tanh"),
                 lambda t: functional.gelu(t, approximate="tanh"), "F.gelu tanh"),
                ("silu", kernels.silu, functional.silu, "F.silu"),
                ("elu", kernels.elu, functional.elu, "F.elu")]
    rows = [Case(label=_label(name, shape), make_inputs=make,
                 ours=lambda x, g, t, tg, ours=ours: ours(x), vendor=lambda x, g, t, tg, vendor=vendor: vendor(t),
                 vendor_name=f"torch {vendor_name} ({device})", bytes=2 * 4 * count)
            for name, ours, vendor, vendor_name in forwards]
    backwards = [("gelu_backward", kernels.gelu_backward,
                  lambda tg, t: torch.ops.aten.gelu_backward(tg, t, approximate="none"), "aten.gelu_backward"),
                 ("silu_backward", kernels.silu_backward, torch.ops.aten.silu_backward, "aten.silu_backward")]
    rows += [Case(label=_label(name, shape), make_inputs=make,
                  ours=lambda x, g, t, tg, ours=ours: ours(g, x),
                  vendor=lambda x, g, t, tg, vendor=vendor: vendor(tg, t),
                  vendor_name=f"torch {vendor_name} ({device})", bytes=3 * 4 * count)
             for name, ours, vendor, vendor_name in backwards]
    return rows


def _reduce_sum_case(device, shape, axis):
    kept = int(np.prod([n for d, n in enumerate(shape) if d not in axis]))

    def make(xp, seed):
        rng = np.random.default_rng(seed)
        return (xp.asarray(rng.standard_normal(shape, dtype=np.float32)),)

    return Case(label=_label(f"reduce_sum{axis}".replace(" ", ""), shape),
                make_inputs=make, ours=lambda x: kernels.reduce_sum(x, axis=axis),
                vendor=lambda x: kernels.backend.array_module(x).sum(x, axis=axis),
                vendor_name="cupy.sum" if device == "cuda" else "numpy.sum",
                bytes=4 * int(np.prod(shape)) + 4 * kept)


def _softmax_case(device, shape):
    import torch

    def make(xp, seed):
        rng = np.random.default_rng(seed)
        x = xp.asarray(rng.standard_normal(shape, dtype=np.float32) * 3)
        return x, _torch_view(xp, x)

    return Case(label=_label("softmax", shape), make_inputs=make, ours=lambda x, t: kernels.softmax(x, dim=-1),
                vendor=lambda x, t: torch.softmax(t, dim=-1),
                vendor_name=f"torch.softmax ({device})", bytes=2 * 4 * int(np.prod(shape)))


def _cross_entropy_case(device, shape, label_smoothing=0.0):
    import torch
    rows, classes = shape

    def make(xp, seed):
        rng = np.random.default_rng(seed)
        logits = xp.asarray(rng.standard_normal(shape, dtype=np.float32) * 3)
        target = xp.asarray(rng.integers(0, classes, size=rows).astype(np.int64))
        grad_loss = xp.ones((), np.float32)
        logits_t = _torch_view(xp, logits).requires_grad_(True)
        return logits, target, grad_loss, logits_t, _torch_view(xp, target)

    def ours(logits, target, grad_loss, logits_t, target_t):
        loss = kernels.cross_entropy(logits, target, label_smoothing=label_smoothing)
        grad = kernels.cross_entropy_backward(grad_loss, logits, target, label_smoothing=label_smoothing)
        return loss, grad

    def vendor(logits, target, grad_loss, logits_t, target_t):
        loss = torch.nn.functional.cross_entropy(logits_t, target_t, label_smoothing=label_smoothing)
        return loss, torch.autograd.grad(loss, logits_t)[0]

    name = "cross_entropy fwd+bwd" + (f" ls={label_smoothing}" if label_smoothing else "")
    # forward reads the logits, backward reads them again and writes the gradient
    return Case(label=_label(name, shape), make_inputs=make, ours=ours, vendor=vendor,
                vendor_name=f"torch cross_entropy ({device})", bytes=3 * 4 * rows * classes + 2 * 8 * rows)


def cases(device, quick=False):
    activation_shapes = [(16, 64, 28, 28)] if quick else [(64, 64, 56, 56), (64, 64, 112, 112)]
    row_shapes = [(512, 1000)] if quick else [(4096, 1000), (4096, 32000), (65536, 10)]
    rows = []
    for shape in activation_shapes:
        cases_here = _activation_cases(device, shape)
        rows += cases_here if shape == activation_shapes[0] else cases_here[:1]
    rows += _gelu_silu_elu_cases(device, activation_shapes[0])
    rows.append(_reduce_sum_case(device, activation_shapes[0], (0, 2, 3)))
    if not quick:
        rows.append(_reduce_sum_case(device, activation_shapes[0], (0, 1, 2, 3)))
        rows.append(_reduce_sum_case(device, (4096, 1000), (0,)))
    for shape in row_shapes:
        rows.append(_softmax_case(device, shape))
        rows.append(_cross_entropy_case(device, shape))
    if not quick:
        rows.append(_cross_entropy_case(device, row_shapes[0], label_smoothing=0.1))
    return rows
