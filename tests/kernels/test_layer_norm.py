"""Layer normalisation (CPU path) against torch.nn.functional.layer_norm / torch.native_layer_norm and finite
differences."""
import numpy as np
import pytest

import kernels
from tests.oracle import assert_close, finite_difference_gradient, random_array, torch_module

# (x shape, normalized_shape): odd sizes, one and two normalised dims, an int, a 1-D input (one row)
CASES = [((7, 13), (13,)), ((3, 5, 11), 11), ((2, 3, 4, 5), (4, 5)), ((9,), (9,)), ((4, 1), (1,)),
         ((6, 3, 7), (3, 7))]
AFFINE = [(True, True), (True, False), (False, True), (False, False)]


def _inputs(shape, normalized_shape, dtype, with_weight, with_bias, seed=0, low=-2.0, high=3.0):
    normalized = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    x = random_array(shape, dtype, seed=seed, low=low, high=high)
    weight = random_array(normalized, dtype, seed=seed + 1, low=0.5, high=1.5) if with_weight else None
    bias = random_array(normalized, dtype, seed=seed + 2) if with_bias else None
    grad_out = random_array(shape, dtype, seed=seed + 3)
    return x, weight, bias, grad_out


def _torch_layer_norm(x, normalized_shape, weight, bias, grad_out, eps=1e-5):
    """torch's (y, mean, rstd) and (grad_x, grad_weight, grad_bias) in float64 (None for an absent vector)."""
    torch = torch_module()

    def tensor(a):
        return None if a is None else torch.tensor(a.astype(np.float64), requires_grad=True)
    tx, tw, tb = tensor(x), tensor(weight), tensor(bias)
    normalized = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    y = torch.nn.functional.layer_norm(tx, normalized, tw, tb, eps)
    y.backward(torch.tensor(grad_out.astype(np.float64)))
    with torch.no_grad():
        _, mean, rstd = torch.native_layer_norm(tx, normalized, tw, tb, eps)
    grads = [t if t is None else t.grad.numpy() for t in (tx, tw, tb)]
    return y.detach().numpy(), mean.numpy(), rstd.numpy(), grads


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("with_weight,with_bias", AFFINE)
@pytest.mark.parametrize("shape,normalized_shape", CASES)
def test_layer_norm_matches_torch(shape, normalized_shape, with_weight, with_bias, dtype):
    x, weight, bias, grad_out = _inputs(shape, normalized_shape, dtype, with_weight, with_bias, seed=len(shape))
    expected, expected_mean, expected_rstd, expected_grads = _torch_layer_norm(x, normalized_shape, weight, bias,
                                                                               grad_out, eps=1e-3)
    y, mean, rstd = kernels.layer_norm(x, normalized_shape, weight, bias, eps=1e-3)
    assert y.dtype == dtype and y.shape == shape
    assert mean.dtype == dtype and rstd.dtype == dtype
    assert_close(y, expected, dtype, scale=4, name="y")
    assert_close(mean, expected_mean, dtype, name="mean")
    assert_close(rstd, expected_rstd, dtype, name="rstd")
    grads = kernels.layer_norm_backward(grad_out, x, normalized_shape, mean, rstd, weight, bias)
    for name, actual, reference in zip(("grad_x", "grad_weight", "grad_bias"), grads, expected_grads):
        if reference is None:
            assert actual is None, name
        else:
            assert actual.dtype == dtype and actual.shape == reference.shape, name
            assert_close(actual, reference, dtype, scale=8, name=name)


def test_layer_norm_gradients_match_finite_differences():
    shape, normalized_shape = (3, 2, 5), (2, 5)
    x, weight, bias, grad_out = _inputs(shape, normalized_shape, np.float64, True, True, seed=21)

    def loss():
        return float((kernels.layer_norm(x, normalized_shape, weight, bias)[0] * grad_out).sum())

    _, mean, rstd = kernels.layer_norm(x, normalized_shape, weight, bias)
    grads = kernels.layer_norm_backward(grad_out, x, normalized_shape, mean, rstd, weight, bias)
    for name, array, actual in zip(("grad_x", "grad_weight", "grad_bias"), (x, weight, bias), grads):
        expected = finite_difference_gradient(loss, array)
        assert_close(actual, expected, np.float64, rtol=1e-6, atol=1e-7, name=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layer_norm_of_rows_with_a_large_mean(dtype):
    """Rows of 1000 + noise of size 1e-2: a one-pass E[x^2] - E[x]^2 loses every digit in float32, and so does
    x - mean with the mean rounded to float32 (steps of 6e-5 near 1000: torch's float32 y is off by 7e-3)."""
    rng = np.random.default_rng(3)
    x = (1000.0 + 1e-2 * rng.standard_normal((5, 257))).astype(dtype)
    grad_out = random_array(x.shape, dtype, seed=4)
    expected, expected_mean, expected_rstd, expected_grads = _torch_layer_norm(x, 257, None, None, grad_out)
    y, mean, rstd = kernels.layer_norm(x, 257)
    condition = 1e5   # the values' size over their spread: float64 loses as many digits
    assert_close(y, expected, dtype, scale=4 if dtype == np.float32 else condition, name="y")
    assert_close(rstd, expected_rstd, dtype, scale=4 if dtype == np.float32 else condition, name="rstd")
    assert_close(mean, expected_mean, dtype, name="mean")
    # the backward takes the saved (rounded) mean, as torch's: x - mean is off by a relative 3e-3 in float32
    grad_x = kernels.layer_norm_backward(grad_out, x, 257, mean, rstd)[0]
    largest = float(np.abs(expected_grads[0]).max())
    tolerance = 1e-3 if dtype == np.float32 else 1e-9
    assert_close(grad_x, expected_grads[0], dtype, rtol=tolerance, atol=tolerance * largest, name="grad_x")


def test_layer_norm_takes_non_contiguous_inputs():
    x, weight, bias, grad_out = _inputs((6, 10), (10,), np.float64, True, True, seed=5)
    x_t, grad_t = x.reshape(10, 6).T, grad_out.reshape(10, 6).T   # (6, 10) views with strides (8, 48)
    expected, _, _, expected_grads = _torch_layer_norm(x_t, (10,), weight, bias, grad_t)
    y, mean, rstd = kernels.layer_norm(x_t, (10,), weight, bias)
    assert_close(y, expected, np.float64, name="y")
    grads = kernels.layer_norm_backward(grad_t, x_t, (10,), mean, rstd, weight, bias)
    for name, actual, reference in zip(("grad_x", "grad_weight", "grad_bias"), grads, expected_grads):
        assert_close(actual, reference, np.float64, name=name)


@pytest.mark.parametrize("need_input,need_weight,need_bias",
                         [(False, True, True), (True, False, False), (True, False, True), (False, False, True)])
def test_layer_norm_backward_computes_only_the_gradients_asked_for(need_input, need_weight, need_bias):
    """need_*=False (a frozen layer, or an input that needs no gradient) gives None in that place; the others
    are those of the full backward."""
    x, weight, bias, grad_out = _inputs((4, 2, 3), (2, 3), np.float64, True, True, seed=6)
    _, mean, rstd = kernels.layer_norm(x, (2, 3), weight, bias)
    full = kernels.layer_norm_backward(grad_out, x, (2, 3), mean, rstd, weight, bias)
    outs = [np.full((2, 3), 7.0), np.full((2, 3), 7.0)]   # an out of a gradient not asked for is left as it is
    some = kernels.layer_norm_backward(grad_out, x, (2, 3), mean, rstd, weight, bias, need_input=need_input,
                                       need_weight=need_weight, need_bias=need_bias, grad_weight_out=outs[0],
                                       grad_bias_out=outs[1])
    for out, wanted in zip(outs, (need_weight, need_bias)):
        assert wanted or (out == 7.0).all()
    for name, wanted, expected, actual in zip(("grad_x", "grad_weight", "grad_bias"),
                                              (need_input, need_weight, need_bias), full, some):
        if wanted:
            assert np.array_equal(actual, expected), name
        else:
            assert actual is None, name


def test_layer_norm_of_no_rows():
    x = np.ones((0, 4), np.float32)
    weight, bias = np.ones(4, np.float32), np.zeros(4, np.float32)
    y, mean, rstd = kernels.layer_norm(x, 4, weight, bias)
    assert y.shape == (0, 4) and mean.shape == (0, 1) and rstd.shape == (0, 1)
    grad_x, grad_weight, grad_bias = kernels.layer_norm_backward(y, x, 4, mean, rstd, weight, bias)
    assert grad_x.shape == (0, 4)
    assert np.array_equal(grad_weight, np.zeros(4)) and np.array_equal(grad_bias, np.zeros(4))


def test_layer_norm_rejects_bad_input():
    x = random_array((3, 5))
    with pytest.raises(ValueError, match=r"^layer_norm: x must have trailing shape \(4,\).*got shape \(3, 5\)"):
        kernels.layer_norm(x, 4)
    with pytest.raises(ValueError, match=r"^layer_norm: x must have trailing shape \(2, 3, 5\)"):
        kernels.layer_norm(x, (2, 3, 5))
    with pytest.raises(ValueError, match=r"^layer_norm: weight must have shape \(5,\), got \(4,\)"):
        kernels.layer_norm(x, 5, random_array((4,)))
    with pytest.raises(ValueError, match=r"^layer_norm: bias must have shape \(5,\)"):
        kernels.layer_norm(x, 5, None, random_array((1, 5)))
    with pytest.raises(ValueError, match=r"^layer_norm: normalized_shape must be a positive integer, got 0"):
        kernels.layer_norm(x, (0,))
    with pytest.raises(TypeError, match=r"^layer_norm: normalized_shape must be an int or a non-empty tuple"):
        kernels.layer_norm(x, ())
    with pytest.raises(TypeError, match=r"^layer_norm: normalized_shape must be an int or a non-empty tuple"):
        kernels.layer_norm(x, 5.0)
    with pytest.raises(ValueError, match=r"^layer_norm: eps must be a non-negative number, got -1"):
        kernels.layer_norm(x, 5, eps=-1)
    with pytest.raises(TypeError, match=r"^layer_norm: x must be float32 or float64 on cpu, got int64"):
        kernels.layer_norm(np.ones((3, 5), np.int64), 5)
    with pytest.raises(TypeError, match=r"^layer_norm: all arrays must share one dtype"):
        kernels.layer_norm(x, 5, random_array((5,), np.float64))
    with pytest.raises(TypeError, match=r"^layer_norm: expected NumPy or CuPy arrays, got list"):
        kernels.layer_norm(x, 5, [1.0] * 5)


def test_layer_norm_backward_rejects_bad_input():
    x = random_array((3, 5))
    _, mean, rstd = kernels.layer_norm(x, 5)
    with pytest.raises(ValueError, match=r"^layer_norm_backward: grad_out must have shape \(3, 5\), got \(3, 4\)"):
        kernels.layer_norm_backward(random_array((3, 4)), x, 5, mean, rstd)
    with pytest.raises(ValueError, match=r"^layer_norm_backward: mean must have shape \(3, 1\), got \(3,\)"):
        kernels.layer_norm_backward(x, x, 5, mean.reshape(3), rstd)
    with pytest.raises(ValueError, match=r"^layer_norm_backward: mean and rstd are required"):
        kernels.layer_norm_backward(x, x, 5, None, rstd)
    with pytest.raises(ValueError, match=r"^layer_norm_backward: x must have trailing shape \(3,\)"):
        kernels.layer_norm_backward(x, x, 3, mean, rstd)
    with pytest.raises(ValueError, match=r"^layer_norm_backward: weight must have shape \(5,\)"):
        kernels.layer_norm_backward(x, x, 5, mean, rstd, random_array((3,)))


def test_layer_norm_backward_into_given_gradient_arrays():
    """grad_weight_out / grad_bias_out receive those gradients and are returned; refused without the vector."""
    x, grad_out = random_array((5, 2, 3), np.float64, seed=80), random_array((5, 2, 3), np.float64, seed=81)
    weight, bias = random_array((2, 3), np.float64, seed=82), random_array((2, 3), np.float64, seed=83)
    _, mean, rstd = kernels.layer_norm(x, (2, 3), weight, bias)
    expected = kernels.layer_norm_backward(grad_out, x, (2, 3), mean, rstd, weight, bias)
    outs = np.full((2, 3), np.nan), np.full((2, 3), np.nan)
    given = kernels.layer_norm_backward(grad_out, x, (2, 3), mean, rstd, weight, bias, grad_weight_out=outs[0],
                                        grad_bias_out=outs[1])
    assert given[1] is outs[0] and given[2] is outs[1]
    for value, wanted in zip(given, expected):
        np.testing.assert_array_equal(value, wanted)
    with pytest.raises(ValueError, match="layer_norm_backward: grad_bias_out was given, but without a bias"):
        kernels.layer_norm_backward(grad_out, x, (2, 3), mean, rstd, weight, None, grad_bias_out=outs[1])
    with pytest.raises(ValueError, match=r"layer_norm_backward: grad_weight_out must be \(2, 3\) float64, got \(6,\)"):
        kernels.layer_norm_backward(grad_out, x, (2, 3), mean, rstd, weight, bias, grad_weight_out=np.zeros(6))
