"""`python -m benchmarks.gemm_plans`: every GEMM tile plan (tile configuration x K splits) on the shapes a CRNN
training step runs, against the plan kernels/cuda/gemm.py's `plan` picks and cuBLAS (cupy.matmul), on a GPU.

The data for tuning `plan` (its rule was set on square and DeepBench shapes): the shapes are those of the ncu
profile of the train suite's CRNN 12x90 step (RESULTS.md, sixteenth session), batch 64. Times are medians of CUDA
event pairs around one call each (after warm-up calls), in ms.
"""
import sys

import numpy as np

from .harness import time_calls

# (label, batch or None, M, N, K, trans_a, trans_b)
SHAPES = [
    ("lstm dW_ih = dG^T x (tn)", None, 256, 128, 2880, True, False),
    ("lstm dW_hh = dG^T h (tn)", None, 256, 64, 2880, True, False),
    ("lstm dX = dG W_ih (nn)", None, 2880, 128, 256, False, False),
    ("lstm x W_ih^T (nt)", None, 2880, 256, 256, False, True),
    ("winograd fwd 16x 256x1518x256", 16, 256, 1518, 256, False, False),
    ("winograd dW 16x 256x256x1518 (nt)", 16, 256, 256, 1518, False, True),
    ("conv 3x2 fwd as GEMM (nt)", None, 2880, 256, 1536, False, True),
    ("conv 3x2 dcols (nn)", None, 2880, 1536, 256, False, False),
    ("conv 3x2 dW (tn)", None, 256, 1536, 2880, True, False),
]
PLANS = [("128x128", s) for s in (1, 2, 4, 8, 16)] + [("64x64", s) for s in (1, 2, 4, 8, 16, 32)]
WARMUP, REPEATS = 3, 15


def _median_ms(fn):
    return float(np.median(time_calls(fn, [()], "cuda", warmup=WARMUP, repeats=REPEATS)))


def main(argv):
    import cupy

    from kernels.cuda import gemm
    rng = np.random.default_rng(0)
    header = f"{'shape':36s} {'cuBLAS':>7s} {'plan':>14s} " + " ".join(f"{c[:3]}/{s:<3d}" for c, s in PLANS)
    print(header)
    for label, batch, m, n, k, trans_a, trans_b in SHAPES:
        prefix = (batch,) if batch else ()
        a = cupy.asarray(rng.uniform(-1, 1, prefix + ((k, m) if trans_a else (m, k))).astype(np.float32))
        b = cupy.asarray(rng.uniform(-1, 1, prefix + ((n, k) if trans_b else (k, n))).astype(np.float32))
        out = cupy.empty(prefix + (m, n), cupy.float32)
        expected = cupy.matmul(a.swapaxes(-1, -2) if trans_a else a, b.swapaxes(-1, -2) if trans_b else b)
        vendor = _median_ms(lambda: cupy.matmul(a.swapaxes(-1, -2) if trans_a else a,
                                                      b.swapaxes(-1, -2) if trans_b else b))
        chosen = gemm.plan(batch or 1, m, n, k)
        cells = []
        for config, splits in PLANS:
            def call():
                gemm.matmul(a, b, trans_a, trans_b, 1.0, 0.0, out, None, None, config=config, splits=splits)
            ms = _median_ms(call)
            error = float(cupy.abs(out - expected).max() / (cupy.abs(expected).max() + 1e-30))
            cells.append(f"{ms:7.3f}" if error < 1e-4 else "  WRONG")
        print(f"{label:36s} {vendor:7.3f} {chosen[0] + '/' + str(chosen[1]):>14s} " + " ".join(cells), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
