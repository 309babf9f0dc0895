"""nn.init's added initialisers (statistics, fans, errors), the added lr schedulers (lr sequences equal to
torch's, float for float, and state-dict round trips) and clip_grad_value_ (against torch, and over an
optimizer's flat gradient buffer)."""
import math

import numpy as np
import pytest

import nn
import nn.checkpoint
from nn import init
from tests.oracle import assert_close, random_array, torch_module


def _parameter(shape, dtype=np.float32):
    return nn.Parameter(np.full(shape, np.nan, dtype))


# ---- init ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(3, 5), (4, 3, 2, 5), (6, 2, 3), (2, 3, 1, 1, 2), (7, 1)])
def test_fans_match_torch(shape):
    torch = torch_module()
    expected = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    assert init.calculate_fan_in_and_fan_out(_parameter(shape)) == expected


@pytest.mark.parametrize("name", ["xavier_uniform_", "xavier_normal_", "kaiming_normal_", "kaiming_uniform_",
                                  "orthogonal_"])
@pytest.mark.parametrize("shape", [(5,), ()])
def test_initialisers_refuse_fewer_than_two_dims_like_torch(name, shape):
    torch = torch_module()
    with pytest.raises(ValueError):
        getattr(torch.nn.init, name)(torch.empty(shape))
    with pytest.raises(ValueError, match=f"{name}: .*at least 2 dims, got shape"):   # the initialiser called
        getattr(init, name)(_parameter(shape))


@pytest.mark.parametrize("name", ["kaiming_uniform_", "kaiming_normal_", "xavier_uniform_", "xavier_normal_"])
@pytest.mark.parametrize("shape", [(0,), (0, 3), (3, 0), (0, 0), (4, 0, 3, 3), (4, 3, 0, 0)])
def test_initialisers_of_zero_element_tensors_return_them_unchanged_like_torch(name, shape):
    """kaiming_*: torch's warning and the tensor back (a zero fan divided by zero here before); xavier_*: the
    tensor back, also where both fans are 0 (torch divides by zero there)."""
    torch = torch_module()
    ours = _parameter(shape)
    kaiming = name.startswith("kaiming")
    if kaiming:
        with pytest.warns(UserWarning, match="Initializing zero-element tensors is a no-op"):
            torch_result = getattr(torch.nn.init, name)(torch.empty(shape))
        assert tuple(torch_result.shape) == shape
        with pytest.warns(UserWarning, match="Initializing zero-element tensors is a no-op"):
            result = getattr(init, name)(ours)
    elif shape in ((0,),):
        with pytest.raises(ValueError, match=f"{name}: .*at least 2 dims"):   # torch: ValueError too
            getattr(init, name)(ours)
        return
    else:
        result = getattr(init, name)(ours)
    assert result is ours and ours.shape == shape


DRAWING = ["uniform_", "normal_", "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_",
           "trunc_normal_", "orthogonal_"]


@pytest.mark.parametrize("name", DRAWING + ["zeros_", "ones_", "eye_"])
@pytest.mark.parametrize("copy", ["transpose", "expand"])
def test_initialisers_refuse_copies_torch_gives_as_views(name, copy):
    """w.t() and b.expand() are views in torch, so initialising them writes into w or b; here they are copies,
    and an initialiser refuses them as the in-place Tensor ops do (it silently left w unchanged before)."""
    weight = _parameter((4, 3))
    before = weight.numpy().copy()
    view = weight.t() if copy == "transpose" else weight[:1].expand(4, 3)
    with pytest.raises(RuntimeError, match=f"{name}: this tensor is a copy made by (permute/transpose|expand)"):
        getattr(init, name)(view)
    np.testing.assert_array_equal(weight.numpy(), before)


@pytest.mark.parametrize("name", DRAWING)
def test_initialisers_refuse_integer_tensors_as_torch(name):
    """torch raises for random draws into an integer tensor; a cast here truncated them (uniform_ gave zeros)."""
    with pytest.raises(TypeError, match=f"{name}: random values need a floating tensor, got int64"):
        getattr(init, name)(nn.Tensor(np.zeros((4, 3), np.int64)))
    assert init.zeros_(nn.Tensor(np.ones((2, 2), np.int64))).numpy().sum() == 0   # a constant is fine, as torch


def test_initialiser_arguments_are_checked_by_name():
    weight = _parameter((4, 3))
    for call, error, message in [
            (lambda: init.uniform_(weight, 3.0, 1.0), ValueError, r"uniform_: the range \[a, b\) needs a <= b"),
            (lambda: init.normal_(weight, 0.0, -1.0), ValueError, r"normal_: std must be >= 0, got -1.0"),
            (lambda: init.calculate_gain("leaky_relu", True), ValueError,
             r"calculate_gain: negative_slope must be a number, got True"),
            (lambda: init.kaiming_uniform_(weight, generator=object()), TypeError,
             r"kaiming_uniform_: generator must be a numpy.random.Generator"),
            (lambda: init.constant_(weight, nn.Tensor(np.ones(2))), ValueError,
             r"constant_: val must be a number or 0-d, got shape \(2,\)"),
            (lambda: init.eye_(_parameter((2, 3, 4))), ValueError, r"eye_: needs a 2-D tensor"),
            (lambda: init.dirac_(_parameter((2, 3))), ValueError, r"dirac_: needs a 3-, 4- or 5-D tensor"),
            (lambda: init.dirac_(_parameter((5, 3, 3)), groups=2), ValueError, r"dirac_: groups must be a positive")]:
        with pytest.raises(error, match=message):
            call()
    assert init.constant_(weight, nn.Tensor(np.array(2.5))).numpy().max() == 2.5


@pytest.mark.parametrize("shape, groups", [((3, 5), None), ((5, 3), None), ((6, 4, 3, 3), 2), ((4, 4, 5), 1),
                                           ((2, 3, 3, 2, 3), 1), ((4, 6, 3, 3), 2)])
def test_eye_and_dirac_match_torch(shape, groups):
    torch = torch_module()
    if groups is None:
        ours, theirs = init.eye_(_parameter(shape)), torch.nn.init.eye_(torch.empty(shape))
    else:
        ours, theirs = init.dirac_(_parameter(shape), groups), torch.nn.init.dirac_(torch.empty(shape), groups)
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_torchs_private_fan_helpers_exist():
    """User code (and copied torch layers' reset_parameters) call torch.nn.init's private fan helpers."""
    torch = torch_module()
    for shape in [(4, 3), (6, 2, 3, 3)]:
        assert init._calculate_fan_in_and_fan_out(_parameter(shape)) == \
            torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
        for mode in ("fan_in", "fan_out"):
            assert init._calculate_correct_fan(_parameter(shape), mode) == \
                torch.nn.init._calculate_correct_fan(torch.empty(shape), mode)


@pytest.mark.parametrize("nonlinearity, param", [("linear", None), ("conv1d", None), ("conv_transpose3d", None),
                                                 ("sigmoid", None), ("tanh", None), ("relu", None),
                                                 ("leaky_relu", None), ("leaky_relu", 0.2), ("selu", None)])
def test_calculate_gain_matches_torch(nonlinearity, param):
    torch = torch_module()
    assert init.calculate_gain(nonlinearity, param) == torch.nn.init.calculate_gain(nonlinearity, param)


def test_xavier_uniform_bounds_and_spread():
    weight = _parameter((400, 300))
    init.xavier_uniform_(weight, gain=1.5)
    bound = 1.5 * math.sqrt(6.0 / 700)
    values = weight.data.astype(np.float64)
    assert weight.dtype == np.float32
    assert np.abs(values).max() <= bound * (1 + 1e-6) and np.abs(values).max() > 0.999 * bound
    assert abs(values.mean()) < 0.01 * bound
    assert values.std() == pytest.approx(bound / math.sqrt(3), rel=0.01)


@pytest.mark.parametrize("name, shape, options, expected_std", [
    ("xavier_normal_", (300, 200), dict(gain=0.5), 0.5 * math.sqrt(2.0 / 500)),
    ("kaiming_normal_", (64, 32, 3, 3), dict(mode="fan_out", nonlinearity="relu"), math.sqrt(2.0 / (64 * 9))),
    ("kaiming_normal_", (250, 180), dict(a=0.3), math.sqrt(2.0 / (1 + 0.09)) / math.sqrt(180)),
])
def test_normal_initialisers_spread(name, shape, options, expected_std):
    weight = _parameter(shape)
    getattr(init, name)(weight, **options)
    values = weight.data.astype(np.float64)
    assert values.std() == pytest.approx(expected_std, rel=0.02)
    assert abs(values.mean()) < 0.02 * expected_std * 5


def test_trunc_normal_bounds_and_moments():
    mean, std, low, high = 0.5, 2.0, -1.0, 3.0
    weight = _parameter((300, 300))
    init.trunc_normal_(weight, mean, std, low, high)
    values = weight.data.astype(np.float64)
    assert values.min() >= low and values.max() <= high
    # the truncated normal's moments, with alpha, beta the bounds in standard units
    alpha, beta = (low - mean) / std, (high - mean) / std
    pdf = [math.exp(-z * z / 2) / math.sqrt(2 * math.pi) for z in (alpha, beta)]
    mass = (math.erf(beta / math.sqrt(2)) - math.erf(alpha / math.sqrt(2))) / 2
    shift = (pdf[0] - pdf[1]) / mass
    expected_mean = mean + std * shift
    expected_std = std * math.sqrt(1 + (alpha * pdf[0] - beta * pdf[1]) / mass - shift ** 2)
    assert values.mean() == pytest.approx(expected_mean, abs=0.01)
    assert values.std() == pytest.approx(expected_std, rel=0.01)
    with pytest.raises(ValueError, match="trunc_normal_: the lower bound a must be below b"):
        init.trunc_normal_(weight, a=1.0, b=1.0)


@pytest.mark.parametrize("shape, gain", [((30, 50), 1.0), ((50, 30), 2.0), ((8, 3, 2, 2), 1.0), ((17, 17), 0.5)])
def test_orthogonal_is_orthogonal(shape, gain):
    weight = _parameter(shape, np.float64)
    init.orthogonal_(weight, gain=gain)
    matrix = weight.data.reshape(shape[0], -1)
    small = matrix @ matrix.T if matrix.shape[0] <= matrix.shape[1] else matrix.T @ matrix
    assert_close(small, gain ** 2 * np.eye(small.shape[0]), np.float64, rtol=0, atol=1e-12)


def test_initialisers_follow_the_generator():
    for name in ["xavier_uniform_", "xavier_normal_", "kaiming_normal_", "orthogonal_", "trunc_normal_"]:
        first, second = _parameter((6, 5)), _parameter((6, 5))
        getattr(init, name)(first, generator=np.random.default_rng(11))
        getattr(init, name)(second, generator=np.random.default_rng(11))
        assert np.array_equal(first.data, second.data) and np.all(np.isfinite(first.data)), name
        nn.manual_seed(5)
        getattr(init, name)(first)
        nn.manual_seed(5)
        getattr(init, name)(second)
        assert np.array_equal(first.data, second.data), name


def test_constant_and_bad_mode():
    weight = _parameter((3, 4))
    assert init.constant_(weight, 0.25) is weight
    assert weight.dtype == np.float32 and np.all(weight.data == np.float32(0.25))
    with pytest.raises(ValueError, match="kaiming_normal_: mode must be 'fan_in' or 'fan_out', got 'fan'"):
        init.kaiming_normal_(weight, mode="fan")


# ---- schedulers ---------------------------------------------------------------------------------

def _optimizers(torch):
    """One SGD each side, two param groups with different lrs."""
    arrays = [random_array((3, 2), np.float64, seed=1), random_array((4,), np.float64, seed=2)]
    ours = nn.optim.SGD([{"params": [nn.Parameter(arrays[0].copy())]},
                         {"params": [nn.Parameter(arrays[1].copy())], "lr": 0.03}], lr=0.1, momentum=0.9)
    theirs = torch.optim.SGD([{"params": [torch.nn.Parameter(torch.tensor(arrays[0]))]},
                              {"params": [torch.nn.Parameter(torch.tensor(arrays[1]))], "lr": 0.03}],
                             lr=0.1, momentum=0.9)
    return ours, theirs


class Warmup:
    """A callable object: LambdaLR's state dict keeps its attributes."""

    def __init__(self, epochs):
        self.epochs = epochs

    def __call__(self, epoch):
        return min(1.0, (epoch + 1) / self.epochs)


SCHEDULERS = {
    "exponential": ("ExponentialLR", dict(gamma=0.9)),
    "multistep": ("MultiStepLR", dict(milestones=[3, 7, 7, 12], gamma=0.5)),
    "lambda": ("LambdaLR", dict(lr_lambda=[lambda epoch: 0.95 ** epoch, Warmup(6)])),
    "linear": ("LinearLR", dict(start_factor=0.25, end_factor=0.9, total_iters=6)),
    "linear-default": ("LinearLR", dict()),
    "onecycle": ("OneCycleLR", dict(max_lr=[0.5, 0.2], total_steps=30)),
    "onecycle-three-phase-linear": ("OneCycleLR", dict(max_lr=0.4, epochs=3, steps_per_epoch=9, pct_start=0.25,
                                                       anneal_strategy="linear", three_phase=True,
                                                       base_momentum=[0.8, 0.7], max_momentum=0.9)),
}


def _scheduler_pair(name, torch):
    cls, options = SCHEDULERS[name]
    ours_optimizer, theirs_optimizer = _optimizers(torch)
    return (getattr(nn.optim.lr_scheduler, cls)(ours_optimizer, **options),
            getattr(torch.optim.lr_scheduler, cls)(theirs_optimizer, **options))


def _lrs(optimizer):
    return [group["lr"] for group in optimizer.param_groups]


@pytest.mark.parametrize("name", SCHEDULERS)
def test_scheduler_lrs_equal_torch(name):
    torch = torch_module()
    ours, theirs = _scheduler_pair(name, torch)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for _ in range(25):
        assert ours.get_last_lr() == theirs.get_last_lr()   # float for float
        assert _lrs(ours.optimizer) == _lrs(theirs.optimizer)
        assert [g["momentum"] for g in ours.optimizer.param_groups] == \
            [g["momentum"] for g in theirs.optimizer.param_groups]   # OneCycleLR cycles it
        ours.optimizer.step()
        theirs.optimizer.step()
        ours.step()
        theirs.step()


@pytest.mark.parametrize("name", SCHEDULERS)
def test_scheduler_state_dict_round_trip_mid_run(name):
    torch = torch_module()
    ours, _ = _scheduler_pair(name, torch)
    for _ in range(5):
        ours.step()
    saved = ours.state_dict()
    saved_lrs = _lrs(ours.optimizer)
    expected = []
    for _ in range(10):
        ours.step()
        expected.append(ours.get_last_lr())
    if name == "lambda":
        ours.lr_lambdas[1].epochs = 99   # the saved state dict keeps the callable object's attributes of then
    again, _ = _scheduler_pair(name, torch)
    if name == "lambda":
        again.lr_lambdas[1].epochs = 1
    again.load_state_dict(saved)
    for group, lr in zip(again.optimizer.param_groups, saved_lrs):   # the lrs live in the optimizer's state
        group["lr"] = lr
    got = []
    for _ in range(10):
        again.step()
        got.append(again.get_last_lr())
    assert got == expected
    if name == "lambda":
        assert saved["lr_lambdas"] == [None, {"epochs": 6}]


@pytest.mark.parametrize("name", [name for name in SCHEDULERS if name != "lambda"])
def test_scheduler_state_dict_loads_into_torchs_scheduler(name):
    """Our state dict, taken mid-run, loads into torch's scheduler (MultiStepLR's milestones stay a Counter,
    which torch's needs), and both step on with the same lrs."""
    torch = torch_module()
    ours, _ = _scheduler_pair(name, torch)
    for _ in range(5):
        ours.optimizer.step()
        ours.step()
    saved = ours.state_dict()
    assert type(saved.get("milestones", {})) is type(getattr(ours, "milestones", {}))
    _, theirs = _scheduler_pair(name, torch)
    theirs.load_state_dict(saved)
    for group, lr in zip(theirs.optimizer.param_groups, _lrs(ours.optimizer)):
        group["lr"] = lr
    for _ in range(10):
        ours.optimizer.step()
        theirs.optimizer.step()
        ours.step()
        theirs.step()
        assert ours.get_last_lr() == theirs.get_last_lr()


def test_scheduler_resumed_with_last_epoch_matches_torch():
    torch = torch_module()
    ours_optimizer, theirs_optimizer = _optimizers(torch)
    for optimizer in (ours_optimizer, theirs_optimizer):
        for group in optimizer.param_groups:
            group["initial_lr"] = group["lr"] * 2
    ours = nn.optim.lr_scheduler.ExponentialLR(ours_optimizer, 0.8, last_epoch=4)
    theirs = torch.optim.lr_scheduler.ExponentialLR(theirs_optimizer, 0.8, last_epoch=4)
    for _ in range(5):
        assert ours.get_last_lr() == theirs.get_last_lr() and ours.last_epoch == theirs.last_epoch
        theirs.optimizer.step()
        ours.step()
        theirs.step()


def test_one_cycle_cycles_adams_first_beta_like_torch():
    torch = torch_module()
    arrays = [random_array((3, 2), np.float64, seed=1)]
    ours = nn.optim.Adam([nn.Parameter(arrays[0].copy())], lr=0.1, betas=(0.9, 0.99))
    theirs = torch.optim.Adam([torch.nn.Parameter(torch.tensor(arrays[0]))], lr=0.1, betas=(0.9, 0.99))
    ours_scheduler = nn.optim.lr_scheduler.OneCycleLR(ours, max_lr=0.3, total_steps=12, div_factor=10.0)
    theirs_scheduler = torch.optim.lr_scheduler.OneCycleLR(theirs, max_lr=0.3, total_steps=12, div_factor=10.0)
    assert list(ours_scheduler.state_dict()) == list(theirs_scheduler.state_dict())
    for _ in range(11):
        assert ours_scheduler.get_last_lr() == theirs_scheduler.get_last_lr()
        assert ours.param_groups[0]["betas"] == theirs.param_groups[0]["betas"]
        theirs.step()
        ours_scheduler.step()
        theirs_scheduler.step()
    ours_scheduler.step()
    with pytest.raises(ValueError, match=r"OneCycleLR: stepped 13 times, past total_steps \(12\)"):
        ours_scheduler.step()
    with pytest.raises(ValueError, match="OneCycleLR: cycle_momentum needs an optimizer with momentum or betas"):
        nn.optim.lr_scheduler.OneCycleLR(_NoMomentum(), max_lr=0.1, total_steps=5)
    with pytest.raises(ValueError, match="OneCycleLR: give either total_steps or both epochs and steps_per_epoch"):
        nn.optim.lr_scheduler.OneCycleLR(ours, max_lr=0.1, epochs=3)
    with pytest.raises(ValueError, match=r"OneCycleLR: pct_start must be a float in \[0, 1\], got 1"):
        nn.optim.lr_scheduler.OneCycleLR(ours, max_lr=0.1, total_steps=5, pct_start=1)
    with pytest.raises(ValueError, match=r"OneCycleLR: max_lr must have one value per param group \(1\), got 2"):
        nn.optim.lr_scheduler.OneCycleLR(ours, max_lr=[0.1, 0.2], total_steps=5)


class _NoMomentum:
    defaults = {"lr": 0.1}
    param_groups = [{"lr": 0.1}]


PLATEAU_OPTIONS = [dict(), dict(mode="max", factor=0.5, patience=1, threshold=0.05, threshold_mode="abs", cooldown=2),
                   dict(patience=0, factor=0.3, min_lr=[0.02, 0.001], threshold=0.1),
                   dict(patience=2, factor=0.5, min_lr=0.01, eps=0.02, cooldown=1)]


def _plateau_metrics():
    """Improving, then flat with noise: a plateau for each setting."""
    rng = np.random.default_rng(3)
    improving = 1.0 / np.arange(1, 16) + rng.uniform(-0.05, 0.05, 15)
    return [float(v) for v in np.concatenate([improving, 0.07 + rng.uniform(-0.01, 0.01, 25)])]


@pytest.mark.parametrize("options", PLATEAU_OPTIONS, ids=str)
def test_reduce_lr_on_plateau_equals_torch(options):
    torch = torch_module()
    ours_optimizer, theirs_optimizer = _optimizers(torch)
    ours = nn.optim.lr_scheduler.ReduceLROnPlateau(ours_optimizer, **options)
    theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(theirs_optimizer, **options)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    reductions = 0
    for metric in _plateau_metrics():
        before = ours.get_last_lr()
        ours.step(nn.Tensor(np.float64(metric)))   # a 0-d Tensor, as a validation loss
        theirs.step(metric)
        reductions += ours.get_last_lr() != before
        assert ours.get_last_lr() == theirs.get_last_lr() == _lrs(ours_optimizer)
        assert (ours.best, ours.num_bad_epochs, ours.cooldown_counter, ours.last_epoch) == \
            (theirs.best, theirs.num_bad_epochs, theirs.cooldown_counter, theirs.last_epoch)
    assert reductions > 0   # the metrics do plateau for each of these settings


def test_reduce_lr_on_plateau_state_dict_round_trip_through_a_checkpoint(tmp_path):
    torch = torch_module()
    metrics = _plateau_metrics()
    ours = nn.optim.lr_scheduler.ReduceLROnPlateau(_optimizers(torch)[0], mode="max", patience=1, cooldown=1)
    for metric in metrics[:12]:
        ours.step(-metric)
    nn.checkpoint.save(tmp_path / "plateau.npz", {"scheduler": ours.state_dict(), "lrs": _lrs(ours.optimizer)})
    expected = []
    for metric in metrics[12:]:
        ours.step(-metric)
        expected.append(ours.get_last_lr())
    state = nn.checkpoint.load(tmp_path / "plateau.npz")
    again = nn.optim.lr_scheduler.ReduceLROnPlateau(_optimizers(torch)[0])
    again.load_state_dict(state["scheduler"])
    for group, lr in zip(again.optimizer.param_groups, state["lrs"]):
        group["lr"] = lr
    assert again.mode == "max" and again.mode_worse == -math.inf
    got = []
    for metric in metrics[12:]:
        again.step(-metric)
        got.append(again.get_last_lr())
    assert got == expected


def test_new_scheduler_bad_arguments():
    optimizer = _optimizers(torch_module())[0]
    lr_scheduler = nn.optim.lr_scheduler
    with pytest.raises(ValueError, match=r"LinearLR: start_factor must be in \(0, 1\], got 0"):
        lr_scheduler.LinearLR(optimizer, start_factor=0)
    with pytest.raises(ValueError, match=r"LinearLR: end_factor must be in \[0, 1\], got 1.5"):
        lr_scheduler.LinearLR(optimizer, end_factor=1.5)
    with pytest.raises(ValueError, match="LambdaLR: expected 2 lr_lambdas"):
        lr_scheduler.LambdaLR(optimizer, [lambda epoch: 1.0])
    with pytest.raises(TypeError, match="LambdaLR: lr_lambda must be a function of the epoch"):
        lr_scheduler.LambdaLR(optimizer, 0.5)
    with pytest.raises(ValueError, match="MultiStepLR: milestones must be integer epochs"):
        lr_scheduler.MultiStepLR(optimizer, [2.5])
    with pytest.raises(ValueError, match="ExponentialLR: gamma must be a finite number >= 0"):
        lr_scheduler.ExponentialLR(optimizer, gamma=-0.5)
    with pytest.raises(ValueError, match="ReduceLROnPlateau: factor must be a number below 1.0, got 1.0"):
        lr_scheduler.ReduceLROnPlateau(optimizer, factor=1.0)
    with pytest.raises(ValueError, match="ReduceLROnPlateau: mode must be 'min' or 'max', got 'avg'"):
        lr_scheduler.ReduceLROnPlateau(optimizer, mode="avg")
    with pytest.raises(ValueError, match="ReduceLROnPlateau: threshold_mode must be 'rel' or 'abs'"):
        lr_scheduler.ReduceLROnPlateau(optimizer, threshold_mode="relative")
    with pytest.raises(ValueError, match="ReduceLROnPlateau: expected 2 min_lrs"):
        lr_scheduler.ReduceLROnPlateau(optimizer, min_lr=[0.1])


# ---- clip_grad_value_ ---------------------------------------------------------------------------

def test_clip_grad_value_matches_torch():
    torch = torch_module()
    arrays = [random_array(shape, np.float64, seed=seed, low=-2, high=2) for seed, shape in enumerate([(3, 4), (5,), (2,)])]
    grads = [random_array(a.shape, np.float64, seed=10 + i, low=-1.5, high=1.5) for i, a in enumerate(arrays)]
    grads[1][2] = np.nan
    ours = [nn.Parameter(a.copy()) for a in arrays]
    theirs = [torch.nn.Parameter(torch.tensor(a)) for a in arrays]
    for p, q, g in list(zip(ours, theirs, grads))[:2]:   # the last parameter has no gradient
        p.grad, q.grad = nn.Tensor(g.copy()), torch.tensor(g.copy())
    assert nn.utils.clip_grad_value_(iter(ours), 0.7) is None
    torch.nn.utils.clip_grad_value_(theirs, 0.7)
    for p, q in zip(ours[:2], theirs[:2]):
        np.testing.assert_array_equal(p.grad.data, q.grad.numpy())
    assert ours[2].grad is None
    single = nn.Parameter(arrays[0].copy())
    single.grad = nn.Tensor(grads[0].copy())
    nn.utils.clip_grad_value_(single, 1)
    assert np.abs(single.grad.data).max() == 1.0
    with pytest.raises(TypeError, match="clip_grad_value_: clip_value must be a number, got str"):
        nn.utils.clip_grad_value_(ours, "0.5")


def test_clip_grad_value_clips_a_flat_gradient_buffer_once(monkeypatch):
    """The flat optimizer mode packs only where the kernels run on the device; its _FlatGroup is built here
    with NumPy arrays, as Adam(flat=True) builds it on the GPU, and backward writes into its buffer."""
    params = [nn.Parameter(random_array(shape, np.float32, seed=i)) for i, shape in enumerate([(4, 3), (3,), (2, 2)])]
    optimizer = nn.optim.Adam(params, lr=0.01)
    group = optimizer.param_groups[0]
    packed = nn.optim._FlatGroup.pack(params, [{} for _ in params], group)
    assert packed is not None
    inputs = random_array((5, 4), np.float32, seed=7, low=-3, high=3)
    x = nn.Tensor(inputs)
    loss = ((x @ params[0] + params[1]) * 3.0).sum() + (params[2] * params[2]).sum() * 2.0
    loss.backward()
    assert packed.gradients_in_place(params)
    expected = [np.clip(p.grad.data, -0.5, 0.5) for p in params]
    sizes = []
    clip = np.clip
    monkeypatch.setattr(np, "clip", lambda a, *args, **kwargs: (sizes.append(a.size), clip(a, *args, **kwargs))[1])
    nn.utils.clip_grad_value_(params, 0.5)
    assert sizes == [packed.grad_buffer.size]   # one clip over the whole buffer
    assert packed.gradients_in_place(params)    # the gradients are still the buffer's views
    for p, e in zip(params, expected):
        np.testing.assert_array_equal(p.grad.data, e)
    monkeypatch.undo()
    nn.utils.clip_grad_value_(params[:2], 0.1)   # not the whole group: parameter by parameter
    assert np.abs(packed.grad_buffer[:15]).max() == np.float32(0.1) and np.abs(params[2].grad.data).max() > 0.1


@pytest.mark.parametrize("foreach", [None, True, False])
def test_clip_grad_norm_takes_foreach(foreach):
    torch = torch_module()
    arrays = [random_array((3, 4), np.float64, seed=1), random_array((5,), np.float64, seed=2)]
    ours = [nn.Parameter(a.copy()) for a in arrays]
    theirs = [torch.nn.Parameter(torch.tensor(a)) for a in arrays]
    for p, q, a in zip(ours, theirs, arrays):
        p.grad, q.grad = nn.Tensor(a * 3), torch.tensor(a * 3)
    total = nn.utils.clip_grad_norm_(ours, 0.5, norm_type=math.inf, foreach=foreach)
    expected = torch.nn.utils.clip_grad_norm_(theirs, 0.5, norm_type=math.inf, foreach=foreach)
    assert float(total) == pytest.approx(float(expected), rel=1e-12)
    for p, q in zip(ours, theirs):
        assert_close(p.grad.data, q.grad.numpy(), np.float64)
