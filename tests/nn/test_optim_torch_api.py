"""Optimizers used the torch way, against torch.optim (float64 on the CPU): a custom Optimizer subclass,
optimizer.state[p], step(closure), load_state_dict's group keys, torch's keyword arguments, the parameters refused or
warned about, and clip_grad_norm_'s infinity norm of an empty gradient."""
import copy
import math
import pickle
import warnings

import numpy as np
import pytest

import nn
from tests.oracle import assert_close, random_array, torch_module

SHAPES = [(4, 3), (5,)]


def _arrays(seed=0):
    return [random_array(shape, np.float64, seed=seed + i) for i, shape in enumerate(SHAPES)]


def _grads(step):
    return [random_array(shape, np.float64, seed=100 + 10 * step + i) for i, shape in enumerate(SHAPES)]


def _pair(arrays):
    """(our Parameters, torch's leaf tensors) holding the same values."""
    torch = torch_module()
    return [nn.Parameter(a.copy()) for a in arrays], [torch.tensor(a.copy(), requires_grad=True) for a in arrays]


def _set_grads(ours, theirs, step):
    torch = torch_module()
    for p, q, g in zip(ours, theirs, _grads(step)):
        p.grad, q.grad = nn.Tensor(g.copy()), torch.tensor(g.copy())


def _assert_same_params(ours, theirs):
    for p, q in zip(ours, theirs):
        assert_close(p.data, q.detach().numpy(), np.float64, name="param")


# ---- 1. a custom optimizer written as for torch --------------------------------------------------------------

def _sign_momentum(module):
    """The same custom optimizer on `module` (nn or torch): its own defaults, step and per-parameter state (a count
    and an array), written only with what torch.optim.Optimizer offers."""
    if module is nn:
        gradient, sign, zeros_like = (lambda p: p.grad.data), np.sign, (lambda p: np.zeros_like(p.data))
    else:
        gradient, sign, zeros_like = (lambda p: p.grad), module.sign, (lambda p: module.zeros_like(p.data))

    class SignMomentum(module.optim.Optimizer):
        def __init__(self, params, lr=0.1, decay=0.5):
            super().__init__(params, dict(lr=lr, decay=decay))

        def step(self, closure=None):
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    state = self.state[p]   # torch: a defaultdict(dict) keyed by the parameter
                    state["count"] = state.get("count", 0) + 1
                    velocity = state.get("velocity")
                    velocity = zeros_like(p) if velocity is None else velocity
                    state["velocity"] = group["decay"] * velocity + sign(gradient(p))
                    p.data -= group["lr"] * state["velocity"]
    return SignMomentum


def test_a_custom_optimizer_subclass_steps_saves_and_loads_as_torch():
    torch = torch_module()
    ours, theirs = _pair(_arrays())
    mine, reference = _sign_momentum(nn)(ours, lr=0.05), _sign_momentum(torch)(theirs, lr=0.05)
    for step in range(3):
        _set_grads(ours, theirs, step)
        mine.step()
        reference.step()
    _assert_same_params(ours, theirs)
    saved, expected = mine.state_dict(), reference.state_dict()
    assert saved["param_groups"] == [{k: v for k, v in group.items()} for group in expected["param_groups"]]
    for index, entry in expected["state"].items():
        assert saved["state"][index]["count"] == entry["count"] == 3
        assert_close(saved["state"][index]["velocity"], entry["velocity"].numpy(), np.float64)

    # a fresh optimizer loads the state and goes on as the uninterrupted one
    resumed_params = [nn.Parameter(p.data.copy()) for p in ours]
    resumed = _sign_momentum(nn)(resumed_params, lr=0.5)
    resumed.load_state_dict(saved)
    assert resumed.param_groups[0]["lr"] == 0.05
    for step in range(3, 5):
        _set_grads(resumed_params, theirs, step)
        resumed.step()
        reference.step()
    _assert_same_params(resumed_params, theirs)
    assert resumed.state[resumed_params[0]]["count"] == 5


def test_the_base_optimizer_step_names_the_subclass_that_lacks_one():
    class NoStep(nn.optim.Optimizer):
        pass
    with pytest.raises(NotImplementedError, match="NoStep: an Optimizer subclass defines step"):
        NoStep([nn.Parameter(np.ones(2))], dict(lr=0.1)).step()


# ---- 2. optimizer.state keyed by the parameters ----------------------------------------------------------------

@pytest.mark.parametrize("cls, options, keys", [
    ("SGD", dict(lr=0.1, momentum=0.9), ["momentum_buffer"]),
    ("Adam", dict(lr=0.01, amsgrad=True), ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"]),
    ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True), ["square_avg", "momentum_buffer", "grad_avg"]),
    ("Adagrad", dict(lr=0.05), ["sum"])])
def test_state_is_read_by_parameter_as_in_torch(cls, options, keys):
    torch = torch_module()
    ours, theirs = _pair(_arrays())
    mine, reference = getattr(nn.optim, cls)(ours, **options), getattr(torch.optim, cls)(theirs, **options)
    for step in range(2):
        _set_grads(ours, theirs, step)
        mine.step()
        reference.step()
    assert len(mine.state) == len(reference.state) == 2
    assert [id(p) for p in mine.state] == [id(p) for p in ours]   # iteration yields the parameters, as torch's
    assert [id(p) for p, _ in mine.state.items()] == [id(p) for p in ours]
    for p, q in zip(ours, theirs):
        assert p in mine.state
        for key in keys:
            assert_close(mine.state[p][key], reference.state[q][key].numpy(), np.float64, name=key)
        if "step" in reference.state[q]:
            assert mine.state[p]["step"] == float(reference.state[q]["step"])
    outsider = nn.Parameter(np.ones(2))
    assert outsider not in mine.state and mine.state.get(outsider) is None
    assert mine.state[outsider] == {} and outsider in mine.state   # defaultdict(dict), as torch's


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_state_by_parameter_survives_copies_of_the_optimizer(how):
    model = nn.Sequential(nn.Linear(3, 2))
    optimizer = nn.optim.Adam(model.parameters(), lr=0.01)
    for p in model.parameters():
        p.grad = nn.Tensor(np.ones(p.shape, p.data.dtype))
    optimizer.step()
    model_copy, optimizer_copy = copy.deepcopy((model, optimizer)) if how == "deepcopy" else \
        pickle.loads(pickle.dumps((model, optimizer)))
    for p, q in zip(model.parameters(), model_copy.parameters()):
        assert q in optimizer_copy.state and p not in optimizer_copy.state
        np.testing.assert_array_equal(optimizer_copy.state[q]["exp_avg"], optimizer.state[p]["exp_avg"])
    state_copy = copy.deepcopy(optimizer.state)   # the mapping alone: by its (copied) parameters
    assert len(state_copy) == 2 and all(p not in state_copy for p in model.parameters())


def test_state_of_a_flat_group_is_views_of_its_buffers(monkeypatch):
    """flat=True (here with NumPy arrays, as wherever the kernels run on the device): state[p]'s moments are
    views of the group's one buffer each, with torch's values."""
    torch = torch_module()
    monkeypatch.setattr(nn.optim.Optimizer, "_uses_device_scalars", lambda self, p: True)
    ours, theirs = _pair(_arrays())
    mine, reference = nn.optim.Adam(ours, lr=0.01, flat=True), torch.optim.Adam(theirs, lr=0.01)
    for step in range(3):
        _set_grads(ours, theirs, step)
        mine.step()
        reference.step()
    packed = mine.param_groups[0].flat
    assert packed
    for p, q in zip(ours, theirs):
        assert np.shares_memory(mine.state[p]["exp_avg"], packed.moments["exp_avg"])
        assert_close(mine.state[p]["exp_avg_sq"], reference.state[q]["exp_avg_sq"].numpy(), np.float64)
    reloaded = nn.optim.Adam(ours, lr=0.01, flat=True)
    reloaded.load_state_dict(mine.state_dict())
    assert [int(reloaded.state[p]["step"]) for p in ours] == [3, 3]


# ---- 3. step(closure) --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls, options", [("SGD", dict(lr=0.1, momentum=0.9)), ("Adam", dict(lr=0.01)),
                                          ("AdamW", dict(lr=0.01)), ("RMSprop", dict(lr=0.01)),
                                          ("Adagrad", dict(lr=0.05))])
def test_step_with_a_closure_returns_its_loss_as_torch(cls, options):
    """The closure recomputes the loss and its gradients, with autograd on even inside no_grad (as torch's)."""
    torch = torch_module()
    ours, theirs = _pair(_arrays())
    mine, reference = getattr(nn.optim, cls)(ours, **options), getattr(torch.optim, cls)(theirs, **options)

    def closure(optimizer, params):
        optimizer.zero_grad()
        loss = sum(((p * p) * 0.5).sum() for p in params)
        loss.backward()
        return loss
    for _ in range(3):
        with nn.no_grad():
            loss = mine.step(lambda: closure(mine, ours))
        with torch.no_grad():
            expected = reference.step(lambda: closure(reference, theirs))
        assert float(loss) == pytest.approx(float(expected.detach()), rel=1e-12)
    _assert_same_params(ours, theirs)
    assert mine.step() is None


# ---- 4. load_state_dict restores every saved group key -----------------------------------------------------------

def test_load_state_dict_restores_every_group_key_so_one_cycle_resumes_as_torch(monkeypatch):
    """OneCycleLR keeps max_lr, min_lr and its momenta in the groups; resumed with last_epoch after a load, it needs
    them. A user's own key survives too, and the loaded lr reaches the device copy of it."""
    torch = torch_module()
    monkeypatch.setattr(nn.optim.Optimizer, "_uses_device_scalars", lambda self, p: True)
    results = []
    for module in (nn, torch):
        params = _pair(_arrays())[0 if module is nn else 1]
        optimizer = module.optim.SGD(params, lr=0.1, momentum=0.9)
        scheduler = module.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1.0, total_steps=100)
        for step in range(10):
            for p, g in zip(params, _grads(step)):
                p.grad = nn.Tensor(g) if module is nn else torch.tensor(g)
            optimizer.step()
            scheduler.step()
        optimizer.param_groups[0]["note"] = "backbone"
        saved = optimizer.state_dict()
        fresh = [p.detach() for p in params] if module is torch else [nn.Parameter(p.data.copy()) for p in params]
        resumed = module.optim.SGD(fresh, lr=0.1, momentum=0.9)
        resumed.load_state_dict(saved)
        group = resumed.param_groups[0]
        if module is nn:
            for p, g in zip(fresh, _grads(10)):
                p.grad = nn.Tensor(g)
            resumed.step()
            assert group.lr_array[0] == group["lr"] == optimizer.param_groups[0]["lr"]
        rescheduled = module.optim.lr_scheduler.OneCycleLR(resumed, max_lr=1.0, total_steps=100, last_epoch=9)
        results.append((rescheduled.get_last_lr(), group["momentum"], group["note"], group["max_lr"], group["min_lr"]))
    assert results[0] == results[1]


# ---- 7. torch's keyword arguments --------------------------------------------------------------------------------

TORCH_OPTIONS = {"SGD": dict(foreach=False, fused=None, differentiable=False),
                 "Adam": dict(foreach=True, fused=False, capturable=True, differentiable=False),
                 "AdamW": dict(foreach=None, fused=None, capturable=False, differentiable=False),
                 "RMSprop": dict(foreach=False, capturable=True, differentiable=False),
                 "Adagrad": dict(foreach=True, fused=None, differentiable=False)}


@pytest.mark.parametrize("cls", TORCH_OPTIONS)
def test_torch_keyword_arguments_are_taken_and_change_nothing(cls):
    torch = torch_module()
    ours, theirs = _pair(_arrays())
    mine = getattr(nn.optim, cls)(ours, lr=0.01, **TORCH_OPTIONS[cls])
    reference = getattr(torch.optim, cls)(theirs, lr=0.01)
    for step in range(3):
        _set_grads(ours, theirs, step)
        mine.step()
        reference.step()
    _assert_same_params(ours, theirs)
    with pytest.raises(ValueError, match=f"{cls}: .*outside autograd, so expected differentiable=False, "
                                         f"got differentiable=True"):
        getattr(nn.optim, cls)(ours, lr=0.01, differentiable=True)


def test_torch_keyword_arguments_torch_refuses_are_refused():
    torch = torch_module()
    ours, theirs = _pair(_arrays())
    with pytest.raises(TypeError):
        torch.optim.SGD(theirs, lr=0.1, capturable=True)
    with pytest.raises(TypeError):
        nn.optim.SGD(ours, lr=0.1, capturable=True)


def test_adam_with_decoupled_weight_decay_is_adamw_as_in_torch():
    torch = torch_module()
    options = dict(lr=0.02, weight_decay=0.1)
    ours, theirs = _pair(_arrays())
    mine = nn.optim.Adam(ours, decoupled_weight_decay=True, **options)
    reference = torch.optim.Adam(theirs, decoupled_weight_decay=True, **options)
    for step in range(3):
        _set_grads(ours, theirs, step)
        mine.step()
        reference.step()
    _assert_same_params(ours, theirs)
    saved = mine.state_dict()
    assert saved["param_groups"][0]["decoupled_weight_decay"] is True
    resumed = nn.optim.Adam(ours, **options)   # (built with L2 decay: the state dict's rule wins, as in torch)
    resumed.load_state_dict(saved)
    torch_resumed = torch.optim.Adam(theirs, **options)
    torch_resumed.load_state_dict(reference.state_dict())
    for step in range(3, 5):
        _set_grads(ours, theirs, step)
        resumed.step()
        torch_resumed.step()
    _assert_same_params(ours, theirs)
    adamw = nn.optim.AdamW(ours, lr=0.01)
    adamw.load_state_dict(nn.optim.Adam(ours, lr=0.01).state_dict())
    assert adamw.param_groups[0]["decoupled_weight_decay"] is True   # as torch's AdamW


# ---- 8. parameters torch refuses or warns about ------------------------------------------------------------------

def test_a_non_leaf_tensor_is_refused_naming_the_optimizer():
    torch = torch_module()
    x, y = nn.Parameter(np.ones(2)), torch.ones(2, requires_grad=True)
    with pytest.raises(ValueError, match="can't optimize a non-leaf Tensor"):
        torch.optim.SGD([y * 2], lr=0.1)
    with pytest.raises(ValueError, match="Adam: can't optimize a non-leaf Tensor .*got Tensor"):
        nn.optim.Adam([x * 2], lr=0.1)
    optimizer = nn.optim.SGD([x], lr=0.1)
    with pytest.raises(ValueError, match="SGD: can't optimize a non-leaf Tensor"):
        optimizer.add_param_group({"params": [x + 1]})


def test_a_parameter_listed_twice_in_a_group_warns_as_torch():
    torch = torch_module()
    x, y = nn.Parameter(np.ones(2)), torch.ones(2, requires_grad=True)
    with pytest.warns(UserWarning, match="duplicate parameters"):
        torch.optim.SGD([y, y], lr=0.1)
    with pytest.warns(UserWarning, match="SGD: a parameter group lists the same parameter more than once"):
        nn.optim.SGD([x, x], lr=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nn.optim.SGD([x, nn.Parameter(np.ones(2))], lr=0.1)


# ---- 9. clip_grad_norm_'s infinity norm of an empty gradient -----------------------------------------------------

@pytest.mark.parametrize("norm_type", [math.inf, -math.inf])
def test_clip_grad_norm_infinity_norm_of_an_empty_gradient_raises_as_torch(norm_type):
    torch = torch_module()
    ours, theirs = _pair([np.zeros((0, 3)), np.ones(2)])
    for p, q in zip(ours, theirs):
        p.grad, q.grad = nn.Tensor(np.ones(p.shape)), torch.ones(q.shape, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="empty"):
        torch.nn.utils.clip_grad_norm_(theirs, 1.0, norm_type)
    with pytest.raises(RuntimeError, match=r"clip_grad_norm_: cannot compute the -?inf norm of an empty gradient.*"
                                           r"got shapes \[\(0, 3\)\]"):
        nn.utils.clip_grad_norm_(ours, 1.0, norm_type)
    assert float(nn.utils.clip_grad_norm_(ours, 1.0, 2.0)) == pytest.approx(
        float(torch.nn.utils.clip_grad_norm_(theirs, 1.0, 2.0)), rel=1e-12)


def test_optimizer_state_copies_as_a_dict():
    import copy
    p = nn.Parameter(np.ones(3, np.float32))
    optimizer = nn.optim.Adam([p])
    p.grad = nn.Tensor(np.ones(3, np.float32))
    optimizer.step()
    for copied in (optimizer.state.copy(), copy.copy(optimizer.state)):
        assert list(copied) == [p] and copied[p] is optimizer.state[p]
