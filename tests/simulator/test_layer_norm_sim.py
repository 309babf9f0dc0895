"""CUDA layer-norm kernels in the simulator against the CPU path (tiny shapes, every kernel, both the
shared-memory row and the re-read from global memory), and nn.LayerNorm over them against torch."""
import numpy as np
import pytest

import kernels
from kernels.cpu import layer_norm as cpu
from kernels.cuda import layer_norm as gpu
from tests.nn.test_layer_norm_layer import compare_float32_step, twins
from tests.oracle import assert_close, random_array


def _reference(x, normalized_shape, weight, bias, grad_out, eps=1e-5):
    features = int(np.prod(normalized_shape))
    x2, grad2 = x.reshape(-1, features), grad_out.reshape(-1, features)
    w = None if weight is None else weight.reshape(-1)
    y, mean, rstd = cpu.layer_norm_forward(x2, w, None if bias is None else bias.reshape(-1), eps)
    y = y.reshape(x.shape)
    grad_x, grad_weight, grad_bias = cpu.layer_norm_backward(grad2, x2, w, mean, rstd)
    return y, mean, rstd, grad_x.reshape(x.shape), grad_weight, grad_bias


# rows shorter than a block (5 values, 64 threads), longer (150 values, 64 threads: 2-3 each), two normalised
# dims; 9 or 10 rows and 3: two row chunks and one in the column sums (8 rows a chunk at least), two column blocks
@pytest.mark.parametrize("shape,normalized_shape,with_weight,with_bias,cache_row", [
    ((3, 5), (5,), True, True, True),
    ((9, 150), (150,), True, False, True),
    ((2, 5, 3, 4), (3, 4), False, True, True),
    ((9, 150), (150,), True, True, False),
    ((3, 7), (7,), False, False, False),
])
def test_layer_norm_kernels_match_cpu(monkeypatch, shape, normalized_shape, with_weight, with_bias, cache_row):
    if not cache_row:   # every row re-read from global memory instead of kept in shared memory
        monkeypatch.setattr(gpu, "SHARED_ROW_FLOATS", 0)
    x = random_array(shape, seed=1, low=2.0, high=5.0)   # |mean| > std: the two-pass variance matters
    grad_out = random_array(shape, seed=2)
    weight = random_array(normalized_shape, seed=3, low=0.5, high=1.5) if with_weight else None
    bias = random_array(normalized_shape, seed=4) if with_bias else None
    y_ref, mean_ref, rstd_ref, gx_ref, gw_ref, gb_ref = _reference(x, normalized_shape, weight, bias, grad_out)
    y, mean, rstd = kernels.layer_norm(x, normalized_shape, weight, bias)
    assert_close(y, y_ref, np.float32, scale=4, name="y")
    assert_close(mean.reshape(-1), mean_ref, np.float32, name="mean")
    assert_close(rstd.reshape(-1), rstd_ref, np.float32, name="rstd")
    grad_x, grad_weight, grad_bias = kernels.layer_norm_backward(grad_out, x, normalized_shape, mean, rstd, weight,
                                                                 bias)
    assert_close(grad_x, gx_ref, np.float32, scale=8, name="grad_x")
    for name, actual, expected, present in (("grad_weight", grad_weight, gw_ref, with_weight),
                                            ("grad_bias", grad_bias, gb_ref, with_bias)):
        if present:
            assert_close(actual, expected.reshape(normalized_shape), np.float32, scale=4, name=name)
        else:
            assert actual is None, name


def test_layer_norm_kernels_of_a_row_with_a_large_mean():
    """1000 + noise of 1e-2: the float32 kernel's shifted two-pass statistics against the float64 CPU path (of
    the same float32 values)."""
    rng = np.random.default_rng(5)
    x = (1000.0 + 1e-2 * rng.standard_normal((2, 70))).astype(np.float32).astype(np.float64)
    y_ref, mean_ref, rstd_ref, *_ = _reference(x, (70,), None, None, np.zeros_like(x))
    y, mean, rstd = kernels.layer_norm(x.astype(np.float32), 70)
    assert_close(mean.reshape(-1), mean_ref, np.float32, name="mean")
    assert_close(rstd.reshape(-1), rstd_ref, np.float32, scale=4, name="rstd")
    assert_close(y, y_ref, np.float32, scale=4, name="y")


def test_layer_norm_kernels_choose_blocks_and_row_chunks():
    assert [gpu.block_threads(n) for n in (1, 128, 257, 1024, 2048, 100000)] == [64, 64, 128, 256, 512, 512]
    for rows, features in ((1, 5), (9, 150), (8192, 1024), (2880, 128), (10**7, 4)):
        rows_per_part, parts = gpu.row_chunks(rows, features)
        assert parts * rows_per_part >= rows > (parts - 1) * rows_per_part
        assert rows_per_part >= gpu.MIN_ROWS_PER_PART and parts <= gpu.MAX_GRID_Y


def test_layer_norm_layer_runs_the_kernels():
    """nn.LayerNorm over the CUDA kernels (the simulator runs them for NumPy arrays) against torch in float64: the
    Function's glue (statistics shaped as torch's, gradients of input, weight and bias)."""
    ours, theirs = twins((2, 5), dtype=np.float32)
    compare_float32_step(ours, theirs, random_array((3, 2, 2, 5), seed=6), random_array((3, 2, 2, 5), seed=7))


def test_layer_norm_backward_kernels_write_given_gradient_arrays():
    """grad_weight_out / grad_bias_out on the CUDA path: the column-sum kernel writes them (NaN to begin with)."""
    x, grad_out = random_array((6, 2, 5), seed=11), random_array((6, 2, 5), seed=12)
    weight, bias = random_array((2, 5), seed=13), random_array((2, 5), seed=14)
    _, mean, rstd = kernels.layer_norm(x, (2, 5), weight, bias)
    expected = kernels.layer_norm_backward(grad_out, x, (2, 5), mean, rstd, weight, bias)
    outs = np.full((2, 5), np.nan, np.float32), np.full((2, 5), np.nan, np.float32)
    given = kernels.layer_norm_backward(grad_out, x, (2, 5), mean, rstd, weight, bias, grad_weight_out=outs[0],
                                        grad_bias_out=outs[1])
    assert given[1] is outs[0] and given[2] is outs[1]
    for value, wanted in zip(given, expected):
        np.testing.assert_array_equal(value, wanted)


@pytest.mark.parametrize("need_input,need_weight,need_bias", [(False, True, True), (True, False, False),
                                                              (False, False, True)])
def test_layer_norm_backward_kernels_skip_the_gradients_not_asked_for(monkeypatch, need_input, need_weight,
                                                                      need_bias):
    """need_input=False launches no input-gradient kernel, neither weight nor bias gradient no column sums; what
    is computed equals the full backward's."""
    from kernels.cuda import layer_norm as gpu_module
    x, grad_out = random_array((9, 6), seed=11), random_array((9, 6), seed=12)
    weight, bias = random_array((6,), seed=13), random_array((6,), seed=14)
    _, mean, rstd = kernels.layer_norm(x, 6, weight, bias)
    full = kernels.layer_norm_backward(grad_out, x, 6, mean, rstd, weight, bias)
    launched = []
    original = gpu_module.launch
    monkeypatch.setattr(gpu_module, "launch", lambda kernel, *args, **options: (launched.append(kernel),
                                                                                 original(kernel, *args, **options)))
    some = kernels.layer_norm_backward(grad_out, x, 6, mean, rstd, weight, bias, need_input=need_input,
                                       need_weight=need_weight, need_bias=need_bias)
    assert (gpu_module.backward_input_kernel in launched) == need_input
    assert (gpu_module.column_partials_kernel in launched) == (need_weight or need_bias)
    for name, wanted, expected, actual in zip(("grad_x", "grad_weight", "grad_bias"),
                                              (need_input, need_weight, need_bias), full, some):
        if wanted:
            assert_close(actual, expected, np.float32, name=name)
        else:
            assert actual is None, name
