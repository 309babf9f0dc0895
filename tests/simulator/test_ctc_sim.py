"""CUDA CTC kernels in the simulator against the CPU path (tiny shapes: one block per sample)."""
import numpy as np
import pytest

import kernels
from kernels.cpu import ctc as cpu
from kernels.cuda import ctc as gpu_ctc
from tests.oracle import assert_close


def _log_probs(steps, batch, classes, seed):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((steps, batch, classes)) * 2.0
    logits -= logits.max(axis=2, keepdims=True)
    return (logits - np.log(np.exp(logits).sum(axis=2, keepdims=True))).astype(np.float32)


def _cpu_reference(log_probs, flat, offsets, input_lengths, target_lengths, blank, scale, zero_infinity):
    log_probs = log_probs.astype(np.float64)
    nll = cpu.ctc_loss(log_probs, flat, offsets, input_lengths, target_lengths, blank)
    grad = cpu.ctc_loss_backward(log_probs, flat, offsets, input_lengths, target_lengths, blank,
                                 np.asarray(scale, np.float64), zero_infinity)
    if zero_infinity:
        nll = np.where(np.isinf(nll), 0.0, nll)
    return nll, grad


@pytest.mark.parametrize("zero_infinity", [False, True])
def test_ctc_kernels_match_cpu(zero_infinity):
    steps, batch, classes, blank = 7, 4, 5, 2
    log_probs = _log_probs(steps, batch, classes, seed=1)
    # repeated labels, an empty target, an impossible alignment (3 repeats in 4 steps), a short input
    targets = np.array([[1, 1, 3], [4, 0, 1], [3, 3, 3], [0, 1, 4]])
    target_lengths = np.array([3, 0, 3, 2])
    input_lengths = np.array([7, 5, 4, 6])
    scale = np.array([0.5, 1.0, 1.5, 2.0])
    loss = kernels.ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=blank, reduction="none",
                            zero_infinity=zero_infinity)
    grad = kernels.ctc_loss_backward(scale.astype(np.float32), log_probs, targets, input_lengths, target_lengths,
                                     blank=blank, reduction="none", zero_infinity=zero_infinity)
    offsets = np.arange(batch) * targets.shape[1]
    expected_loss, expected_grad = _cpu_reference(log_probs, targets.reshape(-1), offsets, input_lengths,
                                                  target_lengths, blank, scale, zero_infinity)
    np.testing.assert_array_equal(np.isinf(loss), np.isinf(expected_loss))
    np.testing.assert_array_equal(np.isnan(grad), np.isnan(expected_grad))
    assert_close(np.where(np.isinf(loss), 0, loss), np.where(np.isinf(expected_loss), 0, expected_loss),
                 np.float32, scale=5)
    assert_close(np.nan_to_num(grad), np.nan_to_num(expected_grad), np.float32, scale=5)


def test_ctc_kernels_concatenated_targets_mean_reduction():
    steps, batch, classes = 6, 2, 4
    log_probs = _log_probs(steps, batch, classes, seed=2)
    targets = np.array([1, 2, 2, 3, 1])
    target_lengths, input_lengths = np.array([3, 2]), np.array([6, 6])
    loss = kernels.ctc_loss(log_probs, targets, input_lengths, target_lengths)
    grad = kernels.ctc_loss_backward(1.0, log_probs, targets, input_lengths, target_lengths)
    scale = 1.0 / (np.maximum(target_lengths, 1) * batch)
    expected_loss, expected_grad = _cpu_reference(log_probs, targets, np.array([0, 3]), input_lengths,
                                                  target_lengths, 0, scale, False)
    assert_close(loss, (expected_loss / target_lengths).mean(), np.float32, scale=5)
    assert_close(grad, expected_grad, np.float32, scale=5)


def test_ctc_kernels_more_positions_than_threads(monkeypatch):
    # Blocks of one warp against 2*20+1 = 41 extended positions: threads stride over positions, as
    # they do on the GPU for targets longer than (MAX_THREADS - 1) / 2.
    monkeypatch.setattr(gpu_ctc, "MIN_THREADS", 32)
    monkeypatch.setattr(gpu_ctc, "MAX_THREADS", 32)
    steps, batch, classes = 26, 2, 6
    log_probs = _log_probs(steps, batch, classes, seed=3)
    rng = np.random.default_rng(4)
    targets = rng.integers(1, classes, size=(batch, 20))
    target_lengths, input_lengths = np.array([20, 7]), np.array([26, 24])
    scale = np.array([0.5, 2.0])
    loss = kernels.ctc_loss(log_probs, targets, input_lengths, target_lengths, reduction="none")
    grad = kernels.ctc_loss_backward(scale.astype(np.float32), log_probs, targets, input_lengths, target_lengths,
                                     reduction="none")
    expected_loss, expected_grad = _cpu_reference(log_probs, targets.reshape(-1), np.array([0, 20]),
                                                  input_lengths, target_lengths, 0, scale, False)
    assert np.isfinite(expected_loss).all()
    assert_close(loss, expected_loss, np.float32, scale=5)
    assert_close(grad, expected_grad, np.float32, scale=5)


@pytest.mark.parametrize("padded", [True, False])
def test_ctc_capture_path_matches_eager(monkeypatch, padded):
    # While nn.capture records a CUDA graph the op builds its index arrays on the device without
    # checks or host copies; run that path here (NumPy arrays stand for device arrays).
    steps, batch, classes = 7, 3, 5
    log_probs = _log_probs(steps, batch, classes, seed=5)
    target_lengths, input_lengths = np.array([3, 0, 2], np.int32), np.array([7, 5, 6], np.int32)
    targets = np.array([[1, 1, 4], [2, 2, 2], [3, 4, 4]]) if padded else np.array([1, 1, 4, 3, 4])
    grad_loss = np.array([0.5, 1.0, 2.0], np.float32)
    expected = [kernels.ctc_loss(log_probs, targets, input_lengths, target_lengths, reduction=reduction)
                for reduction in ("none", "mean")]
    expected_grad = kernels.ctc_loss_backward(grad_loss, log_probs, targets, input_lengths, target_lengths,
                                              reduction="none")
    expected_mean_grad = kernels.ctc_loss_backward(1.5, log_probs, targets, input_lengths, target_lengths)
    monkeypatch.setattr(kernels.backend, "is_capturing", lambda: True)
    for reduction, reference in zip(("none", "mean"), expected):
        assert_close(kernels.ctc_loss(log_probs, targets, input_lengths, target_lengths, reduction=reduction),
                     reference, np.float32)
    assert_close(kernels.ctc_loss_backward(grad_loss, log_probs, targets, input_lengths, target_lengths,
                                           reduction="none"), expected_grad, np.float32)
    assert_close(kernels.ctc_loss_backward(1.5, log_probs, targets, input_lengths, target_lengths),
                 expected_mean_grad, np.float32)
    with pytest.raises(ValueError, match="ctc_loss: while capturing a CUDA graph, input_lengths must be a CuPy"):
        kernels.ctc_loss(log_probs, targets, [7, 5, 6], target_lengths)


def test_nn_ctc_lays_the_targets_out_once_and_matches_the_cpu_path(monkeypatch):
    """nn's CTC loss on the CUDA path: the targets checked and uploaded once, in the forward, and read again by
    the backward (prepare_targets), give the CPU path's loss and gradient."""
    import nn
    from kernels import ctc
    steps, batch, classes = 6, 2, 4
    log_probs = _log_probs(steps, batch, classes, seed=9)
    targets, input_lengths, target_lengths = np.array([[1, 3], [2, 2]]), np.array([6, 5]), np.array([2, 2])
    prepared_calls = []
    original = ctc.prepare_targets

    def counting(*args, **options):
        prepared_calls.append(1)
        return original(*args, **options)

    monkeypatch.setattr(ctc, "prepare_targets", counting)
    x = nn.Tensor(log_probs.copy(), requires_grad=True)
    loss = nn.functional.ctc_loss(x, targets, input_lengths, target_lengths, reduction="sum")
    loss.backward()
    assert len(prepared_calls) == 1
    flat, offsets = targets.reshape(-1), np.array([0, 2])
    expected, expected_grad = _cpu_reference(log_probs, flat, offsets, input_lengths, target_lengths, 0,
                                             np.ones(batch), False)
    assert_close(loss.numpy(), expected.sum(), np.float32)
    assert_close(x.grad.numpy(), expected_grad, np.float32)
