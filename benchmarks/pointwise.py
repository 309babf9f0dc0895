"""Elementwise ops: bandwidth against CuPy's own elementwise kernels (GPU) or NumPy (CPU)."""
import numpy as np

import kernels
from .harness import Case

MEASURE_HOST_COST = True


def cases(device, quick=False):
    sizes = [(64, 64, 56, 56)] if quick else [(64, 64, 56, 56), (64, 64, 112, 112)]
    rows = []
    for shape in sizes:
        count = int(np.prod(shape))

        def make(xp, seed, shape=shape):
            rng = np.random.default_rng(seed)
            return (xp.asarray(rng.standard_normal(shape, dtype=np.float32)),)

        def vendor(x):
            xp = kernels.backend.array_module(x)
            return xp.maximum(x, 0)

        rows.append(Case(label=f"relu {'x'.join(map(str, shape))}", make_inputs=make, ours=kernels.relu,
                         vendor=vendor, vendor_name="cupy.maximum" if device == "cuda" else "numpy.maximum",
                         bytes=2 * 4 * count))
    return rows
