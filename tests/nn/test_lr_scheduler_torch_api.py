"""Learning-rate schedulers used the torch way, step by step against torch.optim.lr_scheduler: the argument types torch
takes, a resume by construction (last_epoch=N), step(epoch), and SequentialLR."""
import warnings

import numpy as np
import pytest

import nn
from tests.oracle import torch_module

# (torch's schedulers warn when stepped before their optimizer: these tests step no optimizer)
pytestmark = pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler")


def _optimizers(lr=0.1, groups=1):
    """(ours, torch's) SGD over the same parameters, one group per parameter."""
    torch = torch_module()
    ours = nn.optim.SGD([{"params": [nn.Parameter(np.ones(2))]} for _ in range(groups)], lr=lr)
    theirs = torch.optim.SGD([{"params": [torch.ones(2, requires_grad=True)]} for _ in range(groups)], lr=lr)
    return ours, theirs


def _lrs(optimizer):
    return [group["lr"] for group in optimizer.param_groups]


def _assert_same_lrs(build, steps):
    """Build one scheduler on each library (build(lr_scheduler module, optimizer)), step both `steps` times:
    the lrs must be torch's, bit for bit."""
    torch = torch_module()
    ours, theirs = _optimizers()
    mine, reference = build(nn.optim.lr_scheduler, ours), build(torch.optim.lr_scheduler, theirs)
    got, expected = [_lrs(ours)], [_lrs(theirs)]
    for _ in range(steps):
        mine.step()
        reference.step()
        got.append(_lrs(ours))
        expected.append(_lrs(theirs))
    assert got == expected
    assert mine.get_last_lr() == reference.get_last_lr()


# ---- 5. argument types torch takes -------------------------------------------------------------------------------

ARGUMENT_CASES = {
    "milestones_floats": ("MultiStepLR", dict(milestones=[100 * 0.2, 100 * 0.3])),
    "milestones_numpy": ("MultiStepLR", dict(milestones=np.array([20, 30]))),
    "T_max_float": ("CosineAnnealingLR", dict(T_max=25.0)),
    "T_max_numpy": ("CosineAnnealingLR", dict(T_max=np.int64(25))),
    "step_size_float": ("StepLR", dict(step_size=7.0)),
    "gamma_float32": ("StepLR", dict(step_size=7, gamma=np.float32(0.5))),
    "exponential_float32": ("ExponentialLR", dict(gamma=np.float32(0.9))),
    "start_factor_float32": ("LinearLR", dict(start_factor=np.float32(0.1), total_iters=np.int64(5))),
}


@pytest.mark.parametrize("case", ARGUMENT_CASES)
def test_number_types_torch_takes_are_taken_with_torch_lrs(case):
    name, options = ARGUMENT_CASES[case]
    _assert_same_lrs(lambda module, optimizer: getattr(module, name)(optimizer, **options), 40)


def test_arguments_of_the_wrong_type_or_value_name_the_scheduler():
    optimizer = _optimizers()[0]
    lr_scheduler = nn.optim.lr_scheduler
    with pytest.raises(TypeError, match="StepLR: gamma must be a number, got str"):
        lr_scheduler.StepLR(optimizer, 3, gamma="0.5")
    with pytest.raises(TypeError, match="CosineAnnealingLR: T_max must be a number, got NoneType"):
        lr_scheduler.CosineAnnealingLR(optimizer, T_max=None)
    with pytest.raises(ValueError, match="CosineAnnealingLR: T_max must be a positive integer, got 100.5"):
        lr_scheduler.CosineAnnealingLR(optimizer, T_max=100.5)
    with pytest.raises(TypeError, match="MultiStepLR: milestones must be a number, got str"):
        lr_scheduler.MultiStepLR(optimizer, [2, "5"])
    with pytest.raises(ValueError, match=r"MultiStepLR: milestones must be integer epochs, got \[2, 5.5\]"):
        lr_scheduler.MultiStepLR(optimizer, [2, 5.5])
    with pytest.raises(TypeError, match="LinearLR: start_factor must be a number, got bool"):
        lr_scheduler.LinearLR(optimizer, start_factor=True)
    with pytest.raises(ValueError, match=r"LinearLR: total_iters must be an integer >= 0, got -1"):
        lr_scheduler.LinearLR(optimizer, total_iters=-1)
    with pytest.raises(TypeError, match="ReduceLROnPlateau: factor must be a number, got str"):
        lr_scheduler.ReduceLROnPlateau(optimizer, factor="0.5")
    lr_scheduler.ReduceLROnPlateau(optimizer, factor=np.float32(0.5))


# ---- 6. a resume by construction (last_epoch=N) ------------------------------------------------------------------

RESUME_CASES = {
    "CosineAnnealingLR": dict(T_max=10, eta_min=0.001),
    "StepLR": dict(step_size=3, gamma=0.5),
    "MultiStepLR": dict(milestones=[2, 5], gamma=0.5),
    "ExponentialLR": dict(gamma=0.9),
    "LinearLR": dict(start_factor=0.25, total_iters=6),
    "LambdaLR": dict(lr_lambda=lambda epoch: 0.9 ** epoch),
}


@pytest.mark.parametrize("name", RESUME_CASES)
@pytest.mark.parametrize("last_epoch", [3, 4, 10])
def test_a_scheduler_built_with_last_epoch_sets_torchs_lrs(name, last_epoch):
    """The checkpoint's groups hold initial_lr and the saved lr; torch 2.13's initial step keeps that lr (most
    schedulers), and the steps after it follow torch's."""
    def build(module, optimizer):
        for group in optimizer.param_groups:
            group["initial_lr"], group["lr"] = 0.1, 0.05
        return getattr(module, name)(optimizer, last_epoch=last_epoch, **RESUME_CASES[name])
    _assert_same_lrs(build, 8)


# ---- 7. step(epoch), deprecated in torch -------------------------------------------------------------------------

EPOCH_CASES = dict(RESUME_CASES, OneCycleLR=dict(max_lr=1.0, total_steps=40))


@pytest.mark.parametrize("name", EPOCH_CASES)
def test_step_with_an_epoch_warns_and_sets_torchs_lrs(name):
    """step(epoch) sets last_epoch and uses the closed form where the scheduler has one (jumping about here)."""
    torch = torch_module()
    ours, theirs = _optimizers()
    mine = getattr(nn.optim.lr_scheduler, name)(ours, **EPOCH_CASES[name])
    reference = getattr(torch.optim.lr_scheduler, name)(theirs, **EPOCH_CASES[name])
    for epoch in [1, 2, 5, 5, 3, 9, 0, 12, 7]:
        with pytest.warns(UserWarning, match="epoch"):
            mine.step(epoch)
        with pytest.warns(UserWarning, match="epoch"):
            reference.step(epoch)
        assert _lrs(ours) == pytest.approx(_lrs(theirs), rel=1e-15, abs=0)
        assert mine.last_epoch == reference.last_epoch == epoch
    mine.step()
    reference.step()
    assert _lrs(ours) == pytest.approx(_lrs(theirs), rel=1e-15, abs=0)


def test_reduce_on_plateau_step_with_an_epoch_sets_last_epoch_as_torch():
    torch = torch_module()
    ours, theirs = _optimizers()
    mine = nn.optim.lr_scheduler.ReduceLROnPlateau(ours, patience=1)
    reference = torch.optim.lr_scheduler.ReduceLROnPlateau(theirs, patience=1)
    for epoch, metric in [(5, 1.0), (6, 1.0), (9, 1.0), (None, 1.0), (2, 0.5)]:
        for scheduler in (mine, reference):
            if epoch is None:
                with warnings.catch_warnings():
                    warnings.simplefilter("error")
                    scheduler.step(metric)
            else:
                with pytest.warns(UserWarning, match="epoch"):
                    scheduler.step(metric, epoch)
        assert mine.last_epoch == reference.last_epoch and _lrs(ours) == _lrs(theirs)


# ---- SequentialLR ------------------------------------------------------------------------------------------------

def _warm_up_then_cosine(module, optimizer, milestone=3):
    return module.SequentialLR(optimizer, [module.LinearLR(optimizer, start_factor=0.1, total_iters=milestone),
                                           module.CosineAnnealingLR(optimizer, T_max=8, eta_min=0.001)],
                               milestones=[milestone])


def test_sequential_warm_up_then_cosine_follows_torch_step_by_step():
    _assert_same_lrs(_warm_up_then_cosine, 14)


def test_sequential_of_three_with_two_groups_follows_torch():
    torch = torch_module()
    ours, theirs = _optimizers(groups=2)
    for optimizer in (ours, theirs):
        optimizer.param_groups[1]["lr"] = 0.02
    schedulers = []
    for module, optimizer in ((nn.optim.lr_scheduler, ours), (torch.optim.lr_scheduler, theirs)):
        parts = [module.ExponentialLR(optimizer, 0.5), module.StepLR(optimizer, 2, 0.5),
                 module.MultiStepLR(optimizer, [1, 3], 0.1)]
        schedulers.append(module.SequentialLR(optimizer, parts, milestones=[2, 6]))
    assert _lrs(ours) == _lrs(theirs)
    for _ in range(10):
        for scheduler in schedulers:
            scheduler.step()
        assert _lrs(ours) == _lrs(theirs) and schedulers[0].get_last_lr() == schedulers[1].get_last_lr()


def test_sequential_state_dict_resumes_and_has_torchs_keys():
    torch = torch_module()
    ours, theirs = _optimizers()
    mine, reference = _warm_up_then_cosine(nn.optim.lr_scheduler, ours), \
        _warm_up_then_cosine(torch.optim.lr_scheduler, theirs)
    for _ in range(5):
        mine.step()
        reference.step()
    saved, expected = mine.state_dict(), reference.state_dict()
    assert saved.keys() == expected.keys()
    assert [entry.keys() for entry in saved["_schedulers"]] == [entry.keys() for entry in expected["_schedulers"]]
    resumed_optimizer = _optimizers()[0]
    resumed = _warm_up_then_cosine(nn.optim.lr_scheduler, resumed_optimizer)
    resumed_optimizer.load_state_dict(ours.state_dict())   # (after building the schedulers, as torch's docs say)
    resumed.load_state_dict(saved)
    assert "_schedulers" in saved   # (the load leaves the dict it is given as it was)
    for _ in range(6):
        resumed.step()
        reference.step()
        assert _lrs(resumed_optimizer) == _lrs(theirs)


def test_sequential_refuses_what_it_cannot_run_naming_itself():
    lr_scheduler = nn.optim.lr_scheduler
    optimizer, other = _optimizers()[0], _optimizers()[0]
    warm_up = lr_scheduler.LinearLR(optimizer)
    with pytest.raises(ValueError, match="SequentialLR: expected at least one scheduler, got none"):
        lr_scheduler.SequentialLR(optimizer, [], milestones=[])
    with pytest.raises(ValueError, match="SequentialLR: expected 1 milestones .*got 2"):
        lr_scheduler.SequentialLR(optimizer, [warm_up, lr_scheduler.ExponentialLR(optimizer, 0.9)], milestones=[2, 4])
    with pytest.raises(ValueError, match="SequentialLR: expected every scheduler to schedule the optimizer given to "
                                         "it, got ExponentialLR at index 1 with another one"):
        lr_scheduler.SequentialLR(optimizer, [warm_up, lr_scheduler.ExponentialLR(other, 0.9)], milestones=[2])
    with pytest.raises(ValueError, match="SequentialLR: expected schedulers stepped per epoch, got ReduceLROnPlateau"):
        lr_scheduler.SequentialLR(optimizer, [warm_up, lr_scheduler.ReduceLROnPlateau(optimizer)], milestones=[2])
