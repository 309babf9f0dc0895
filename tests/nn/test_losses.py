"""Loss modules against torch.nn's (float64 on the CPU path, plus float32 where the defaults matter)."""
import numpy as np
import pytest

import nn
from tests.oracle import assert_close, random_array, torch_module

CLASS_WEIGHT = [0.5, 2.0, 1.0, 1.5]
OPTIONS = [
    dict(), dict(reduction="sum"), dict(reduction="none"), dict(ignore_index=0), dict(label_smoothing=0.3),
    dict(weight=CLASS_WEIGHT), dict(weight=CLASS_WEIGHT, reduction="sum", ignore_index=3, label_smoothing=0.05),
    dict(weight=CLASS_WEIGHT, reduction="none", label_smoothing=0.2),
]


@pytest.mark.parametrize("options", OPTIONS, ids=str)
@pytest.mark.parametrize("shape", [(9, 4), (2, 4, 3)])
def test_cross_entropy_loss_matches_torch(options, shape):
    torch = torch_module()
    logits = random_array(shape, np.float64, low=-3, high=3)
    target = np.random.default_rng(2).integers(0, 4, size=shape[:1] + shape[2:])
    theirs_options = {k: torch.tensor(v, dtype=torch.float64) if k == "weight" else v for k, v in options.items()}
    ours_options = {k: np.array(v, np.float64) if k == "weight" else v for k, v in options.items()}
    ours = nn.CrossEntropyLoss(**ours_options)
    theirs = torch.nn.CrossEntropyLoss(**theirs_options)
    assert list(ours.state_dict()) == list(theirs.state_dict())  # the class weight is a buffer in both
    x = nn.Tensor(logits.copy(), requires_grad=True)
    y = torch.tensor(logits.copy(), requires_grad=True)
    value, expected = ours(x, target), theirs(y, torch.tensor(target))
    assert_close(value.data, expected.detach().numpy(), np.float64)
    grad = random_array(value.shape, np.float64, seed=9)
    value.backward(grad)
    expected.backward(torch.tensor(grad))
    assert_close(x.grad.data, y.grad.numpy(), np.float64, name="grad of logits")


def test_cross_entropy_loss_float32_with_list_weight():
    torch = torch_module()
    logits = random_array((8, 4), np.float32, low=-2, high=2)
    target = np.random.default_rng(3).integers(0, 4, size=8)
    value = nn.CrossEntropyLoss(weight=CLASS_WEIGHT)(nn.Tensor(logits), nn.Tensor(target))
    expected = torch.nn.CrossEntropyLoss(weight=torch.tensor(CLASS_WEIGHT))(torch.tensor(logits), torch.tensor(target))
    assert value.dtype == np.float32
    assert_close(value.data, expected.numpy(), np.float32)


def test_cross_entropy_all_ignored_is_nan_like_torch():
    target = np.full(3, -100)
    value = nn.CrossEntropyLoss()(nn.Tensor(random_array((3, 4), np.float64)), target)
    assert np.isnan(value.item())


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss_matches_torch(reduction):
    torch = torch_module()
    a, b = random_array((4, 5), np.float64, seed=1), random_array((4, 5), np.float64, seed=2)
    x, t = nn.Tensor(a.copy(), requires_grad=True), nn.Tensor(b.copy(), requires_grad=True)
    y, u = torch.tensor(a.copy(), requires_grad=True), torch.tensor(b.copy(), requires_grad=True)
    value, expected = nn.MSELoss(reduction)(x, t), torch.nn.MSELoss(reduction=reduction)(y, u)
    assert_close(value.data, expected.detach().numpy(), np.float64)
    grad = random_array(value.shape, np.float64, seed=3)
    value.backward(grad)
    expected.backward(torch.tensor(grad))
    assert_close(x.grad.data, y.grad.numpy(), np.float64)
    assert_close(t.grad.data, u.grad.numpy(), np.float64)


def test_bad_loss_arguments():
    with pytest.raises(ValueError, match="CrossEntropyLoss: reduction must be one of"):
        nn.CrossEntropyLoss(reduction="average")
    with pytest.raises(ValueError, match="CrossEntropyLoss: label_smoothing must be in"):
        nn.CrossEntropyLoss(label_smoothing=1.5)
    with pytest.raises(ValueError, match="MSELoss: reduction must be one of"):
        nn.MSELoss("max")
    with pytest.raises(ValueError, match="cross_entropy: target holds a class index outside"):
        nn.CrossEntropyLoss()(nn.Tensor(np.ones((2, 3), np.float32)), np.array([0, 3]))
