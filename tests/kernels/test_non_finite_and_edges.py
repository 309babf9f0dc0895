"""Edge cases of the kernels' public ops against torch, on whichever path the inputs take (the CPU here; the CUDA
kernels when tests/simulator/test_non_finite_sim.py runs the same tests in the simulator): NaN carried through CTC
and softmax as torch carries it, 0-d and empty inputs, NumPy scalars as numbers, and optimizer updates whose
gradient is a read-only broadcast view."""
import numpy as np
import pytest

import kernels
from kernels import backend
from tests.oracle import random_array, torch_module

DTYPE = np.float32 if backend.SIMULATOR else np.float64


@pytest.mark.parametrize("where", [(1, 0, 1), (1, 0, 0), (3, 0, 0), (2, 1, 2)])
def test_ctc_with_a_nan_log_probability_is_nan_as_torch(where):
    """A NaN on an alignment path made the loss finite and wrong: max and min in the log-sum-exp dropped it."""
    torch = torch_module()
    log_probs = torch.log_softmax(torch.tensor(random_array((4, 2, 3), np.float64, seed=1)), -1).numpy()
    log_probs = log_probs.astype(DTYPE)
    log_probs[where] = np.nan
    targets, input_lengths, target_lengths = np.array([[1, 2], [2, 0]]), np.array([4, 4]), np.array([2, 1])
    loss = kernels.ctc_loss(log_probs, targets, input_lengths, target_lengths, reduction="none")
    grad = kernels.ctc_loss_backward(np.ones(2, DTYPE), log_probs, targets, input_lengths, target_lengths,
                                     reduction="none")
    leaf = torch.tensor(log_probs, requires_grad=True)
    expected = torch.nn.functional.ctc_loss(leaf, torch.tensor(targets), torch.tensor(input_lengths),
                                            torch.tensor(target_lengths), reduction="none")
    expected.sum().backward()
    np.testing.assert_array_equal(np.isnan(np.asarray(loss)), np.isnan(expected.detach().numpy()))
    np.testing.assert_array_equal(np.isnan(np.asarray(grad)), np.isnan(leaf.grad.numpy()))


@pytest.mark.parametrize("log", [False, True])
def test_softmax_rows_with_nan_are_nan_as_torch(log):
    torch = torch_module()
    x = random_array((5, 7), DTYPE, seed=2)
    x[1, 0], x[3, 6], x[4, :] = np.nan, np.nan, -np.inf
    op = kernels.log_softmax if log else kernels.softmax
    if log and backend.SIMULATOR:
        x = x[:4]   # (the simulator's math.log(0) raises where the GPU gives -inf: a row of -inf only)
    expected = (torch.log_softmax if log else torch.softmax)(torch.tensor(x), -1).numpy()
    np.testing.assert_array_equal(np.isnan(np.asarray(op(x, -1))), np.isnan(expected))


def test_zero_dim_and_empty_inputs_give_arrays():
    x = np.array(0.5, DTYPE)
    for op in (kernels.relu, kernels.sigmoid, kernels.tanh, kernels.gelu, kernels.silu):
        y = op(x)
        assert isinstance(y, np.ndarray) and y.shape == () and y.dtype == DTYPE, op.__name__
    assert isinstance(kernels.sigmoid_backward(x, x), np.ndarray)
    for op in (kernels.softmax, kernels.log_softmax):
        y = op(np.ones((2, 0), DTYPE), -1)
        assert y.shape == (2, 0)


def test_ctc_gradient_takes_a_numpy_scalar():
    log_probs = np.log(np.full((4, 1, 3), 1 / 3, DTYPE))
    arguments = (log_probs, np.array([[1]]), np.array([4]), np.array([1]))
    expected = kernels.ctc_loss_backward(1.0, *arguments)
    np.testing.assert_array_equal(kernels.ctc_loss_backward(np.float32(1.0), *arguments), expected)


@pytest.mark.parametrize("name", ["adam", "rmsprop", "adagrad", "sgd"])
def test_updates_take_a_broadcast_gradient_and_leave_it_unwritten(name):
    """A read-only broadcast gradient (torch takes it) with non-contiguous state: the update matches torch's and
    every state array is written (a copy-back of the gradient raised after part of the state had changed)."""
    torch = torch_module()
    param = random_array((3, 4), DTYPE, seed=3)
    row = random_array((4,), DTYPE, seed=4)
    grad = np.broadcast_to(row, (3, 4))
    state = [np.zeros((4, 3), DTYPE).T for _ in range(2)]   # transposed views: non-contiguous
    theirs = torch.nn.Parameter(torch.tensor(param))
    theirs.grad = torch.tensor(np.ascontiguousarray(grad))
    if name == "adam":
        kernels.adam_update(param, grad, state[0], state[1], step=1, lr=0.1)
        torch.optim.Adam([theirs], lr=0.1).step()
    elif name == "rmsprop":
        kernels.rmsprop_update(param, grad, state[0], lr=0.1, alpha=0.9)
        torch.optim.RMSprop([theirs], lr=0.1, alpha=0.9).step()
    elif name == "adagrad":
        kernels.adagrad_update(param, grad, state[0], lr=0.1, lr_decay=0.0, weight_decay=0.0, eps=1e-10, step=1)
        torch.optim.Adagrad([theirs], lr=0.1).step()
    else:
        kernels.sgd_update(param, grad, state[0], lr=0.1, momentum=0.9, first_step=True)
        torch.optim.SGD([theirs], lr=0.1, momentum=0.9).step()
    np.testing.assert_allclose(param, theirs.detach().numpy(), rtol=1e-5 if DTYPE == np.float32 else 1e-12)
    assert state[0].any(), "the non-contiguous state was not written back"
    np.testing.assert_array_equal(grad[0], row)
