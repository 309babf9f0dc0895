"""use_deterministic_algorithms: torch's switch, names and errors. The CPU ops are deterministic either way;
the simulator and GPU tests check the CUDA forms it selects (test_conv_sim, test_embedding_sim, test_pool_sim,
tests/gpu/test_deterministic_gpu.py)."""
import warnings

import numpy as np
import pytest

import kernels
import nn
from kernels import backend
from tests.oracle import random_array


def test_off_by_default_and_switched_as_torch_switches_it():
    assert kernels.are_deterministic_algorithms_enabled() is False
    assert kernels.is_deterministic_algorithms_warn_only_enabled() is False
    try:
        nn.use_deterministic_algorithms(True, warn_only=True)
        assert kernels.are_deterministic_algorithms_enabled() and nn.is_deterministic_algorithms_warn_only_enabled()
        nn.use_deterministic_algorithms(True)
        assert nn.are_deterministic_algorithms_enabled() and not kernels.is_deterministic_algorithms_warn_only_enabled()
    finally:
        kernels.use_deterministic_algorithms(False)
    assert not nn.are_deterministic_algorithms_enabled()


@pytest.mark.parametrize("arguments", [(1,), ("yes",), (None,), (True, 0)])
def test_mode_and_warn_only_must_be_bools(arguments):
    with pytest.raises(TypeError, match=r"use_deterministic_algorithms: (mode|warn_only) must be a bool, got"):
        kernels.use_deterministic_algorithms(*arguments[:1], **({"warn_only": arguments[1]} if len(arguments) > 1
                                                                else {}))
    assert not kernels.are_deterministic_algorithms_enabled()


def test_an_op_without_a_deterministic_form_raises_or_warns_naming_itself():
    backend.alert_not_deterministic("some_op")          # off: nothing
    try:
        kernels.use_deterministic_algorithms(True)
        with pytest.raises(RuntimeError, match="some_op does not have a deterministic implementation, but you set "
                                               "'use_deterministic_algorithms\\(True\\)'"):
            backend.alert_not_deterministic("some_op")
        kernels.use_deterministic_algorithms(True, warn_only=True)
        with pytest.warns(UserWarning, match="some_op does not have a deterministic implementation"):
            backend.alert_not_deterministic("some_op")
    finally:
        kernels.use_deterministic_algorithms(False)


def test_cpu_ops_run_and_agree_under_the_switch(deterministic):
    """The CPU path has no atomics: the same results, no error, no warning (repeated-index scatters included)."""
    x = random_array((2, 3, 7, 6), seed=1)
    grad_out = random_array((2, 4, 7, 6), seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        on = kernels.conv2d_backward_weight(grad_out, x, (4, 3, 3, 3), padding=1)
        tokens = np.array([[1, 1, 4], [4, 0, 1]])
        grad_weight = kernels.embedding_backward(random_array((2, 3, 5), seed=3), tokens, 6)
        leaf = nn.Tensor(random_array((5, 3), seed=4), requires_grad=True)
        leaf[np.array([0, 0, 3])].sum().backward()
    kernels.use_deterministic_algorithms(False)
    np.testing.assert_array_equal(on, kernels.conv2d_backward_weight(grad_out, x, (4, 3, 3, 3), padding=1))
    assert grad_weight.shape == (6, 5)
    np.testing.assert_array_equal(leaf.grad.numpy()[:, 0], [2, 0, 0, 1, 0])


def test_a_boolean_mask_index_backward_stores_rather_than_scatters(monkeypatch):
    """A mask reaches each element at most once: its backward is a store (no scatter, so nothing for the switch
    to refuse on a GPU)."""
    from nn import tensor_functions
    monkeypatch.setattr(tensor_functions, "scatter_add", lambda *args: pytest.fail("a mask's backward scattered"))
    values = random_array((3, 4), seed=5)
    leaf = nn.Tensor(values, requires_grad=True)
    mask = values > 0.5
    (leaf[mask] * 3).sum().backward()
    np.testing.assert_array_equal(leaf.grad.numpy(), np.where(mask, 3, 0))
    leaf.grad = None
    columns = np.array([True, False, True, True])
    (leaf[1:, columns] ** 2).sum().backward()
    expected = np.zeros_like(values)
    expected[1:, columns] = 2 * values[1:, columns]
    np.testing.assert_allclose(leaf.grad.numpy(), expected, rtol=1e-6)


def test_the_context_manager_restores_the_setting_even_after_an_error():
    kernels.use_deterministic_algorithms(True, warn_only=True)
    try:
        with pytest.raises(KeyError):
            with backend.deterministic_algorithms(False):
                assert not kernels.are_deterministic_algorithms_enabled()
                raise KeyError("inside")
        assert kernels.are_deterministic_algorithms_enabled()
        assert kernels.is_deterministic_algorithms_warn_only_enabled()
    finally:
        kernels.use_deterministic_algorithms(False)
