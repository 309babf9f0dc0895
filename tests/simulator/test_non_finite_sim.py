"""tests/kernels/test_non_finite_and_edges.py's tests, run here through the CUDA kernels in the simulator (NaN in the
CTC kernels' log-sum-exp and the softmax kernel's running max, 0-d and empty inputs, broadcast gradients)."""
from tests.kernels.test_non_finite_and_edges import (  # noqa: F401  (collected and run here)
    test_ctc_gradient_takes_a_numpy_scalar, test_ctc_with_a_nan_log_probability_is_nan_as_torch,
    test_softmax_rows_with_nan_are_nan_as_torch, test_updates_take_a_broadcast_gradient_and_leave_it_unwritten,
    test_zero_dim_and_empty_inputs_give_arrays)
