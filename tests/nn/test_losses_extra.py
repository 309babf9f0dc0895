"""NLLLoss, BCEWithLogitsLoss, L1Loss and SmoothL1Loss against torch.nn's (float64 on the CPU path), finite
differences for the weighted gradients, and the errors for bad arguments."""
import numpy as np
import pytest

import nn
from nn import functional as F
from tests.oracle import assert_close, finite_difference_gradient, random_array, torch_module

CLASS_WEIGHT = [0.5, 2.0, 1.0, 1.5, 0.25]


def _torch_options(torch, options):
    return {k: torch.tensor(v, dtype=torch.float64) if k in ("weight", "pos_weight") else v
            for k, v in options.items()}


def _numpy_options(options):
    return {k: np.array(v, np.float64) if k in ("weight", "pos_weight") else v for k, v in options.items()}


def _compare(ours, theirs, inputs, target, differentiable_target=False):
    """Forward and backward (a random upstream gradient) of a loss module against torch's, float64."""
    torch = torch_module()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    x = nn.Tensor(inputs.copy(), requires_grad=True)
    y = torch.tensor(inputs.copy(), requires_grad=True)
    if differentiable_target:
        t, u = nn.Tensor(target.copy(), requires_grad=True), torch.tensor(target.copy(), requires_grad=True)
    else:
        t, u = target, torch.tensor(target)
    value, expected = ours(x, t), theirs(y, u)
    assert value.shape == tuple(expected.shape)
    assert_close(value.data, expected.detach().numpy(), np.float64)
    grad = random_array(value.shape, np.float64, seed=9, low=0.5, high=1.5)
    value.backward(grad)
    expected.backward(torch.tensor(grad))
    assert_close(x.grad.data, y.grad.numpy(), np.float64, name="grad of input")
    if differentiable_target:
        assert_close(t.grad.data, u.grad.numpy(), np.float64, name="grad of target")


# ---- NLLLoss ------------------------------------------------------------------------------------

NLL_OPTIONS = [dict(), dict(reduction="sum"), dict(reduction="none"), dict(ignore_index=1),
               dict(weight=CLASS_WEIGHT), dict(weight=CLASS_WEIGHT, ignore_index=4),
               dict(weight=CLASS_WEIGHT, reduction="sum", ignore_index=0),
               dict(weight=CLASS_WEIGHT, reduction="none", ignore_index=2)]


@pytest.mark.parametrize("options", NLL_OPTIONS, ids=str)
@pytest.mark.parametrize("shape", [(7, 5), (3, 5, 2, 3), (5,)])
def test_nll_loss_matches_torch(options, shape):
    torch = torch_module()
    log_probs = random_array(shape, np.float64, low=-4, high=0.5)   # any values: nll does not normalise
    target_shape = shape[:1] + shape[2:] if len(shape) > 1 else ()
    target = np.random.default_rng(4).integers(0, 5, size=target_shape)
    _compare(nn.NLLLoss(**_numpy_options(options)), torch.nn.NLLLoss(**_torch_options(torch, options)),
             log_probs, target)


def test_nll_loss_of_log_softmax_is_cross_entropy():
    logits = random_array((6, 5), np.float64, seed=3, low=-2, high=2)
    target = np.array([0, 4, 2, -100, 1, 4])
    weight = np.array(CLASS_WEIGHT)
    nll = F.nll_loss(F.log_softmax(nn.Tensor(logits), dim=1), target, weight)
    assert_close(nll.data, F.cross_entropy(nn.Tensor(logits), target, weight).data, np.float64)


def test_nll_loss_weighted_gradient_by_finite_differences():
    log_probs = random_array((5, 4), np.float64, seed=5, low=-3, high=0)
    target = np.array([3, 0, -100, 3, 1])
    weight = np.array([0.7, 1.9, 0.4, 1.3])

    def loss():
        return F.nll_loss(nn.Tensor(log_probs), target, weight).item()

    x = nn.Tensor(log_probs, requires_grad=True)
    F.nll_loss(x, target, weight).backward()
    assert_close(x.grad.data, finite_difference_gradient(loss, log_probs), np.float64, rtol=1e-6, atol=1e-8)


def test_nll_loss_all_ignored_is_nan_with_zero_gradient_like_torch():
    x = nn.Tensor(random_array((3, 4), np.float64), requires_grad=True)
    with np.errstate(all="raise"):   # no NumPy warning on the way
        value = nn.NLLLoss()(x, np.full(3, -100))
        value.backward()
    assert np.isnan(value.item())
    assert np.array_equal(x.grad.data, np.zeros((3, 4)))


def test_nll_loss_float32_with_list_weight():
    torch = torch_module()
    log_probs = random_array((8, 5), np.float32, low=-3, high=0)
    target = np.random.default_rng(3).integers(0, 5, size=8)
    value = nn.NLLLoss(weight=CLASS_WEIGHT)(nn.Tensor(log_probs), nn.Tensor(target))
    expected = torch.nn.NLLLoss(weight=torch.tensor(CLASS_WEIGHT))(torch.tensor(log_probs), torch.tensor(target))
    assert value.dtype == np.float32
    assert_close(value.data, expected.numpy(), np.float32)


def test_nll_loss_bad_arguments():
    log_probs = nn.Tensor(random_array((3, 4), np.float64))
    with pytest.raises(ValueError, match="NLLLoss: reduction must be one of"):
        nn.NLLLoss(reduction="avg")
    with pytest.raises(ValueError, match="nll_loss: reduction must be one of"):
        F.nll_loss(log_probs, np.array([0, 1, 2]), reduction="avg")
    with pytest.raises(TypeError, match="nll_loss: target must be an integer Tensor or array of class indices, "
                                        "got float64"):
        F.nll_loss(log_probs, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"nll_loss: expected log-probabilities \(N, C, ...\) and target \(N, ...\), "
                                         r"got input of shape \(3, 4\) and target of shape \(2,\)"):
        F.nll_loss(log_probs, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"nll_loss: weight must have shape \(4,\), got \(3,\)"):
        F.nll_loss(log_probs, np.array([0, 1, 2]), weight=np.ones(3))
    with pytest.raises(IndexError, match=r"nll_loss: target holds a class index outside \[0, 4\) that is not "
                                         r"ignore_index \(-100\)"):
        F.nll_loss(log_probs, np.array([0, 4, 1]))
    with pytest.raises(IndexError, match="nll_loss: target holds a class index outside"):
        F.nll_loss(log_probs, np.array([0, -1, 1]))
    with pytest.raises(TypeError, match="nll_loss: ignore_index must be an int"):
        F.nll_loss(log_probs, np.array([0, 1, 2]), ignore_index=1.5)


# ---- BCEWithLogitsLoss --------------------------------------------------------------------------

BCE_OPTIONS = [dict(), dict(reduction="sum"), dict(reduction="none"), dict(weight=CLASS_WEIGHT),
               dict(pos_weight=[3.0, 0.5, 1.0, 2.0, 0.2]),
               dict(weight=[[0.3], [1.7], [0.9]], pos_weight=[3.0, 0.5, 1.0, 2.0, 0.2], reduction="none"),
               dict(weight=CLASS_WEIGHT, pos_weight=[3.0, 0.5, 1.0, 2.0, 0.2], reduction="sum")]


@pytest.mark.parametrize("options", BCE_OPTIONS, ids=str)
def test_bce_with_logits_matches_torch(options):
    torch = torch_module()
    logits = random_array((3, 5), np.float64, low=-4, high=4)
    target = random_array((3, 5), np.float64, seed=1, low=0, high=1)   # soft labels: the target's gradient too
    _compare(nn.BCEWithLogitsLoss(**_numpy_options(options)),
             torch.nn.BCEWithLogitsLoss(**_torch_options(torch, options)), logits, target, differentiable_target=True)


def test_bce_with_logits_is_stable_for_large_logits():
    torch = torch_module()
    logits = np.array([-800.0, -40.0, -1e-3, 0.0, 35.0, 900.0])
    target = np.array([1.0, 0.0, 1.0, 0.5, 0.0, 1.0])
    x = nn.Tensor(logits.copy(), requires_grad=True)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        value = F.binary_cross_entropy_with_logits(x, target, reduction="none", pos_weight=np.array(2.0))
        value.sum().backward()
    y = torch.tensor(logits.copy(), requires_grad=True)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(y, torch.tensor(target), reduction="none",
                                                                    pos_weight=torch.tensor(2.0, dtype=torch.float64))
    expected.sum().backward()
    assert np.all(np.isfinite(value.data)) and np.all(np.isfinite(x.grad.data))
    assert_close(value.data, expected.detach().numpy(), np.float64)
    assert_close(x.grad.data, y.grad.numpy(), np.float64)


def test_bce_with_logits_weighted_gradients_by_finite_differences():
    logits = random_array((4, 3), np.float64, seed=6, low=-3, high=3)
    target = random_array((4, 3), np.float64, seed=7, low=0, high=1)
    weight, pos_weight = np.array([[0.4], [1.2], [2.0], [0.8]]), np.array([2.5, 0.3, 1.1])

    def loss():
        return F.binary_cross_entropy_with_logits(nn.Tensor(logits), nn.Tensor(target), weight,
                                                  pos_weight=pos_weight).item()

    x, t = nn.Tensor(logits, requires_grad=True), nn.Tensor(target, requires_grad=True)
    F.binary_cross_entropy_with_logits(x, t, weight, pos_weight=pos_weight).backward()
    assert_close(x.grad.data, finite_difference_gradient(loss, logits), np.float64, rtol=1e-6, atol=1e-8)
    assert_close(t.grad.data, finite_difference_gradient(loss, target), np.float64, rtol=1e-6, atol=1e-8)


def test_bce_with_logits_float32():
    torch = torch_module()
    logits = random_array((6, 4), np.float32, low=-5, high=5)
    target = (random_array((6, 4), np.float32, seed=2) > 0).astype(np.float32)
    value = nn.BCEWithLogitsLoss(pos_weight=[2.0, 1.0, 0.5, 3.0])(nn.Tensor(logits), target)
    expected = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor([2.0, 1.0, 0.5, 3.0]))(
        torch.tensor(logits), torch.tensor(target))
    assert value.dtype == np.float32
    assert_close(value.data, expected.numpy(), np.float32)


def test_bce_with_logits_bad_arguments():
    logits = nn.Tensor(random_array((3, 4), np.float64))
    with pytest.raises(ValueError, match="BCEWithLogitsLoss: reduction must be one of"):
        nn.BCEWithLogitsLoss(reduction="avg")
    with pytest.raises(ValueError, match=r"binary_cross_entropy_with_logits: target must have the input's shape "
                                         r"\(3, 4\), got \(2, 4\)"):
        F.binary_cross_entropy_with_logits(logits, np.zeros((2, 4)))
    with pytest.raises(TypeError, match="binary_cross_entropy_with_logits: target must be a float Tensor or "
                                        "array, got int64"):
        F.binary_cross_entropy_with_logits(logits, np.zeros((3, 4), np.int64))
    with pytest.raises(TypeError, match="binary_cross_entropy_with_logits: target must have the input's dtype "
                                        "float64, got float32"):
        F.binary_cross_entropy_with_logits(logits, nn.Tensor(np.zeros((3, 4), np.float32)))
    with pytest.raises(ValueError, match=r"binary_cross_entropy_with_logits: pos_weight of shape \(3,\) does not "
                                         r"broadcast to the input's shape \(3, 4\)"):
        F.binary_cross_entropy_with_logits(logits, np.zeros((3, 4)), pos_weight=np.ones(3))
    with pytest.raises(ValueError, match=r"binary_cross_entropy_with_logits: weight of shape \(2, 4\)"):
        F.binary_cross_entropy_with_logits(logits, np.zeros((3, 4)), weight=np.ones((2, 4)))


# ---- L1Loss and SmoothL1Loss --------------------------------------------------------------------

@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name, options", [("L1Loss", {}), ("SmoothL1Loss", {}), ("SmoothL1Loss", {"beta": 0.4}),
                                           ("SmoothL1Loss", {"beta": 0.0})])
def test_l1_losses_match_torch(name, options, reduction):
    torch = torch_module()
    inputs = random_array((5, 3, 2), np.float64, seed=1, low=-2, high=2)
    target = random_array((5, 3, 2), np.float64, seed=2, low=-2, high=2)
    _compare(getattr(nn, name)(reduction=reduction, **options),
             getattr(torch.nn, name)(reduction=reduction, **options), inputs, target, differentiable_target=True)


def test_l1_losses_bad_arguments():
    x = nn.Tensor(random_array((3, 4), np.float64))
    with pytest.raises(ValueError, match="L1Loss: reduction must be one of"):
        nn.L1Loss("max")
    with pytest.raises(ValueError, match="SmoothL1Loss: beta must be a number >= 0, got -1"):
        nn.SmoothL1Loss(beta=-1)
    with pytest.raises(ValueError, match=r"l1_loss: target must have the input's shape \(3, 4\), got \(4, 3\)"):
        F.l1_loss(x, np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"smooth_l1_loss: target must have the input's shape"):
        F.smooth_l1_loss(x, np.zeros(4))
    with pytest.raises(ValueError, match="smooth_l1_loss: reduction must be one of"):
        F.smooth_l1_loss(x, np.zeros((3, 4)), reduction="avg")


@pytest.mark.parametrize("name", ["mse_loss", "l1_loss", "smooth_l1_loss", "binary_cross_entropy_with_logits"])
def test_mean_losses_of_empty_inputs_are_nan_as_torch(name):
    """The 'mean' reduction over no elements is nan (torch's), not a ZeroDivisionError; 'sum' is 0."""
    torch = torch_module()
    for reduction in ("mean", "sum"):
        x = nn.Tensor(np.zeros((0, 3)), requires_grad=True)
        ours = getattr(F, name)(x, np.zeros((0, 3)), reduction=reduction)
        theirs = getattr(torch.nn.functional, name)(torch.zeros((0, 3), dtype=torch.float64),
                                                    torch.zeros((0, 3), dtype=torch.float64), reduction=reduction)
        np.testing.assert_array_equal(ours.data, theirs.numpy())
        ours.backward()
        assert x.grad.shape == (0, 3)


@pytest.mark.parametrize("make", [
    lambda w: (nn.CrossEntropyLoss(weight=w), "CrossEntropyLoss"), lambda w: (nn.NLLLoss(weight=w), "NLLLoss"),
    lambda w: (nn.BCEWithLogitsLoss(weight=w), "BCEWithLogitsLoss"),
    lambda w: (nn.BCEWithLogitsLoss(pos_weight=w), "BCEWithLogitsLoss"),
    lambda w: (lambda x, t: F.nll_loss(x, t, weight=w), "nll_loss"),
    lambda w: (lambda x, t: F.binary_cross_entropy_with_logits(x, t, weight=w), "binary_cross_entropy_with_logits"),
])
def test_a_weight_on_another_device_than_the_input_is_named(make):
    """The loss modules' buffers and the functional losses' weights go through one device/dtype check."""
    from tests.nn.test_tensor_api import _OnTheGpu   # a NumPy array that backend takes for a CuPy one
    loss, name = make(np.ones(3).view(_OnTheGpu))
    x = nn.Tensor(random_array((2, 3), np.float64, seed=3))
    target = np.array([0, 2]) if "nll" in name.lower() or "CrossEntropy" in name else np.ones((2, 3))
    with pytest.raises(ValueError, match=f"{name}: (pos_)?weight is on cuda but the input is on cpu"):
        loss(x, target)


def test_loss_modules_and_functions_share_the_reduction_and_beta_checks():
    for make, message in ((lambda: nn.MSELoss("avg"), "MSELoss: reduction must be one of"),
                          (lambda: F.mse_loss(np.ones(2), np.ones(2), reduction="avg"), "mse_loss: reduction must"),
                          (lambda: F.cross_entropy(np.ones((2, 3)), np.zeros(2, np.int64), reduction="avg"),
                           "cross_entropy: reduction must be one of"),
                          (lambda: nn.SmoothL1Loss(beta=True), "SmoothL1Loss: beta must be a number >= 0"),
                          (lambda: F.smooth_l1_loss(np.ones(2), np.ones(2), beta=-0.5),
                           "smooth_l1_loss: beta must be a number >= 0, got -0.5")):
        with pytest.raises(ValueError, match=message):
            make()
