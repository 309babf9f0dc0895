"""Batch normalisation (CPU path) against torch.nn.functional.batch_norm and finite differences."""
import numpy as np
import pytest

import kernels
from tests.oracle import assert_close, finite_difference_gradient, random_array, torch_module

SHAPES = [(9, 5), (6, 3, 7), (3, 4, 5, 7)]


def _inputs(shape, dtype, affine, seed=0):
    channels = shape[1]
    x = random_array(shape, dtype, seed=seed, low=-2.0, high=3.0)
    weight = random_array((channels,), dtype, seed=seed + 1, low=0.5, high=1.5) if affine else None
    bias = random_array((channels,), dtype, seed=seed + 2) if affine else None
    running_mean = random_array((channels,), dtype, seed=seed + 3)
    running_var = random_array((channels,), dtype, seed=seed + 4, low=0.5, high=2.0)
    return x, weight, bias, running_mean, running_var


def _torch_batch_norm(x, weight, bias, running_mean, running_var, training, grad_out, momentum=0.1, eps=1e-5,
                      relu=False):
    """torch's output, (grad_x, grad_weight, grad_bias) and updated running stats, in float64 (relu: of
    relu(batch_norm(...)))."""
    torch = torch_module()

    def tensor(a, grad=False):
        return None if a is None else torch.tensor(a.astype(np.float64), requires_grad=grad)
    tx, tw, tb = tensor(x, True), tensor(weight, True), tensor(bias, True)
    rm, rv = tensor(running_mean), tensor(running_var)
    y = torch.nn.functional.batch_norm(tx, rm, rv, tw, tb, training=training, momentum=momentum, eps=eps)
    if relu:
        y = torch.relu(y)
    y.backward(tensor(grad_out))
    grads = [tx.grad.numpy()] + ([tw.grad.numpy(), tb.grad.numpy()] if weight is not None else [None, None])
    return y.detach().numpy(), grads, rm.numpy(), rv.numpy()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", SHAPES)
def test_batch_norm_matches_torch(shape, training, affine, dtype):
    x, weight, bias, running_mean, running_var = _inputs(shape, dtype, affine, seed=len(shape))
    grad_out = random_array(shape, dtype, seed=11)
    expected, expected_grads, expected_mean, expected_var = _torch_batch_norm(
        x, weight, bias, running_mean, running_var, training, grad_out, momentum=0.3, eps=1e-3)
    y, saved_mean, saved_invstd = kernels.batch_norm(x, weight, bias, running_mean, running_var, training,
                                                     momentum=0.3, eps=1e-3)
    assert y.dtype == dtype and y.shape == shape
    assert_close(y, expected, dtype, scale=4, name="y")
    assert_close(running_mean, expected_mean, dtype, name="running_mean")
    assert_close(running_var, expected_var, dtype, name="running_var")
    grads = kernels.batch_norm_backward(grad_out, x, weight, saved_mean, saved_invstd, training=training)
    for name, actual, reference in zip(("grad_x", "grad_weight", "grad_bias"), grads, expected_grads):
        if reference is None:
            assert actual is None, name
        else:
            assert_close(actual, reference, dtype, scale=8, name=name)


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(9, 5), (3, 4, 5, 7)])
def test_batch_norm_with_relu_matches_torch(shape, training, affine):
    # relu(batch_norm(x)) in one op; its backward takes the output for ReLU's mask (about half the values
    # are clamped: x is centred by the normalisation)
    x, weight, bias, running_mean, running_var = _inputs(shape, np.float32, affine, seed=5)
    grad_out = random_array(shape, np.float32, seed=12)
    expected, expected_grads, expected_mean, expected_var = _torch_batch_norm(
        x, weight, bias, running_mean, running_var, training, grad_out, relu=True)
    y, mean, invstd = kernels.batch_norm(x, weight, bias, running_mean, running_var, training, activation="relu")
    assert_close(y, expected, np.float32, scale=4, name="y")
    assert 0.2 < np.mean(y == 0) < 0.8
    assert_close(running_mean, expected_mean, np.float32, name="running_mean")
    assert_close(running_var, expected_var, np.float32, name="running_var")
    grads = kernels.batch_norm_backward(grad_out, x, weight, mean, invstd, training=training, output=y)
    for name, actual, reference in zip(("grad_x", "grad_weight", "grad_bias"), grads, expected_grads):
        if reference is None:
            assert actual is None, name
        else:
            assert_close(actual, reference, np.float32, scale=8, name=name)


def test_batch_norm_with_relu_keeps_nan_and_gradients_by_finite_differences():
    x, weight, bias, running_mean, running_var = _inputs((5, 2, 3), np.float64, True, seed=9)
    projection = random_array(x.shape, np.float64, seed=10)

    def loss():
        y, _, _ = kernels.batch_norm(x, weight, bias, running_mean.copy(), running_var.copy(), True,
                                     activation="relu")
        return float((y * projection).sum())
    y, mean, invstd = kernels.batch_norm(x, weight, bias, running_mean.copy(), running_var.copy(), True,
                                         activation="relu")
    grads = kernels.batch_norm_backward(projection, x, weight, mean, invstd, True, output=y)
    for analytic, variable in zip(grads, (x, weight, bias)):
        assert_close(analytic, finite_difference_gradient(loss, variable), rtol=1e-6, atol=1e-8)
    x[0, 0, 0] = np.nan
    y, _, _ = kernels.batch_norm(x, None, None, running_mean, running_var, False, activation="relu")
    assert np.isnan(y[0, 0, 0]) and np.all(y[~np.isnan(x)] >= 0)


def test_batch_norm_with_relu_passes_nan_and_inf_as_torch_in_eval():
    x, weight, bias, running_mean, running_var = _inputs((4, 3, 5), np.float64, True, seed=13)
    x[0, 0, 0], x[1, 1, 1], x[2, 2, 2] = np.nan, np.inf, -np.inf
    grad_out = random_array(x.shape, np.float64, seed=14)
    expected, expected_grads, _, _ = _torch_batch_norm(x, weight, bias, running_mean, running_var, False, grad_out,
                                                       relu=True)
    y, mean, invstd = kernels.batch_norm(x, weight, bias, running_mean, running_var, False, activation="relu")
    np.testing.assert_array_equal(np.isnan(y), np.isnan(expected))
    assert_close(y, expected, np.float64)
    with np.errstate(invalid="ignore"):   # (inf * 0 in grad_weight's sum: NaN, as torch's)
        grads = kernels.batch_norm_backward(grad_out, x, weight, mean, invstd, False, output=y)
    for name, actual, reference in zip(("grad_x", "grad_weight", "grad_bias"), grads, expected_grads):
        assert_close(actual, reference, np.float64, name=name)   # (NaN where torch has NaN: equal)


def test_saved_statistics():
    x, _, _, running_mean, running_var = _inputs((5, 3, 4), np.float64, False)
    _, mean, invstd = kernels.batch_norm(x, None, None, None, None, True, eps=1e-4)
    assert_close(mean, x.mean(axis=(0, 2)), np.float64)
    assert_close(invstd, 1 / np.sqrt(x.var(axis=(0, 2)) + 1e-4), np.float64)
    _, mean, invstd = kernels.batch_norm(x, None, None, running_mean, running_var, False, eps=1e-4)
    assert_close(mean, running_mean, np.float64)
    assert_close(invstd, 1 / np.sqrt(running_var + 1e-4), np.float64)


def test_training_without_running_stats_and_non_contiguous_input():
    torch = torch_module()
    storage = random_array((4, 6, 10), np.float64, seed=5)
    x = storage.transpose(0, 2, 1)[:, ::2]   # (4, 5, 6) strided
    y, _, _ = kernels.batch_norm(x, None, None, None, None, True)
    expected = torch.nn.functional.batch_norm(torch.tensor(x), None, None, training=True).numpy()
    assert_close(y, expected, np.float64)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(5, 2), (3, 2, 2, 3)])
def test_batch_norm_gradients_by_finite_differences(shape, training):
    x, weight, bias, running_mean, running_var = _inputs(shape, np.float64, True, seed=7)
    projection = random_array(shape, np.float64, seed=8)

    def loss():
        # Fresh copies of the running stats: the forward must not drift while differencing.
        y, _, _ = kernels.batch_norm(x, weight, bias, running_mean.copy(), running_var.copy(), training)
        return float((y * projection).sum())
    _, mean, invstd = kernels.batch_norm(x, weight, bias, running_mean.copy(), running_var.copy(), training)
    grad_x, grad_weight, grad_bias = kernels.batch_norm_backward(projection, x, weight, mean, invstd, training)
    for analytic, variable in ((grad_x, x), (grad_weight, weight), (grad_bias, bias)):
        assert_close(analytic, finite_difference_gradient(loss, variable), rtol=1e-6, atol=1e-8)


def test_batch_norm_backward_into_given_gradient_arrays():
    x, grad_out = random_array((4, 3, 5), np.float64, seed=7), random_array((4, 3, 5), np.float64, seed=8)
    weight, bias = random_array((3,), np.float64, seed=9), random_array((3,), np.float64, seed=10)
    _, mean, invstd = kernels.batch_norm(x, weight, bias, None, None, True)
    expected = kernels.batch_norm_backward(grad_out, x, weight, mean, invstd)
    outs = np.full(3, np.nan), np.full(3, np.nan)
    given = kernels.batch_norm_backward(grad_out, x, weight, mean, invstd, grad_weight_out=outs[0],
                                        grad_bias_out=outs[1])
    assert given[1] is outs[0] and given[2] is outs[1]
    for actual, wanted in zip(given, expected):
        np.testing.assert_array_equal(actual, wanted)
    with pytest.raises(ValueError, match="batch_norm_backward: grad_weight_out was given, but without a weight"):
        kernels.batch_norm_backward(grad_out, x, None, mean, invstd, grad_weight_out=outs[0])
    with pytest.raises(ValueError, match=r"batch_norm_backward: grad_bias_out must be \(3,\) float64, got \(3,\) float32"):
        kernels.batch_norm_backward(grad_out, x, weight, mean, invstd, grad_bias_out=np.zeros(3, np.float32))


def test_batch_norm_rejects_bad_input():
    x = random_array((4, 3, 5))
    c = np.ones(3, np.float32)
    with pytest.raises(ValueError, match=r"batch_norm: x must be 2-D or 3-D or 4-D, got shape \(4,\)"):
        kernels.batch_norm(np.ones(4, np.float32), None, None, None, None, True)
    with pytest.raises(ValueError, match=r"batch_norm: weight must have shape \(3,\), got \(4,\)"):
        kernels.batch_norm(x, np.ones(4, np.float32), None, None, None, True)
    with pytest.raises(ValueError, match="batch_norm: training needs more than 1 value per channel"):
        kernels.batch_norm(np.ones((1, 3), np.float32), None, None, None, None, True)
    with pytest.raises(ValueError, match="batch_norm: eval mode .* needs running_mean and running_var"):
        kernels.batch_norm(x, None, None, c, None, False)
    with pytest.raises(TypeError, match="batch_norm: all arrays must share one dtype"):
        kernels.batch_norm(x, np.ones(3), None, None, None, True)
    with pytest.raises(TypeError, match="batch_norm: x must be float32 or float64"):
        kernels.batch_norm(np.ones((4, 3), np.int64), None, None, None, None, True)
    with pytest.raises(ValueError, match="batch_norm: eps must be a positive number"):
        kernels.batch_norm(x, None, None, None, None, True, eps=0.0)
    with pytest.raises(ValueError, match="batch_norm: momentum must be a number in"):
        kernels.batch_norm(x, None, None, None, None, True, momentum=2.0)
    with pytest.raises(ValueError, match="batch_norm_backward: grad_out must have shape"):
        kernels.batch_norm_backward(np.ones((4, 3), np.float32), x, None, c, c)
    with pytest.raises(ValueError, match=r"batch_norm_backward: saved_invstd must have shape \(3,\)"):
        kernels.batch_norm_backward(x, x, None, c, np.ones(2, np.float32))
    with pytest.raises(ValueError, match=r"batch_norm: activation must be one of \(None, 'relu'\), got 'tanh'"):
        kernels.batch_norm(x, None, None, None, None, True, activation="tanh")
    with pytest.raises(ValueError, match=r"batch_norm_backward: output must have shape \(4, 3, 5\), got \(4, 3\)"):
        kernels.batch_norm_backward(x, x, None, c, c, output=x[:, :, 0])
    with pytest.raises(TypeError, match="batch_norm_backward: all arrays must share one dtype"):
        kernels.batch_norm_backward(x, x, None, c, c, output=x.astype(np.float64))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("affine", [True, False])
def test_cpu_fused_relu_equals_the_separate_passes(affine, dtype):
    # kernels.cpu.norm's relu= (forward) and output= (backward) do ReLU and its mask inside the batch norm's own
    # loops; the result must be exactly relu(normalise(...)) and batch_norm_backward(relu_backward(grad, y), ...)
    from kernels.cpu import norm as cpu, pointwise
    x, weight, bias, _, _ = _inputs((4, 3, 5), dtype, affine, seed=21)
    x[0, 0, 0], x[1, 1, 1] = np.nan, -np.inf
    x3 = x.transpose(0, 2, 1).copy().transpose(0, 2, 1)   # (non-contiguous strides)
    grad3 = random_array(x.shape, dtype, seed=22)
    mean, _, invstd = cpu.batch_norm_statistics(np.nan_to_num(x3, posinf=0.0, neginf=0.0), 1e-5)
    y = cpu.normalise(x3, mean, invstd, weight, bias, relu=True)
    np.testing.assert_array_equal(y, pointwise.relu(cpu.normalise(x3, mean, invstd, weight, bias)))
    assert np.isnan(y[0, 0, 0]) and 0.2 < np.mean(y == 0) < 0.8
    for training in (True, False):
        with np.errstate(invalid="ignore"):
            fused = cpu.batch_norm_backward(grad3, x3, weight, mean, invstd, training, output=y)
            separate = cpu.batch_norm_backward(pointwise.relu_backward(grad3, y), x3, weight, mean, invstd, training)
        for actual, expected in zip(fused, separate):
            np.testing.assert_array_equal(actual, expected)


def test_float32_statistics_are_summed_in_float64():
    """The CPU batch statistics of float32 data are float64 sums rounded once: with a mean of 1000 and a
    spread of 0.01 the variance (and the running variance made from it) is within 4 ulp of float64's,
    where float32 partial sums put the mean 1e-4 off and the variance 1e-4 (relative) off."""
    rng = np.random.default_rng(3)
    x = (1000.0 + 0.01 * rng.standard_normal((8, 3, 500))).astype(np.float32)
    running_mean, running_var = np.zeros(3, np.float32), np.ones(3, np.float32)
    _, mean, invstd = kernels.batch_norm(x, None, None, running_mean, running_var, True, momentum=1.0, eps=1e-12)
    exact = x.astype(np.float64)
    exact_mean, exact_var = exact.mean(axis=(0, 2)), exact.var(axis=(0, 2))
    assert np.all(np.abs(mean - exact_mean) <= np.spacing(np.float32(1000.0)))
    unbiased = exact_var * x[:, 0].size / (x[:, 0].size - 1)
    assert np.all(np.abs(running_var - unbiased) <= 4 * np.spacing(unbiased.astype(np.float32)))
    assert_close(invstd.astype(np.float64), 1.0 / np.sqrt(exact_var + 1e-12), rtol=1e-6, atol=0.0, name="invstd")
