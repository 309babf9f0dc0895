"""The torch.nn.Module API a PyTorch user relies on (traversal, apply, requires_grad_, dtype conversion,
load_state_dict's result, Sequential / ModuleList / ModuleDict, attribute corner cases), each checked
against the same structure built in torch."""
from collections import OrderedDict

import numpy as np
import pytest

import nn
from nn.optim import _FlatGroup, _ParamGroup
from tests.oracle import torch_module


def _both(build):
    """The same structure from our nn and from torch.nn: build(library) with library one of them."""
    return build(nn), build(torch_module().nn)


def _shared(library):
    """A Sequential holding one Linear twice and a Linear whose weight is the first one's (tied)."""
    shared = library.Linear(2, 2)
    model = library.Sequential(shared, library.BatchNorm1d(2), shared, library.ReLU())
    model.extra = library.Linear(2, 2)
    model.extra.weight = shared.weight
    return model


def _names(pairs):
    return [name for name, _ in pairs]


def _keys(module):
    return list(module.state_dict().keys())


def _layout(module):
    """What a container holds: its keys, the class of each module, its state dict keys."""
    return list(module._modules), [type(m).__name__ for m in module._modules.values()], _keys(module)


# ---- traversal -----------------------------------------------------------------------------------
@pytest.mark.parametrize("call", [
    lambda m: _names(m.named_modules()),
    lambda m: _names(m.named_modules(remove_duplicate=False)),
    lambda m: _names(m.named_modules(prefix="top")),
    lambda m: _names(m.named_children()),
    lambda m: [len(list(m.children())), len(list(m.modules()))],
    lambda m: _names(m.named_parameters()),
    lambda m: _names(m.named_parameters(remove_duplicate=False)),
    lambda m: _names(m.named_parameters(prefix="p", recurse=False)) + _names(m[1].named_parameters("x", False)),
    lambda m: _names(m.named_buffers()) + _names(m.named_buffers("b", remove_duplicate=False)),
    lambda m: _names(m[1].named_buffers(recurse=False)),
    lambda m: [len(list(m.parameters())), len(list(m.parameters(recurse=False))), len(list(m.buffers())),
               len(list(m[1].buffers(recurse=False)))],
    lambda m: _keys(m),
], ids=["modules", "modules-all", "modules-prefix", "children", "counts", "parameters", "parameters-all",
        "parameters-prefix-no-recurse", "buffers", "buffers-no-recurse", "iterators", "state-dict"])
def test_traversal_lists_shared_modules_and_parameters_as_torch(call):
    ours, theirs = _both(_shared)
    assert call(ours) == call(theirs)


def test_shapes_of_parameters_and_buffers_follow_torch():
    ours, theirs = _both(_shared)
    for (name, p), (_, q) in zip(ours.named_parameters(), theirs.named_parameters()):
        assert p.shape == tuple(q.shape), name
    for (name, b), (_, c) in zip(ours.named_buffers(), theirs.named_buffers()):
        assert b.shape == tuple(c.shape) and b.dtype == c.numpy().dtype, name


def test_apply_visits_children_first_then_self_once_each():
    ours, theirs = _both(_shared)
    seen = {"ours": [], "theirs": []}
    assert ours.apply(lambda m: seen["ours"].append(type(m).__name__)) is ours
    theirs.apply(lambda m: seen["theirs"].append(type(m).__name__))
    assert seen["ours"] == seen["theirs"] == ["Linear", "BatchNorm1d", "ReLU", "Linear", "Sequential"]


def test_apply_as_custom_initialisation():
    def init(module):
        if isinstance(module, nn.Linear):
            module.weight.data[...] = 0.5
            module.bias.data[...] = -1.0
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Sequential(nn.Linear(4, 2))).apply(init)
    for name, parameter in model.named_parameters():
        assert (parameter.data == (0.5 if name.endswith("weight") else -1.0)).all(), name


def test_apply_refuses_what_is_not_callable():
    with pytest.raises(TypeError, match="Sequential.apply: fn must be callable, got int"):
        nn.Sequential(nn.ReLU()).apply(3)


def test_requires_grad_freezes_parameters_as_torch():
    torch = torch_module()
    ours, theirs = _both(lambda library: library.Sequential(library.Linear(3, 4), library.Linear(4, 2)))
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    assert ours[0].requires_grad_(False) is ours[0]
    theirs[0].requires_grad_(False)
    x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    ours(nn.Tensor(x)).sum().backward()
    theirs(torch.from_numpy(x)).sum().backward()
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters()):
        assert p.requires_grad == q.requires_grad and (p.grad is None) == (q.grad is None), name
        if q.grad is not None:
            np.testing.assert_allclose(p.grad.data, q.grad.numpy(), rtol=1e-5, atol=1e-6)
    ours.requires_grad_()
    assert all(p.requires_grad for p in ours.parameters())


# ---- dtypes and devices --------------------------------------------------------------------------
def _dtypes(module):
    return [str(value.dtype).replace("torch.", "") for value in list(module.parameters()) + list(module.buffers())]


@pytest.mark.parametrize("convert", [
    (lambda m, torch: m.double(), lambda m: m.double()),
    (lambda m, torch: m.double().float(), lambda m: m.double().float()),
    (lambda m, torch: m.to(torch.float64), lambda m: m.to(np.float64)),
    (lambda m, torch: m.to("cpu", torch.float64), lambda m: m.to("cpu", "float64")),
    (lambda m, torch: m.to(device="cpu", dtype=torch.float64), lambda m: m.to(device="cpu", dtype=np.float64)),
], ids=["double", "float", "to-dtype", "to-device-dtype", "to-keywords"])
def test_float_double_and_to_dtype_convert_floating_arrays_only(convert):
    torch = torch_module()
    convert_theirs, convert_ours = convert
    ours, theirs = _both(lambda library: library.Sequential(library.Linear(3, 4), library.BatchNorm1d(4)))
    assert convert_ours(ours) is ours
    convert_theirs(theirs, torch)
    assert _dtypes(ours) == _dtypes(theirs)
    assert ours[1].num_batches_tracked.dtype == np.int64


def test_double_keeps_parameters_converts_gradients_and_runs_as_torch_in_float64():
    torch = torch_module()
    ours, theirs = _both(lambda library: library.Sequential(library.Linear(3, 4), library.Tanh(),
                                                            library.Linear(4, 2)))
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    parameters = list(ours.parameters())
    ours(nn.Tensor(np.ones((2, 3), np.float32))).sum().backward()
    ours.double()
    theirs.double()
    assert list(ours.parameters()) == parameters   # the same objects: an optimizer keeps them
    assert all(p.grad.dtype == np.float64 for p in parameters)
    x = np.random.default_rng(1).normal(size=(5, 3))
    np.testing.assert_allclose(ours(nn.Tensor(x)).data, theirs(torch.from_numpy(x)).detach().numpy(), rtol=1e-12)


def test_to_keeps_arrays_already_in_place():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    arrays = [p.data for p in model.parameters()] + list(model.buffers())
    model.float().to("cpu").to(np.float32).cpu()
    assert all(a is b for a, b in zip(arrays, [p.data for p in model.parameters()] + list(model.buffers())))


@pytest.mark.parametrize("args,kwargs,error,message", [
    ((np.int64,), {}, TypeError, "Linear.to: dtype must be a floating dtype, got int64"),
    (("gpu",), {}, TypeError, r"Linear.to: expected a device \('cpu' or 'cuda'\) or a floating dtype, got 'gpu'"),
    ((), {"device": "gpu"}, ValueError, "Linear.to: device must be 'cpu' or 'cuda', got 'gpu'"),
    (("cpu", np.float32, np.float64), {}, TypeError, r"Linear.to: expected \(device\), \(dtype\) or"),
])
def test_to_names_a_bad_device_or_dtype(args, kwargs, error, message):
    model = nn.Linear(2, 2)
    with pytest.raises(error, match=message):
        model.to(*args, **kwargs)
    assert model.weight.dtype == np.float32


def test_a_flat_optimizer_notices_a_dtype_change_and_not_a_no_op():
    # Adam/SGD(flat=True) keep every parameter's .data as a view of one buffer and pack again when a
    # .data is no longer their view (_FlatGroup.holds): a conversion that changes nothing must keep the
    # views, one that changes the dtype must replace them (never write into the old buffer)
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    params = list(model.parameters())
    states = [{} for _ in params]
    packed = _FlatGroup.pack(params, states, _ParamGroup(params=params))
    model.float().to("cpu")
    assert packed.holds(params, states)
    before = packed.param_buffer.copy()
    model.double()
    assert not packed.holds(params, states)
    np.testing.assert_array_equal(packed.param_buffer, before)
    np.testing.assert_array_equal(np.concatenate([p.data.ravel() for p in params]), before)


def test_a_stepped_optimizer_refuses_parameters_converted_after_it_as_torch():
    # its moments stay float32: the next step names the mismatch (torch raises too), it does not mix dtypes
    torch = torch_module()
    ours, theirs = _both(lambda library: library.Linear(3, 2))
    ours_optimizer, theirs_optimizer = nn.optim.Adam(ours.parameters()), torch.optim.Adam(theirs.parameters())
    ours(nn.Tensor(np.ones((2, 3), np.float32))).sum().backward()
    theirs(torch.ones((2, 3))).sum().backward()
    ours_optimizer.step()
    theirs_optimizer.step()
    ours.double()(nn.Tensor(np.ones((2, 3)))).sum().backward()
    theirs.double()(torch.ones((2, 3), dtype=torch.float64)).sum().backward()
    with pytest.raises(RuntimeError, match="expected dtype float"):
        theirs_optimizer.step()
    with pytest.raises(TypeError, match="adam_update: all arrays must share one dtype, got float64 and float32"):
        ours_optimizer.step()


# ---- load_state_dict's result --------------------------------------------------------------------
def test_load_state_dict_returns_torchs_named_tuple():
    torch = torch_module()
    ours, theirs = _both(lambda library: library.Linear(2, 3))
    matched = ours.load_state_dict(ours.state_dict()), theirs.load_state_dict(theirs.state_dict())
    assert repr(matched[0]) == str(matched[0]) == repr(matched[1]) == "<All keys matched successfully>"
    partial = {"bias": np.zeros(3, np.float32), "extra": np.zeros(1, np.float32)}
    results = (ours.load_state_dict(partial, strict=False),
               theirs.load_state_dict({k: torch.from_numpy(v) for k, v in partial.items()}, strict=False))
    expected = "_IncompatibleKeys(missing_keys=['weight'], unexpected_keys=['extra'])"
    assert repr(results[0]) == repr(results[1]) == expected
    missing, unexpected = results[0]
    assert isinstance(results[0], tuple) and results[0]._fields == results[1]._fields
    assert (missing, unexpected) == (results[0].missing_keys, results[0].unexpected_keys) == (["weight"], ["extra"])


# ---- Sequential and ModuleList -------------------------------------------------------------------
def _four(library):
    return [library.Linear(1, 2), library.ReLU(), library.Linear(2, 3), library.Tanh()]


SEQUENCE_STEPS = {   # name: what it does to a container; each is compared with torch's after it
    "index": lambda m, L: m[-1],
    "slice": lambda m, L: m[1:3],
    "slice-negative": lambda m, L: m[-2:],
    "slice-step": lambda m, L: m[::2],
    "slice-reversed": lambda m, L: m[::-1],
    "del": lambda m, L: m.__delitem__(1),
    "del-negative": lambda m, L: m.__delitem__(-1),
    "del-slice": lambda m, L: m.__delitem__(slice(0, 2)),
    "append": lambda m, L: m.append(L.Linear(3, 4)),
    "extend": lambda m, L: m.extend([L.Linear(3, 4), L.ReLU()]),
    "insert": lambda m, L: m.insert(1, L.Linear(2, 2)),
    "insert-negative": lambda m, L: m.insert(-1, L.Linear(3, 3)),
    "insert-end": lambda m, L: m.insert(4, L.Linear(3, 3)),
    "pop": lambda m, L: m.pop(0),
    "setitem": lambda m, L: m.__setitem__(-2, L.Linear(2, 5)),
    "iadd": lambda m, L: m.__iadd__(L.Sequential(L.ReLU())),
}


@pytest.mark.parametrize("container", ["Sequential", "ModuleList"])
@pytest.mark.parametrize("step", SEQUENCE_STEPS)
def test_list_operations_keep_torchs_keys_and_order(container, step):
    if container == "ModuleList" and step == "insert-negative":
        pytest.skip("torch.nn.ModuleList.insert takes no negative index (ours does, as Sequential's)")
    make = {"Sequential": lambda L: L.Sequential(*_four(L)), "ModuleList": lambda L: L.ModuleList(_four(L))}[container]
    ours, theirs = _both(make)
    results = SEQUENCE_STEPS[step](ours, nn), SEQUENCE_STEPS[step](theirs, torch_module().nn)
    assert _layout(ours) == _layout(theirs)
    assert [type(m).__name__ for m in ours] == [type(m).__name__ for m in theirs] and len(ours) == len(theirs)
    if isinstance(results[1], torch_module().nn.Module) and results[1] is not theirs:   # a slice, an index
        assert type(results[0]).__name__ == type(results[1]).__name__
        if hasattr(results[1], "_modules") and len(results[1]._modules):
            assert _layout(results[0]) == _layout(results[1])


def test_sequential_from_an_ordered_dict_keeps_names_through_slices_and_append():
    ours, theirs = _both(lambda L: L.Sequential(OrderedDict(conv=L.Linear(1, 2), act=L.ReLU())))
    assert _layout(ours[0:1]) == _layout(theirs[0:1]) == (["conv"], ["Linear"], ["conv.weight", "conv.bias"])
    ours.append(nn.Linear(2, 1))
    theirs.append(torch_module().nn.Linear(2, 1))
    assert _layout(ours) == _layout(theirs)
    np.testing.assert_array_equal(ours(nn.Tensor(np.ones((1, 1), np.float32))).shape, (1, 1))


def test_append_to_a_slice_keeps_every_module():
    # a slice of a Sequential keeps its keys ('2', '3'); torch's append would then replace module '2'
    # (it adds key str(len)): here the slice is renumbered first, so nothing is lost
    sliced = nn.Sequential(*_four(nn))[2:]
    sliced.append(nn.Sigmoid())
    assert _layout(sliced) == (["0", "1", "2"], ["Linear", "Tanh", "Sigmoid"], ["0.weight", "0.bias"])


def test_a_slice_shares_modules_and_runs():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    head = model[:2]
    assert head[0] is model[0] and isinstance(head, nn.Sequential)
    x = nn.Tensor(np.random.default_rng(0).normal(size=(2, 3)).astype(np.float32))
    np.testing.assert_array_equal(model(x).data, model[2](head(x)).data)


@pytest.mark.parametrize("container", [nn.Sequential, lambda *m: nn.ModuleList(m)], ids=["Sequential", "ModuleList"])
@pytest.mark.parametrize("action,error,message", [
    (lambda m: m[5], IndexError, "{name}: index 5 is out of range for 2 modules"),
    (lambda m: m[-3], IndexError, "{name}: index -3 is out of range for 2 modules"),
    (lambda m: m[1.0], TypeError, "{name}: indices must be integers or slices, got float"),
    (lambda m: m.__delitem__(2), IndexError, "{name}: index 2 is out of range"),
    (lambda m: m.__setitem__(0, 3), TypeError, r"{name}: cannot assign int to submodule '0' \(a Module or None"),
    (lambda m: m.insert(3, nn.ReLU()), IndexError, "{name}.insert: index 3 is out of range for 2 modules"),
    (lambda m: m.insert(0, "relu"), TypeError, "{name}.insert: expected a Module, got str"),
    (lambda m: m.append(np.ones(2)), TypeError, "{name}: module '2' must be a Module or None, got ndarray"),
    (lambda m: m.extend([nn.ReLU(), 3]), TypeError, "{name}: module '3' must be a Module or None, got int"),
    (lambda m: m.extend(5), TypeError, "{name}.extend: expected an iterable of Modules, got int"),
    (lambda m: m.extend("relu"), TypeError, "{name}.extend: expected an iterable of Modules, got str"),
    (lambda m: m.insert("a", nn.ReLU()), TypeError, "{name}.insert: index must be an integer, got str"),
    (lambda m: m.insert(1.0, nn.ReLU()), TypeError, "{name}.insert: index must be an integer, got float"),
    (lambda m: m.__setitem__(slice(0, 1), [nn.ReLU()]), TypeError,
     r"{name}: slice assignment is not supported \(nor by torch's {name}\)"),
    (lambda m: m.__setitem__("0", nn.ReLU()), TypeError, "{name}: assignment indices must be integers, got str"),
])
def test_sequence_errors_name_the_class_and_what_was_expected(container, action, error, message):
    model = container(nn.Linear(1, 1), nn.ReLU())
    with pytest.raises(error, match=message.format(name=type(model).__name__)):
        action(model)


@pytest.mark.parametrize("container", ["Sequential", "ModuleList"])
def test_slice_assignment_and_bad_extend_insert_are_refused_as_torch(container):
    """torch's containers refuse the same calls (TypeError), and a refused call leaves the container as it was."""
    torch = torch_module()
    for library in (nn, torch.nn):
        children = [library.Linear(1, 1), library.ReLU()]
        model = library.Sequential(*children) if container == "Sequential" else library.ModuleList(children)
        for action in (lambda: model.__setitem__(slice(0, 1), [library.ReLU()]), lambda: model.extend(5),
                       lambda: model.insert("a", library.ReLU())):
            with pytest.raises(TypeError):
                action()
        assert [type(m).__name__ for m in model] == ["Linear", "ReLU"]


# ---- ModuleDict ----------------------------------------------------------------------------------
def test_module_dict_as_torch():
    torch = torch_module()
    ours, theirs = _both(lambda L: L.ModuleDict({"b": L.Linear(1, 2), "a": L.ReLU()}))
    for model, L in ((ours, nn), (theirs, torch.nn)):
        model.update([("c", L.Linear(2, 2))])
        model.update(OrderedDict(d=L.Tanh(), b=L.Linear(1, 3)))
        model["z"] = L.ReLU()
        del model["a"]
    assert list(ours.keys()) == list(theirs.keys()) == list(ours) == ["b", "c", "d", "z"]
    assert [type(m).__name__ for m in ours.values()] == [type(m).__name__ for m in theirs.values()]
    assert [(k, type(m).__name__) for k, m in ours.items()] == [(k, type(m).__name__) for k, m in theirs.items()]
    assert _keys(ours) == _keys(theirs) and ours["b"].out_features == 3
    assert ("c" in ours, "a" in ours, len(ours)) == ("c" in theirs, "a" in theirs, len(theirs)) == (True, False, 4)
    assert type(ours.pop("c")).__name__ == type(theirs.pop("c")).__name__ == "Linear"
    assert list(ours) == list(theirs)
    ours.clear()
    assert len(ours) == 0 and _keys(ours) == []


@pytest.mark.parametrize("action,error,message", [
    (lambda: nn.ModuleDict({"a": 3}), TypeError, "ModuleDict: module 'a' must be a Module or None, got int"),
    (lambda: nn.ModuleDict(3), TypeError, r"ModuleDict.update: expected a mapping or \(name, module\) pairs, got int"),
    (lambda: nn.ModuleDict([("a",)]), ValueError, r"ModuleDict.update: element 0 must be a \(name, module\) pair"),
    (lambda: nn.ModuleDict({1: nn.ReLU()}), TypeError, "ModuleDict: module name must be a string, got int"),
    (lambda: nn.ModuleDict({"a.b": nn.ReLU()}), KeyError, "ModuleDict: module name must be non-empty without '.'"),
    (lambda: nn.ModuleDict({"keys": nn.ReLU()}), KeyError, "ModuleDict: attribute 'keys' already exists"),
    (lambda: nn.ModuleDict()["missing"], KeyError, "missing"),
])
def test_module_dict_errors(action, error, message):
    with pytest.raises(error, match=message):
        action()


# ---- attribute corner cases ----------------------------------------------------------------------
def test_none_keeps_a_parameter_or_submodule_registered_as_torch():
    ours, theirs = _both(lambda L: L.Sequential(L.Linear(2, 2), L.ReLU()))
    for model in (ours, theirs):
        model[0].bias = None
        model.head = type(model[1])()
        model.head = None
    assert _keys(ours) == _keys(theirs) == ["0.weight"]
    assert list(ours._modules) == list(theirs._modules) == ["0", "1", "head"]
    assert ours.head is None and ours[0].bias is None
    ours[0].bias = nn.Parameter(np.zeros(2, np.float32))
    assert _keys(ours) == ["0.weight", "0.bias"]


def test_deleting_a_submodule_or_parameter_unregisters_it_as_torch():
    ours, theirs = _both(lambda L: L.Sequential(L.Linear(2, 2), L.ReLU()))
    for model in (ours, theirs):
        model.extra = type(model[0])(2, 1)
        del model.extra
        del model[0].bias
    assert _keys(ours) == _keys(theirs) == ["0.weight"]
    with pytest.raises(AttributeError, match="Sequential has no attribute 'extra'"):
        ours.extra


@pytest.mark.parametrize("action,message", [
    (lambda m: setattr(m, "weight", nn.Tensor(np.ones((2, 2), np.float32))),
     r"Linear: cannot assign Tensor to parameter 'weight' \(a Parameter or None expected\)"),
    (lambda m: setattr(m, "weight", np.ones((2, 2), np.float32)),
     r"Linear: cannot assign ndarray to parameter 'weight' \(a Parameter or None expected\)"),
    (lambda m: m.register_parameter("scale", np.ones(1)), "Linear: parameter 'scale' must be a Parameter or None"),
    (lambda m: m.register_buffer("count", [1]), "Linear: buffer 'count' must be an array, a Tensor or None, got list"),
])
def test_assigning_the_wrong_kind_to_a_parameter_is_an_error_as_in_torch(action, message):
    model = nn.Linear(2, 2)
    weight = model.weight
    with pytest.raises(TypeError, match=message):
        action(model)
    assert model.weight is weight and _keys(model) == ["weight", "bias"]


def test_buffer_and_submodule_assignments_check_the_kind():
    batch_norm = nn.BatchNorm1d(2)
    with pytest.raises(TypeError,
                       match=r"BatchNorm1d: cannot assign int to buffer 'running_mean' \(an array, a Tensor or None"):
        batch_norm.running_mean = 3
    batch_norm.running_mean = None
    assert _keys(batch_norm) == ["weight", "bias", "running_var", "num_batches_tracked"]
    model = nn.Sequential(nn.ReLU())
    with pytest.raises(TypeError, match=r"Sequential: cannot assign str to submodule '0' \(a Module or None"):
        model[0] = "relu"
    with pytest.raises(KeyError, match="Sequential: attribute 'training' already exists"):
        model.add_module("training", nn.ReLU())


def test_a_parameter_replaces_a_plain_attribute_of_the_same_name():
    model = nn.Module()
    model.scale = 2.0
    model.scale = nn.Parameter(np.ones(1, np.float32))
    assert isinstance(model.scale, nn.Parameter) and _names(model.named_parameters()) == ["scale"]


def _twins(build):
    torch = torch_module()
    return build(nn), build(torch.nn), torch


def test_train_calls_each_childs_own_train_as_torch():
    """A child that overrides train() (a frozen batch norm) is honoured by its parent's train()/eval()."""
    def build(lib):
        class FrozenNorm(lib.BatchNorm1d):
            def train(self, mode=True):
                return super().train(False)
        return lib.Sequential(lib.Linear(3, 2), FrozenNorm(2))
    ours, theirs, _ = _twins(build)
    for model in (ours, theirs):
        model.train()
    assert ours[1].training is theirs[1].training is False and ours[0].training is True
    with pytest.raises(ValueError, match="Sequential.train: training mode is expected to be boolean, got 'x'"):
        ours.train("x")


def test_state_dict_and_load_go_through_each_modules_own_methods_as_torch():
    """A child's _load_from_state_dict override (renaming an old checkpoint's keys) and state_dict override take
    part in its parent's load_state_dict/state_dict, as in torch."""
    def build(lib):
        class Renamed(lib.Module):
            def __init__(self):
                super().__init__()
                self.lin = lib.Linear(2, 2, bias=False)

            def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
                if prefix + "w" in state_dict:
                    state_dict[prefix + "lin.weight"] = state_dict.pop(prefix + "w")
                super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

        class NoBias(lib.Module):
            def __init__(self):
                super().__init__()
                self.lin = lib.Linear(2, 2)

            def state_dict(self, *args, destination=None, prefix="", keep_vars=False):
                state = super().state_dict(destination=destination, prefix=prefix, keep_vars=keep_vars)
                state.pop(prefix + "lin.bias")
                return state
        return lib.Sequential(Renamed(), NoBias())
    ours, theirs, torch = _twins(build)
    old = {"0.w": np.full((2, 2), 3.0, np.float32), "1.lin.weight": np.ones((2, 2), np.float32),
           "1.lin.bias": np.zeros(2, np.float32)}
    result = ours.load_state_dict({k: v.copy() for k, v in old.items()})
    their_result = theirs.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in old.items()})
    assert repr(result) == repr(their_result) == "<All keys matched successfully>"
    np.testing.assert_array_equal(ours[0].lin.weight.numpy(), theirs[0].lin.weight.detach().numpy())
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["0.lin.weight", "1.lin.weight"]


def test_a_tied_parameter_loads_the_value_of_its_last_name_in_module_order():
    def build(lib):
        first, second = lib.Linear(1, 1, bias=False), lib.Linear(1, 1, bias=False)
        second.weight = first.weight
        return lib.Sequential(first, second)
    ours, theirs, torch = _twins(build)
    values = {"1.weight": np.array([[2.0]], np.float32), "0.weight": np.array([[1.0]], np.float32)}
    ours.load_state_dict(values)
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in values.items()})
    assert ours[0].weight.numpy()[0, 0] == theirs[0].weight.item() == 2.0


def test_an_averaged_model_inside_a_module_forgets_its_start_when_the_module_loads():
    """Loading a not-yet-started average through its parent: the next update copies the weights again."""
    from nn.swa_utils import AveragedModel, get_ema_multi_avg_fn

    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = nn.Linear(1, 1, bias=False)
            self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(0.5))
    wrapper = Wrapper()
    fresh = wrapper.state_dict()
    with nn.no_grad():
        wrapper.model.weight.data[...] = 1.0
        wrapper.ema.update_parameters(wrapper.model)
        wrapper.load_state_dict(fresh)
        wrapper.model.weight.data[...] = 4.0
        wrapper.ema.update_parameters(wrapper.model)
    assert wrapper.ema.module.weight.numpy()[0, 0] == 4.0


def test_a_refused_load_is_a_runtime_error_as_torch_and_changes_nothing():
    model = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    before = {k: v.copy() for k, v in model.state_dict().items()}
    bad = {**{k: np.zeros_like(v) for k, v in before.items()}, "1.weight": np.zeros((2, 3), np.float32)}
    for state, strict in ((bad, False), ({"0.weight": np.zeros((3, 2), np.float32)}, True)):
        with pytest.raises(RuntimeError, match=r"load_state_dict for Sequential: (wrong shapes|missing keys)"):
            model.load_state_dict(state, strict=strict)
        for key, value in model.state_dict().items():
            np.testing.assert_array_equal(value, before[key])
    with pytest.raises(TypeError, match="load_state_dict for Sequential: expected a mapping"):
        model.load_state_dict([("0.weight", np.zeros((3, 2)))])


def test_buffers_take_tensors_as_torch():
    """register_buffer(name, nn.zeros(3)) and assigning a Tensor to a buffer's name, as torch code does (the
    buffer keeps the array; before, both were refused)."""
    module = nn.BatchNorm1d(3)
    module.register_buffer("table", nn.zeros(3) + 2)
    module.running_mean = module.running_mean * 0.5 + nn.Tensor(np.ones(3, np.float32)).detach()
    np.testing.assert_array_equal(module.table, np.full(3, 2, np.float32))
    np.testing.assert_array_equal(module.running_mean, np.ones(3, np.float32))
    assert list(module.state_dict())[-1] == "table"
    with pytest.raises(TypeError, match="cannot assign list to buffer 'running_var'"):
        module.running_var = [1.0, 2.0, 3.0]


def test_a_bare_submodule_name_is_an_unexpected_key_and_loads_in_threads_stay_apart():
    """'0' names a submodule, not an entry (torch reports it); each thread's load writes only its own arrays."""
    import threading
    model = nn.Sequential(nn.Linear(2, 2))
    state = {k: v.copy() for k, v in model.state_dict().items()}
    assert model.load_state_dict({**state, "0": np.zeros(1)}, strict=False).unexpected_keys == ["0"]
    good, refused = nn.Linear(3, 3), nn.Linear(3, 3)
    target = np.full((3, 3), 7.0, np.float32)
    results, barrier = {}, threading.Barrier(2)

    def load(name, module, state):
        barrier.wait()
        for _ in range(200):
            try:
                module.load_state_dict(state)
                results[name] = "ok"
            except RuntimeError:
                results[name] = "refused"
    threads = [threading.Thread(target=load, args=("good", good, {"weight": target, "bias": np.zeros(3)})),
               threading.Thread(target=load, args=("refused", refused, {"weight": target}))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {"good": "ok", "refused": "refused"}
    np.testing.assert_array_equal(good.weight.numpy(), target)
    assert not np.array_equal(refused.weight.numpy(), target)


def test_devices_are_taken_as_torch_code_names_them():
    """'cpu:0', 'cuda:0' and torch.device objects name the devices here too (one GPU: another index is refused),
    and Module.to takes non_blocking= as torch's."""
    torch = torch_module()
    model = nn.Linear(2, 3)
    assert model.to("cpu:0") is model and model.to(torch.device("cpu")) is model
    model.to("cpu", np.float64, non_blocking=True)
    assert model.weight.dtype == np.float64
    tensor = nn.Tensor(np.ones(2))
    assert tensor.to("cpu:0").device == nn.zeros(2, device=torch.device("cpu")).device == "cpu"
    assert tensor.new_zeros(2, device="cpu:0").device == "cpu"
    with pytest.raises(ValueError, match=r"Linear.to: device must be 'cpu' or 'cuda', got 'cuda:1' \('cuda:0'"):
        model.to("cuda:1")
    with pytest.raises(ValueError, match=r"Linear.cuda: device must be 'cpu' or 'cuda', got 'cuda:2'"):
        model.cuda("cuda:2")
