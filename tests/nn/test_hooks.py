"""Tensor hooks, retain_grad, Module forward (pre-)hooks and nn.autograd.grad against torch: the same model and
state dict, the same hooks, the same gradients and call orders (float64, CPU path). flat=True is ignored on the
CPU path: tests/simulator/test_hooks_sim.py checks hooks with the flat gradient buffer."""
import copy
import warnings

import numpy as np
import pytest

import nn
from tests.oracle import assert_close, random_array, torch_module


def _models(seed=0):
    """Our Linear-Tanh-Linear in float64 and torch's, with the same weights."""
    torch = torch_module()
    nn.manual_seed(seed)
    ours = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    theirs = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3)).double()
    theirs.load_state_dict({key: torch.from_numpy(value) for key, value in ours.state_dict().items()})
    return ours, theirs


def _inputs(seed=1, shape=(6, 4)):
    x = random_array(shape, np.float64, seed=seed)
    return nn.Tensor(x), torch_module().from_numpy(x.copy())


def _as_numpy(value):
    return value.numpy() if isinstance(value, nn.Tensor) else value.detach().numpy()


def _assert_same_gradients(ours, theirs):
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters()):
        assert_close(p.grad.numpy(), q.grad.numpy(), np.float64, name=name)


def _hooked_forward(model, x, calls, replace=False):
    """Forward through the three layers by hand, with hooks on every activation and on two parameters (of
    different layers: torch's order between one layer's weight and bias is an internal detail). Each hook
    records (name, gradient); with replace=True, the activation a's hook doubles its gradient and the first
    weight's clamps it."""
    def hook(name, change=None):
        def record(grad):
            calls.append((name, _as_numpy(grad).copy()))
            return None if change is None else change(grad)
        return record
    model[0].weight.register_hook(hook("w0", (lambda g: g.clamp(-0.05, 0.05)) if replace else None))
    model[2].bias.register_hook(hook("b2"))
    h = model[0](x)
    h.register_hook(hook("h"))
    a = model[1](h)
    a.register_hook(hook("a", (lambda g: g * 2.0) if replace else None))
    out = model[2](a)
    out.register_hook(hook("out"))
    return h, a, out


@pytest.mark.parametrize("replace", [False, True])
def test_tensor_hooks_see_torchs_gradients_in_torchs_order(replace):
    """Hooks on leaves (parameters) and non-leaves run once each, in torch's order, on torch's gradients; a
    returned tensor replaces the gradient (what flows on, what lands in .grad); a retained non-leaf keeps the
    gradient its hooks leave."""
    (ours, theirs), (x, x_t) = _models(), _inputs()
    calls, calls_t = [], []
    h, a, out = _hooked_forward(ours, x, calls, replace)
    h_t, a_t, out_t = _hooked_forward(theirs, x_t, calls_t, replace)
    a.retain_grad()
    a_t.retain_grad()
    (out * out).sum().backward()
    (out_t * out_t).sum().backward()
    assert [name for name, _ in calls] == [name for name, _ in calls_t] == ["out", "b2", "a", "h", "w0"]
    for (name, grad), (_, grad_t) in zip(calls, calls_t):
        assert_close(grad, grad_t, np.float64, name=name)
    _assert_same_gradients(ours, theirs)
    assert_close(a.grad.numpy(), _as_numpy(a_t.grad), np.float64, name="retained a.grad")


def test_a_leaf_used_several_times_calls_its_hook_once_with_the_whole_gradient():
    """w * w and a weight shared by two ops (tied weights): as torch, the hook sees the sum once, and what it
    returns is what lands."""
    torch = torch_module()
    w0 = random_array((3, 2), np.float64, seed=4)
    for make in (lambda w: (w * w).sum(), lambda w: (w * 2.0).sum() + (w * w * 3.0).sum()):
        seen, seen_t = [], []
        w, w_t = nn.Tensor(w0.copy(), requires_grad=True), torch.tensor(w0, requires_grad=True)
        w.register_hook(lambda g: (seen.append(g.numpy()), g * 0.5)[1])
        w_t.register_hook(lambda g: (seen_t.append(g.numpy().copy()), g * 0.5)[1])
        make(w).backward()
        make(w_t).backward()
        assert len(seen) == len(seen_t) == 1
        assert_close(seen[0], seen_t[0], np.float64)
        assert_close(w.grad.numpy(), w_t.grad.numpy(), np.float64)


def test_removed_hooks_no_longer_run_and_the_others_keep_their_order():
    x = nn.Tensor(random_array((3,), np.float64), requires_grad=True)
    calls = []
    first = x.register_hook(lambda g: calls.append("first"))
    x.register_hook(lambda g: calls.append("second"))
    with x.register_hook(lambda g: calls.append("scoped")):
        (x * 2.0).sum().backward()
    assert calls == ["first", "second", "scoped"]
    calls.clear()
    first.remove()
    first.remove()   # twice is harmless, as torch's
    (x * 2.0).sum().backward()
    assert calls == ["second"]
    np.testing.assert_allclose(x.grad.numpy(), np.full(3, 4.0))


def test_a_tensor_whose_hooks_are_all_removed_is_a_plain_tensor_again():
    """(so a flat optimizer's gradient shortcut applies to it again, and the engine takes the plain path)"""
    p = nn.Parameter(random_array((2, 2)))
    handle = p.register_hook(lambda g: g * 3.0)
    assert p._hooks is not None
    handle.remove()
    assert p._hooks is None
    y = p * 2.0
    y_handle = y.register_hook(lambda g: None)
    assert y._creator[0]._output_hooks is not None
    y_handle.remove()
    assert y._hooks is None and y._creator[0]._output_hooks is None
    y.sum().backward()
    np.testing.assert_allclose(p.grad.numpy(), np.full((2, 2), 2.0))


def test_a_copied_or_pickled_tensor_has_no_hooks_as_torch():
    import pickle
    torch = torch_module()
    p0 = random_array((2,), np.float64)
    p, p_t = nn.Parameter(p0.copy()), torch.nn.Parameter(torch.from_numpy(p0.copy()))
    for parameter in (p, p_t):
        parameter.register_hook(lambda g: g * 2.0)
    copies = [copy.deepcopy(p), pickle.loads(pickle.dumps(p)), copy.deepcopy(p_t)]
    for copied in copies:
        (copied * 1.0).sum().backward()
        np.testing.assert_array_equal(_as_numpy(copied.grad), np.ones(2))
    (p * 1.0).sum().backward()
    np.testing.assert_array_equal(p.grad.numpy(), np.full(2, 2.0))   # the original keeps its hook


def test_hook_errors_as_torch():
    torch = torch_module()
    with pytest.raises(TypeError, match="register_hook: hook must be callable, got int"):
        nn.Tensor(random_array((2,)), requires_grad=True).register_hook(3)
    with pytest.raises(RuntimeError, match="cannot register a hook on a tensor that doesn't require gradient"):
        nn.Tensor(random_array((2,))).register_hook(lambda g: g)
    with pytest.raises(RuntimeError, match="cannot register a hook on a tensor that doesn't require gradient"):
        torch.ones(2).register_hook(lambda g: g)
    for returned, error, message in ((lambda g: nn.Tensor(np.ones(3, np.float32)), RuntimeError,
                                      "has changed the size of value"),
                                     (lambda g: g.double(), RuntimeError, "has changed the type of value"),
                                     (lambda g: 5, TypeError, "expected a Tensor or None from hook")):
        for leaf in (True, False):
            x = nn.Tensor(random_array((2,)), requires_grad=True)
            target = x if leaf else x * 1.0
            target.register_hook(returned)
            with pytest.raises(error, match=message):
                (target * 2.0).sum().backward()


def test_retain_grad_and_the_grad_of_a_non_leaf_as_torch():
    """A non-leaf's .grad is None with torch's warning unless retained; retained, it sums over backwards; a leaf
    ignores retain_grad (retains_grad False); a tensor that needs no gradient cannot retain one."""
    torch = torch_module()
    x0 = random_array((4,), np.float64, seed=2)
    x, x_t = nn.Tensor(x0.copy(), requires_grad=True), torch.tensor(x0, requires_grad=True)
    y, y_t = x * x, x_t * x_t
    with pytest.warns(UserWarning, match="not a leaf Tensor is being accessed"):
        assert y.grad is None
    with pytest.warns(UserWarning, match="not a leaf Tensor is being accessed"):
        assert y_t.grad is None
    assert not y.retains_grad and not y_t.retains_grad
    y.retain_grad()
    y_t.retain_grad()
    assert y.retains_grad and y_t.retains_grad
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert y.grad is None and y_t.grad is None
    for _ in range(2):   # retained gradients add up over backwards, as torch's
        (y * 3.0).sum().backward(retain_graph=True)
        (y_t * 3.0).sum().backward(retain_graph=True)
        assert_close(y.grad.numpy(), y_t.grad.numpy(), np.float64, name="retained")
        assert_close(x.grad.numpy(), x_t.grad.numpy(), np.float64, name="leaf")
    np.testing.assert_allclose(y.grad.numpy(), np.full(4, 6.0))
    x.retain_grad()
    x_t.retain_grad()
    assert not x.retains_grad and not x_t.retains_grad
    with pytest.raises(RuntimeError, match="can't retain_grad on Tensor that has requires_grad=False"):
        nn.Tensor(x0).retain_grad()
    with pytest.raises(RuntimeError, match="can't retain_grad on Tensor that has requires_grad=False"):
        torch.tensor(x0).retain_grad()


@pytest.mark.parametrize("optimizer, options", [("SGD", dict(lr=0.1, momentum=0.9)),
                                                ("Adam", dict(lr=0.01, weight_decay=0.01))])
def test_an_optimizer_steps_with_the_hooked_gradient(optimizer, options):
    """Hooks on parameters of an optimizer made with flat=True (ignored on the CPU path; the simulator test
    checks the flat buffer): each step uses the gradient the hooks returned, torch's weights after three steps."""
    torch = torch_module()
    (ours, theirs), (x, x_t) = _models(seed=3), _inputs(seed=5)
    for model in (ours, theirs):
        model[0].weight.register_hook(lambda g: g * 0.5)
        model[2].bias.register_hook(lambda g: g.clamp(-0.1, 0.1))
    ours_optimizer = getattr(nn.optim, optimizer)(ours.parameters(), flat=True, **options)
    theirs_optimizer = getattr(torch.optim, optimizer)(theirs.parameters(), **options)
    for _ in range(3):
        for model, opt, inputs in ((ours, ours_optimizer, x), (theirs, theirs_optimizer, x_t)):
            opt.zero_grad()
            (model(inputs) ** 2).sum().backward()
            opt.step()
        _assert_same_gradients(ours, theirs)
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters()):
        assert_close(p.numpy(), q.detach().numpy(), np.float64, name=name)


def test_a_hook_that_writes_a_saved_parameter_in_place_trips_the_version_check_as_torch():
    """A hook runs before the backward of the node that made its tensor: writing, there, an array that node saved
    raises as torch's version counter does; writing one already used is fine in both."""
    torch = torch_module()
    p0, q0 = random_array((3,), np.float64, seed=6), random_array((3,), np.float64, seed=7)
    for framework in ("ours", "torch"):
        make = (lambda v: nn.Tensor(v.copy(), requires_grad=True)) if framework == "ours" else \
            (lambda v: torch.tensor(v, requires_grad=True))
        quiet = nn.no_grad if framework == "ours" else torch.no_grad
        p, q = make(p0), make(q0)
        h = p * q                               # saves p (for q's gradient) and q

        def scale_p(grad):
            with quiet():
                p.mul_(2.0)
        h.register_hook(scale_p)
        with pytest.raises(RuntimeError, match="modified by an in-?place operation"):
            (h * 3.0).sum().backward()
        p, q = make(p0), make(q0)
        h = p * 2.0
        out = (h * q).sum()                     # the hook on h runs after h * q's backward
        h.register_hook(scale_p)
        out.backward()


# ---- Module forward hooks ---------------------------------------------------------------------------------
def _module_hooks(model, calls, prepend=True):
    """On the first Linear: a pre-hook that records, one that scales the input (a bare tensor: wrapped in a
    tuple); forward hooks: one that replaces the output, one that records it, one registered last but first
    (prepend). Returns the handles."""
    first = model[0]
    return [
        first.register_forward_pre_hook(lambda module, args: calls.append(("pre", _as_numpy(args[0]).copy()))),
        first.register_forward_pre_hook(lambda module, args: args[0] * 0.5),
        first.register_forward_hook(lambda module, args, output: output + 1.0),
        first.register_forward_hook(lambda module, args, output: calls.append(("post", _as_numpy(output).copy()))),
        first.register_forward_hook(lambda module, args, output: calls.append(("prepended", None)),
                                    prepend=prepend),
    ]


def test_forward_hooks_replace_arguments_and_outputs_in_torchs_order():
    (ours, theirs), (x, x_t) = _models(seed=7), _inputs(seed=8)
    calls, calls_t = [], []
    handles = _module_hooks(ours, calls) + _module_hooks(theirs, calls_t)
    x.requires_grad_()
    x_t.requires_grad_()
    out, out_t = ours(x), theirs(x_t)
    assert [name for name, _ in calls] == [name for name, _ in calls_t] == ["pre", "prepended", "post"]
    assert_close(calls[0][1], x.numpy(), np.float64)
    assert_close(calls[2][1], calls_t[2][1], np.float64, name="hooked output")
    assert_close(out.numpy(), _as_numpy(out_t), np.float64)
    (out ** 2).sum().backward()
    (out_t ** 2).sum().backward()
    _assert_same_gradients(ours, theirs)
    calls_t.clear()
    assert_close(x.grad.numpy(), x_t.grad.numpy(), np.float64, name="input gradient through the scaled input")
    for handle in handles:
        handle.remove()
    calls.clear()
    assert_close(ours(x).numpy(), theirs(x_t).detach().numpy(), np.float64)
    assert calls == calls_t[3:] == [] and ours[0]._call_hooks is None   # back to the plain call


def test_forward_hooks_with_kwargs_and_always_call():
    torch = torch_module()

    class Scale(nn.Module):
        def forward(self, x, factor=1.0):
            if factor < 0:
                raise ValueError("negative factor")
            return x * factor

    class ScaleT(torch.nn.Module):
        def forward(self, x, factor=1.0):
            if factor < 0:
                raise ValueError("negative factor")
            return x * factor

    x0 = random_array((3,), np.float64)
    for module, x in ((Scale(), nn.Tensor(x0)), (ScaleT(), torch.from_numpy(x0.copy()))):
        seen = []
        module.register_forward_pre_hook(lambda m, args, kwargs: (args, {"factor": kwargs["factor"] * 2}),
                                         with_kwargs=True)
        module.register_forward_hook(lambda m, args, kwargs, output: seen.append(kwargs["factor"]),
                                     with_kwargs=True)
        module.register_forward_hook(lambda m, args, output: seen.append("always"), always_call=True)
        np.testing.assert_allclose(_as_numpy(module(x, factor=1.5)), x0 * 3.0)
        assert seen == [3.0, "always"]
        seen.clear()
        with pytest.raises(ValueError, match="negative factor"):
            module(x, factor=-1.0)
        assert seen == ["always"]
        module.register_forward_pre_hook(lambda m, args, kwargs: "bad", with_kwargs=True)
        with pytest.raises(RuntimeError, match="forward pre-hook must return None or a tuple of"):
            module(x, factor=1.0)


def test_forward_hooks_are_not_in_the_state_dict_and_survive_loading_and_copies():
    (ours, theirs), (x, _) = _models(seed=9), _inputs()
    calls = []
    ours.register_forward_hook(lambda module, args, output: calls.append("model"))
    ours[2].register_forward_pre_hook(lambda module, args: calls.append("last"))
    state = ours.state_dict()
    assert list(state) == list(theirs.state_dict())
    ours.load_state_dict({key: value * 2 for key, value in state.items()})
    ours(x)
    assert calls == ["last", "model"]
    calls.clear()
    copy.deepcopy(ours)(x)   # as torch's deepcopy: the copy has the hooks too
    assert calls == ["last", "model"]
    assert len(ours._forward_hooks) == 1 and len(ours[2]._forward_pre_hooks) == 1
    ours._forward_hooks.clear()
    calls.clear()
    ours(x)
    assert calls == ["last"]


def test_module_hook_registration_errors():
    layer = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="Linear.register_forward_hook: hook must be callable, got int"):
        layer.register_forward_hook(3)
    with pytest.raises(TypeError, match="Linear.register_forward_pre_hook: hook must be callable, got str"):
        layer.register_forward_pre_hook("hook")


def test_hooks_on_a_batch_norm_followed_by_relu_in_a_sequential_run():
    """nn.Sequential runs a BatchNorm and a ReLU as one fused op only when neither has forward hooks: with one,
    each module is called, so its hooks run (on either module)."""
    for hooked in (0, 1):
        model = nn.Sequential(nn.BatchNorm1d(3), nn.ReLU())
        calls = []
        model[hooked].register_forward_pre_hook(lambda module, args: calls.append("pre"))
        model[hooked].register_forward_hook(lambda module, args, output: calls.append("post"))
        model(nn.Tensor(random_array((4, 3))))
        assert calls == ["pre", "post"], hooked


# ---- nn.autograd.grad ---------------------------------------------------------------------------------------
def test_autograd_grad_gives_torchs_gradients_and_touches_no_grad():
    """Several inputs (parameters and a non-leaf), a non-scalar output with grad_outputs, two outputs; .grad of
    every parameter is left as it was (None, or the gradient of an earlier backward)."""
    torch = torch_module()
    (ours, theirs), (x, x_t) = _models(seed=11), _inputs(seed=12)
    (ours(x) ** 2).sum().backward()        # earlier gradients on the last layer, which grad must not change
    (theirs(x_t) ** 2).sum().backward()
    for model in (ours, theirs):
        model[0].weight.grad = None
    before = {name: p.grad.numpy().copy() for name, p in ours.named_parameters() if p.grad is not None}
    h, h_t = ours[1](ours[0](x)), theirs[1](theirs[0](x_t))
    out, out_t = ours[2](h), theirs[2](h_t)
    weights = random_array(out.shape, np.float64, seed=13)
    results = nn.autograd.grad([out, (h * h).sum()], [ours[0].weight, h, ours[2].bias],
                               grad_outputs=[nn.Tensor(weights), None], retain_graph=True)
    expected = torch.autograd.grad([out_t, (h_t * h_t).sum()], [theirs[0].weight, h_t, theirs[2].bias],
                                   grad_outputs=[torch.from_numpy(weights), None], retain_graph=True)
    assert len(results) == 3
    for result, reference, name in zip(results, expected, ("w0", "h", "b2")):
        assert isinstance(result, nn.Tensor) and not result.requires_grad
        assert_close(result.numpy(), reference.numpy(), np.float64, name=name)
    assert ours[0].weight.grad is None
    for name, p in ours.named_parameters():
        if name in before:
            np.testing.assert_array_equal(p.grad.numpy(), before[name], err_msg=name)
    again = nn.autograd.grad(out.sum(), ours[0].bias)   # retained: a second pass over the same graph
    assert_close(again[0].numpy(), torch.autograd.grad(out_t.sum(), theirs[0].bias)[0].numpy(), np.float64)
    with pytest.raises(RuntimeError, match="a second time"):
        nn.autograd.grad(out.sum(), ours[0].bias)   # the last call freed the graph (retain_graph=None)


def test_autograd_grad_allow_unused_and_materialize_grads_as_torch():
    torch = torch_module()
    x0 = random_array((3,), np.float64)
    x, unused = nn.Tensor(x0.copy(), requires_grad=True), nn.Tensor(x0.copy(), requires_grad=True)
    x_t, unused_t = torch.tensor(x0, requires_grad=True), torch.tensor(x0, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"inputs\[1\] appears to not have been used in the graph"):
        nn.autograd.grad((x * x).sum(), [x, unused], retain_graph=True)
    with pytest.raises(RuntimeError, match="appears to not have been used in the graph"):
        torch.autograd.grad((x_t * x_t).sum(), [x_t, unused_t], retain_graph=True)
    gx, nothing = nn.autograd.grad((x * x).sum(), [x, unused], allow_unused=True)
    gx_t, nothing_t = torch.autograd.grad((x_t * x_t).sum(), [x_t, unused_t], allow_unused=True)
    assert nothing is None and nothing_t is None
    assert_close(gx.numpy(), gx_t.numpy(), np.float64)
    _, zeros = nn.autograd.grad((x * x).sum(), [x, unused], materialize_grads=True)
    np.testing.assert_array_equal(zeros.numpy(), np.zeros(3))
    assert x.grad is None and unused.grad is None


def test_autograd_grad_runs_the_hooks_torch_runs():
    """The hooks of the non-leaves on the way and of the inputs (a replaced input gradient is what is returned),
    not those of other leaves; a retained non-leaf gets its .grad, as torch's."""
    torch = torch_module()
    x0, w0 = random_array((2,), np.float64, seed=1), random_array((2,), np.float64, seed=2)
    results = {}
    for framework, make, grad in (("ours", lambda v: nn.Tensor(v.copy(), requires_grad=True), nn.autograd.grad),
                                  ("torch", lambda v: torch.tensor(v, requires_grad=True), torch.autograd.grad)):
        calls = []
        x, w = make(x0), make(w0)
        x.register_hook(lambda g: (calls.append("x"), g * 10.0)[1])
        w.register_hook(lambda g: calls.append("w"))
        y = x * w
        y.register_hook(lambda g: calls.append("y"))
        y.retain_grad()
        (gx,) = grad(y.sum(), [x])
        results[framework] = (calls, _as_numpy(gx), _as_numpy(y.grad), x.grad, w.grad)
    ours, theirs = results["ours"], results["torch"]
    assert ours[0] == theirs[0] == ["y", "x"]
    assert_close(ours[1], theirs[1], np.float64)
    assert_close(ours[2], theirs[2], np.float64)
    assert ours[3:] == theirs[3:] == (None, None)


def test_autograd_grad_checks_saved_arrays_as_backward():
    layer = nn.Linear(3, 2)
    x = nn.Tensor(random_array((4, 3)), requires_grad=True)
    out = layer(x).sum()
    with nn.no_grad():
        layer.weight.mul_(2.0)
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        nn.autograd.grad(out, [x])


def test_autograd_grad_errors():
    torch = torch_module()
    x = nn.Tensor(random_array((3,)), requires_grad=True)
    plain = nn.Tensor(random_array((3,)))
    with pytest.raises(NotImplementedError, match="create_graph=True is not supported"):
        nn.autograd.grad((x * x).sum(), [x], create_graph=True)
    cases = [(lambda: nn.autograd.grad((x * x).sum(), [plain]), RuntimeError, r"inputs\[0\] does not require grad"),
             (lambda: nn.autograd.grad((plain * 2.0).sum(), [x]), RuntimeError,
              "element 0 of outputs does not require grad"),
             (lambda: nn.autograd.grad(x * x, [x]), RuntimeError, "implicitly created only for scalar outputs"),
             (lambda: nn.autograd.grad((x * x).sum(), []), RuntimeError, "cannot be empty"),
             (lambda: nn.autograd.grad((x * x).sum(), [3]), TypeError, r"inputs\[0\] is int"),
             (lambda: nn.autograd.grad((x * x).sum(), x, grad_outputs=nn.Tensor(np.ones(3, np.float32))),
              RuntimeError, r"grad_outputs\[0\] has shape \(3,\), but outputs\[0\] has shape \(\)"),
             (lambda: nn.autograd.grad((x * x).sum(), x, grad_outputs=[None, None]), ValueError,
              "2 grad_outputs for 1 outputs")]
    for call, error, message in cases:
        with pytest.raises(error, match=message):
            call()
    x_t = torch.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="does not require grad"):
        torch.autograd.grad((x_t * x_t).sum(), [torch.ones(3)])
    assert x.grad is None


def test_autograd_grad_of_a_leaf_output_and_of_a_sum_over_outputs():
    torch = torch_module()
    x0 = random_array((3,), np.float64)
    x, x_t = nn.Tensor(x0.copy(), requires_grad=True), torch.tensor(x0, requires_grad=True)
    np.testing.assert_array_equal(nn.autograd.grad(x, x, grad_outputs=np.full(3, 2.0))[0].numpy(), np.full(3, 2.0))
    ours = nn.autograd.grad([(x * 2.0).sum(), (x * x).sum()], x)[0]
    theirs = torch.autograd.grad([(x_t * 2.0).sum(), (x_t * x_t).sum()], x_t)[0]
    assert_close(ours.numpy(), theirs.numpy(), np.float64)
    single = nn.Tensor(x0.astype(np.float32), requires_grad=True)   # grad_outputs cast to the output's dtype
    (result,) = nn.autograd.grad(single * 3.0, single, grad_outputs=nn.Tensor(np.full(3, 2.0)))
    assert result.dtype == np.float32
    np.testing.assert_array_equal(result.numpy(), np.full(3, 6.0, np.float32))


# ---- Tensor.backward's torch arguments ----------------------------------------------------------------------
def test_backward_takes_torchs_arguments_gradient_and_inputs():
    """backward(gradient=...) by keyword, and backward(inputs=[...]): only those tensors' .grad (a leaf, a
    non-leaf, one no gradient reaches) change, as torch's; create_graph=True and empty inputs are refused."""
    torch = torch_module()
    values = [random_array((3,), seed=40 + i) for i in range(3)]
    ours = [nn.Tensor(v.copy(), requires_grad=True) for v in values]
    theirs = [torch.tensor(v, requires_grad=True) for v in values]
    for (w, b, c), lib in ((ours, nn), (theirs, torch)):
        h = w * 2 + b
        (h * 3).sum().backward(inputs=[w, c, h])
        (w * b).sum().backward(gradient=lib.tensor(np.array(2.0)), inputs=w)
        assert b.grad is None and c.grad is None
        assert_close(h.grad.numpy() if lib is nn else h.grad.detach().numpy(), np.full(3, 3.0), np.float64)
    assert_close(ours[0].grad.numpy(), theirs[0].grad.numpy(), np.float64)
    w = ours[0]
    with pytest.raises(RuntimeError, match="backward: the `inputs` argument cannot be empty"):
        (w * 2).sum().backward(inputs=[])
    with pytest.raises(NotImplementedError, match="backward: create_graph=True is not supported"):
        (w * 2).sum().backward(create_graph=True)


def test_backward_inputs_count_each_gradient_once_as_torch():
    """backward(inputs=...) with a retained non-leaf among them, or a tensor listed twice: its gradient once
    (both were counted twice), and a non-leaf input retains its gradient, as torch's."""
    torch = torch_module()
    value = random_array((3,), seed=50)
    results = []
    for lib in (nn, torch):
        w = (torch.tensor(value.copy(), requires_grad=True) if lib is torch
             else nn.Tensor(value.copy(), requires_grad=True))
        y = w * 2
        y.retain_grad()
        (y * y).sum().backward(inputs=[y], retain_graph=True)
        first = y.grad.detach().numpy().copy() if lib is torch else y.grad.numpy().copy()
        z = w * 3
        (z * w).sum().backward(inputs=[w, w, z])
        results.append((first, (w.grad.detach() if lib is torch else w.grad).numpy().copy(), z.retains_grad,
                        (z.grad.detach() if lib is torch else z.grad).numpy().copy()))
    (ours_y, ours_w, ours_retains, ours_z), (their_y, their_w, their_retains, their_z) = results
    assert_close(ours_y, their_y, np.float64, name="y.grad")
    assert_close(ours_w, their_w, np.float64, name="w.grad")
    assert_close(ours_z, their_z, np.float64, name="z.grad")
    assert ours_retains and their_retains


def test_grad_of_a_leaf_that_is_also_an_output_runs_its_hook_once_on_the_whole_gradient():
    """nn.autograd.grad([x, f(x)], x): the leaf's gradient given as an output and the one reaching it through the
    graph are summed before its hook sees them (the hook ran twice, on each part), as torch's."""
    torch = torch_module()
    value = random_array((3,), seed=51)
    found = []
    for lib, grad in ((nn, nn.autograd.grad), (torch, torch.autograd.grad)):
        x = nn.Tensor(value.copy(), requires_grad=True) if lib is nn else torch.tensor(value, requires_grad=True)
        calls = []
        x.register_hook(lambda g, calls=calls: (calls.append(1), g.clamp(max=2))[1])
        ones = nn.Tensor(np.ones(3)) if lib is nn else torch.ones(3, dtype=torch.float64)
        (result,) = grad([x, (x * x).sum()], x, grad_outputs=[ones, None])
        found.append((result.detach().numpy() if lib is torch else result.numpy(), len(calls)))
    assert found[0][1] == found[1][1] == 1
    assert_close(found[0][0], found[1][0], np.float64)


def test_always_call_forward_hooks_run_when_a_pre_hook_raises_and_warn_of_their_own_errors():
    """always_call=True: the hook runs when a forward pre-hook raised too, and an error of its own after the
    forward raised is warned of (not silenced), as torch's."""
    layer, calls = nn.Identity(), []

    def failing_pre_hook(module, args):
        raise KeyError("pre")
    layer.register_forward_pre_hook(failing_pre_hook)
    layer.register_forward_hook(lambda module, args, output: calls.append("always"), always_call=True)
    with pytest.raises(KeyError):
        layer(nn.Tensor(np.ones(3)))
    assert calls == ["always"]

    class Failing(nn.Module):
        def forward(self, x):
            raise ValueError("forward")

    def failing_hook(module, args, output):
        raise RuntimeError("hook")
    failing = Failing()
    failing.register_forward_hook(failing_hook, always_call=True)
    with pytest.warns(UserWarning, match="always_call=True.*raised an exception that was silenced"):
        with pytest.raises(ValueError, match="forward"):
            failing(nn.Tensor(np.ones(3)))
