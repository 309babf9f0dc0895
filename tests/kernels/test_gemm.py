"""matmul on the CPU path against PyTorch in float64: every form, transpose flag, epilogue and odd size."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import kernels
from tests.oracle import assert_close, random_array, torch_module, torch_reference

SIZES = [(1, 1, 1), (37, 29, 19), (130, 67, 257), (5, 1, 33)]  # (M, N, K), none a multiple of a tile


def stored(shape, trans, batch=None, dtype=np.float32, seed=0):
    """A random operand stored so that op(x) has `shape` (rows, cols), with an optional batch axis."""
    rows, cols = shape
    stored_shape = (cols, rows) if trans else (rows, cols)
    if batch is not None:
        stored_shape = (batch,) + stored_shape
    return random_array(stored_shape, dtype, seed=seed)


def torch_matmul(a, b, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, c=None, bias=None, activation=None):
    """The same computation in float64 PyTorch, as the independent reference."""
    torch = torch_module()
    arrays = [a, b] + [x for x in (c, bias) if x is not None]

    def reference(*tensors):
        ta, tb = tensors[0], tensors[1]
        rest = list(tensors[2:])
        ta = ta.transpose(-1, -2) if trans_a else ta
        tb = tb.transpose(-1, -2) if trans_b else tb
        y = alpha * torch.matmul(ta, tb)
        if c is not None:
            y = y + beta * rest.pop(0)
        if bias is not None:
            y = y + rest.pop(0)
        if activation is not None:
            y = getattr(torch, activation)(y)
        return y

    return torch_reference(reference, *arrays)[0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("m,n,k", SIZES)
def test_2d_matches_torch(m, n, k, trans_a, trans_b, dtype):
    a = stored((m, k), trans_a, dtype=dtype, seed=1)
    b = stored((k, n), trans_b, dtype=dtype, seed=2)
    result = kernels.matmul(a, b, trans_a=trans_a, trans_b=trans_b)
    assert result.dtype == dtype and result.shape == (m, n)
    assert_close(result, torch_matmul(a, b, trans_a, trans_b), dtype, scale=np.sqrt(k))


@pytest.mark.parametrize("form", ["3x3", "3x2", "2x3"])
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_batched_forms_match_torch(form, trans_a, trans_b):
    batch, m, n, k = 3, 13, 21, 17
    a = stored((m, k), trans_a, batch=batch if form[0] == "3" else None, seed=3)
    b = stored((k, n), trans_b, batch=batch if form[2] == "3" else None, seed=4)
    result = kernels.matmul(a, b, trans_a=trans_a, trans_b=trans_b)
    assert result.shape == (batch, m, n)
    assert_close(result, torch_matmul(a, b, trans_a, trans_b), np.float32, scale=np.sqrt(k))


@pytest.mark.parametrize("activation", [None, "relu", "tanh", "sigmoid"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batched", [False, True])
def test_epilogue_matches_torch(activation, dtype, batched):
    m, n, k = 19, 23, 31
    batch = 2 if batched else None
    a = stored((m, k), False, batch=batch, dtype=dtype, seed=5)
    b = stored((k, n), True, dtype=dtype, seed=6)
    c = random_array((batch, m, n) if batched else (m, n), dtype, seed=7)
    bias = random_array((n,), dtype, seed=8)
    expected = torch_matmul(a, b, False, True, 0.75, -1.5, c, bias, activation)
    out = c.copy()
    result = kernels.matmul(a, b, trans_b=True, alpha=0.75, beta=-1.5, out=out, bias=bias, activation=activation)
    assert result is out
    assert_close(result, expected, dtype, scale=np.sqrt(k))


@given(m=st.integers(1, 24), n=st.integers(1, 24), k=st.integers(1, 24), batch=st.sampled_from([None, "a", "b", "ab"]),
       trans_a=st.booleans(), trans_b=st.booleans(), alpha=st.sampled_from([1.0, -0.5]),
       beta=st.sampled_from([0.0, 2.0]), with_bias=st.booleans(),
       activation=st.sampled_from([None, "relu", "tanh", "sigmoid"]))
def test_random_problems_match_torch(m, n, k, batch, trans_a, trans_b, alpha, beta, with_bias, activation):
    a = stored((m, k), trans_a, batch=3 if batch and "a" in batch else None, dtype=np.float64, seed=m)
    b = stored((k, n), trans_b, batch=3 if batch and "b" in batch else None, dtype=np.float64, seed=n + 50)
    shape = (m, n) if batch is None else (3, m, n)
    c = random_array(shape, np.float64, seed=k)
    bias = random_array((n,), np.float64, seed=k + 1) if with_bias else None
    out = c.copy()
    kernels.matmul(a, b, trans_a=trans_a, trans_b=trans_b, alpha=alpha, beta=beta, out=out, bias=bias,
                   activation=activation)
    expected = torch_matmul(a, b, trans_a, trans_b, alpha, beta, c, bias, activation)
    assert_close(out, expected, np.float64)


@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_alpha_beta_without_bias(beta):
    a, b = random_array((9, 14), seed=9), random_array((14, 6), seed=10)
    c = random_array((9, 6), seed=11)
    out = c.copy()
    kernels.matmul(a, b, alpha=-2.0, beta=beta, out=out)
    assert_close(out, torch_matmul(a, b, alpha=-2.0, beta=beta, c=c), np.float32, scale=np.sqrt(14))


def test_out_with_beta_zero_ignores_its_contents():
    a, b = random_array((4, 5), seed=12), random_array((5, 3), seed=13)
    out = np.full((4, 3), np.nan, np.float32)
    kernels.matmul(a, b, out=out, bias=random_array((3,), seed=14), activation="relu")
    assert np.isfinite(out).all()


def test_sigmoid_is_stable_for_large_inputs():
    a = np.array([[100.0], [-100.0]], np.float32)
    b = np.ones((1, 2), np.float32)
    result = kernels.matmul(a, b, activation="sigmoid")
    assert_close(result, [[1.0, 1.0], [0.0, 0.0]], np.float32)


@pytest.mark.parametrize("view", ["transposed", "strided", "transposed_batch"])
def test_non_contiguous_inputs(view):
    if view == "transposed":
        a = random_array((17, 11), seed=15).T            # F-contiguous: becomes trans_a on the base array
        b = random_array((17, 9), seed=16).T             # (9, 17) view; with trans_b, op(b) is 17x9
        result = kernels.matmul(a, b, trans_b=True)
        expected = torch_matmul(np.ascontiguousarray(a), np.ascontiguousarray(b), trans_b=True)
    elif view == "strided":
        a = random_array((12, 30), seed=17)[::2, ::3]    # (6, 10), no contiguous layout
        b = random_array((10, 8), seed=18)
        result = kernels.matmul(a, b)
        expected = torch_matmul(np.ascontiguousarray(a), b)
    else:
        a = random_array((2, 7, 5), seed=19).transpose(0, 2, 1)   # (2, 5, 7)
        b = random_array((2, 7, 4), seed=20)
        result = kernels.matmul(a, b)
        expected = torch_matmul(np.ascontiguousarray(a), b)
    assert_close(result, expected, np.float32, scale=4.0)


def test_3d_by_shared_weight_with_out():
    a = random_array((4, 6, 10), seed=21)
    w = random_array((8, 10), seed=22)
    out = np.empty((4, 6, 8), np.float32)
    result = kernels.matmul(a, w, trans_b=True, out=out, bias=random_array((8,), seed=23))
    assert result is out
    assert_close(out, a @ w.T + random_array((8,), seed=23), np.float32, scale=4.0)


@pytest.mark.parametrize("a_shape,b_shape", [((2, 4, 0), (0, 5)), ((2, 0, 3), (3, 5)), ((2, 4, 3), (3, 0)),
                                             ((2, 4, 0), (2, 0, 5))])
def test_empty_dimensions_match_torch(a_shape, b_shape):
    # an empty K gives zeros (plus the bias), as torch.matmul; the shared-weight form once failed to reshape
    torch = torch_module()
    a, b = random_array(a_shape, seed=24), random_array(b_shape, seed=25)
    bias = random_array((b_shape[-1],), seed=26)
    result = kernels.matmul(a, b, bias=bias)
    expected = (torch.matmul(torch.from_numpy(a), torch.from_numpy(b)) + torch.from_numpy(bias)).numpy()
    assert result.shape == expected.shape
    assert_close(result, expected, np.float32)


def test_bad_inputs_raise():
    a, b = np.ones((3, 4), np.float32), np.ones((4, 5), np.float32)
    with pytest.raises(ValueError, match=r"matmul: inner dimensions must match, got op\(a\) 3x4 and op\(b\) 5x4"):
        kernels.matmul(a, b, trans_b=True)
    with pytest.raises(ValueError, match="matmul: a must be 2-D or 3-D, got shape"):
        kernels.matmul(np.ones(4, np.float32), b)
    with pytest.raises(ValueError, match="matmul: b must be 2-D or 3-D"):
        kernels.matmul(a, np.ones((1, 1, 4, 5), np.float32))
    with pytest.raises(ValueError, match="matmul: batched a and b must have the same batch size, got 2 and 3"):
        kernels.matmul(np.ones((2, 3, 4), np.float32), np.ones((3, 4, 5), np.float32))
    with pytest.raises(TypeError, match="matmul: a must be float32 or float64 on cpu, got int64"):
        kernels.matmul(np.ones((3, 4), np.int64), b)
    with pytest.raises(TypeError, match="matmul: b must be float32 or float64 on cpu, got float16"):
        kernels.matmul(a, b.astype(np.float16))
    with pytest.raises(TypeError, match="matmul: all arrays must share one dtype"):
        kernels.matmul(a, b.astype(np.float64))
    with pytest.raises(TypeError, match="matmul: expected NumPy or CuPy arrays"):
        kernels.matmul(a, [[1.0]])
    with pytest.raises(ValueError, match="matmul: out must be \\(3, 5\\) float32, got \\(5, 3\\)"):
        kernels.matmul(a, b, out=np.empty((5, 3), np.float32))
    with pytest.raises(ValueError, match="matmul: out must be C-contiguous"):
        kernels.matmul(a, b, out=np.empty((5, 3), np.float32).T)
    with pytest.raises(ValueError, match="matmul: beta=1.0 reads C from out, but out was not given"):
        kernels.matmul(a, b, beta=1.0)
    with pytest.raises(ValueError, match="matmul: activation must be one of .*, got 'gelu'"):
        kernels.matmul(a, b, activation="gelu")
    with pytest.raises(ValueError, match=r"matmul: bias must have shape \(5,\), got \(4,\)"):
        kernels.matmul(a, b, bias=np.ones(4, np.float32))


def test_mixed_numpy_and_cupy_raise():
    cupy = pytest.importorskip("cupy")
    from kernels import backend
    if not backend.gpu_available():
        pytest.skip("needs a GPU to make a CuPy array")
    with pytest.raises(ValueError, match="matmul: arrays live on different devices"):
        kernels.matmul(np.ones((2, 2), np.float32), cupy.ones((2, 2), np.float32))
