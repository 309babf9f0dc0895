"""nn.optim.RMSprop and Adagrad against torch.optim (float64 on the CPU): steps, param groups, state dicts both
ways, flat=True, the device-scalar bookkeeping that makes a captured step replayable, and bad arguments."""
import itertools
import warnings

import numpy as np
import pytest

import nn
from kernels import backend
from tests.nn.test_optim import (_assert_same, _grads, _ours, _params, _run, _set_ours, _set_theirs, _theirs)
from tests.oracle import torch_module


def _name(options):
    return ",".join(f"{k}={v}" for k, v in options.items())


RMSPROP_OPTIONS = [dict(lr=0.01, momentum=momentum, centered=centered, weight_decay=decay, maximize=maximize)
                   for momentum, centered, decay, maximize in itertools.product((0, 0.9), (False, True), (0, 0.1),
                                                                                (False, True))]
RMSPROP_OPTIONS.append(dict(lr=0.03, alpha=0.4, eps=1e-5, momentum=0.5, centered=True))
ADAGRAD_OPTIONS = [dict(lr=0.05, lr_decay=lr_decay, weight_decay=decay, initial_accumulator_value=initial,
                        maximize=maximize)
                   for lr_decay, decay, initial, maximize in itertools.product((0, 0.2), (0, 0.1), (0, 0.3),
                                                                               (False, True))]
ADAGRAD_OPTIONS.append(dict(lr=0.2, eps=1e-4))
CASES = [("RMSprop", o) for o in RMSPROP_OPTIONS] + [("Adagrad", o) for o in ADAGRAD_OPTIONS]


@pytest.mark.parametrize("cls, options", CASES, ids=[f"{c}-{_name(o)}" for c, o in CASES])
def test_five_steps_match_torch(cls, options):
    torch = torch_module()
    arrays = _params()
    ours, theirs = _ours(arrays), _theirs(arrays)
    mine = getattr(nn.optim, cls)(ours, **options)
    reference = getattr(torch.optim, cls)(theirs, **options)
    _run(mine, ours, 5, set_grad=_set_ours)
    _run(reference, theirs, 5, set_grad=_set_theirs)
    _assert_same(ours, theirs)
    _assert_same_state(mine.state_dict(), reference.state_dict())


def _assert_same_state(saved, expected):
    assert sorted(saved["state"]) == sorted(expected["state"])
    for index, entry in expected["state"].items():
        assert saved["state"][index].keys() == entry.keys()
        for key, value in entry.items():
            np.testing.assert_allclose(np.asarray(saved["state"][index][key], np.float64), value.numpy(),
                                       rtol=1e-9, atol=1e-12, err_msg=key)
    assert [g["params"] for g in saved["param_groups"]] == [g["params"] for g in expected["param_groups"]]
    for ours, theirs in zip(saved["param_groups"], expected["param_groups"]):
        assert {k: v for k, v in theirs.items() if k in ours} == ours


GROUP_CASES = [
    ("RMSprop", [dict(lr=0.02, momentum=0.9), dict(lr=0.005, centered=True, weight_decay=0.1, alpha=0.9)],
     dict(lr=0.01)),
    ("Adagrad", [dict(lr_decay=0.1), dict(lr=0.2, weight_decay=0.05, maximize=True, initial_accumulator_value=0.7)],
     dict(lr=0.05, initial_accumulator_value=0.2)),
]


@pytest.mark.parametrize("cls, groups, defaults", GROUP_CASES, ids=[c[0] for c in GROUP_CASES])
def test_param_groups_with_their_own_settings_and_missing_grads(cls, groups, defaults):
    """Each group steps with its own settings (Adagrad: every sum starts from the constructor's
    initial_accumulator_value, as in torch); the first parameter never gets a gradient, so has no RMSprop state
    and an Adagrad step count of 0."""
    torch = torch_module()
    arrays = _params()
    ours, theirs = _ours(arrays), _theirs(arrays)
    mine = getattr(nn.optim, cls)([dict(groups[0], params=ours[:2]), dict(groups[1], params=ours[2:])], **defaults)
    reference = getattr(torch.optim, cls)([dict(groups[0], params=theirs[:2]), dict(groups[1], params=theirs[2:])],
                                          **defaults)
    for step in range(4):
        for p, q, g in zip(ours[1:], theirs[1:], _grads(step)[1:]):
            _set_ours(p, g)
            _set_theirs(q, g)
        mine.step()
        reference.step()
    _assert_same(ours, theirs)
    _assert_same_state(mine.state_dict(), reference.state_dict())


@pytest.mark.parametrize("cls, options", [("RMSprop", dict(lr=0.01, momentum=0.9, centered=True)),
                                          ("Adagrad", dict(lr=0.05, lr_decay=0.1, initial_accumulator_value=0.1))])
def test_state_dict_round_trip_continues_like_uninterrupted(cls, options):
    arrays = _params()
    straight = _ours(arrays)
    _run(getattr(nn.optim, cls)(straight, **options), straight, 5, set_grad=_set_ours)

    first = _ours(arrays)
    optimizer = getattr(nn.optim, cls)(first, **options)
    _run(optimizer, first, 3, set_grad=_set_ours)
    saved = optimizer.state_dict()
    assert all(type(entry["step"]) is int and entry["step"] == 3 for entry in saved["state"].values())
    resumed = [nn.Parameter(p.data.copy()) for p in first]
    fresh = getattr(nn.optim, cls)(resumed, lr=123.0)   # the group's hyper-parameters come from the state dict
    fresh.load_state_dict(saved)
    assert fresh.param_groups[0] == {**optimizer.param_groups[0], "params": resumed}
    _run(fresh, resumed, 2, first=3, set_grad=_set_ours)
    for a, b in zip(resumed, straight):
        np.testing.assert_array_equal(a.data, b.data)


STATE_CASES = [("RMSprop", dict(lr=0.01, momentum=0.9, centered=True, weight_decay=0.1)),
               ("Adagrad", dict(lr=0.05, lr_decay=0.1, initial_accumulator_value=0.2, weight_decay=0.1))]


@pytest.mark.parametrize("cls, options", STATE_CASES, ids=[c[0] for c in STATE_CASES])
def test_loads_torch_optimizer_state_and_continues_identically(cls, options):
    torch = torch_module()
    arrays = _params()
    theirs = _theirs(arrays)
    reference = getattr(torch.optim, cls)(theirs, **options)
    _run(reference, theirs, 3, set_grad=_set_theirs)
    ours = _ours([t.detach().numpy() for t in theirs])
    optimizer = getattr(nn.optim, cls)(ours, lr=0.5)
    optimizer.load_state_dict(reference.state_dict())
    assert optimizer.param_groups[0]["lr"] == options["lr"]
    _run(reference, theirs, 2, first=3, set_grad=_set_theirs)
    _run(optimizer, ours, 2, first=3, set_grad=_set_ours)
    _assert_same(ours, theirs)
    _assert_same_state(optimizer.state_dict(), reference.state_dict())


def _as_torch_state_dict(saved):
    """Our state dict holds NumPy arrays and int steps; torch's load_state_dict wants tensors for the arrays
    (its own step tensors are made from our ints)."""
    torch = torch_module()
    return {"state": {index: {key: torch.from_numpy(value) if isinstance(value, np.ndarray) else value
                              for key, value in entry.items()} for index, entry in saved["state"].items()},
            "param_groups": saved["param_groups"]}


@pytest.mark.parametrize("cls, options", STATE_CASES, ids=[c[0] for c in STATE_CASES])
def test_torch_loads_our_state_and_continues_identically(cls, options):
    torch = torch_module()
    arrays = _params()
    ours = _ours(arrays)
    optimizer = getattr(nn.optim, cls)(ours, **options)
    _run(optimizer, ours, 3, set_grad=_set_ours)
    theirs = _theirs([p.data for p in ours])
    reference = getattr(torch.optim, cls)(theirs, lr=0.5)
    reference.load_state_dict(_as_torch_state_dict(optimizer.state_dict()))
    assert reference.param_groups[0]["lr"] == options["lr"]
    _run(reference, theirs, 2, first=3, set_grad=_set_theirs)
    _run(optimizer, ours, 2, first=3, set_grad=_set_ours)
    _assert_same(ours, theirs)


def test_adagrad_state_exists_from_construction_as_torch():
    torch = torch_module()
    arrays = _params()
    saved = nn.optim.Adagrad(_ours(arrays), initial_accumulator_value=0.25).state_dict()
    _assert_same_state(saved, torch.optim.Adagrad(_theirs(arrays), initial_accumulator_value=0.25).state_dict())
    assert saved["state"][2]["step"] == 0 and saved["state"][2]["sum"].shape == (2, 3, 3)


@pytest.mark.parametrize("cls", ["RMSprop", "Adagrad"])
def test_zero_grad(cls):
    arrays = _params()
    ours = _ours(arrays)
    optimizer = getattr(nn.optim, cls)(ours)
    for p, g in zip(ours, _grads(0)):
        _set_ours(p, g)
    optimizer.zero_grad(set_to_none=False)
    assert all(p.grad is not None and float(np.abs(p.grad.data).max()) == 0.0 for p in ours)
    optimizer.zero_grad()
    assert all(p.grad is None for p in ours)
    optimizer.step()   # no gradients: nothing moves, no step counted
    for p, a in zip(ours, arrays):
        np.testing.assert_array_equal(p.data, a)
    steps = [entry["step"] for entry in optimizer.state_dict()["state"].values()]
    assert steps == ([] if cls == "RMSprop" else [0, 0, 0])


@pytest.mark.parametrize("cls, name, value, message", [
    ("RMSprop", "lr", -0.1, "RMSprop: lr must be >= 0.0, got -0.1"),
    ("RMSprop", "eps", -1e-8, "RMSprop: eps must be >= 0.0, got -1e-08"),
    ("RMSprop", "alpha", -0.5, "RMSprop: alpha must be >= 0.0, got -0.5"),
    ("RMSprop", "momentum", -0.9, "RMSprop: momentum must be >= 0.0, got -0.9"),
    ("RMSprop", "weight_decay", -1, "RMSprop: weight_decay must be >= 0.0, got -1"),
    ("Adagrad", "lr", -0.1, "Adagrad: lr must be >= 0.0, got -0.1"),
    ("Adagrad", "lr_decay", -0.1, "Adagrad: lr_decay must be >= 0.0, got -0.1"),
    ("Adagrad", "weight_decay", -0.1, "Adagrad: weight_decay must be >= 0.0, got -0.1"),
    ("Adagrad", "initial_accumulator_value", -1.0, "Adagrad: initial_accumulator_value must be >= 0.0, got -1.0"),
    ("Adagrad", "eps", -1e-10, "Adagrad: eps must be >= 0.0, got -1e-10"),
])
def test_bad_hyper_parameters_raise_as_torch(cls, name, value, message):
    torch = torch_module()
    with pytest.raises(ValueError, match=f"^{message}$"):
        getattr(nn.optim, cls)(_ours(_params()), **{name: value})
    with pytest.raises(ValueError):   # torch refuses the same value
        getattr(torch.optim, cls)(_theirs(_params()), **{name: value})
    with pytest.raises(ValueError, match=f"^{message}$"):   # a param group's own value too
        getattr(nn.optim, cls)([{"params": _ours(_params())[:1]}, {"params": _ours(_params())[1:], name: value}])


def test_bad_arguments():
    params = _ours(_params())
    with pytest.raises(TypeError, match="RMSprop: alpha must be a number, got str"):
        nn.optim.RMSprop(params, alpha="0.9")
    with pytest.raises(TypeError, match="Adagrad: params must be an iterable of Tensors or of dicts, got a single"):
        nn.optim.Adagrad(params[0])
    with pytest.raises(ValueError, match="RMSprop: got an empty parameter list"):
        nn.optim.RMSprop([])
    with pytest.raises(ValueError, match="Adagrad: some parameters appear in more than one parameter group"):
        nn.optim.Adagrad([{"params": params}, {"params": params[:1]}])


def test_defaults_are_torchs():
    torch = torch_module()
    for cls in ("RMSprop", "Adagrad"):
        ours = getattr(nn.optim, cls)(_ours(_params())).defaults
        theirs = getattr(torch.optim, cls)(_theirs(_params())).defaults
        assert {k: v for k, v in theirs.items() if k in ours} == ours
        assert set(theirs) - set(ours) <= {"foreach", "capturable", "differentiable", "fused"}


def test_optimizer_steps_are_noted_as_in_place_writes():
    """A graph recorded before a step that saved a parameter raises at its backward, as for SGD and Adam."""
    for cls in ("RMSprop", "Adagrad"):
        weight = nn.Parameter(np.array([1.0, 2.0]))
        optimizer = getattr(nn.optim, cls)([weight], lr=0.1)
        loss = (weight * weight).sum()
        weight.grad = nn.Tensor(np.array([0.5, -0.5]))
        optimizer.step()
        with pytest.raises(RuntimeError, match="modified by an in-place operation"):
            loss.backward()


# ---- device-scalar bookkeeping and flat=True (what the GPU path does), exercised with NumPy arrays ----------

def _scheduled_run(cls, options, missing=(), flat=False):
    params = _ours(_params())
    optimizer = getattr(nn.optim, cls)([{"params": params[:2]}, {"params": params[2:], "lr": 0.02}], flat=flat,
                                       **options)
    scheduler = nn.optim.CosineAnnealingLR(optimizer, T_max=3, eta_min=0.001)
    for step in range(7):
        for i, (p, g) in enumerate(zip(params, _grads(step))):
            p.grad = None if (step, i) in missing else nn.Tensor(g.copy())
        optimizer.step()
        scheduler.step()
    return params, optimizer


BOOKKEEPING_CASES = [("RMSprop", dict(lr=0.01, momentum=0.9, centered=True)),
                     ("Adagrad", dict(lr=0.05, lr_decay=0.3, initial_accumulator_value=0.1))]


@pytest.mark.parametrize("cls, options", BOOKKEEPING_CASES, ids=[c[0] for c in BOOKKEEPING_CASES])
@pytest.mark.parametrize("flat", [False, True])
def test_device_scalar_bookkeeping_equals_plain_steps(cls, options, flat, monkeypatch):
    """lr and the step counts in arrays, as wherever the CUDA kernels run (and flat=True then packs each group
    into one buffer a kind): the same parameters and state dict as the plain CPU path, step counts that differ
    between parameters included."""
    missing = {(1, 0), (2, 0), (4, 2)}
    plain, plain_optimizer = _scheduled_run(cls, options, missing)
    monkeypatch.setattr(nn.optim.Optimizer, "_uses_device_scalars", lambda self, p: True)
    if flat and cls == "Adagrad":   # group 0's counts part at step 1: it steps parameter by parameter from then on
        with pytest.warns(RuntimeWarning, match=f"{cls}\\(flat=True\\): a param group steps parameter by"):
            mirrored, optimizer = _scheduled_run(cls, options, missing, flat=flat)
    else:   # RMSprop's update reads no step count: a step without some gradient ends nothing
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            mirrored, optimizer = _scheduled_run(cls, options, missing, flat=flat)
    for a, b in zip(mirrored, plain):
        np.testing.assert_array_equal(a.data, b.data)
    for group in optimizer.param_groups:
        assert backend.is_array(group.lr_array) and group.lr_array[0] == group["lr"]
    saved, expected = optimizer.state_dict(), plain_optimizer.state_dict()
    assert saved["param_groups"] == expected["param_groups"]
    for index, entry in expected["state"].items():
        assert saved["state"][index].keys() == entry.keys()
        for key, value in entry.items():
            if key == "step":
                assert type(saved["state"][index][key]) is int and saved["state"][index][key] == value
            else:
                np.testing.assert_array_equal(saved["state"][index][key], value)
    assert [int(c) for c in optimizer.param_groups[0].step_counts] == [5, 7]
    assert [int(c) for c in optimizer.param_groups[1].step_counts] == [6]
    if flat:   # (RMSprop's group 0 stays one launch: its update reads no step count)
        assert (optimizer.param_groups[0].flat is False) == (cls == "Adagrad") and optimizer.param_groups[1].flat


@pytest.mark.parametrize("cls, options", BOOKKEEPING_CASES, ids=[c[0] for c in BOOKKEEPING_CASES])
def test_flat_group_is_one_launch_with_the_same_results(cls, options, monkeypatch):
    monkeypatch.setattr(nn.optim.Optimizer, "_uses_device_scalars", lambda self, p: True)
    name = {"RMSprop": "rmsprop_update", "Adagrad": "adagrad_update"}[cls]
    real, calls = getattr(nn.optim_adaptive.kernels, name), []
    monkeypatch.setattr(nn.optim_adaptive.kernels, name, lambda *a, **k: (calls.append(a[0].size), real(*a, **k)))
    flat, optimizer = _scheduled_run(cls, options, flat=True)
    assert calls == [12 + 5, 18] * 7   # one launch a group a step, over the group's flat buffers
    packed = optimizer.param_groups[0].flat
    for p, (data, grad, moments) in zip(optimizer.param_groups[0]["params"], packed.views):
        assert p.data is data and p.grad.data is grad
        for key, view in moments.items():
            assert optimizer.state[p][key] is view
    monkeypatch.setattr(nn.optim.Optimizer, "_uses_device_scalars", lambda self, p: False)
    for a, b in zip(flat, _scheduled_run(cls, options)[0]):
        np.testing.assert_array_equal(a.data, b.data)


@pytest.mark.parametrize("cls", ["RMSprop", "Adagrad"])
def test_no_state_created_while_capturing(cls, monkeypatch):
    monkeypatch.setattr(nn.optim.Optimizer, "_uses_device_scalars", lambda self, p: True)
    params = _ours(_params())
    optimizer = getattr(nn.optim, cls)(params, lr=0.01)
    for p, g in zip(params, _grads(0)):
        _set_ours(p, g)
    monkeypatch.setattr(backend, "is_capturing", lambda: True)
    with pytest.raises(RuntimeError, match=f"{cls}.step: .* would be created while a CUDA graph is being captured"):
        optimizer.step()
    monkeypatch.setattr(backend, "is_capturing", lambda: False)
    optimizer.step()
    monkeypatch.setattr(backend, "is_capturing", lambda: True)
    optimizer.step()   # everything exists: a capture records the same work as an eager step
    assert [int(c) for c in optimizer.param_groups[0].step_counts] == [2, 2, 2]


@pytest.mark.parametrize("cls, options", STATE_CASES, ids=[c[0] for c in STATE_CASES])
@pytest.mark.parametrize("flat", [False, True])
def test_loaded_torch_state_continues_with_device_steps(cls, options, flat, monkeypatch):
    """A torch state dict loaded where lr and the steps live in arrays (the GPU path; flat=True packs the loaded
    state): torch's next steps, and counts that went on from the loaded ones."""
    monkeypatch.setattr(nn.optim.Optimizer, "_uses_device_scalars", lambda self, p: True)
    torch = torch_module()
    arrays = _params()
    theirs = _theirs(arrays)
    reference = getattr(torch.optim, cls)(theirs, **options)
    _run(reference, theirs, 3, set_grad=_set_theirs)
    ours = _ours([t.detach().numpy() for t in theirs])
    optimizer = getattr(nn.optim, cls)(ours, lr=0.5, flat=flat)
    _run(optimizer, ours, 1, set_grad=_set_ours)   # device counts and lr (flat=True: the packing) exist before
    for p, t in zip(ours, theirs):
        p.data[...] = t.detach().numpy()           # torch's weights, copied into ours in place
    optimizer.load_state_dict(reference.state_dict())
    _run(reference, theirs, 2, first=3, set_grad=_set_theirs)
    _run(optimizer, ours, 2, first=3, set_grad=_set_ours)
    _assert_same(ours, theirs)
    assert optimizer.param_groups[0].lr_array[0] == options["lr"]
    assert [int(c) for c in optimizer.param_groups[0].step_counts] == [5, 5, 5]
    assert bool(optimizer.param_groups[0].flat) == flat
    _assert_same_state(optimizer.state_dict(), reference.state_dict())
