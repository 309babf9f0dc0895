"""Optimizers, schedulers and clip_grad_norm_ against torch.optim / torch.nn.utils (float64 on the CPU)."""
import math
import re

import numpy as np
import pytest

import nn
from kernels import backend
from tests.oracle import assert_close, random_array, torch_module

SHAPES = [(4, 3), (5,), (2, 3, 3)]


def _params(seed=0):
    return [random_array(shape, np.float64, seed=seed + i) for i, shape in enumerate(SHAPES)]


def _grads(step):
    return [random_array(shape, np.float64, seed=100 + 10 * step + i) for i, shape in enumerate(SHAPES)]


def _ours(arrays):
    return [nn.Parameter(a.copy()) for a in arrays]


def _theirs(arrays):
    torch = torch_module()
    return [torch.tensor(a.copy(), requires_grad=True) for a in arrays]


def _run(optimizer, params, steps, first=0, set_grad=None):
    for step in range(first, first + steps):
        for p, g in zip(params, _grads(step)):
            set_grad(p, g)
        optimizer.step()


def _set_ours(p, g):
    p.grad = nn.Tensor(g.copy())


def _set_theirs(p, g):
    torch = torch_module()
    p.grad = torch.tensor(g.copy())


def _assert_same(ours, theirs):
    for mine, reference in zip(ours, theirs):
        assert_close(mine.data, reference.detach().numpy(), np.float64, name="param")


SGD_OPTIONS = {
    "plain": dict(lr=0.1),
    "momentum": dict(lr=0.05, momentum=0.9),
    "nesterov": dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
    "dampening_decay": dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.1),
    "maximize": dict(lr=0.02, momentum=0.5, maximize=True),
}


@pytest.mark.parametrize("name", SGD_OPTIONS)
def test_sgd_five_steps_match_torch(name):
    torch = torch_module()
    arrays = _params()
    ours, theirs = _ours(arrays), _theirs(arrays)
    _run(nn.optim.SGD(ours, **SGD_OPTIONS[name]), ours, 5, set_grad=_set_ours)
    _run(torch.optim.SGD(theirs, **SGD_OPTIONS[name]), theirs, 5, set_grad=_set_theirs)
    _assert_same(ours, theirs)


ADAM_OPTIONS = {
    "adam": ("Adam", dict(lr=0.01)),
    "adam_decay_betas": ("Adam", dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    "adam_amsgrad_maximize": ("Adam", dict(lr=0.01, amsgrad=True, maximize=True)),
    "adamw": ("AdamW", dict(lr=0.01)),
    "adamw_amsgrad": ("AdamW", dict(lr=0.03, weight_decay=0.2, amsgrad=True)),
}


@pytest.mark.parametrize("name", ADAM_OPTIONS)
def test_adam_five_steps_match_torch(name):
    torch = torch_module()
    cls, options = ADAM_OPTIONS[name]
    arrays = _params()
    ours, theirs = _ours(arrays), _theirs(arrays)
    _run(getattr(nn.optim, cls)(ours, **options), ours, 5, set_grad=_set_ours)
    _run(getattr(torch.optim, cls)(theirs, **options), theirs, 5, set_grad=_set_theirs)
    _assert_same(ours, theirs)


def test_param_groups_and_missing_grads():
    torch = torch_module()
    arrays = _params()
    ours, theirs = _ours(arrays), _theirs(arrays)
    mine = nn.optim.SGD([{"params": ours[:2]}, {"params": ours[2:], "lr": 0.5}], lr=0.1, momentum=0.9)
    reference = torch.optim.SGD([{"params": theirs[:2]}, {"params": theirs[2:], "lr": 0.5}], lr=0.1, momentum=0.9)
    for step in range(3):
        for p, q, g in zip(ours[1:], theirs[1:], _grads(step)[1:]):  # the first parameter never gets a grad
            _set_ours(p, g)
            _set_theirs(q, g)
        mine.step()
        reference.step()
    _assert_same(ours, theirs)
    ours_state, theirs_state = mine.state_dict(), reference.state_dict()
    assert sorted(ours_state["state"]) == sorted(theirs_state["state"]) == [1, 2]
    assert [g["params"] for g in ours_state["param_groups"]] == [g["params"] for g in theirs_state["param_groups"]]
    assert [g["lr"] for g in ours_state["param_groups"]] == [0.1, 0.5]


@pytest.mark.parametrize("cls, options", [("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
                                          ("Adam", dict(lr=0.01, amsgrad=True)),
                                          ("AdamW", dict(lr=0.01))])
def test_state_dict_round_trip_continues_like_uninterrupted(cls, options):
    arrays = _params()
    straight = _ours(arrays)
    _run(getattr(nn.optim, cls)(straight, **options), straight, 5, set_grad=_set_ours)

    first = _ours(arrays)
    optimizer = getattr(nn.optim, cls)(first, **options)
    _run(optimizer, first, 3, set_grad=_set_ours)
    saved = optimizer.state_dict()
    resumed = [nn.Parameter(p.data.copy()) for p in first]
    fresh = getattr(nn.optim, cls)(resumed, lr=123.0)  # the group's hyper-parameters come from the state dict
    fresh.load_state_dict(saved)
    assert fresh.param_groups[0]["lr"] == options["lr"]
    _run(fresh, resumed, 2, first=3, set_grad=_set_ours)
    for a, b in zip(resumed, straight):
        np.testing.assert_array_equal(a.data, b.data)


@pytest.mark.parametrize("cls, options", [("SGD", dict(lr=0.05, momentum=0.9)), ("Adam", dict(lr=0.01, amsgrad=True))])
def test_loads_torch_optimizer_state_and_continues_identically(cls, options):
    torch = torch_module()
    arrays = _params()
    theirs = _theirs(arrays)
    reference = getattr(torch.optim, cls)(theirs, **options)
    _run(reference, theirs, 3, set_grad=_set_theirs)
    ours = _ours([t.detach().numpy() for t in theirs])
    optimizer = getattr(nn.optim, cls)(ours, **options)
    optimizer.load_state_dict(reference.state_dict())
    _run(reference, theirs, 2, first=3, set_grad=_set_theirs)
    _run(optimizer, ours, 2, first=3, set_grad=_set_ours)
    _assert_same(ours, theirs)


def test_zero_grad():
    ours = _ours(_params())
    optimizer = nn.optim.Adam(ours)
    for p, g in zip(ours, _grads(0)):
        _set_ours(p, g)
    optimizer.zero_grad(set_to_none=False)
    assert all(float(np.abs(p.grad.data).max()) == 0.0 for p in ours)
    optimizer.zero_grad()
    assert all(p.grad is None for p in ours)


def test_bad_hyper_parameters():
    params = _ours(_params())
    with pytest.raises(ValueError, match="SGD: lr must be >= 0.0, got -0.1"):
        nn.optim.SGD(params, lr=-0.1)
    with pytest.raises(ValueError, match="SGD: momentum"):
        nn.optim.SGD(params, lr=0.1, momentum=-1)
    with pytest.raises(ValueError, match="nesterov"):
        nn.optim.SGD(params, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match=r"Adam: betas\[1\] must be >= 0.0 and < 1.0, got 1.0"):
        nn.optim.Adam(params, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="AdamW: eps"):
        nn.optim.AdamW(params, eps=-1e-8)
    with pytest.raises(ValueError, match="empty parameter list"):
        nn.optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="more than one parameter group"):
        nn.optim.SGD([{"params": params}, {"params": params[:1]}], lr=0.1)
    with pytest.raises(TypeError, match="single Tensor"):
        nn.optim.SGD(params[0], lr=0.1)
    optimizer = nn.optim.SGD(params, lr=0.1)
    with pytest.raises(ValueError, match="group 0 has 3 parameters, the state dict has 2"):
        optimizer.load_state_dict({"state": {}, "param_groups": [{"lr": 0.1, "params": [0, 1]}]})


# ---- schedulers ---------------------------------------------------------------------------------

def _schedulers(name, torch):
    ours_optimizer = nn.optim.SGD(_ours(_params()), lr=0.5, momentum=0.9)
    theirs_optimizer = torch.optim.SGD(_theirs(_params()), lr=0.5, momentum=0.9)
    if name == "step":
        return nn.optim.StepLR(ours_optimizer, 3, gamma=0.5), torch.optim.lr_scheduler.StepLR(theirs_optimizer, 3, gamma=0.5)
    return (nn.optim.lr_scheduler.CosineAnnealingLR(ours_optimizer, T_max=4, eta_min=0.01),
            torch.optim.lr_scheduler.CosineAnnealingLR(theirs_optimizer, T_max=4, eta_min=0.01))


@pytest.mark.parametrize("name", ["step", "cosine"])
def test_scheduler_lrs_match_torch(name):
    torch = torch_module()
    ours, theirs = _schedulers(name, torch)
    for _ in range(13):  # past the end of the cosine period: it climbs back as torch's does
        assert ours.get_last_lr() == pytest.approx(theirs.get_last_lr(), rel=1e-12)
        assert ours.optimizer.param_groups[0]["lr"] == pytest.approx(theirs.optimizer.param_groups[0]["lr"], rel=1e-12)
        ours.optimizer.step()
        theirs.optimizer.step()
        ours.step()
        theirs.step()


@pytest.mark.parametrize("name", ["step", "cosine"])
def test_scheduler_state_dict_round_trip(name):
    torch = torch_module()
    ours, _ = _schedulers(name, torch)
    for _ in range(5):
        ours.step()
    saved = ours.state_dict()
    assert saved["last_epoch"] == 5 and "optimizer" not in saved
    expected = []
    for _ in range(4):
        ours.step()
        expected += ours.get_last_lr()
    again, _ = _schedulers(name, torch)
    again.load_state_dict(saved)
    again.optimizer.param_groups[0]["lr"] = saved["_last_lr"][0]  # the lr lives in the optimizer's state dict
    got = []
    for _ in range(4):
        again.step()
        got += again.get_last_lr()
    assert got == pytest.approx(expected, rel=1e-12)


def test_scheduler_bad_arguments():
    optimizer = nn.optim.SGD(_ours(_params()), lr=0.1)
    with pytest.raises(ValueError, match="StepLR: step_size must be a positive integer, got 0"):
        nn.optim.StepLR(optimizer, 0)
    with pytest.raises(ValueError, match="CosineAnnealingLR: T_max"):
        nn.optim.CosineAnnealingLR(optimizer, T_max=-2)


# ---- clip_grad_norm_ ----------------------------------------------------------------------------

@pytest.mark.parametrize("norm_type, max_norm", [(2.0, 1.0), (1.0, 0.5), (math.inf, 0.3), (2.0, 100.0)])
def test_clip_grad_norm_matches_torch(norm_type, max_norm):
    torch = torch_module()
    arrays = _params()
    ours, theirs = _ours(arrays), _theirs(arrays)
    for p, q, g in zip(ours, theirs, _grads(0)):
        _set_ours(p, g)
        _set_theirs(q, g)
    total = nn.utils.clip_grad_norm_(ours, max_norm, norm_type)
    reference = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type)
    assert isinstance(total, nn.Tensor) and total.shape == ()
    assert float(total) == pytest.approx(float(reference), rel=1e-12)
    for p, q in zip(ours, theirs):
        assert_close(p.grad.data, q.grad.numpy(), np.float64)


def test_clip_grad_norm_non_finite():
    p = nn.Parameter(np.ones(3))
    p.grad = nn.Tensor(np.array([1.0, np.inf, 2.0]))
    with pytest.raises(RuntimeError, match="clip_grad_norm_: the total norm"):
        nn.utils.clip_grad_norm_([p], 1.0, error_if_nonfinite=True)
    assert float(nn.utils.clip_grad_norm_(nn.Parameter(np.ones(2)), 1.0)) == 0.0  # no gradient at all


# ---- device-scalar bookkeeping (what makes a captured step replayable), exercised with NumPy arrays ----

@pytest.fixture
def device_scalars(monkeypatch):
    """Make the optimizers keep lr and Adam's step in arrays, as they do wherever the CUDA kernels run; on
    the CPU the kernels read those arrays' values on the host, so results must equal the plain path's."""
    monkeypatch.setattr(nn.optim.Optimizer, "_uses_device_scalars", lambda self, p: True)


def _scheduled_run(cls, options, missing_grad_steps=()):
    arrays = _params()
    params = _ours(arrays)
    optimizer = getattr(nn.optim, cls)([{"params": params[:2]}, {"params": params[2:], "lr": 0.02}], **options)
    scheduler = nn.optim.CosineAnnealingLR(optimizer, T_max=3, eta_min=0.001)
    for step in range(7):
        for i, (p, g) in enumerate(zip(params, _grads(step))):
            p.grad = None if (step, i) in missing_grad_steps else nn.Tensor(g.copy())
        optimizer.step()
        scheduler.step()
    return params, optimizer


BOOKKEEPING_CASES = [("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)), ("Adam", dict(lr=0.01, amsgrad=True)),
                     ("AdamW", dict(lr=0.01, weight_decay=0.1))]


@pytest.mark.parametrize("cls, options", BOOKKEEPING_CASES)
def test_device_scalar_bookkeeping_equals_plain_steps(cls, options, monkeypatch):
    missing = {(1, 0), (2, 0), (4, 2)}   # some steps without some gradients: per-parameter step counts
    plain, plain_optimizer = _scheduled_run(cls, options, missing)
    monkeypatch.setattr(nn.optim.Optimizer, "_uses_device_scalars", lambda self, p: True)
    mirrored, optimizer = _scheduled_run(cls, options, missing)
    for a, b in zip(mirrored, plain):
        np.testing.assert_array_equal(a.data, b.data)
    for group in optimizer.param_groups:
        assert backend.is_array(group.lr_array) and group.lr_array[0] == group["lr"]  # the scheduler's latest lr
    saved, expected = optimizer.state_dict(), plain_optimizer.state_dict()
    assert saved["param_groups"] == expected["param_groups"]
    for index, entry in expected["state"].items():
        assert saved["state"][index].keys() == entry.keys()
        for key, value in entry.items():
            if key == "step":
                assert type(saved["state"][index][key]) is int and saved["state"][index][key] == value
                assert optimizer.state[mirrored[index]]["step"].shape == (1,)
            else:
                np.testing.assert_array_equal(saved["state"][index][key], value)
    if cls != "SGD":
        assert [int(c) for c in optimizer.param_groups[0].step_counts] == [5, 7]
        assert [int(c) for c in optimizer.param_groups[1].step_counts] == [6]


def test_kernels_get_the_same_arrays_every_step_with_current_values(device_scalars, monkeypatch):
    """A CUDA graph replays each kernel with the arguments it was captured with: everything that changes from
    step to step must reach the kernel as the same array, whose contents the optimizer updates."""
    import kernels
    calls = []
    real = kernels.adam_update

    def recording(*args, **kwargs):
        calls.append((args, dict(kwargs), float(kwargs["step"][0]), float(kwargs["lr"][0])))
        return real(*args, **kwargs)

    monkeypatch.setattr(kernels, "adam_update", recording)
    params = _ours(_params())
    optimizer = nn.optim.Adam(params, lr=0.01)
    scheduler = nn.optim.StepLR(optimizer, 1, gamma=0.5)
    for step in range(3):
        for p, g in zip(params, _grads(step)):
            _set_ours(p, g)
        optimizer.step()
        scheduler.step()
    per_step = [calls[i:i + len(params)] for i in range(0, len(calls), len(params))]
    assert len(per_step) == 3
    for first, later in [(a, b) for step in per_step[1:] for a, b in zip(per_step[0], step)]:
        assert all(a is b for i, (a, b) in enumerate(zip(first[0], later[0])) if i != 1)  # 1: a new grad here
        assert first[1].keys() == later[1].keys()
        for key, value in first[1].items():
            assert value is later[1][key] if backend.is_array(value) else value == later[1][key], key
    assert [c[2] for c in calls] == [1.0] * 3 + [2.0] * 3 + [3.0] * 3
    assert [c[3] for c in calls] == [0.01] * 3 + [0.005] * 3 + [0.0025] * 3


def test_no_state_or_lr_change_while_capturing(device_scalars, monkeypatch):
    params = _ours(_params())
    adam, sgd = nn.optim.Adam(params, lr=0.01), nn.optim.SGD(params, lr=0.1, momentum=0.9)
    for p, g in zip(params, _grads(0)):
        _set_ours(p, g)
    monkeypatch.setattr(backend, "is_capturing", lambda: True)
    with pytest.raises(RuntimeError, match="Adam.step: Adam's state would be created while a CUDA graph"):
        adam.step()
    with pytest.raises(RuntimeError, match="SGD.step: a momentum buffer would be created"):
        sgd.step()
    monkeypatch.setattr(backend, "is_capturing", lambda: False)
    adam.step()
    monkeypatch.setattr(backend, "is_capturing", lambda: True)
    adam.step()   # everything exists: a capture records the same work as an eager step
    adam.param_groups[0]["lr"] = 0.01   # unchanged: nothing to write
    with pytest.raises(RuntimeError, match="optimizer: lr set to 0.5 while a CUDA graph is being captured"):
        adam.param_groups[0]["lr"] = 0.5


def test_loaded_state_continues_with_device_steps(device_scalars):
    torch = torch_module()
    arrays = _params()
    theirs = _theirs(arrays)
    reference = torch.optim.Adam(theirs, lr=0.01, amsgrad=True)
    _run(reference, theirs, 3, set_grad=_set_theirs)
    ours = _ours([t.detach().numpy() for t in theirs])
    optimizer = nn.optim.Adam(ours, lr=0.5)
    optimizer.load_state_dict(reference.state_dict())
    _run(reference, theirs, 2, first=3, set_grad=_set_theirs)
    _run(optimizer, ours, 2, first=3, set_grad=_set_ours)
    _assert_same(ours, theirs)
    assert optimizer.param_groups[0].lr_array[0] == 0.01
    assert optimizer.state_dict()["state"][0]["step"] == 5


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before `optimizer.step\\(\\)`")
def test_warmup_cosine_rises_over_the_first_epoch_then_follows_torch_cosine():
    torch = torch_module()
    optimizer = nn.optim.Adam(_ours(_params()), lr=0.01)
    scheduler = nn.optim.WarmupCosineAnnealingLR(optimizer, T_max=4, eta_min=0.001)
    reference = torch.optim.Adam(_theirs(_params()), lr=0.01)
    theirs = torch.optim.lr_scheduler.CosineAnnealingLR(reference, T_max=4, eta_min=0.001)
    seen = []
    for epoch in range(6):
        for batch in range(5):
            scheduler.warm_up(epoch, batch, 5)
            seen.append(optimizer.param_groups[0]["lr"])
        if epoch > 0:
            assert math.isclose(seen[-1], reference.param_groups[0]["lr"], rel_tol=1e-12)
        scheduler.step()
        theirs.step()
    np.testing.assert_allclose(seen[:5], [0.002, 0.004, 0.006, 0.008, 0.01], rtol=1e-12)
    # resumed inside the first epoch (a fresh scheduler, the saved state loaded): the same lrs
    resumed = nn.optim.WarmupCosineAnnealingLR(nn.optim.Adam(_ours(_params()), lr=0.01), T_max=4, eta_min=0.001)
    resumed.warm_up(0, 2, 5)
    assert math.isclose(resumed.optimizer.param_groups[0]["lr"], seen[2], rel_tol=1e-12)


def test_flat_adam_on_the_cpu_steps_parameter_by_parameter():
    """flat=True packs only on the GPU path: on the CPU the parameters keep their arrays, and the steps
    are torch's (the packed path is tested in the simulator and on the GPU)."""
    torch = torch_module()
    arrays = _params()
    ours, theirs = _ours(arrays), _theirs(arrays)
    before = [p.data for p in ours]
    optimizer = nn.optim.Adam(ours, lr=0.01, flat=True)
    _run(optimizer, ours, 3, set_grad=_set_ours)
    _run(torch.optim.Adam(theirs, lr=0.01), theirs, 3, set_grad=_set_theirs)
    _assert_same(ours, theirs)
    assert all(p.data is array for p, array in zip(ours, before))
    assert optimizer.param_groups[0].flat is None


@pytest.mark.parametrize("cls, key, options", [("SGD", "momentum_buffer", dict(lr=0.1, momentum=0.9)),
                                               ("Adam", "exp_avg", {}), ("RMSprop", "square_avg", {}),
                                               ("Adagrad", "sum", {})])
def test_a_loaded_state_of_another_shape_or_parameter_is_refused_clearly(cls, key, options):
    """A state array of the wrong shape (torch takes it, then fails at the next step; a silent reshape here would
    scramble it) or a state for a parameter the groups do not number: errors naming the optimizer and the key."""
    p = nn.Parameter(np.ones((3, 4)))
    optimizer = getattr(nn.optim, cls)([p], **options)
    groups = optimizer.state_dict()["param_groups"]
    for shape in ((4, 3), (7,)):
        with pytest.raises(ValueError, match=rf"^{cls}.load_state_dict: state '{key}' of parameter 0 must have the "
                                             rf"parameter's shape \(3, 4\), got {re.escape(str(shape))}"):
            optimizer.load_state_dict({"state": {0: {"step": 3, key: np.ones(shape)}}, "param_groups": groups})
    with pytest.raises(ValueError, match=rf"^{cls}.load_state_dict: state for parameter 5, but the param groups "
                                         rf"number parameters 0 to 0"):
        optimizer.load_state_dict({"state": {5: {"step": 3, key: np.ones((3, 4))}}, "param_groups": groups})


def _continue_after_deepcopy(cls, options, flat):
    """Two steps of a small model, a deepcopy of (model, optimizer), two more steps of each: the copy's
    parameters and state dict against the original's."""
    import copy

    def step(model, optimizer, seed):
        optimizer.zero_grad()
        (model(nn.Tensor(random_array((4, 3), seed=seed))) ** 2).sum().backward()
        optimizer.step()
    nn.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
    optimizer = getattr(nn.optim, cls)(model.parameters(), flat=flat, **options)
    for seed in range(2):
        step(model, optimizer, seed)
    model_copy, optimizer_copy = copy.deepcopy((model, optimizer))
    for seed in range(2, 4):
        step(model, optimizer, seed)
        step(model_copy, optimizer_copy, seed)
    for p, q in zip(model.parameters(), model_copy.parameters()):
        assert_close(q.data, p.data, np.float32)
    original, copied = optimizer.state_dict()["state"], optimizer_copy.state_dict()["state"]
    assert original.keys() == copied.keys() and len(original) == 4
    for index, entry in original.items():
        for key, value in entry.items():
            if key == "step":
                assert copied[index][key] == value
            else:
                assert_close(copied[index][key], value, np.float32)


@pytest.mark.parametrize("cls, options", [("SGD", dict(lr=0.1, momentum=0.9)), ("Adam", dict(lr=0.01)),
                                          ("RMSprop", dict(lr=0.01, centered=True)), ("Adagrad", dict(lr=0.05))])
@pytest.mark.parametrize("flat", [False, True])
def test_a_deep_copy_of_an_optimizer_keeps_its_state_and_goes_on_as_the_original(cls, options, flat):
    """copy.deepcopy((model, optimizer)), as torch allows: the state was keyed by the parameters' ids, which a
    copy changes (its state was lost); the copy then steps exactly as the original does."""
    _continue_after_deepcopy(cls, options, flat)


def test_a_refused_optimizer_load_leaves_the_state_as_it_was():
    """Every loaded value is checked before any is written in place: the second parameter's misshaped state
    leaves the first's as it was."""
    import copy
    params = [nn.Parameter(np.ones(3)), nn.Parameter(np.ones(4))]
    optimizer = nn.optim.Adam(params, lr=0.1)
    for p in params:
        p.grad = nn.Tensor(np.arange(p.data.size, dtype=float) + 1)
    optimizer.step()
    before = optimizer.state_dict()
    bad = copy.deepcopy(before)
    bad["state"][0]["exp_avg"] = np.full(3, 99.0)
    bad["state"][1]["exp_avg"] = np.full(5, 99.0)
    with pytest.raises(ValueError, match="must have the parameter's shape"):
        optimizer.load_state_dict(bad)
    np.testing.assert_array_equal(optimizer.state_dict()["state"][0]["exp_avg"], before["state"][0]["exp_avg"])
