"""CTC loss (CPU path) against torch.nn.functional.ctc_loss (forward and autograd gradient on log_probs)
and float64 finite differences."""
import numpy as np
import pytest

import kernels
from tests.oracle import assert_close, finite_difference_gradient, torch_module


def _log_probs(steps, batch, classes, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((steps, batch, classes)) * 2.0
    logits -= logits.max(axis=2, keepdims=True)
    return (logits - np.log(np.exp(logits).sum(axis=2, keepdims=True))).astype(dtype)


def _torch_ctc(log_probs, targets, input_lengths, target_lengths, grad_loss, **options):
    """torch's loss and d(sum(loss * grad_loss))/d log_probs, in float64."""
    torch = torch_module()
    tensor = torch.tensor(log_probs.astype(np.float64), requires_grad=True)
    loss = torch.nn.functional.ctc_loss(tensor, torch.tensor(targets), torch.tensor(input_lengths),
                                        torch.tensor(target_lengths), **options)
    (grad,) = torch.autograd.grad(loss, tensor, torch.tensor(grad_loss, dtype=torch.float64))
    return loss.detach().numpy(), grad.numpy()


def _check(log_probs, targets, input_lengths, target_lengths, reduction="mean", scale=1.0, **options):
    dtype = log_probs.dtype
    batch = log_probs.shape[1]
    grad_loss = np.linspace(0.5, 2.0, batch) if reduction == "none" else np.array(1.7)
    expected, expected_grad = _torch_ctc(log_probs, targets, input_lengths, target_lengths, grad_loss,
                                         reduction=reduction, **options)
    loss = kernels.ctc_loss(log_probs, targets, input_lengths, target_lengths, reduction=reduction, **options)
    grad = kernels.ctc_loss_backward(grad_loss.astype(dtype) if reduction == "none" else 1.7, log_probs, targets,
                                     input_lengths, target_lengths, reduction=reduction, **options)
    assert loss.dtype == dtype and grad.dtype == dtype and grad.shape == log_probs.shape
    np.testing.assert_array_equal(np.isinf(loss), np.isinf(expected))
    np.testing.assert_array_equal(np.isnan(grad), np.isnan(expected_grad))
    finite = np.isfinite(expected)
    assert_close(np.where(finite, loss, 0), np.where(finite, expected, 0), dtype, scale=scale * 10, name="loss")
    assert_close(np.nan_to_num(grad), np.nan_to_num(expected_grad), dtype, scale=scale * 10, name="grad")
    return loss, grad


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_padded_targets_match_torch(reduction, dtype):
    steps, batch, classes, width = 12, 5, 7, 4
    rng = np.random.default_rng(1)
    targets = rng.integers(1, classes, size=(batch, width))
    target_lengths = np.array([4, 3, 1, 2, 4])
    input_lengths = np.array([12, 9, 12, 5, 10])
    _check(_log_probs(steps, batch, classes, dtype, seed=2), targets, input_lengths, target_lengths, reduction)


@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_concatenated_targets_and_repeated_labels_match_torch(reduction):
    steps, batch, classes = 15, 4, 6
    target_lengths = np.array([5, 2, 3, 4])
    targets = np.array([2, 2, 3, 3, 3, 1, 1, 4, 5, 4, 5, 5, 2, 5])   # repeats need a blank in between
    input_lengths = np.array([15, 14, 15, 11])
    _check(_log_probs(steps, batch, classes, seed=3), targets, input_lengths, target_lengths, reduction)


@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_nonzero_blank_and_empty_targets_match_torch(reduction):
    steps, batch, classes = 8, 3, 5
    targets = np.array([[0, 1, 0], [2, 2, 2], [3, 0, 1]])
    target_lengths = np.array([3, 0, 2])
    input_lengths = np.array([8, 6, 7])
    _check(_log_probs(steps, batch, classes, seed=4), targets, input_lengths, target_lengths, reduction, blank=4)


@pytest.mark.parametrize("zero_infinity", [False, True])
@pytest.mark.parametrize("reduction", ["none", "sum"])
def test_impossible_alignments_match_torch(reduction, zero_infinity):
    steps, batch, classes = 6, 4, 5
    # Sample 0: 3 repeated labels need 5 steps but get 4; sample 2: 4 labels in 3 steps;
    # sample 3: input length 0 with an empty target is a zero loss.
    targets = np.array([[2, 2, 2, 1], [1, 2, 3, 4], [1, 3, 2, 4], [1, 1, 1, 1]])
    target_lengths = np.array([3, 2, 4, 0])
    input_lengths = np.array([4, 6, 3, 0])
    loss, grad = _check(_log_probs(steps, batch, classes, seed=5), targets, input_lengths, target_lengths,
                        reduction, zero_infinity=zero_infinity)
    if zero_infinity:
        assert not np.isnan(grad).any() and (grad[:, [0, 2]] == 0).all()


def test_mean_reduction_with_zero_infinity_and_unreachable_sample():
    targets = np.array([[1, 2, 3], [1, 1, 1]])
    _check(_log_probs(4, 2, 4, seed=6), targets, np.array([4, 4]), np.array([3, 3]), "mean", zero_infinity=True)


def test_gradient_by_finite_differences_through_log_softmax():
    # torch's gradient treats log_probs as log-softmax outputs (the exp(log_probs) term cancels under
    # log-softmax's backward), so difference the loss with respect to the logits.
    steps, batch, classes = 5, 2, 4
    rng = np.random.default_rng(7)
    logits = rng.standard_normal((steps, batch, classes))
    targets = np.array([[1, 1, 3], [2, 3, 0]])
    input_lengths, target_lengths = np.array([5, 4]), np.array([3, 2])
    weights = np.array([0.7, 1.3])

    def log_softmax(z):
        shifted = z - z.max(axis=2, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=2, keepdims=True))

    def loss():
        per_sample = kernels.ctc_loss(log_softmax(logits), targets, input_lengths, target_lengths, reduction="none")
        return float((per_sample * weights).sum())
    log_probs = log_softmax(logits)
    grad_log_probs = kernels.ctc_loss_backward(weights, log_probs, targets, input_lengths, target_lengths,
                                               reduction="none")
    grad_logits = grad_log_probs - np.exp(log_probs) * grad_log_probs.sum(axis=2, keepdims=True)
    assert_close(grad_logits, finite_difference_gradient(loss, logits), rtol=1e-6, atol=1e-8)


def test_ctc_rejects_bad_input():
    log_probs = _log_probs(5, 2, 4, np.float32)
    targets, lengths = np.array([[1, 2], [3, 1]]), np.array([5, 5])
    target_lengths = np.array([2, 1])
    with pytest.raises(ValueError, match=r"ctc_loss: input_lengths must lie in \[0, 5\]"):
        kernels.ctc_loss(log_probs, targets, np.array([6, 5]), target_lengths)
    with pytest.raises(ValueError, match="ctc_loss: target_lengths must be at most S=2"):
        kernels.ctc_loss(log_probs, targets, lengths, np.array([3, 1]))
    with pytest.raises(ValueError, match="ctc_loss: target_lengths must be >= 0"):
        kernels.ctc_loss(log_probs, targets, lengths, np.array([-1, 1]))
    with pytest.raises(ValueError, match=r"ctc_loss: input_lengths must have shape \(2,\)"):
        kernels.ctc_loss(log_probs, targets, np.array([5]), target_lengths)
    with pytest.raises(ValueError, match="ctc_loss: concatenated targets must have sum"):
        kernels.ctc_loss(log_probs, np.array([1, 2, 3, 1]), lengths, target_lengths)
    with pytest.raises(ValueError, match=r"ctc_loss: blank must be an integer in \[0, 4\)"):
        kernels.ctc_loss(log_probs, targets, lengths, target_lengths, blank=4)
    with pytest.raises(ValueError, match="ctc_loss: target labels must lie in"):
        kernels.ctc_loss(log_probs, np.array([[1, 0], [3, 1]]), lengths, target_lengths)
    with pytest.raises(ValueError, match="ctc_loss: target labels must lie in"):
        kernels.ctc_loss(log_probs, np.array([[1, 4], [3, 1]]), lengths, target_lengths)
    with pytest.raises(ValueError, match="ctc_loss: log_probs must be 3-D"):
        kernels.ctc_loss(log_probs[0], targets, lengths, target_lengths)
    with pytest.raises(TypeError, match="ctc_loss: log_probs must be float32 or float64"):
        kernels.ctc_loss(log_probs.astype(np.float16), targets, lengths, target_lengths)
    with pytest.raises(TypeError, match="ctc_loss: targets must hold integers"):
        kernels.ctc_loss(log_probs, targets.astype(np.float32), lengths, target_lengths)
    with pytest.raises(TypeError, match="ctc_loss: input_lengths must hold integers"):
        kernels.ctc_loss(log_probs, targets, lengths.astype(np.float32), target_lengths)
    with pytest.raises(ValueError, match="ctc_loss: reduction must be one of"):
        kernels.ctc_loss(log_probs, targets, lengths, target_lengths, reduction="avg")
    with pytest.raises(ValueError, match=r"ctc_loss_backward: grad_loss must have shape \(2,\)"):
        kernels.ctc_loss_backward(np.ones(3, np.float32), log_probs, targets, lengths, target_lengths,
                                  reduction="none")
    with pytest.raises(TypeError, match="ctc_loss_backward: grad_loss must be an array of shape"):
        kernels.ctc_loss_backward(1.0, log_probs, targets, lengths, target_lengths, reduction="none")


def test_lengths_may_be_sequences():
    log_probs = _log_probs(6, 2, 4)
    targets = np.array([[1, 2], [3, 1]])
    expected, _ = _torch_ctc(log_probs, targets, np.array([6, 5]), np.array([2, 1]), np.array(1.0))
    assert_close(kernels.ctc_loss(log_probs, targets, [6, 5], (2, 1)), expected, np.float64)


@pytest.mark.parametrize("padded", [True, False])
def test_prepared_targets_give_the_same_loss_and_gradient(padded):
    """prepare_targets lays the targets out once for a forward and its backward (nn's CTC loss): the
    `_prepared` forms give ctc_loss's and ctc_loss_backward's results, and refuse other log_probs."""
    from kernels import ctc
    log_probs = _log_probs(7, 3, 5, seed=11)
    targets = np.array([[1, 1, 4], [2, 3, 2], [3, 4, 4]]) if padded else np.array([1, 1, 4, 3, 4])
    input_lengths, target_lengths = np.array([7, 5, 6]), np.array([3, 0, 2])
    prepared = ctc.prepare_targets(log_probs, targets, input_lengths, target_lengths, blank=0)
    input_lengths[:] = 1   # the layout is a copy: the caller's arrays may change afterwards
    for reduction in ("none", "mean", "sum"):
        grad_loss = np.linspace(0.5, 2.0, 3) if reduction == "none" else 1.5
        expected, expected_grad = _torch_ctc(log_probs, targets, np.array([7, 5, 6]), target_lengths,
                                             np.asarray(grad_loss), reduction=reduction)
        assert_close(ctc.ctc_loss_prepared(log_probs, prepared, reduction), expected, np.float64)
        assert_close(ctc.ctc_loss_backward_prepared(grad_loss, log_probs, prepared, reduction), expected_grad,
                     np.float64)
    single = log_probs.astype(np.float32)   # prepared for float64 log_probs, used with float32: float32 results
    for reduction in ("none", "mean", "sum"):
        assert ctc.ctc_loss_prepared(single, prepared, reduction).dtype == np.float32, reduction
        grad_loss = np.ones(3, np.float32) if reduction == "none" else 1.0
        assert ctc.ctc_loss_backward_prepared(grad_loss, single, prepared, reduction).dtype == np.float32, reduction
    with pytest.raises(ValueError, match=r"ctc_loss: the targets were prepared for log_probs \(7, 3, 5\) on cpu, "
                                         r"got \(6, 3, 5\) on cpu"):
        ctc.ctc_loss_prepared(log_probs[:6], prepared)
    with pytest.raises(TypeError, match="ctc_loss_backward: prepared must come from prepare_targets, got tuple"):
        ctc.ctc_loss_backward_prepared(1.0, log_probs, (targets, input_lengths))
    with pytest.raises(ValueError, match="ctc_loss: target labels must lie in"):
        ctc.prepare_targets(log_probs, targets * 0, input_lengths, target_lengths)
