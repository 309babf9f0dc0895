import numpy as np
import pytest

import kernels
from tests.oracle import assert_close, finite_difference_gradient, random_array, torch_reference


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 9, 11)])
def test_relu_matches_torch(shape, dtype):
    x = random_array(shape, dtype, seed=1)
    grad_out = random_array(shape, dtype, seed=2)
    expected, (expected_grad,) = torch_reference(lambda t: t.relu(), x, grad_output=grad_out)
    assert_close(kernels.relu(x), expected, dtype)
    assert_close(kernels.relu_backward(grad_out, x), expected_grad, dtype)


def test_relu_gradient_by_finite_differences():
    x = random_array((4, 6), np.float64, seed=3)
    x[np.abs(x) < 1e-3] = 0.5  # keep away from the kink
    weights = random_array(x.shape, np.float64, seed=4)
    numeric = finite_difference_gradient(lambda: float((kernels.relu(x) * weights).sum()), x)
    assert_close(kernels.relu_backward(weights, x), numeric, rtol=1e-6, atol=1e-8)


def test_relu_rejects_bad_input():
    with pytest.raises(TypeError, match="relu: x must be float32 or float64"):
        kernels.relu(np.arange(4))
    with pytest.raises(ValueError, match="relu_backward: grad_out must have shape"):
        kernels.relu_backward(np.ones(3, np.float32), np.ones(4, np.float32))
    with pytest.raises(TypeError, match="relu: expected NumPy or CuPy arrays"):
        kernels.relu([1.0, 2.0])
