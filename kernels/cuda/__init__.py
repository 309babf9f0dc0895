"""Numba CUDA kernels, one file per op family, mirroring kernels/cpu/. Launch through launch.py."""
