"""reduce_sum, softmax and cross-entropy on a real GPU against the CPU path (float64) at real sizes."""
import numpy as np
import pytest

import kernels
from kernels.cpu import reduce as cpu
from tests.oracle import assert_close, random_array

SUM_CASES = [
    ((64, 64, 56, 56), (0, 2, 3)),   # bias gradient of a conv layer: chunk kernel over (N, C, HW)
    ((64, 256, 7, 7), (0, 2, 3)),    # short runs: column sums, then short rows
    ((128, 512), (0,)),              # bias gradient of a linear layer: column sums
    ((65536, 10), (0,)),             # few, long columns: split column passes
    ((4096, 1000), (1,)),            # row sums, a block a row
    ((4096, 20), (1,)),              # short rows
    ((16_777_259,), None),           # one long run: chunk splits, then a second pass
    ((64, 64, 56, 56), None),
    ((16, 32, 8, 24), (1, 3)),       # interleaved: transposing fallback
    ((3, 1, 5), (1,)),
]


@pytest.mark.parametrize("shape,axis", SUM_CASES)
def test_reduce_sum_on_gpu_matches_cpu(shape, axis):
    import cupy
    x = random_array(shape, seed=61)
    axes = tuple(range(len(shape))) if axis is None else axis
    expected = cpu.reduce_sum(x.astype(np.float64), axes, False)
    count = x.size // max(1, expected.size)
    out = kernels.reduce_sum(cupy.asarray(x), axis=axis)
    assert isinstance(out, cupy.ndarray) and out.shape == expected.shape and out.dtype == np.float32
    # float32 tree sums: error grows like sqrt(count) ulps of the partial sums
    assert_close(out, expected, rtol=1e-5, atol=2e-6 * count ** 0.5)


def test_reduce_sum_on_gpu_of_positive_values_is_accurate():
    import cupy
    x = random_array((50_000_000,), seed=62, low=0.0, high=1.0)
    total = float(kernels.reduce_sum(cupy.asarray(x)))
    assert abs(total - x.astype(np.float64).sum()) / x.size < 1e-6


def test_reduce_sum_on_gpu_keepdims_and_non_contiguous():
    import cupy
    x = random_array((32, 48, 40), seed=63)
    x_gpu = cupy.asarray(x).transpose(2, 0, 1)
    out = kernels.reduce_sum(x_gpu, axis=(0, -1), keepdims=True)
    assert out.shape == (1, 32, 1)
    assert_close(out, x.transpose(2, 0, 1).astype(np.float64).sum(axis=(0, 2), keepdims=True), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("shape,dim", [((4096, 1000), -1), ((512, 32000), -1), ((65536, 10), 1),
                                       ((32, 1000, 7), 1), ((300, 129), 0)])
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_softmax_on_gpu_matches_cpu(shape, dim, log):
    import cupy
    x = random_array(shape, seed=64, low=-10, high=10)
    grad_out = random_array(shape, seed=65)
    forward = kernels.log_softmax if log else kernels.softmax
    backward = kernels.log_softmax_backward if log else kernels.softmax_backward
    d = dim % len(shape)
    y_gpu = forward(cupy.asarray(x), dim)
    assert_close(y_gpu, (cpu.log_softmax if log else cpu.softmax)(x.astype(np.float64), d), np.float32)
    y = cupy.asnumpy(y_gpu).astype(np.float64)
    expected = (cpu.log_softmax_backward if log else cpu.softmax_backward)(grad_out.astype(np.float64), y, d)
    assert_close(backward(cupy.asarray(grad_out), y_gpu, dim), expected, np.float32, scale=4)


CE_CASES = [
    dict(),
    dict(reduction="sum"),
    dict(reduction="none", weighted=True),
    dict(weighted=True, ignored=True, label_smoothing=0.1),
    dict(label_smoothing=0.2, reduction="none"),
    dict(classes=10, rows=65536, weighted=True, label_smoothing=0.05),
    dict(classes=32000, rows=256, ignored=True),
    dict(scale=1e4, label_smoothing=0.1, weighted=True),
]


@pytest.mark.parametrize("case", CE_CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()) or "plain")
def test_cross_entropy_on_gpu_matches_cpu(case):
    import cupy
    rows, classes = case.get("rows", 4096), case.get("classes", 1000)
    scale = case.get("scale", 4.0)
    rng = np.random.default_rng(66)
    logits = random_array((rows, classes), seed=67, low=-scale, high=scale)
    target = rng.integers(0, classes, size=rows)
    if case.get("ignored"):
        target[::7] = -100
    weight = random_array((classes,), seed=68, low=0.2, high=2.0) if case.get("weighted") else None
    kwargs = dict(ignore_index=-100, label_smoothing=case.get("label_smoothing", 0.0),
                  reduction=case.get("reduction", "mean"))
    grad_loss = random_array((rows,) if kwargs["reduction"] == "none" else (), seed=69, low=0.5, high=2.0)
    weight64 = None if weight is None else weight.astype(np.float64)
    expected = cpu.cross_entropy(logits.astype(np.float64), target, weight64, -100, kwargs["label_smoothing"],
                                 kwargs["reduction"])
    expected_grad = cpu.cross_entropy_backward(grad_loss.astype(np.float64), logits.astype(np.float64), target,
                                               weight64, -100, kwargs["label_smoothing"], kwargs["reduction"])
    logits_gpu, target_gpu = cupy.asarray(logits), cupy.asarray(target)
    weight_gpu = None if weight is None else cupy.asarray(weight)
    loss = kernels.cross_entropy(logits_gpu, target_gpu, weight=weight_gpu, **kwargs)
    grad = kernels.cross_entropy_backward(cupy.asarray(grad_loss), logits_gpu, target_gpu, weight=weight_gpu, **kwargs)
    assert bool(cupy.all(cupy.isfinite(loss))) and bool(cupy.all(cupy.isfinite(grad)))
    assert_close(loss, expected, rtol=1e-5 if scale < 100 else 2e-5, atol=1e-5 * scale)
    assert_close(grad, expected_grad, np.float32)


def test_cross_entropy_on_gpu_matches_torch_cuda():
    import cupy
    import torch
    logits = cupy.asarray(random_array((4096, 1000), seed=70, low=-5, high=5))
    target = cupy.asarray(np.random.default_rng(71).integers(0, 1000, size=4096))
    logits_t = torch.as_tensor(logits, device="cuda").clone().requires_grad_(True)
    loss_t = torch.nn.functional.cross_entropy(logits_t, torch.as_tensor(target, device="cuda"), label_smoothing=0.1)
    grad_t = torch.autograd.grad(loss_t, logits_t)[0]
    loss = kernels.cross_entropy(logits, target, label_smoothing=0.1)
    grad = kernels.cross_entropy_backward(cupy.ones((), np.float32), logits, target, label_smoothing=0.1)
    assert_close(loss, loss_t.detach().cpu().numpy(), rtol=1e-5, atol=1e-5)
    assert_close(grad, grad_t.cpu().numpy(), rtol=1e-4, atol=1e-7)


def test_cross_entropy_on_gpu_rejects_bad_targets():
    import cupy
    logits = cupy.asarray(random_array((512, 100), seed=72))
    target = cupy.asarray(np.random.default_rng(73).integers(0, 100, size=512))
    target[300] = 100
    with pytest.raises(ValueError, match="cross_entropy: target holds a class index outside"):
        kernels.cross_entropy(logits, target)
    with pytest.raises(ValueError, match="cross_entropy_backward: target holds a class index outside"):
        kernels.cross_entropy_backward(cupy.ones((), np.float32), logits, target)
    with pytest.raises(TypeError, match="cross_entropy: logits must be float32 on cuda"):
        kernels.cross_entropy(logits.astype(cupy.float64), target)
