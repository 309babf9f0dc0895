"""Loss forms of torch 2.13 beyond the basics, against torch: cross_entropy with class-probability targets and
unbatched logits, mse_loss / l1_loss with weight=, and the nan results torch gives silently (the tests marked
filterwarnings turn NumPy's RuntimeWarnings into errors)."""
import numpy as np
import pytest

import nn
from nn import functional as F
from tests.oracle import assert_close, random_array, torch_module

CLASS_WEIGHT = [0.5, 2.0, 1.0, 1.5]


def _compare(ours_fn, theirs_fn, inputs, dtype, differentiable_target=True):
    """Forward and backward (a random upstream gradient) of ours_fn(x, t) against theirs_fn on inputs (x, t)."""
    torch = torch_module()
    x, t = (a.astype(dtype) if a.dtype.kind == "f" else a for a in inputs)   # (class indices stay integers)
    ours_x, ours_t = nn.Tensor(x.copy(), requires_grad=True), nn.Tensor(t.copy(), requires_grad=differentiable_target)
    theirs_x = torch.tensor(x.copy(), requires_grad=True)
    theirs_t = torch.tensor(t.copy(), requires_grad=differentiable_target)
    value, expected = ours_fn(ours_x, ours_t), theirs_fn(theirs_x, theirs_t)
    assert value.shape == tuple(expected.shape) and value.dtype == dtype
    assert_close(value.data, expected.detach().numpy(), dtype, scale=4)
    grad = random_array(value.shape, dtype, seed=9, low=0.5, high=1.5)
    value.backward(grad)
    expected.backward(torch.tensor(grad))
    assert_close(ours_x.grad.data, theirs_x.grad.numpy(), dtype, scale=4, name="grad of input")
    if differentiable_target:
        assert_close(ours_t.grad.data, theirs_t.grad.numpy(), dtype, scale=4, name="grad of target")


def _probabilities(shape, seed):
    """Class probabilities along dim 1 (dim 0 when unbatched)."""
    class_dim = 0 if len(shape) == 1 else 1
    p = random_array(shape, np.float64, seed=seed, low=0.05, high=1.0)
    return p / p.sum(axis=class_dim, keepdims=True)


# ---- cross_entropy with class probabilities -----------------------------------------------------

@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.3])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("shape", [(5, 4), (2, 4, 3, 2), (4,)], ids=str)
def test_cross_entropy_with_class_probabilities_matches_torch(shape, weighted, label_smoothing, reduction, dtype):
    torch = torch_module()
    options = dict(reduction=reduction, label_smoothing=label_smoothing)
    ours_options = dict(options, weight=np.array(CLASS_WEIGHT, dtype) if weighted else None)
    theirs_options = dict(options, weight=torch.tensor(CLASS_WEIGHT, dtype=torch.float64 if dtype == np.float64
                                                       else torch.float32) if weighted else None)
    inputs = random_array(shape, np.float64, seed=1, low=-3, high=3), _probabilities(shape, seed=2)
    _compare(lambda x, t: F.cross_entropy(x, t, **ours_options),
             lambda x, t: torch.nn.functional.cross_entropy(x, t, **theirs_options), inputs, dtype)


def test_cross_entropy_loss_module_takes_class_probabilities_and_raw_arrays():
    torch = torch_module()
    logits, target = random_array((6, 4), np.float64, seed=3, low=-3, high=3), _probabilities((6, 4), seed=4)
    ours = nn.CrossEntropyLoss(weight=CLASS_WEIGHT, label_smoothing=0.2)(nn.Tensor(logits), target)
    theirs = torch.nn.CrossEntropyLoss(weight=torch.tensor(CLASS_WEIGHT, dtype=torch.float64), label_smoothing=0.2)(
        torch.tensor(logits), torch.tensor(target))
    assert_close(ours.data, theirs.numpy(), np.float64)


def test_cross_entropy_with_class_probabilities_of_an_empty_batch_is_nan_for_mean():
    x = nn.Tensor(np.zeros((0, 4)), requires_grad=True)
    assert np.isnan(F.cross_entropy(x, np.zeros((0, 4))).item())
    assert F.cross_entropy(x, np.zeros((0, 4)), reduction="none").shape == (0,)


def test_cross_entropy_with_class_probabilities_bad_arguments():
    x = nn.Tensor(random_array((3, 4), np.float64))
    probabilities = _probabilities((3, 4), seed=5)
    with pytest.raises(ValueError, match="cross_entropy: ignore_index does not apply to class-probability targets"):
        F.cross_entropy(x, probabilities, ignore_index=1)
    with pytest.raises(TypeError, match=r"cross_entropy: a target of the logits' shape \(3, 4\) holds class "
                                        r"probabilities and must be floating, got int64"):
        F.cross_entropy(x, np.zeros((3, 4), np.int64))
    with pytest.raises(ValueError, match=r"cross_entropy: weight must have shape \(4,\), got \(3,\)"):
        F.cross_entropy(x, probabilities, weight=np.ones(3))
    with pytest.raises(ValueError, match="cross_entropy: label_smoothing must be a number in"):
        F.cross_entropy(x, probabilities, label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"cross_entropy: expected logits .* got logits of shape \(3, 4\) and "
                                         r"target of shape \(3, 5\)"):
        F.cross_entropy(x, np.zeros((3, 5), np.int64))


# ---- cross_entropy with unbatched class indices -------------------------------------------------

@pytest.mark.parametrize("options", [dict(), dict(reduction="none"), dict(reduction="sum"),
                                     dict(weight=CLASS_WEIGHT, label_smoothing=0.3)], ids=str)
def test_cross_entropy_unbatched_class_index_matches_torch(options):
    torch = torch_module()
    ours_options = {k: np.array(v) if k == "weight" else v for k, v in options.items()}
    theirs_options = {k: torch.tensor(v, dtype=torch.float64) if k == "weight" else v for k, v in options.items()}
    inputs = random_array((4,), np.float64, seed=6, low=-3, high=3), np.array(2)
    _compare(lambda x, t: F.cross_entropy(x, t, **ours_options),
             lambda x, t: torch.nn.functional.cross_entropy(x, t, **theirs_options), inputs, np.float64,
             differentiable_target=False)


def test_cross_entropy_unbatched_ignored_class_is_nan_like_torch():
    assert np.isnan(F.cross_entropy(nn.Tensor(random_array((4,), np.float64)), np.array(-100)).item())


# ---- nan as torch gives it, without NumPy warnings ----------------------------------------------

@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_cross_entropy_infinite_logits_give_torchs_nan_silently(label_smoothing):
    torch = torch_module()
    logits, target = np.array([[0.0, np.inf, 1.0], [0.0, -np.inf, 2.0]]), np.array([0, 2])
    x = nn.Tensor(logits.copy(), requires_grad=True)
    loss = F.cross_entropy(x, target, reduction="none", label_smoothing=label_smoothing)
    loss.sum().backward()
    x_t = torch.tensor(logits, requires_grad=True)
    loss_t = torch.nn.functional.cross_entropy(x_t, torch.tensor(target), reduction="none",
                                               label_smoothing=label_smoothing)
    loss_t.sum().backward()
    assert_close(loss.numpy(), loss_t.detach().numpy(), np.float64)   # (nan where torch has nan)
    assert_close(x.grad.numpy(), x_t.grad.numpy(), np.float64)


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_cross_entropy_backward_with_zero_total_weight_is_nan_silently_like_torch():
    torch = torch_module()
    x = nn.Tensor(np.zeros((2, 3)), requires_grad=True)
    F.cross_entropy(x, np.array([0, 0]), weight=np.array([0.0, 1.0, 1.0])).backward()
    x_t = torch.zeros((2, 3), dtype=torch.float64, requires_grad=True)
    torch.nn.functional.cross_entropy(x_t, torch.tensor([0, 0]),
                                      weight=torch.tensor([0.0, 1.0, 1.0], dtype=torch.float64)).backward()
    np.testing.assert_array_equal(x.grad.numpy(), x_t.grad.numpy())


# ---- mse_loss and l1_loss with weight= ----------------------------------------------------------

@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name", ["mse_loss", "l1_loss"])
def test_weighted_mse_and_l1_losses_match_torch(name, reduction):
    """torch 2.13's weight=: one weight per element, and 'mean' divides by the weights' sum."""
    torch = torch_module()
    weight = random_array((4, 3), np.float64, seed=7, low=0.1, high=2.0)
    inputs = random_array((4, 3), np.float64, seed=1), random_array((4, 3), np.float64, seed=2)
    _compare(lambda x, t: getattr(F, name)(x, t, reduction=reduction, weight=weight),
             lambda x, t: getattr(torch.nn.functional, name)(x, t, reduction=reduction, weight=torch.tensor(weight)),
             inputs, np.float64)


def test_a_weight_tensor_of_mse_loss_gets_a_gradient_like_torch():
    torch = torch_module()
    a, b = random_array((3, 2), np.float64, seed=1), random_array((3, 2), np.float64, seed=2)
    w = random_array((3, 2), np.float64, seed=3, low=0.5, high=1.5)
    weight, weight_t = nn.Tensor(w.copy(), requires_grad=True), torch.tensor(w.copy(), requires_grad=True)
    F.mse_loss(nn.Tensor(a), nn.Tensor(b), weight=weight).backward()
    torch.nn.functional.mse_loss(torch.tensor(a), torch.tensor(b), weight=weight_t).backward()
    assert_close(weight.grad.data, weight_t.grad.numpy(), np.float64)


@pytest.mark.parametrize("name", ["mse_loss", "l1_loss"])
def test_weighted_losses_name_a_weight_of_another_shape(name):
    x = nn.Tensor(random_array((4, 3), np.float64))
    with pytest.raises(ValueError, match=rf"{name}: weight must have shape \(4, 3\), got \(3,\)"):
        getattr(F, name)(x, np.zeros((4, 3)), weight=np.ones(3))
    with pytest.raises(ValueError, match=rf"{name}: weight must have shape \(4, 3\), got \(4, 1\)"):
        getattr(F, name)(x, np.zeros((4, 3)), weight=nn.Tensor(np.ones((4, 1))))
