"""CUDA reduce_sum, softmax and cross-entropy kernels in the simulator against the CPU path.

Tiny shapes, but chosen so that every branch runs: chunked runs with several splits, column sums
with and without splits, short rows, transposing fallback, 32- and 256-lane softmax rows."""
import numpy as np
import pytest

import kernels
from kernels.cpu import reduce as cpu
from kernels.cuda import reduce as gpu
from tests.oracle import assert_close, random_array

SUM_CASES = [
    ((1100,), None),           # one long run: split into chunks, partials summed again
    ((3, 300), 1),             # rows of >= 256: a block a row
    ((2, 40), 1),              # a single outer row of runs >= 32
    ((70, 5), 0),              # column sums, no split
    ((100, 3), 0),             # column sums with splits, then more column passes
    ((2, 3, 5, 7), (0, 2, 3)),  # the bias-gradient pattern with short runs: columns then short rows
    ((2, 3, 300), (0, 2)),     # the bias-gradient pattern with long runs: chunk kernel over (A, K, B)
    ((5, 6), 1),               # short rows
    ((3, 4, 5), (0, 2)),
    ((3, 4, 5, 2), (1, 3)),    # interleaved kept/reduced dims: transposing fallback
    ((2, 1, 3), (1,)),         # a size-1 reduced dim: nothing to add
    ((4, 3), ()),              # no axis at all: a copy
]


@pytest.mark.parametrize("shape,axis", SUM_CASES)
def test_reduce_sum_kernels_match_cpu(shape, axis, monkeypatch):
    monkeypatch.setattr(gpu, "TARGET_BLOCKS", 16)   # force splits at simulator sizes
    monkeypatch.setattr(gpu, "MIN_PER_THREAD", 1)
    x = random_array(shape, seed=51)
    axes = kernels.reduce._axes("reduce_sum", axis, x.ndim)
    expected = cpu.reduce_sum(x.astype(np.float64), axes, True)
    assert_close(kernels.reduce_sum(x, axis=axis, keepdims=True), expected, np.float32, scale=4)
    out = np.full(expected.shape, np.nan, np.float32)   # written by the last kernel of each path
    assert kernels.reduce_sum(x, axis=axis, keepdims=True, out=out) is out
    assert_close(out, expected, np.float32, scale=4)


def _random_sum_cases(count, seed=60):
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        shape = tuple(int(n) for n in rng.integers(1, 8, size=rng.integers(1, 5)))
        axes = tuple(int(d) for d in np.flatnonzero(rng.random(len(shape)) < 0.5))
        cases.append((shape, axes))
    return cases


@pytest.mark.parametrize("shape,axis", _random_sum_cases(16))
def test_reduce_sum_random_layouts_match_numpy(shape, axis, monkeypatch):
    """Random shapes and axis sets: every grouping of kept/reduced dims the dispatcher can meet."""
    monkeypatch.setattr(gpu, "TARGET_BLOCKS", 8)
    monkeypatch.setattr(gpu, "MIN_PER_THREAD", 1)
    x = random_array(shape, seed=61)
    assert_close(kernels.reduce_sum(x, axis=axis), x.astype(np.float64).sum(axis=axis), np.float32, scale=4)


@pytest.mark.parametrize("shape,axis", [((2, 2100), 1), ((300, 3), 0)])
def test_reduce_sum_kernels_unrolled_loops(shape, axis):
    """Default split sizes: runs and columns long enough for the four-loads-a-step loops."""
    x = random_array(shape, seed=50)
    assert_close(kernels.reduce_sum(x, axis=axis), x.astype(np.float64).sum(axis=axis), np.float32, scale=4)


def test_reduce_sum_of_non_contiguous_and_empty_input():
    x = random_array((6, 5, 4), seed=52).transpose(2, 0, 1)
    assert_close(kernels.reduce_sum(x, axis=(0, 2)), x.astype(np.float64).sum(axis=(0, 2)), np.float32)
    assert kernels.reduce_sum(np.zeros((0, 3), np.float32), axis=0).tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("shape,dim", [((3, 37), -1), ((2, 300), 1), ((4, 3, 5), 1), ((9, 2), 0)])
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_softmax_kernels_match_cpu(shape, dim, log):
    x = random_array(shape, seed=53, low=-8, high=8)
    grad_out = random_array(shape, seed=54)
    forward = kernels.log_softmax if log else kernels.softmax
    backward = kernels.log_softmax_backward if log else kernels.softmax_backward
    d = dim % len(shape)
    y = forward(x, dim)
    assert_close(y, (cpu.log_softmax if log else cpu.softmax)(x.astype(np.float64), d), np.float32)
    expected = (cpu.log_softmax_backward if log else cpu.softmax_backward)(grad_out.astype(np.float64),
                                                                           y.astype(np.float64), d)
    assert_close(backward(grad_out, y, dim), expected, np.float32)


def test_softmax_kernel_handles_large_and_infinite_logits():
    x = np.array([[1e4, -1e4, 0.0, 1e4 - 1.0], [-np.inf, 1.0, 2.0, -np.inf]], np.float32)
    for log in (False, True):
        y = (kernels.log_softmax if log else kernels.softmax)(x)
        expected = (cpu.log_softmax if log else cpu.softmax)(x.astype(np.float64), 1)
        assert_close(y, expected, np.float32)


CE_CASES = [
    dict(classes=7),
    dict(classes=7, reduction="sum", weighted=True),
    dict(classes=7, reduction="none", label_smoothing=0.2, weighted=True),
    dict(classes=300, label_smoothing=0.1, weighted=True),    # 256-lane rows
    dict(classes=300, reduction="none"),
    dict(classes=5, ignore_index=1, label_smoothing=0.3),
    dict(classes=6, weighted=True, ignored=True, scale=1e4),
]


@pytest.mark.parametrize("case", CE_CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_cross_entropy_kernels_match_cpu(case):
    classes = case["classes"]
    rows = 3 if classes > 256 else 11   # 256-lane rows are slow in the simulator
    rng = np.random.default_rng(55)
    logits = random_array((rows, classes), seed=56, low=-case.get("scale", 4), high=case.get("scale", 4))
    target = rng.integers(0, classes, size=rows)
    ignore_index = case.get("ignore_index", -100)
    if case.get("ignored"):
        target[[1, rows - 2]] = ignore_index
    weight = random_array((classes,), seed=57, low=0.2, high=2.0) if case.get("weighted") else None
    kwargs = dict(weight=weight, ignore_index=ignore_index, label_smoothing=case.get("label_smoothing", 0.0),
                  reduction=case.get("reduction", "mean"))
    cpu_kwargs = dict(kwargs, weight=None if weight is None else weight.astype(np.float64))
    grad_loss = random_array((rows,) if kwargs["reduction"] == "none" else (), seed=58, low=0.5, high=2.0)
    loss = kernels.cross_entropy(logits, target, **kwargs)
    expected = cpu.cross_entropy(logits.astype(np.float64), target, cpu_kwargs["weight"], ignore_index,
                                 kwargs["label_smoothing"], kwargs["reduction"])
    scale = case.get("scale", 1.0)
    assert_close(loss, expected, np.float32, atol=2e-5 * scale)
    grad = kernels.cross_entropy_backward(grad_loss, logits, target, **kwargs)
    expected_grad = cpu.cross_entropy_backward(grad_loss.astype(np.float64), logits.astype(np.float64), target,
                                               cpu_kwargs["weight"], ignore_index, kwargs["label_smoothing"],
                                               kwargs["reduction"])
    assert_close(grad, expected_grad, np.float32)


def test_cross_entropy_kernel_flags_bad_targets():
    logits = random_array((4, 3), seed=59)
    target = np.array([0, 3, 1, 2])
    with pytest.raises(ValueError, match="cross_entropy: target holds a class index outside"):
        kernels.cross_entropy(logits, target)
    with pytest.raises(ValueError, match="cross_entropy_backward: target holds a class index outside"):
        kernels.cross_entropy_backward(np.float32(1.0), logits, target, reduction="sum")
    # nn's backward opts out: its forward checked the same targets, and the check waits for the GPU
    grad = kernels.cross_entropy_backward(np.float32(1.0), logits, target, reduction="sum", check_targets=False)
    assert grad.shape == logits.shape and np.all(grad[1] == 0)   # the bad row is flagged, given no gradient
