"""Every GEMM kernel specialisation in the simulator against the CPU path, on tiny odd shapes.

Each tile configuration x transpose pair runs once; the batched forms, split-K and every epilogue
run on the small tile (64 threads a block: the simulator runs one OS thread per CUDA thread).
"""
import numpy as np
import pytest

import kernels
from kernels.cpu import gemm as cpu
from kernels.cuda import gemm as gpu
from tests.oracle import assert_close, random_array


def operands(m, n, k, trans_a, trans_b, a_batch=None, b_batch=None, seed=0):
    a_shape = (k, m) if trans_a else (m, k)
    b_shape = (n, k) if trans_b else (k, n)
    a = random_array(((a_batch,) if a_batch else ()) + a_shape, seed=seed)
    b = random_array(((b_batch,) if b_batch else ()) + b_shape, seed=seed + 1)
    return a, b


def check(a, b, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, bias=None, activation=None,
          config=None, splits=None):
    m = a.shape[-1] if trans_a else a.shape[-2]
    n = b.shape[-2] if trans_b else b.shape[-1]
    batch = max(a.shape[0] if a.ndim == 3 else 1, b.shape[0] if b.ndim == 3 else 1)
    shape = (m, n) if a.ndim == b.ndim == 2 else (batch, m, n)
    c = random_array(shape, seed=99)
    out = c.copy() if beta != 0.0 else np.full(shape, np.nan, np.float32)   # beta=0 must not read C
    gpu.matmul(a, b, trans_a, trans_b, alpha, beta, out, bias, activation, config=config, splits=splits)
    expected = cpu.matmul(a, b, trans_a, trans_b, alpha, beta, c.copy(), bias, activation)
    k = a.shape[-2] if trans_a else a.shape[-1]
    assert_close(out, expected, np.float32, scale=max(1.0, np.sqrt(k)))


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("config", list(gpu.CONFIGS))
def test_each_tile_and_transpose(config, trans_a, trans_b):
    # M and N overrun the tile edge in one direction each; K = 19 leaves a partial K tile.
    bm, bn = gpu.CONFIGS[config][:2]
    m, n = (bm + 3, 5) if trans_b else (7, bn + 2)
    a, b = operands(m, n, 19, trans_a, trans_b, seed=1)
    check(a, b, trans_a, trans_b, beta=0.5, config=config)


@pytest.mark.parametrize("form", ["3x3", "3x2", "3x2_trans_a", "2x3"])
def test_batched_forms(form):
    trans_a = form == "3x2_trans_a"
    a_batch = 3 if form[0] == "3" else None
    b_batch = 3 if form[2] == "3" else None
    a, b = operands(5, 6, 13, trans_a, False, a_batch, b_batch, seed=2)
    check(a, b, trans_a=trans_a, config="64x64")


@pytest.mark.parametrize("config,splits,batch", [("64x64", 2, None), ("64x64", 3, None), ("64x64", 2, 2),
                                                ("64x64", 3, 2), ("128x128", 2, None)])
def test_split_k(config, splits, batch):
    # K = 70 is 9 K tiles: uneven slices; the counters must come back to zero for the next call.
    a, b = operands(9, 10, 70, False, True, batch, batch, seed=3)
    check(a, b, trans_b=True, alpha=0.5, beta=-1.0, bias=random_array((10,), seed=4), config=config,
          splits=splits)
    _, counters = gpu._buffers(0, 0)
    assert not counters.any()


def test_split_k_slice_without_k_tiles():
    # 4 slices of 2 K tiles: the last slice gets none and must still take part in the reduction.
    a, b = operands(3, 4, 16, True, False, seed=5)
    check(a, b, trans_a=True, config="64x64", splits=4)


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
@pytest.mark.parametrize("beta", [0.0, 1.5])
def test_epilogues(activation, beta):
    a, b = operands(6, 11, 9, False, False, seed=6)
    check(a, b, alpha=-0.75, beta=beta, bias=random_array((11,), seed=7), activation=activation,
          config="64x64")


def test_public_op_runs_the_kernels_with_views_and_planning():
    # Under the simulator kernels.matmul dispatches to the CUDA launcher (plan picks the tile).
    weight = random_array((12, 17), seed=8)
    x = random_array((2, 5, 17), seed=9)
    bias = random_array((12,), seed=10)
    result = kernels.matmul(x, weight, trans_b=True, bias=bias, activation="relu")
    assert_close(result, np.maximum(x @ weight.T + bias, 0), np.float32, scale=4.0)
    a_view = random_array((17, 5), seed=11).T      # both views become transpose flags
    result = kernels.matmul(a_view, weight.T)
    assert_close(result, a_view @ weight.T, np.float32, scale=4.0)


def test_degenerate_sizes():
    a, b = operands(1, 1, 1, False, False, seed=12)
    check(a, b, config="64x64")
    empty_k = np.zeros((3, 0), np.float32), np.zeros((0, 4), np.float32)
    check(*empty_k, bias=random_array((4,), seed=13), config="64x64")


def test_plan_fills_the_gpu():
    # 132 SMs assumed without a GPU: large problems take the large tile, skinny ones split K.
    assert gpu.plan(1, 4096, 4096, 4096) == ("128x128", 1)
    assert gpu.plan(64, 256, 256, 256) == ("128x128", 1)
    for m, n, k in [(1760, 128, 1760), (2560, 64, 2560), (3072, 128, 1024), (35, 8457, 2560)]:
        config, splits = gpu.plan(1, m, n, k)
        tiles = -(-m // 64) * -(-n // 64)
        assert config == "64x64" and splits > 1 and tiles * splits >= 2 * gpu.multiprocessor_count()
    assert gpu.plan(1, 8, 8, 8) == ("64x64", 1)   # too little K to split


def test_plan_splits_the_large_tile_for_a_few_dozen_tiles_and_a_long_k():
    # the CRNN step's shapes of benchmarks.gemm_plans (the winners on an H200, sixteenth session)
    assert gpu.plan(16, 256, 256, 1518) == ("128x128", 4)     # Winograd weight gradient: 64 tiles
    assert gpu.plan(1, 2880, 256, 1536) == ("128x128", 8)     # 46 tiles
    assert gpu.plan(1, 256, 1536, 2880) == ("64x64", 8)       # 24 tiles: 8 splits (the most) reach too few blocks
    assert gpu.plan(1, 256, 128, 2880) == ("64x64", 16)       # 2 large tiles: the small tile's splits won
    assert gpu.plan(1, 35, 8457, 2560)[0] == "64x64"          # thinner than a large tile
    assert gpu.plan(1, 2880, 256, 256)[0] == "64x64"          # K too short for enough large-tile splits


def test_split_k_edge_tiles_and_a_single_row():
    # a one-row C (the LSTM's bias sums: ones @ matrix) and edge tiles in both directions, 4 K slices
    a, b = operands(1, 70, 40, False, False, seed=20)
    check(a, b, config="64x64", splits=4)
    a, b = operands(67, 66, 40, True, False, seed=21)
    check(a, b, trans_a=True, alpha=2.0, beta=0.5, config="64x64", splits=4)


@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (False, True), (True, False), (True, True)])
def test_whole_k_tiles_with_edge_tiles_in_every_layout(trans_a, trans_b):
    # K = 32: only whole K tiles (the loads without bounds tests), while rows and columns overrun the tile
    a, b = operands(66, 65, 32, trans_a, trans_b, seed=30)
    check(a, b, trans_a, trans_b, beta=0.25, config="64x64", splits=2)


@pytest.mark.parametrize("form", ["fold", "2x3", "3x2", "3x3_batch_1"])
def test_flat_operand_forms_with_trans_b_split_k_and_beta(form):
    # the launcher's operand layouts (gemm._flat) with a transposed B, K slices and beta
    a_batch = {"fold": 3, "2x3": None, "3x2": 3, "3x3_batch_1": 1}[form]
    b_batch = {"fold": None, "2x3": 3, "3x2": None, "3x3_batch_1": 3}[form]
    trans_a = form == "3x2"    # (a 3-D A with trans_a is not folded into C's rows)
    a, b = operands(9, 10, 27, trans_a, True, a_batch, b_batch, seed=31)
    check(a, b, trans_a=trans_a, trans_b=True, alpha=0.5, beta=1.5, bias=random_array((10,), seed=32),
          activation="relu", config="64x64", splits=2)


@pytest.mark.parametrize("form", ["fold", "3x3"])
def test_empty_k_in_the_flat_forms(form):
    a = np.zeros((2, 4, 0), np.float32)
    b = np.zeros((0, 5), np.float32) if form == "fold" else np.zeros((2, 0, 5), np.float32)
    check(a, b, beta=0.5, bias=random_array((5,), seed=33), config="64x64", splits=2)
