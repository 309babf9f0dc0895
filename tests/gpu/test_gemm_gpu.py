"""GEMM kernels on a real GPU at real sizes, against a float64 CuPy product (tolerances scale with sqrt(K))."""
import numpy as np
import pytest

import kernels
from kernels.cuda import gemm as gpu
from tests.oracle import assert_close, random_array


def device_operands(m, n, k, trans_a=False, trans_b=False, batch_a=None, batch_b=None, seed=0):
    import cupy
    a_shape = ((batch_a,) if batch_a else ()) + ((k, m) if trans_a else (m, k))
    b_shape = ((batch_b,) if batch_b else ()) + ((n, k) if trans_b else (k, n))
    return cupy.asarray(random_array(a_shape, seed=seed)), cupy.asarray(random_array(b_shape, seed=seed + 1))


def reference(a, b, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, c=None, bias=None, activation=None):
    import cupy
    a64, b64 = a.astype(cupy.float64), b.astype(cupy.float64)
    y = alpha * cupy.matmul(a64.swapaxes(-1, -2) if trans_a else a64, b64.swapaxes(-1, -2) if trans_b else b64)
    if c is not None and beta != 0.0:
        y += beta * c.astype(cupy.float64)
    if bias is not None:
        y += bias.astype(cupy.float64)
    if activation == "relu":
        y = cupy.maximum(y, 0)
    elif activation == "tanh":
        y = cupy.tanh(y)
    elif activation == "sigmoid":
        y = 1 / (1 + cupy.exp(-y))
    return y


@pytest.mark.parametrize("m,n,k", [(1024, 1024, 1024), (4096, 4096, 4096), (1000, 1001, 999),
                                   (1760, 128, 1760), (2560, 64, 2560), (3072, 128, 1024), (35, 8457, 2560)])
def test_plain_sizes(m, n, k):
    a, b = device_operands(m, n, k, seed=1)
    assert_close(kernels.matmul(a, b), reference(a, b), np.float32, scale=np.sqrt(k))


@pytest.mark.parametrize("trans_a,trans_b", [(True, False), (False, True), (True, True)])
@pytest.mark.parametrize("size", [1024, 4096])
def test_transposes(size, trans_a, trans_b):
    a, b = device_operands(size, size + 3, size - 5, trans_a, trans_b, seed=2)
    result = kernels.matmul(a, b, trans_a=trans_a, trans_b=trans_b)
    assert_close(result, reference(a, b, trans_a, trans_b), np.float32, scale=np.sqrt(size))


def test_transposed_views_match_flags():
    a, b = device_operands(512, 300, 700, True, True, seed=3)
    assert_close(kernels.matmul(a.T, b.T), reference(a, b, True, True), np.float32, scale=np.sqrt(700))


@pytest.mark.parametrize("form", ["3x3", "3x2", "3x2_trans_a", "2x3"])
def test_batched(form):
    trans_a = form == "3x2_trans_a"
    a, b = device_operands(200, 260, 300, trans_a, False, 16 if form[0] == "3" else None,
                           16 if form[2] == "3" else None, seed=4)
    result = kernels.matmul(a, b, trans_a=trans_a)
    assert result.shape == (16, 200, 260)
    assert_close(result, reference(a, b, trans_a), np.float32, scale=np.sqrt(300))


@pytest.mark.parametrize("activation", [None, "relu", "tanh", "sigmoid"])
@pytest.mark.parametrize("m,n,k", [(2048, 1024, 512), (1760, 128, 1760)])   # large tile; small tile + split-K
def test_epilogue(m, n, k, activation):
    import cupy
    a, b = device_operands(m, n, k, False, True, seed=5)
    c = cupy.asarray(random_array((m, n), seed=6))
    bias = cupy.asarray(random_array((n,), seed=7))
    expected = reference(a, b, False, True, 0.5, -1.25, c, bias, activation)
    out = c.copy()
    result = kernels.matmul(a, b, trans_b=True, alpha=0.5, beta=-1.25, out=out, bias=bias, activation=activation)
    assert result is out
    assert_close(out, expected, np.float32, scale=np.sqrt(k))


@pytest.mark.parametrize("config,splits", [("128x128", 1), ("128x128", 3), ("64x64", 1), ("64x64", 5)])
def test_every_tile_and_split_at_size(config, splits):
    import cupy
    a, b = device_operands(515, 387, 1201, True, False, seed=8)
    out = cupy.empty((515, 387), cupy.float32)
    for _ in range(2):   # the split-K tile counters must be left at zero for the next launch
        gpu.matmul(a, b, True, False, 1.0, 0.0, out, None, None, config=config, splits=splits)
        assert_close(out, reference(a, b, True), np.float32, scale=np.sqrt(1201))


def test_cached_views_follow_new_contents_and_new_arrays():
    import cupy
    a, b = device_operands(300, 200, 100, seed=9)
    first = kernels.matmul(a, b)
    a *= 2   # same array object, new contents
    assert_close(kernels.matmul(a, b), 2 * first, np.float32, scale=10.0)
    for seed in range(3):   # fresh arrays that may reuse freed addresses and ids
        x, y = device_operands(64 + seed, 32, 48, seed=10 + seed)
        assert_close(kernels.matmul(x, y), reference(x, y), np.float32, scale=7.0)
    cupy.cuda.get_current_stream().synchronize()


def test_rejects_float64_and_mixed_devices():
    import cupy
    a, b = device_operands(4, 4, 4, seed=12)
    with pytest.raises(TypeError, match="matmul: a must be float32 on cuda, got float64"):
        kernels.matmul(a.astype(cupy.float64), b)
    with pytest.raises(ValueError, match="matmul: arrays live on different devices"):
        kernels.matmul(a, cupy.asnumpy(b))


def test_empty_inner_dimension_gives_beta_c_plus_bias():
    import cupy
    a, b = cupy.zeros((33, 0), cupy.float32), cupy.zeros((0, 20), cupy.float32)
    c = cupy.asarray(random_array((33, 20), seed=13))
    bias = cupy.asarray(random_array((20,), seed=14))
    out = c.copy()
    kernels.matmul(a, b, beta=2.0, out=out, bias=bias)
    assert_close(out, 2 * c + bias, np.float32)
