"""CPU path of reduce_sum, softmax, log_softmax and cross_entropy against PyTorch (float64) and
finite differences."""
import numpy as np
import pytest

import kernels
from tests.oracle import (assert_close, finite_difference_gradient, random_array, torch_module,
                          torch_reference)

AXES_CASES = [
    ((7,), None), ((7,), 0), ((5, 3), 0), ((5, 3), 1), ((5, 3), -1), ((5, 3), (0, 1)),
    ((4, 3, 5, 6), (0, 2, 3)), ((4, 3, 5, 6), (1,)), ((4, 3, 5, 6), (-1, -2)), ((4, 3, 5, 6), (0, 3)),
    ((4, 3, 5, 6), (1, 3)), ((2, 3, 4, 5, 3), (0, 2, 4)), ((3, 33, 2), None), ((4, 3, 5), ()),
]


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,axis", AXES_CASES)
def test_reduce_sum_matches_torch(shape, axis, dtype, keepdims):
    torch = torch_module()
    x = random_array(shape, dtype, seed=21)
    dims = tuple(range(len(shape))) if axis is None else axis
    out = kernels.reduce_sum(x, axis=axis, keepdims=keepdims)
    if dims == ():  # torch.sum reads dim=() as "all dims"; numpy (and we) read it as "none"
        expected = x.astype(np.float64)
    else:
        expected = torch.sum(torch.tensor(x, dtype=torch.float64), dim=dims, keepdim=keepdims).numpy()
    assert isinstance(out, np.ndarray) and out.dtype == dtype
    assert_close(out, expected, dtype, scale=4)


def test_reduce_sum_of_a_long_float32_vector_is_accurate():
    x = random_array((1_000_003,), np.float32, seed=22, low=0.0, high=1.0)
    total = kernels.reduce_sum(x)
    assert total.shape == ()
    assert abs(float(total) - x.astype(np.float64).sum()) < 1e-5 * x.size ** 0.5 * 10


def test_reduce_sum_handles_non_contiguous_input():
    x = random_array((6, 5, 4), seed=23).transpose(2, 0, 1)
    assert_close(kernels.reduce_sum(x, axis=(0, 2)), x.astype(np.float64).sum(axis=(0, 2)), np.float32)


@pytest.mark.parametrize("axis, keepdims", [(0, False), ((0, 2), True), (None, False)])
def test_reduce_sum_into_out(axis, keepdims):
    x = random_array((4, 3, 5), np.float64, seed=24)
    expected = x.sum(axis=axis, keepdims=keepdims)
    out = np.full(np.shape(expected), np.nan)
    assert kernels.reduce_sum(x, axis=axis, keepdims=keepdims, out=out) is out
    assert_close(out, expected, np.float64)


def test_reduce_sum_rejects_bad_input():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"reduce_sum: out must be \(3,\) float32, got \(2,\) float32"):
        kernels.reduce_sum(x, axis=0, out=np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="reduce_sum: out must be C-contiguous"):
        kernels.reduce_sum(x, axis=0, out=np.zeros((3, 2), np.float32)[:, 0])
    with pytest.raises(ValueError, match="reduce_sum: axis 2 is out of range for an array of 2 dims"):
        kernels.reduce_sum(x, axis=2)
    with pytest.raises(ValueError, match="reduce_sum: axis has repeated entries"):
        kernels.reduce_sum(x, axis=(1, -1))
    with pytest.raises(TypeError, match="reduce_sum: axis must be None, an int or a tuple of ints"):
        kernels.reduce_sum(x, axis=1.0)
    with pytest.raises(TypeError, match="reduce_sum: x must be float32 or float64"):
        kernels.reduce_sum(np.arange(3))


SOFTMAX_CASES = [((7,), -1), ((5, 13), -1), ((5, 13), 0), ((3, 4, 5), 1), ((2, 3, 4, 5), -1), ((2, 3, 4, 5), 0),
                 ((3, 1), 1)]


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,dim", SOFTMAX_CASES)
def test_softmax_matches_torch(shape, dim, dtype, log):
    torch = torch_module()
    forward = kernels.log_softmax if log else kernels.softmax
    backward = kernels.log_softmax_backward if log else kernels.softmax_backward
    torch_fn = (lambda t: torch.log_softmax(t, dim)) if log else (lambda t: torch.softmax(t, dim))
    x = random_array(shape, dtype, seed=24, low=-5, high=5)
    grad_out = random_array(shape, dtype, seed=25)
    expected, (expected_grad,) = torch_reference(torch_fn, x, grad_output=grad_out)
    y = forward(x, dim=dim)
    assert y.dtype == dtype
    assert_close(y, expected, dtype)
    assert_close(backward(grad_out, y, dim=dim), expected_grad, dtype)


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("dim", [0, 1])
def test_softmax_gradient_by_finite_differences(log, dim):
    forward = kernels.log_softmax if log else kernels.softmax
    backward = kernels.log_softmax_backward if log else kernels.softmax_backward
    x = random_array((4, 5), np.float64, seed=26, low=-3, high=3)
    weights = random_array(x.shape, np.float64, seed=27)
    numeric = finite_difference_gradient(lambda: float((forward(x, dim) * weights).sum()), x)
    assert_close(backward(weights, forward(x, dim), dim), numeric, rtol=1e-6, atol=1e-8)


def test_softmax_is_stable_for_large_inputs():
    x = np.array([[1e4, -1e4, 0.0, 1e4 - 1.0], [-1e4, -1e4 + 2.0, -1e4, -1e4]], np.float32)
    torch = torch_module()
    t = torch.tensor(x, dtype=torch.float64)
    for forward, reference in ((kernels.softmax, torch.softmax), (kernels.log_softmax, torch.log_softmax)):
        y = forward(x)
        assert np.all(np.isfinite(y))
        assert_close(y, reference(t, -1).numpy(), np.float32)


def test_softmax_rejects_bad_input():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match="softmax: dim 2 is out of range"):
        kernels.softmax(x, dim=2)
    with pytest.raises(TypeError, match="log_softmax: dim must be an int"):
        kernels.log_softmax(x, dim=None)
    with pytest.raises(ValueError, match="softmax_backward: grad_out must have shape"):
        kernels.softmax_backward(np.ones((3, 2), np.float32), x)
    with pytest.raises(TypeError, match="log_softmax_backward: grad_out must be float32 or float64"):
        kernels.log_softmax_backward(np.ones((2, 3), np.int32), x)
    with pytest.raises(ValueError, match="softmax: input must have at least 1 dim"):
        kernels.softmax(np.ones((), np.float32))


# ---- cross-entropy ------------------------------------------------------------------------------

def _torch_cross_entropy(weight, ignore_index, label_smoothing, reduction):
    torch = torch_module()

    def fn(logits, target):
        w = None if weight is None else torch.tensor(weight, dtype=torch.float64)
        return torch.nn.functional.cross_entropy(logits, target, weight=w, ignore_index=ignore_index,
                                                 label_smoothing=label_smoothing, reduction=reduction)
    return fn


def _problem(n, classes, dtype, seed, scale=3.0, ignore_index=-100, ignored_rows=()):
    rng = np.random.default_rng(seed)
    logits = random_array((n, classes), dtype, seed=seed, low=-scale, high=scale)
    target = rng.integers(0, classes, size=n).astype(np.int64)
    target[list(ignored_rows)] = ignore_index
    return logits, target


CE_OPTIONS = [
    dict(),
    dict(reduction="sum"),
    dict(reduction="none"),
    dict(weighted=True),
    dict(weighted=True, reduction="sum"),
    dict(weighted=True, reduction="none"),
    dict(ignored=True),
    dict(ignored=True, weighted=True),
    dict(ignored=True, ignore_index=2, weighted=True, reduction="none"),
    dict(label_smoothing=0.1),
    dict(label_smoothing=0.2, weighted=True),
    dict(label_smoothing=0.3, weighted=True, ignored=True),
    dict(label_smoothing=0.25, weighted=True, ignored=True, reduction="sum"),
    dict(label_smoothing=0.15, ignored=True, reduction="none"),
    dict(label_smoothing=1.0, weighted=True),
]


def _ce_case(options, dtype, n=9, classes=7, seed=31, scale=3.0):
    ignore_index = options.get("ignore_index", -100)
    ignored_rows = (1, 4) if options.get("ignored") else ()
    logits, target = _problem(n, classes, dtype, seed, scale, ignore_index, ignored_rows)
    if ignore_index >= 0 and ignored_rows:
        # an in-range ignore_index: rows holding that class are ignored too
        target[target == ignore_index] = ignore_index
    weight = random_array((classes,), dtype, seed=seed + 1, low=0.2, high=2.0) if options.get("weighted") else None
    kwargs = dict(weight=weight, ignore_index=ignore_index, label_smoothing=options.get("label_smoothing", 0.0),
                  reduction=options.get("reduction", "mean"))
    return logits, target, kwargs


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", CE_OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "plain")
def test_cross_entropy_matches_torch(options, dtype):
    logits, target, kwargs = _ce_case(options, dtype)
    reduction = kwargs["reduction"]
    grad_loss = random_array((logits.shape[0],) if reduction == "none" else (), dtype, seed=33, low=0.5, high=2)
    torch_fn = _torch_cross_entropy(kwargs["weight"], kwargs["ignore_index"], kwargs["label_smoothing"], reduction)
    expected, (expected_grad,) = torch_reference(torch_fn, logits, target, grad_output=grad_loss, grad_of=[0])
    loss = kernels.cross_entropy(logits, target, **kwargs)
    assert loss.shape == expected.shape and loss.dtype == dtype
    assert_close(loss, expected, dtype)
    assert_close(kernels.cross_entropy_backward(grad_loss, logits, target, **kwargs), expected_grad, dtype)


@pytest.mark.parametrize("options", [dict(), dict(label_smoothing=0.2, weighted=True, ignored=True),
                                     dict(label_smoothing=0.1, reduction="none"), dict(weighted=True, reduction="sum")])
def test_cross_entropy_gradient_by_finite_differences(options):
    logits, target, kwargs = _ce_case(options, np.float64, n=5, classes=4, seed=34)
    grad_loss = random_array((5,) if kwargs["reduction"] == "none" else (), np.float64, seed=35, low=0.5, high=2)
    numeric = finite_difference_gradient(
        lambda: float((kernels.cross_entropy(logits, target, **kwargs) * grad_loss).sum()), logits)
    assert_close(kernels.cross_entropy_backward(grad_loss, logits, target, **kwargs), numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("options", [dict(), dict(label_smoothing=0.1, weighted=True),
                                     dict(label_smoothing=0.2, reduction="none")])
def test_cross_entropy_is_stable_for_logits_of_magnitude_1e4(options):
    logits, target, kwargs = _ce_case(options, np.float32, n=8, classes=6, seed=36, scale=1e4)
    logits[0, target[0]] = 1e4  # one row where the target wins by a mile, as in a confident model
    reduction = kwargs["reduction"]
    grad_loss = np.ones((8,) if reduction == "none" else (), np.float32)
    torch_fn = _torch_cross_entropy(kwargs["weight"], kwargs["ignore_index"], kwargs["label_smoothing"], reduction)
    expected, (expected_grad,) = torch_reference(torch_fn, logits, target, grad_output=grad_loss, grad_of=[0])
    loss = kernels.cross_entropy(logits, target, **kwargs)
    grad = kernels.cross_entropy_backward(grad_loss, logits, target, **kwargs)
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
    # losses are of size 1e4: float32 carries about 7 digits of them
    assert_close(loss, expected, rtol=1e-5, atol=1e-3)
    assert_close(grad, expected_grad, np.float32)


def test_cross_entropy_accepts_python_float_grad_and_int32_targets():
    logits, target = _problem(6, 5, np.float64, seed=37)
    expected = kernels.cross_entropy_backward(np.asarray(2.0), logits, target)
    assert_close(kernels.cross_entropy_backward(2.0, logits, target.astype(np.int32)), expected, np.float64)
    assert_close(kernels.cross_entropy(logits, target.astype(np.int32)), kernels.cross_entropy(logits, target),
                 np.float64)


def test_cross_entropy_of_all_ignored_rows_is_nan_like_torch():
    logits, target = _problem(3, 4, np.float64, seed=38)
    target[:] = -100
    assert np.isnan(kernels.cross_entropy(logits, target))
    assert float(kernels.cross_entropy(logits, target, reduction="sum")) == 0.0


def test_cross_entropy_rejects_bad_input():
    logits, target = _problem(4, 3, np.float32, seed=39)
    bad = target.copy()
    bad[2] = 3
    with pytest.raises(ValueError, match=r"cross_entropy: target holds a class index outside \[0, 3\)"):
        kernels.cross_entropy(logits, bad)
    bad[2] = -1
    with pytest.raises(ValueError, match="cross_entropy_backward: target holds a class index outside"):
        kernels.cross_entropy_backward(np.float32(1.0), logits, bad)
    # check_targets=False spares only the GPU's device-to-host wait: the CPU path still checks
    with pytest.raises(ValueError, match="cross_entropy_backward: target holds a class index outside"):
        kernels.cross_entropy_backward(np.float32(1.0), logits, bad, check_targets=False)
    with pytest.raises(ValueError, match="cross_entropy: logits must be 2-D"):
        kernels.cross_entropy(logits[0], target[:1])
    with pytest.raises(TypeError, match="cross_entropy: target must be an integer array"):
        kernels.cross_entropy(logits, target.astype(np.float32))
    with pytest.raises(ValueError, match=r"cross_entropy: target must have shape \(4,\)"):
        kernels.cross_entropy(logits, target[:3])
    with pytest.raises(ValueError, match=r"cross_entropy: weight must have shape \(3,\)"):
        kernels.cross_entropy(logits, target, weight=np.ones(4, np.float32))
    with pytest.raises(ValueError, match="cross_entropy: reduction must be one of"):
        kernels.cross_entropy(logits, target, reduction="avg")
    with pytest.raises(ValueError, match=r"cross_entropy: label_smoothing must be a number in \[0, 1\]"):
        kernels.cross_entropy(logits, target, label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"cross_entropy_backward: grad_loss must have shape \(4,\)"):
        kernels.cross_entropy_backward(np.float32(1.0), logits, target, reduction="none")
    with pytest.raises(TypeError, match="cross_entropy: all arrays must share one dtype"):
        kernels.cross_entropy(logits, target, weight=np.ones(3, np.float64))
