"""NumPy reference implementations and CPU fallbacks, one file per op family, mirroring kernels/cuda/."""
