"""nn.swa_utils against torch.optim.swa_utils: the EMA of the weights, its state dict, bad decays."""
import numpy as np
import pytest

from nn import layers, swa_utils
from nn.containers import Sequential
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


@pytest.mark.parametrize("decay,error", [(-0.1, ValueError), (1.5, ValueError), (float("nan"), ValueError),
                                         ("0.9", TypeError)])
def test_bad_decay_names_the_function(decay, error):
    with pytest.raises(error, match=r"^get_ema_multi_avg_fn: decay must be"):
        swa_utils.get_ema_multi_avg_fn(decay)


def _run_both(make_ours, make_theirs, dtype, steps=4):
    ours, theirs = _models(dtype)
    averaged, reference = make_ours(ours), make_theirs(theirs)
    for step in range(steps):
        _perturb(ours, theirs, step, dtype)
        averaged.update_parameters(ours)
        reference.update_parameters(theirs)
    expected = {k: v.numpy() for k, v in reference.state_dict().items()}
    state = averaged.state_dict()
    assert list(state) == list(expected)
    for key, value in expected.items():
        assert state[key].dtype == value.dtype, key
        assert_close(state[key], value, dtype=dtype, name=key)
    return state


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_default_swa_mean_avg_fn_and_averaged_buffers_match_torch(dtype):
    """torch's other forms: the equal-weight mean (no function given), a per-parameter avg_fn, and
    use_buffers=True (BatchNorm's buffers averaged too, the integer count in floating point, truncated)."""
    from torch.optim import swa_utils as torch_swa
    state = _run_both(lambda m: swa_utils.AveragedModel(m), lambda m: torch_swa.AveragedModel(m), dtype)
    assert int(state["n_averaged"]) == 4
    half = lambda averaged, current, n: 0.5 * averaged + 0.5 * current   # noqa: E731 (works on arrays and tensors)
    _run_both(lambda m: swa_utils.AveragedModel(m, avg_fn=half), lambda m: torch_swa.AveragedModel(m, avg_fn=half),
              dtype)
    ema_ours, ema_theirs = swa_utils.get_ema_multi_avg_fn(0.8), torch_swa.get_ema_multi_avg_fn(0.8)
    state = _run_both(lambda m: swa_utils.AveragedModel(m, "cpu", multi_avg_fn=ema_ours, use_buffers=True),
                      lambda m: torch_swa.AveragedModel(m, "cpu", multi_avg_fn=ema_theirs, use_buffers=True),
                      dtype)
    assert int(state["module.1.num_batches_tracked"]) == 1     # averaged and truncated, as torch does


def test_decay_one_keeps_the_first_copy():
    ours, theirs = _models(np.float32)
    averaged = swa_utils.AveragedModel(ours, multi_avg_fn=swa_utils.get_ema_multi_avg_fn(1.0))
    first = None
    for step in range(3):
        _perturb(ours, theirs, step, np.float32)
        averaged.update_parameters(ours)
        first = averaged.state_dict()["module.0.weight"].copy() if first is None else first
    np.testing.assert_array_equal(averaged.state_dict()["module.0.weight"], first)


def test_bad_arguments_and_a_mismatched_model_name_the_class():
    with pytest.raises(TypeError, match="^AveragedModel: multi_avg_fn must be callable"):
        swa_utils.AveragedModel(layers.Linear(2, 2), multi_avg_fn=0.9)
    averaged = swa_utils.AveragedModel(layers.Linear(2, 2))
    with pytest.raises(ValueError, match=r"^AveragedModel.update_parameters: array 0 of the model has shape \(3, 2\)"):
        averaged.update_parameters(layers.Linear(2, 3))
    with pytest.raises(ValueError, match="^AveragedModel.update_parameters: the model has 1 parameters"):
        averaged.update_parameters(layers.Linear(2, 2, bias=False))
