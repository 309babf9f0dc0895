"""GEMM: kernels.matmul against cuBLAS (cupy.matmul, fp32: CUPY_TF32 must stay unset) or NumPy's BLAS.

Square sizes, both transposes, the DeepBench training shapes (M x N x K), a batched case and a
linear layer with a fused bias + relu epilogue (the vendor side runs matmul, add and maximum).
"""
import os

import numpy as np

import kernels
from .harness import Case

MEASURE_HOST_COST = True
DEEPBENCH = [(1760, 128, 1760), (2560, 64, 2560), (3072, 128, 1024), (35, 8457, 2560)]


def _random(xp, rng, shape):
    return xp.asarray(rng.uniform(-1.0, 1.0, size=shape).astype(np.float32))


def _plain_case(label, m, n, k, trans_a=False, trans_b=False, batch=None):
    def make(xp, seed):
        rng = np.random.default_rng(seed)
        prefix = (batch,) if batch else ()
        a = _random(xp, rng, prefix + ((k, m) if trans_a else (m, k)))
        b = _random(xp, rng, prefix + ((n, k) if trans_b else (k, n)))
        return a, b

    def ours(a, b):
        return kernels.matmul(a, b, trans_a=trans_a, trans_b=trans_b)

    def vendor(a, b):
        xp = kernels.backend.array_module(a)
        return xp.matmul(a.swapaxes(-1, -2) if trans_a else a, b.swapaxes(-1, -2) if trans_b else b)

    return label, make, ours, vendor, 2.0 * m * n * k * (batch or 1)


def _linear_relu_case(rows, inputs, outputs):
    """y = relu(x @ w^T + bias): a linear layer, the epilogue fused on our side."""
    def make(xp, seed):
        rng = np.random.default_rng(seed)
        return (_random(xp, rng, (rows, inputs)), _random(xp, rng, (outputs, inputs)), _random(xp, rng, (outputs,)))

    def ours(x, w, bias):
        return kernels.matmul(x, w, trans_b=True, bias=bias, activation="relu")

    def vendor(x, w, bias):
        xp = kernels.backend.array_module(x)
        y = xp.matmul(x, w.T)
        y += bias
        return xp.maximum(y, 0, out=y)

    return (f"linear+bias+relu {rows}x{outputs}x{inputs}", make, ours, vendor, 2.0 * rows * inputs * outputs)


def cases(device, quick=False):
    if device == "cuda" and os.environ.get("CUPY_TF32", "0") != "0":
        raise SystemExit("bench gemm: unset CUPY_TF32, the comparison is against fp32 cuBLAS")
    specs = []
    if device == "cuda":
        squares = [1024] if quick else [1024, 4096, 8192]
        transposed, batched, linear = 4096, (64, 256), (8192, 1024, 1024)
    else:
        squares = [512, 1024]
        transposed, batched, linear = 1024, (32, 128), (2048, 512, 512)
    for n in squares:
        specs.append(_plain_case(f"{n}x{n}x{n}", n, n, n))
    deepbench = DEEPBENCH[2:3] if quick else DEEPBENCH
    if not quick:
        t = transposed
        specs.append(_plain_case(f"{t}x{t}x{t} trans_a", t, t, t, trans_a=True))
        specs.append(_plain_case(f"{t}x{t}x{t} trans_b", t, t, t, trans_b=True))
    for m, n, k in deepbench:
        specs.append(_plain_case(f"DeepBench {m}x{n}x{k}", m, n, k))
    if not quick:
        count, size = batched
        specs.append(_plain_case(f"batched {count}x {size}^3", size, size, size, batch=count))
        specs.append(_linear_relu_case(*linear))
    vendor_name = "cupy.matmul (cuBLAS fp32)" if device == "cuda" else "numpy.matmul"
    return [Case(label=label, make_inputs=make, ours=ours, vendor=vendor, vendor_name=vendor_name, flops=flops)
            for label, make, ours, vendor, flops in specs]
