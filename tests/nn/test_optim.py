"""Optimizers, schedulers and clip_grad_norm_ against torch.optim / torch.nn.utils (float64 on the CPU)."""
import math

import numpy as np
import pytest

import nn
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
    assert isinstance(total, float)
    assert total == pytest.approx(float(reference), rel=1e-12)
    for p, q in zip(ours, theirs):
        assert_close(p.grad.data, q.grad.numpy(), np.float64)


def test_clip_grad_norm_non_finite():
    p = nn.Parameter(np.ones(3))
    p.grad = nn.Tensor(np.array([1.0, np.inf, 2.0]))
    with pytest.raises(RuntimeError, match="clip_grad_norm_: the total norm"):
        nn.utils.clip_grad_norm_([p], 1.0, error_if_nonfinite=True)
    assert nn.utils.clip_grad_norm_(nn.Parameter(np.ones(2)), 1.0) == 0.0  # no gradient at all
