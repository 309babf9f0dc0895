"""nn.swa_utils against torch.optim.swa_utils: the EMA of the weights, its state dict, bad decays."""
import numpy as np
import pytest

from nn import layers, swa_utils
from nn.module import Sequential
from tests.oracle import assert_close, random_array, torch_module


def _models(dtype):
    """Our Linear + BatchNorm1d and torch's, with the same weights."""
    torch = torch_module()
    ours = Sequential(layers.Linear(5, 3, dtype=dtype), layers.BatchNorm1d(3, dtype=dtype))
    theirs = torch.nn.Sequential(torch.nn.Linear(5, 3), torch.nn.BatchNorm1d(3)).to(getattr(torch, np.dtype(dtype).name))
    theirs.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in ours.state_dict().items()})
    return ours, theirs


def _perturb(ours, theirs, step, dtype):
    """The same new values in both models, as a training step would leave them (buffers included)."""
    torch = torch_module()
    current = ours.state_dict()
    new = {}
    for index, (key, value) in enumerate(current.items()):
        if value.dtype.kind == "f":
            new[key] = (value + random_array(value.shape, dtype, seed=100 * step + index)).astype(dtype)
        else:
            new[key] = np.asarray(value + 1)   # num_batches_tracked
    ours.load_state_dict(new)
    theirs.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in new.items()})


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_ema_matches_torch_averaged_model(dtype):
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
    ours, theirs = _models(dtype)
    averaged = swa_utils.AveragedModel(ours, multi_avg_fn=swa_utils.get_ema_multi_avg_fn(0.9))
    reference = AveragedModel(theirs, multi_avg_fn=get_ema_multi_avg_fn(0.9))
    for step in range(5):
        _perturb(ours, theirs, step, dtype)
        averaged.update_parameters(ours)
        reference.update_parameters(theirs)
    expected = {k: v.numpy() for k, v in reference.state_dict().items()}
    state = averaged.state_dict()
    assert list(state) == list(expected)     # module.0.weight, ..., module.1.num_batches_tracked, n_averaged
    assert int(state["n_averaged"]) == 5
    for key, value in expected.items():
        assert state[key].dtype == value.dtype, key
        assert_close(state[key], value, dtype=dtype, name=key)
    # the averaged weights lie between the first and the last live weights, not on the live ones
    assert not np.allclose(state["module.0.weight"], ours.state_dict()["0.weight"])
    # the averaged copy is separate from the model and not trained
    assert all(p.grad is None and not p.requires_grad for p in averaged.module.parameters())


def test_state_dict_round_trip_continues_the_same_average():
    ours, theirs = _models(np.float32)
    ema = swa_utils.get_ema_multi_avg_fn(0.5)
    first = swa_utils.AveragedModel(ours, multi_avg_fn=ema)
    for step in range(2):
        _perturb(ours, theirs, step, np.float32)
        first.update_parameters(ours)
    second = swa_utils.AveragedModel(ours, multi_avg_fn=ema)
    second.load_state_dict(first.state_dict())
    _perturb(ours, theirs, 2, np.float32)
    first.update_parameters(ours)
    second.update_parameters(ours)   # n_averaged = 2 was loaded: an average, not a first copy
    for (key, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=key)
    assert not np.array_equal(first.state_dict()["module.0.weight"], ours.state_dict()["0.weight"])


@pytest.mark.parametrize("decay,error", [(1.0, ValueError), (-0.1, ValueError), (1.5, ValueError),
                                         (float("nan"), ValueError), ("0.9", TypeError)])
def test_bad_decay_names_the_function(decay, error):
    with pytest.raises(error, match=r"^get_ema_multi_avg_fn: decay must be"):
        swa_utils.get_ema_multi_avg_fn(decay)


def test_averaged_model_needs_an_average_function():
    with pytest.raises(ValueError, match="^AveragedModel: give multi_avg_fn"):
        swa_utils.AveragedModel(layers.Linear(2, 2))
