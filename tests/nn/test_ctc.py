"""CTCLoss / functional.ctc_loss against torch.nn.CTCLoss in float64: values and gradients through a
log_softmax, repeated labels, empty targets, impossible alignments, zero_infinity and every reduction."""
import numpy as np
import pytest

import nn
from nn.ctc import ctc_loss
from tests.oracle import assert_close, random_array, torch_module

TOLERANCE = dict(rtol=1e-9, atol=1e-11)


def both(logits, targets, input_lengths, target_lengths, **options):
    """(ours loss, ours grad of the logits, torch loss, torch grad) for a weighted sum of the loss."""
    torch = torch_module()
    x = nn.Tensor(logits.copy(), requires_grad=True)
    loss = nn.CTCLoss(**options)(nn.functional.log_softmax(x, dim=2), targets, input_lengths, target_lengths)
    weight = random_array(loss.shape, np.float64, seed=9, low=0.5, high=1.5)
    (loss * weight).sum().backward()
    x_t = torch.tensor(logits, requires_grad=True)
    loss_t = torch.nn.CTCLoss(**options)(x_t.log_softmax(2), torch.tensor(targets), torch.tensor(input_lengths),
                                         torch.tensor(target_lengths))
    (loss_t * torch.tensor(weight)).sum().backward()
    return loss.numpy(), x.grad.numpy(), loss_t.detach().numpy(), x_t.grad.numpy()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_padded_targets_with_repeats_and_an_empty_target(reduction):
    logits = random_array((9, 4, 5), np.float64, seed=1, low=-2, high=2)
    targets = np.array([[1, 1, 2, 3], [4, 0, 0, 0], [2, 3, 2, 3], [0, 0, 0, 0]])
    input_lengths = np.array([9, 5, 8, 3])
    target_lengths = np.array([4, 1, 4, 0])
    ours, grad, theirs, grad_t = both(logits, targets, input_lengths, target_lengths, reduction=reduction)
    assert_close(ours, theirs, np.float64, **TOLERANCE)
    assert_close(grad, grad_t, np.float64, **TOLERANCE)


def test_concatenated_targets_and_other_blank():
    logits = random_array((7, 3, 6), np.float64, seed=2, low=-2, high=2)
    targets = np.array([0, 0, 2, 1, 3, 4, 4, 0])   # blank = 5: label 0 is an ordinary class
    ours, grad, theirs, grad_t = both(logits, targets, np.array([7, 6, 7]), np.array([3, 2, 3]), blank=5)
    assert_close(ours, theirs, np.float64, **TOLERANCE)
    assert_close(grad, grad_t, np.float64, **TOLERANCE)


@pytest.mark.parametrize("zero_infinity", [False, True])
def test_targets_longer_than_inputs(zero_infinity):
    """A target that needs more steps than the input has (here 'a a' needs 3 steps) has probability 0."""
    logits = random_array((3, 2, 4), np.float64, seed=3)
    targets = np.array([[1, 1, 0], [1, 2, 3]])
    input_lengths, target_lengths = np.array([2, 3]), np.array([2, 3])
    ours, grad, theirs, grad_t = both(logits, targets, input_lengths, target_lengths, reduction="none",
                                      zero_infinity=zero_infinity)
    assert_close(ours, theirs, np.float64, **TOLERANCE)
    if zero_infinity:
        assert ours[0] == 0.0
        assert_close(grad, grad_t, np.float64, **TOLERANCE)
        assert np.all(grad[:, 0] == 0.0)
    else:
        assert np.isinf(ours[0]) and np.isfinite(ours[1])


def test_functional_form_unbatched_and_lists():
    torch = torch_module()
    log_probs = np.log(np.random.default_rng(4).dirichlet(np.ones(4), size=6))   # (T, C)
    loss = ctc_loss(nn.Tensor(log_probs), [1, 2, 2], 6, 3, reduction="sum")
    expected = torch.nn.functional.ctc_loss(torch.tensor(log_probs), torch.tensor([1, 2, 2]), (6,), (3,),
                                            reduction="sum")
    assert_close(loss.data, expected.numpy(), np.float64, **TOLERANCE)
    assert nn.functional.ctc_loss is ctc_loss


def test_float32_close_to_torch():
    torch = torch_module()
    logits = random_array((20, 3, 11), seed=5, low=-3, high=3)
    targets = np.array([[1, 2, 3, 3, 4], [10, 9, 0, 0, 0], [5, 5, 5, 0, 0]])
    lengths = np.array([5, 2, 3])
    loss = nn.CTCLoss()(nn.functional.log_softmax(nn.Tensor(logits), dim=2), targets, [20, 18, 20], lengths)
    expected = torch.nn.CTCLoss()(torch.from_numpy(logits).log_softmax(2), torch.tensor(targets),
                                  torch.tensor([20, 18, 20]), torch.tensor(lengths))
    assert loss.dtype == np.float32
    assert_close(loss.data, expected.numpy(), np.float32, scale=5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="CTCLoss: reduction must be one of"):
        nn.CTCLoss(reduction="avg")
    with pytest.raises(ValueError, match="CTCLoss: blank must be a non-negative integer"):
        nn.CTCLoss(blank=-1)
    log_probs = nn.Tensor(np.log(np.full((4, 2, 3), 1 / 3)))
    with pytest.raises(TypeError, match="ctc_loss: targets must be a Tensor, an array or a list"):
        ctc_loss(log_probs, "12", [4, 4], [1, 1])
    with pytest.raises(ValueError, match="ctc_loss: target labels must lie in"):
        ctc_loss(log_probs, np.array([[0, 1], [1, 2]]), [4, 4], [2, 2])   # 0 is the blank
    with pytest.raises(ValueError, match=r"ctc_loss: input_lengths must lie in \[0, 4\]"):
        ctc_loss(log_probs, np.array([[1, 2], [1, 2]]), [5, 4], [2, 2])


def test_backward_through_freed_graph_raises():
    x = nn.Tensor(random_array((5, 1, 3), np.float64), requires_grad=True)
    loss = ctc_loss(nn.functional.log_softmax(x, dim=2), np.array([[1, 2]]), [5], [2])
    loss.backward()
    with pytest.raises(RuntimeError, match="second time"):
        loss.backward()


def test_lengths_written_after_the_forward_leave_the_gradient_as_torch():
    """The forward lays the targets and lengths out once for its backward: writing the caller's length arrays in
    between changes nothing, as in torch (which keeps them as host integers and does not raise)."""
    torch = torch_module()
    logits = random_array((8, 3, 5), np.float64, seed=4, low=-2, high=2)
    targets, input_lengths, target_lengths = np.array([[1, 2, 2], [3, 4, 1], [2, 1, 1]]), np.array([8, 6, 7]), \
        np.array([3, 2, 1])
    x = nn.Tensor(logits.copy(), requires_grad=True)
    loss = ctc_loss(nn.functional.log_softmax(x, dim=2), targets, input_lengths, target_lengths)
    x_t = torch.tensor(logits, requires_grad=True)
    lengths_t = torch.tensor(input_lengths), torch.tensor(target_lengths)
    loss_t = torch.nn.functional.ctc_loss(x_t.log_softmax(2), torch.tensor(targets), *lengths_t)
    for lengths in (input_lengths, target_lengths, *lengths_t):
        lengths[:] = 1
    loss.backward()
    loss_t.backward()
    assert_close(x.grad.numpy(), x_t.grad.numpy(), np.float64, **TOLERANCE)


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("targets, input_length, target_length", [
    (np.array([1, 2, 2]), np.array(8), np.array(3)),          # (S,) and 0-d lengths
    (np.array([[1, 2, 2]]), np.array([8]), np.array([2])),    # (1, S) padded, one-element lengths
    (np.array([3, 1]), 6, 2),                                  # Python numbers
])
def test_unbatched_input_matches_torch(targets, input_length, target_length, reduction):
    torch = torch_module()
    logits = random_array((8, 5), np.float64, seed=6, low=-2, high=2)
    x = nn.Tensor(logits.copy(), requires_grad=True)
    loss = ctc_loss(nn.functional.log_softmax(x, dim=1), targets, input_length, target_length, reduction=reduction)
    loss.backward()
    x_t = torch.tensor(logits, requires_grad=True)
    loss_t = torch.nn.functional.ctc_loss(x_t.log_softmax(1), torch.tensor(targets), torch.tensor(input_length),
                                          torch.tensor(target_length), reduction=reduction)
    loss_t.backward()
    assert loss.shape == tuple(loss_t.shape) == ()
    assert_close(loss.numpy(), loss_t.detach().numpy(), np.float64, **TOLERANCE)
    assert_close(x.grad.numpy(), x_t.grad.numpy(), np.float64, **TOLERANCE)


@pytest.mark.parametrize("targets, input_lengths, target_lengths, message", [
    # a batch of targets was read as one target [1, 2, 3, 4], or as its first row: torch rejects both
    (np.array([[1, 2], [3, 4]]), 8, 4, r"targets of shape \(S,\) or \(1, S\), got \(2, 2\)"),
    (np.array([[1, 2, 2], [3, 3, 3]]), 8, 3, r"targets of shape \(S,\) or \(1, S\), got \(2, 3\)"),
    (np.array([1, 2, 2]), np.array([8, 8]), 3, r"one input_length \(a scalar or one element\), got shape \(2,\)"),
    (np.array([1, 2, 2]), 8, np.zeros((0,), np.int64), r"one target_length .*got shape \(0,\)"),
])
def test_unbatched_input_rejects_a_batch_of_targets_or_lengths(targets, input_lengths, target_lengths, message):
    log_probs = nn.Tensor(np.log(np.full((8, 5), 0.2)))
    with pytest.raises(ValueError, match=r"ctc_loss: unbatched log_probs \(T, C\) take " + message):
        ctc_loss(log_probs, targets, input_lengths, target_lengths)


def test_unbatched_concatenated_targets_must_have_the_target_length_as_torch():
    """(S,) targets are the concatenated form of a batch of one: S must equal the target length (torch raises;
    reading them as padded would silently give the loss of a prefix)."""
    log_probs = nn.Tensor(np.log(np.full((8, 5), 0.2)))
    with pytest.raises(ValueError, match=r"ctc_loss: concatenated targets must have sum\(target_lengths\)=2 "
                                         r"entries, got 3"):
        ctc_loss(log_probs, np.array([1, 2, 2]), 8, 2)


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_mean_over_an_empty_batch_is_nan_without_numpy_warnings():
    """torch rejects empty log_probs; ours gives the mean of no losses, nan, and a zero-size gradient, silently."""
    x = nn.Tensor(np.zeros((5, 0, 3)), requires_grad=True)
    empty = np.zeros(0, np.int64)
    loss = ctc_loss(x, np.zeros((0, 2), np.int64), empty, empty)
    assert loss.shape == () and np.isnan(loss.item())
    loss.backward()
    assert x.grad.shape == (5, 0, 3)
