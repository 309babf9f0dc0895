"""CUDA optimizer kernels in the simulator against the CPU path (tiny, odd sizes)."""
import numpy as np
import pytest

import kernels
from kernels.cpu import optim as cpu
from tests.oracle import assert_close, random_array, torch_module

SHAPE = (3, 43)   # 129 elements: not a multiple of the block size


@pytest.mark.parametrize("options", [
    dict(lr=0.1, weight_decay=0.1, maximize=True),
    dict(lr=0.05, momentum=0.9, dampening=0.2, weight_decay=0.01),
    dict(lr=0.05, momentum=0.8, nesterov=True, maximize=True),
])
def test_sgd_kernel_matches_cpu(options):
    param = random_array(SHAPE, seed=1)
    buffer = np.zeros_like(param) if options.get("momentum") else None
    expected_param, expected_buffer = param.copy(), None if buffer is None else buffer.copy()
    flags = dict(dict(momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False), **options)
    for step in range(3):
        grad = random_array(SHAPE, seed=10 + step)
        kernels.sgd_update(param, grad, buffer, first_step=(step == 0), **options)
        cpu.sgd_update(expected_param, grad, expected_buffer, first_step=(step == 0), **flags)
    assert_close(param, expected_param, np.float32)
    if buffer is not None:
        assert_close(buffer, expected_buffer, np.float32)


@pytest.mark.parametrize("decoupled,amsgrad,maximize", [(False, False, False), (False, True, True),
                                                        (True, True, False)])
def test_adam_kernel_matches_cpu(decoupled, amsgrad, maximize):
    param = random_array(SHAPE, seed=2)
    state = [np.zeros_like(param) for _ in range(3)]
    expected = [param.copy()] + [s.copy() for s in state]
    for step in range(1, 4):
        grad = random_array(SHAPE, seed=20 + step) * (1 + 3 * (step % 2))
        kernels.adam_update(param, grad, state[0], state[1], step=step, lr=0.01, weight_decay=0.1,
                            decoupled_weight_decay=decoupled, amsgrad=amsgrad,
                            max_exp_avg_sq=state[2] if amsgrad else None, maximize=maximize)
        cpu.adam_update(expected[0], grad, expected[1], expected[2], expected[3] if amsgrad else None, lr=0.01,
                        beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1, decoupled_weight_decay=decoupled,
                        maximize=maximize, bias_correction1=1 - 0.9 ** step, bias_correction2=1 - 0.999 ** step)
    for actual, reference in zip([param] + state[:2 + amsgrad], expected[:3 + amsgrad]):
        assert_close(actual, reference, np.float32)


def test_adam_kernel_updates_non_contiguous_param_in_place():
    storage = random_array((4, 20), seed=3)
    expected = storage.copy()
    grad = random_array((4, 10), seed=4)
    m, v = np.zeros((4, 10), np.float32), np.zeros((4, 10), np.float32)
    kernels.adam_update(storage[:, ::2], grad, m, v, step=1, lr=0.1)
    expected_param = np.ascontiguousarray(expected[:, ::2])
    cpu.adam_update(expected_param, grad, np.zeros_like(m), np.zeros_like(v), None, lr=0.1, beta1=0.9,
                    beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled_weight_decay=False, maximize=False,
                    bias_correction1=0.1, bias_correction2=1 - 0.999)
    expected[:, ::2] = expected_param
    assert_close(storage, expected, np.float32)


@pytest.mark.parametrize("decoupled,amsgrad,maximize", [(False, True, False), (True, False, True)])
def test_adam_kernel_with_device_step_and_lr_matches_cpu(decoupled, amsgrad, maximize):
    """The step count and lr live in 1-element arrays that change between calls, as in a replayed graph;
    the kernel derives the bias corrections from them in float32."""
    param = random_array(SHAPE, seed=5)
    state = [np.zeros_like(param) for _ in range(3)]
    expected = [param.copy().astype(np.float64)] + [np.zeros(SHAPE) for _ in range(3)]
    step_array, lr_array = np.zeros(1, np.float32), np.zeros(1, np.float32)
    options = dict(weight_decay=0.1, decoupled_weight_decay=decoupled, maximize=maximize)
    for step in range(1, 5):
        grad = random_array(SHAPE, seed=50 + step) * (1 + 3 * (step % 2))
        step_array += 1
        lr_array[0] = 0.01 * (1.0 + np.cos(np.pi * step / 5))
        kernels.adam_update(param, grad, state[0], state[1], step=step_array, lr=lr_array, amsgrad=amsgrad,
                            max_exp_avg_sq=state[2] if amsgrad else None, **options)
        cpu.adam_update(expected[0], grad.astype(np.float64), expected[1], expected[2],
                        expected[3] if amsgrad else None, lr=float(lr_array[0]), beta1=0.9, beta2=0.999, eps=1e-8,
                        bias_correction1=1 - 0.9 ** step, bias_correction2=1 - 0.999 ** step, **options)
    assert step_array[0] == 4   # read, never written, by the kernel
    for actual, reference in zip([param] + state[:2 + amsgrad], expected[:3 + amsgrad]):
        assert_close(actual, reference, np.float32)


def test_adam_kernel_mixes_host_and_device_scalars():
    param = random_array(SHAPE, seed=6)
    grad = random_array(SHAPE, seed=7)
    results = []
    for step, lr in [(3, np.full(1, 0.02, np.float32)), (np.full(1, 3, np.float32), 0.02),
                     (np.full(1, 3, np.float32), np.full(1, 0.02, np.float32))]:
        p, m, v = param.copy(), np.full(SHAPE, 0.1, np.float32), np.full(SHAPE, 0.2, np.float32)
        kernels.adam_update(p, grad, m, v, step=step, lr=lr)
        results.append(p)
    expected, m, v = param.astype(np.float64), np.full(SHAPE, 0.1), np.full(SHAPE, 0.2)
    cpu.adam_update(expected, grad.astype(np.float64), m, v, None, lr=0.02, beta1=0.9, beta2=0.999, eps=1e-8,
                    weight_decay=0.0, decoupled_weight_decay=False, maximize=False,
                    bias_correction1=1 - 0.9 ** 3, bias_correction2=1 - 0.999 ** 3)
    for result in results:
        assert_close(result, expected, np.float32)


@pytest.mark.parametrize("options", [dict(weight_decay=0.1), dict(momentum=0.9, nesterov=True, maximize=True)])
def test_sgd_kernel_with_device_lr_matches_cpu(options):
    param = random_array(SHAPE, seed=8)
    buffer = np.zeros_like(param) if options.get("momentum") else None
    expected_param, expected_buffer = param.copy(), None if buffer is None else buffer.copy()
    flags = dict(dict(momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False), **options)
    lr_array = np.zeros(1, np.float32)
    for step in range(3):
        grad = random_array(SHAPE, seed=80 + step)
        lr_array[0] = 0.1 * 0.5 ** step
        kernels.sgd_update(param, grad, buffer, lr=lr_array, first_step=(step == 0), **options)
        cpu.sgd_update(expected_param, grad, expected_buffer, lr=np.float32(lr_array[0]), first_step=(step == 0),
                       **flags)
    assert_close(param, expected_param, np.float32)
    if buffer is not None:
        assert_close(buffer, expected_buffer, np.float32)


def test_device_scalar_arrays_must_be_float32_on_cuda():
    p, g = np.ones(4, np.float32), np.ones(4, np.float32)
    with pytest.raises(TypeError, match="adam_update: step array must be float32 on cuda, got int64"):
        kernels.adam_update(p, g, p.copy(), p.copy(), step=np.ones(1, np.int64))
    with pytest.raises(TypeError, match="sgd_update: lr array must be float32 on cuda, got float64"):
        kernels.sgd_update(p, g, lr=np.ones(1))


@pytest.mark.parametrize("cls, options", [("Adam", dict(lr=0.01, amsgrad=True)),
                                          ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True))])
def test_optimizer_with_device_lr_and_steps_matches_cpu_path(cls, options, monkeypatch):
    """nn.optim keeps lr and Adam's step counts in arrays wherever the kernels run (here the simulator),
    a scheduler writing lr through; the same steps on the CPU path (NUMBANET_BACKEND=cpu) agree."""
    import nn

    def run():
        params = [nn.Parameter(random_array(shape, seed=60 + i)) for i, shape in enumerate([(5, 7), (9,)])]
        optimizer = getattr(nn.optim, cls)(params, **options)
        scheduler = nn.optim.CosineAnnealingLR(optimizer, T_max=2)
        for step in range(4):
            for i, p in enumerate(params):
                p.grad = nn.Tensor(random_array(p.shape, seed=70 + 10 * step + i))
            optimizer.step()
            scheduler.step()
        return params, optimizer

    on_device, optimizer = run()
    assert isinstance(optimizer.param_groups[0].lr_array, np.ndarray)
    if cls == "Adam":
        assert optimizer.param_groups[0].step_counts.tolist() == [4.0, 4.0]
        assert optimizer.state_dict()["state"][1]["step"] == 4
    monkeypatch.setenv("NUMBANET_BACKEND", "cpu")
    on_cpu, optimizer = run()
    assert optimizer.param_groups[0].lr_array is None
    for a, b in zip(on_device, on_cpu):
        assert_close(a.data, b.data, np.float32)


class _RecordedGraph:
    """A stand-in for a CUDA graph in the simulator: while 'capturing', the device work of a step (every
    kernel launch, and nn.optim's in-place step-count add) is recorded instead of run, with the very
    argument objects it was given; a replay runs it again as recorded, as a graph replays fixed kernels on
    fixed addresses with frozen scalar arguments. No Python of the step runs during a replay."""

    def __init__(self, monkeypatch):
        from kernels.cuda import launch
        import nn.optim
        self.work = []
        self.launch, self.add_one = launch.launch, nn.optim._add_one
        self.monkeypatch = monkeypatch

    def capture(self, step_fn):
        from kernels import backend
        from kernels.cuda import launch
        import nn.optim
        with self.monkeypatch.context() as patch:
            patch.setattr(launch, "launch", lambda *args, **kwargs: self.work.append((self.launch, args, kwargs)))
            patch.setattr(nn.optim, "_add_one", lambda counts: self.work.append((self.add_one, (counts,), {})))
            patch.setattr(backend, "is_capturing", lambda: True)
            step_fn()

    def replay(self):
        for function, args, kwargs in self.work:
            function(*args, **kwargs)


@pytest.mark.parametrize("cls, options", [("Adam", dict(lr=0.02, amsgrad=True)),
                                          ("AdamW", dict(lr=0.02, weight_decay=0.1)),
                                          ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.1)),
                                          ("Adam", dict(lr=0.02, amsgrad=True, flat=True)),
                                          ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.1, flat=True))])
def test_optimizer_step_replayed_like_a_graph_matches_eager_steps(cls, options, monkeypatch):
    """What nn.capture needs from the optimizers: replays of a step recorded once (after an eager warm-up)
    follow eager steps, while the scheduler changes lr between them (written through to the device lr).
    With flat=True the replayed optimizer packs in the warm-up and the eager one steps per parameter."""
    import nn

    def make(options):
        params = [nn.Parameter(random_array(shape, seed=90 + i)) for i, shape in enumerate([(6, 5), (7,)])]
        for i, p in enumerate(params):
            # fixed gradient arrays, as a captured backward writes the same arrays each replay (flat=True
            # moves them into its buffer at the warm-up)
            p.grad = nn.Tensor(random_array(p.shape, seed=95 + i))
        optimizer = getattr(nn.optim, cls)(params, **options)
        return params, optimizer, nn.optim.CosineAnnealingLR(optimizer, T_max=3)

    eager, eager_optimizer, eager_scheduler = make({k: v for k, v in options.items() if k != "flat"})
    replayed, optimizer, scheduler = make(options)
    graph = _RecordedGraph(monkeypatch)
    for step in range(7):
        for p, q in zip(eager, replayed):   # new gradient values in the same arrays
            p.grad.data[...] = q.grad.data[...] = random_array(p.shape, seed=100 + step)
        eager_optimizer.step()
        if step == 0:
            optimizer.step()                   # eager warm-up: creates the state
        else:
            if step == 1:
                graph.capture(optimizer.step)  # records, runs nothing
            graph.replay()
        eager_scheduler.step()
        scheduler.step()
    updates = 1 if options.get("flat") else 2
    assert len(graph.work) == updates + (cls != "SGD")   # the update kernels, and Adam's one step-count add
    for a, b in zip(replayed, eager):
        np.testing.assert_array_equal(a.data, b.data)
    saved, expected = optimizer.state_dict(), eager_optimizer.state_dict()
    assert saved["param_groups"] == expected["param_groups"]
    for index, entry in expected["state"].items():
        for key, value in entry.items():
            np.testing.assert_array_equal(saved["state"][index][key], value)
    if cls != "SGD":
        assert saved["state"][0]["step"] == 7


# ---- Adam(flat=True): one launch per param group, the same results as parameter by parameter --------
def _flat_model(seed):
    import nn
    nn.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 7), nn.BatchNorm1d(3), nn.Linear(1, 3))


def _loss(model, step):
    """A loss of every parameter through autograd's elementwise ops (the model's layers would run GEMM
    kernels, far too slow in the simulator)."""
    import nn
    total = None
    for i, p in enumerate(model.parameters()):
        weights = nn.Tensor(random_array(p.shape, seed=100 * step + i))
        term = (p * weights).sum() + (p * p).sum() * 0.5
        total = term if total is None else total + term
    return total


def _train(flat, steps=4, clip=None, between=None, options=None, optimizer="Adam"):
    """Steps of a tiny model (the same weights and losses for every call); `between(step, model,
    optimizer)` runs after each backward. Returns (model, optimizer, update launches a step)."""
    import nn
    model = _flat_model(0)
    optimizer = getattr(nn.optim, optimizer)(model.parameters(), flat=flat,
                                             **(options or dict(lr=0.05, weight_decay=0.01)))
    calls, adam, sgd = [], kernels.adam_update, kernels.sgd_update
    nn.optim.kernels.adam_update = lambda *a, **k: (calls.append(1), adam(*a, **k))[1]
    nn.optim.kernels.sgd_update = lambda *a, **k: (calls.append(1), sgd(*a, **k))[1]
    try:
        per_step = []
        for step in range(steps):
            optimizer.zero_grad()
            _loss(model, step).backward()
            if between is not None:
                between(step, model, optimizer)
            if clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), clip)
            calls.clear()
            optimizer.step()
            per_step.append(len(calls))
    finally:
        nn.optim.kernels.adam_update, nn.optim.kernels.sgd_update = adam, sgd
    return model, optimizer, per_step


def _assert_same_weights(a, b, exact=True):
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        if exact:
            np.testing.assert_array_equal(p.data, q.data, err_msg=name)
        else:
            assert_close(p.data, q.data, np.float32, name=name)


@pytest.mark.parametrize("name, options", [("Adam", dict(lr=0.05, weight_decay=0.01)),
                                           ("Adam", dict(lr=0.02, amsgrad=True, maximize=True)),
                                           ("AdamW", dict(lr=0.05, weight_decay=0.1))])
def test_flat_adam_is_one_launch_with_the_same_results(name, options):
    flat, optimizer, launches = _train(True, options=options, optimizer=name)
    _assert_same_weights(flat, _train(False, options=options, optimizer=name)[0])
    assert launches == [1, 1, 1, 1]
    packed = optimizer.param_groups[0].flat
    for p, (data, grad, moments) in zip(flat.parameters(), packed.views):
        assert p.data is data and p.grad.data is grad                   # views of the group's buffers
        assert optimizer.state[p]["exp_avg"] is moments["exp_avg"]
    assert _train(False, options=options, optimizer=name)[2] == [6, 6, 6, 6]   # a launch per parameter


def test_flat_gradients_are_clipped_as_one_buffer():
    clipped = _train(True, clip=0.05)[0]
    reference = _train(False, clip=0.05)[0]
    _assert_same_weights(clipped, reference, exact=False)   # one norm over the buffer: other rounding


def test_flat_adam_repacks_after_arrays_are_replaced():
    """The model's load_state_dict copies into its arrays (the packing holds); the optimizer's replaces its
    state arrays: the next step packs again."""
    def reload(step, model, optimizer):
        if step == 1:
            model.load_state_dict(model.state_dict())
        if step == 2:
            optimizer.load_state_dict(optimizer.state_dict())
    flat, optimizer, launches = _train(True, between=reload)
    _assert_same_weights(flat, _train(False, between=reload)[0])
    assert launches == [1, 1, 1, 1]
    assert optimizer.param_groups[0].flat.holds(optimizer.param_groups[0]["params"],
                                                [optimizer.state[p] for p in flat.parameters()])


def test_flat_adam_repacks_after_a_round_trip_through_another_dtype():
    """Module.double() then .float() gives every parameter (and gradient) new arrays: the next step packs
    again instead of updating the old buffer, with the results of an optimizer that never packed."""
    def round_trip(step, model, optimizer):
        if step == 1:
            model.double().float()
    flat, optimizer, launches = _train(True, between=round_trip)
    _assert_same_weights(flat, _train(False, between=round_trip)[0])
    assert launches == [1, 1, 1, 1]
    packed = optimizer.param_groups[0].flat
    assert all(p.data is data for p, (data, _, _) in zip(flat.parameters(), packed.views))


def test_flat_adam_steps_parameter_by_parameter_once_counts_differ():
    """A step where a parameter has no gradient advances the others' counts only: from then on one launch
    with one count cannot follow, and the group steps parameter by parameter."""
    def drop_first(step, model, optimizer):
        if step == 1:
            next(iter(model.parameters())).grad = None
    with pytest.warns(RuntimeWarning, match=r"Adam\(flat=True\): a param group steps parameter by parameter"):
        flat, optimizer, launches = _train(True, between=drop_first)
    _assert_same_weights(flat, _train(False, between=drop_first)[0])
    assert launches == [1, 5, 6, 6]
    assert optimizer.param_groups[0].flat is False


def test_flat_adam_copies_a_hand_set_gradient_in():
    import nn

    def hand_set(step, model, optimizer):
        p = next(iter(model.parameters()))
        p.grad = nn.Tensor(p.grad.data * 2)
    flat, _, launches = _train(True, between=hand_set)
    _assert_same_weights(flat, _train(False, between=hand_set)[0])
    assert launches == [1, 1, 1, 1]


def test_flat_adam_names_a_misshaped_gradient():
    import nn

    def misshape(step, model, optimizer):
        if step == 1:
            p = next(iter(model.parameters()))
            p.grad = nn.Tensor(np.ones((1,), np.float32))   # would broadcast silently into the buffer
    with pytest.raises(ValueError, match="adam_update: grad must have shape"):
        _train(True, between=misshape)


@pytest.mark.parametrize("options", [dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
                                     dict(lr=0.1, maximize=True)])
def test_flat_sgd_is_one_launch_after_the_buffers_are_made(options):
    def drop_first(step, model, optimizer):
        if step == 2:
            next(iter(model.parameters())).grad = None   # no step counts: the packing stays
    for between in (None, drop_first):
        flat, optimizer, launches = _train(True, optimizer="SGD", options=options, between=between)
        _assert_same_weights(flat, _train(False, optimizer="SGD", options=options, between=between)[0])
        first = 6 if options.get("momentum") else 1   # the first step with momentum makes the buffers
        assert launches == [first, 1, 5 if between else 1, 1]
        assert optimizer.param_groups[0].flat
    # packed at the end of the first step, so that a capture after one eager step records one launch
    assert _train(True, steps=1, optimizer="SGD", options=options)[1].param_groups[0].flat


def test_backward_writes_first_gradients_into_the_flat_buffer():
    model, optimizer, _ = _train(True, steps=1)
    packed = optimizer.param_groups[0].flat
    optimizer.zero_grad()
    _loss(model, 5).backward()     # before any step(): take_gradients has not copied anything in
    for p, (_, grad, _) in zip(model.parameters(), packed.views):
        assert p.grad.data is grad and np.shares_memory(p.grad.data, packed.grad_buffer)


def test_clipping_a_flat_group_scales_the_buffer_once(monkeypatch):
    import nn
    model, optimizer, _ = _train(True, steps=1)
    optimizer.zero_grad()
    _loss(model, 5).backward()
    norms, norm = [], np.linalg.norm
    monkeypatch.setattr(np.linalg, "norm", lambda x, *a, **k: (norms.append(x.size), norm(x, *a, **k))[1])
    expected = norm(np.concatenate([p.grad.data.reshape(-1) for p in model.parameters()]))
    total = nn.utils.clip_grad_norm_(model.parameters(), 0.1)
    assert norms[0] == optimizer.param_groups[0].flat.grad_buffer.size and len(norms) == 2   # buffer, then total
    assert_close(total.data, expected, np.float32)
    assert_close(np.float32(norm(optimizer.param_groups[0].flat.grad_buffer)), np.float32(0.1), np.float32)


def test_a_deep_copy_of_a_packed_model_owns_its_gradients():
    """A copy (a best-model snapshot, an averaged model) must not carry the packing: its gradients are its
    own arrays, and clipping them clips them."""
    import copy

    import nn
    model, _, _ = _train(True, steps=2)
    twin = copy.deepcopy(model)
    assert all(p._grad_slot is None for p in twin.parameters())
    twin.zero_grad()
    _loss(twin, 7).backward()
    nn.utils.clip_grad_norm_(twin.parameters(), 0.1)
    assert_close(np.float32(np.linalg.norm(np.concatenate([p.grad.data.reshape(-1) for p in twin.parameters()]))),
                 np.float32(0.1), np.float32)


def test_clipping_flat_gradients_by_value_clips_the_buffer_once(monkeypatch):
    """clip_grad_value_ over a packed group: one clip over the gradient buffer, the gradients still its views,
    and the same values as clipping each gradient of an unpacked model."""
    import nn
    model, optimizer, _ = _train(True, steps=1)
    reference, _, _ = _train(False, steps=1)
    for m in (model, reference):
        m.zero_grad()
        _loss(m, 5).backward()
    packed = optimizer.param_groups[0].flat
    limit = 0.5 * float(np.median(np.abs(packed.grad_buffer)))   # clips about half of the entries
    clips, clip = [], np.clip
    monkeypatch.setattr(np, "clip", lambda x, *a, **k: (clips.append(x.size), clip(x, *a, **k))[1])
    nn.utils.clip_grad_value_(model.parameters(), limit)
    assert clips == [packed.grad_buffer.size]
    nn.utils.clip_grad_value_(reference.parameters(), limit)
    assert np.abs(packed.grad_buffer).max() <= np.float32(limit)
    for p, q, (_, grad, _) in zip(model.parameters(), reference.parameters(), packed.views):
        assert p.grad.data is grad
        np.testing.assert_array_equal(p.grad.data, q.grad.data)


def test_writing_one_flat_parameter_leaves_the_others_backward_alone():
    """The parameters of a packed group are views of one buffer: an in-place write to one of them (under no_grad,
    between forward and backward) must not count as a write to the arrays the others' ops saved, as torch keeps a
    counter per parameter; writing a saved one still raises."""
    import nn
    rng = np.random.default_rng(0)
    a, b = nn.Linear(4, 3), nn.Linear(3, 2)
    optimizer = nn.optim.Adam(list(a.parameters()) + list(b.parameters()), lr=0.1, flat=True)
    for step in range(3):
        loss = b(a(nn.Tensor(rng.normal(size=(5, 4)).astype(np.float32)))).sum()
        with nn.no_grad():
            b.bias.zero_()                      # saved by no op: the bias gradient needs no input
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert optimizer.param_groups[0].flat and np.shares_memory(a.weight.data, b.bias.data) is False
    loss = b(a(nn.Tensor(rng.normal(size=(5, 4)).astype(np.float32)))).sum()
    with nn.no_grad():
        b.weight.mul_(2.0)                      # saved by b's linear op for its input's gradient (a's output)
    with pytest.raises(RuntimeError, match="saved for its gradient was modified by an in-place operation"):
        loss.backward()


def _flat_gradient_arrivals(monkeypatch, make_modules, loss_of):
    """Two SGD steps (momentum) of the modules make_modules() returns, flat=True on the CUDA path: whether each
    parameter gradient of the second step arrived as its view of the flat buffer (Tensor._accumulate watched);
    then the same steps parameter by parameter on the CPU path. Returns (arrivals, flat parameters, reference
    parameters). (SGD: Adam would turn the rounding noise of a near-zero gradient, such as a conv bias's ahead of
    batch norm, into whole steps.)"""
    import nn
    from nn.tensor import Tensor
    arrived_in_place = []
    accumulate = Tensor._accumulate

    def spy(tensor, grad):
        slot = tensor._grad_slot
        arrived_in_place.append(slot is not None and grad is slot[1])
        accumulate(tensor, grad)

    monkeypatch.setattr(Tensor, "_accumulate", spy)

    def train(flat):
        nn.manual_seed(1)
        modules = make_modules()
        parameters = [p for module in modules for p in module.parameters()]
        optimizer = nn.optim.SGD(parameters, lr=0.1, momentum=0.9, flat=flat)
        for _ in range(2):   # the first step packs the buffers; the second backward writes into them
            arrived_in_place.clear()
            optimizer.zero_grad()
            loss_of(*modules).backward()
            optimizer.step()
        return parameters, list(arrived_in_place)

    flat, arrivals = train(True)
    monkeypatch.setenv("NUMBANET_BACKEND", "cpu")   # the reference: NumPy, parameter by parameter
    reference, _ = train(False)
    return arrivals, flat, reference


def test_layer_gradients_are_written_straight_into_the_flat_buffer(monkeypatch):
    """With flat=True, conv2d, batch norm and linear write their parameters' first gradients into the group's
    gradient buffer (Function.gradient_out) instead of a new array that is then copied there; the weights equal
    those of an optimizer stepping parameter by parameter."""
    import nn
    x, labels = nn.Tensor(random_array((2, 1, 4, 4), seed=3)), np.array([0, 2])
    arrivals, flat, reference = _flat_gradient_arrivals(
        monkeypatch, lambda: [nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU(),
                                            nn.Flatten(), nn.Linear(32, 3))],
        lambda model: nn.functional.cross_entropy(model(x), labels))
    assert arrivals == [True] * 6
    for p, q in zip(flat, reference):
        assert_close(p.data, q.data, np.float32)


def test_a_parameter_given_twice_to_one_op_keeps_its_gradient_out_of_the_flat_buffer():
    """linear(w, w) and conv2d(w, w): the engine adds the input's gradient before the weight's, so neither may be
    written into w's slot first (that gave 2 x grad_x instead of grad_x + grad_w); torch's gradients, step after
    step."""
    import nn
    torch = torch_module()
    c_linear, c_conv = random_array((3, 3), seed=21), random_array((2, 2, 1, 1), seed=22)
    for op, torch_op, shape, c in ((nn.functional.linear, torch.nn.functional.linear, (3, 3), c_linear),
                                   (nn.functional.conv2d, torch.nn.functional.conv2d, (2, 2, 3, 3), c_conv)):
        w0 = random_array(shape, seed=23)
        w_t = torch.tensor(w0, requires_grad=True)
        (torch_op(w_t, w_t) * torch.tensor(c)).sum().backward()
        w = nn.Parameter(w0.copy())
        optimizer = nn.optim.SGD([w], lr=0.0, flat=True)
        for _ in range(3):   # the first step packs the buffer; the later backwards could write into it
            optimizer.zero_grad()
            (op(w, w) * nn.Tensor(c)).sum().backward()
            assert_close(w.grad.numpy(), w_t.grad.numpy(), np.float32, scale=4)
            optimizer.step()


def test_embedding_recurrent_and_layer_norm_gradients_are_written_straight_into_the_flat_buffer(monkeypatch):
    """The same for an Embedding, a bidirectional LSTM, a LayerNorm and a single-direction GRU: their weight
    gradients (the LSTM's second bias copied, the same sums) go into the flat buffer, and the weights equal those
    of a per-parameter SGD."""
    import nn
    tokens = np.array([[1, 4], [4, 0], [2, 4]])   # (T, B), a token repeated: the embedding's atomics add up
    arrivals, flat, reference = _flat_gradient_arrivals(
        monkeypatch, lambda: [nn.Embedding(5, 2), nn.LSTM(2, 3, bidirectional=True), nn.LayerNorm(6), nn.GRU(6, 2)],
        lambda embed, lstm, norm, gru: (gru(norm(lstm(embed(tokens))[0]))[0] ** 2).sum())
    assert arrivals == [True] * 15
    for p, q in zip(flat, reference):
        assert_close(p.data, q.data, np.float32)


@pytest.mark.parametrize("cls, options", [("RMSprop", dict(lr=0.01, momentum=0.9, centered=True)),
                                          ("Adagrad", dict(lr=0.05, lr_decay=0.2)),
                                          ("Adam", dict(lr=0.01))])
@pytest.mark.parametrize("flat", [False, True])
def test_a_state_loaded_between_replays_is_what_the_next_replay_steps_from(cls, options, flat, monkeypatch):
    """optimizer.load_state_dict writes the loaded moments and step counts into the arrays the optimizer holds
    (a flat group's buffers, the device counts), so a captured step replayed after it goes on from the loaded
    state, as an eager optimizer that loads it, and state_dict() reports the replayed step."""
    import nn

    def make():
        params = [nn.Parameter(random_array(s, seed=90 + i)) for i, s in enumerate([(6, 5), (7,)])]
        for i, p in enumerate(params):
            p.grad = nn.Tensor(random_array(p.shape, seed=95 + i))
        return params, getattr(nn.optim, cls)(params, flat=flat, **options)

    replayed, optimizer = make()
    optimizer.step()                       # eager warm-up
    saved = optimizer.state_dict()         # a checkpoint after one step
    graph = _RecordedGraph(monkeypatch)
    graph.capture(optimizer.step)
    graph.replay(); graph.replay()         # steps 2 and 3
    before = [p.data.copy() for p in replayed]
    optimizer.load_state_dict(saved)       # resume the optimizer from step 1's state, keep the graph
    graph.replay()                          # should be step 2 from the loaded state
    moved = [p.data - b for p, b in zip(replayed, before)]

    eager, reference = make()
    reference.step()
    reference.load_state_dict(saved)
    for p, b in zip(eager, before):
        p.data[...] = b
    reference.step()
    expected = [p.data - b for p, b in zip(eager, before)]
    for m, e in zip(moved, expected):
        np.testing.assert_allclose(m, e, rtol=1e-4, atol=1e-7)
    # and the state dict then reports what the replay used
    after = optimizer.state_dict()["state"][0]
    assert after["step"] == reference.state_dict()["state"][0]["step"]


@pytest.mark.parametrize("backend_name", ["cpu", "simulator"])
@pytest.mark.parametrize("name", ["sgd", "adam", "rmsprop", "adagrad"])
def test_an_infinite_parameter_stays_infinite_and_its_state_finite_without_weight_decay(name, backend_name,
                                                                                          monkeypatch):
    """weight_decay=0 (the default) adds no 0 * param, as torch skips the decay: an infinite entry stays inf and
    the other state stays finite (0 * inf would make them NaN), in the CUDA kernels and on the CPU path."""
    if backend_name == "cpu":
        monkeypatch.setenv("NUMBANET_BACKEND", "cpu")
    p = np.array([np.inf, 1.0, -np.inf, 2.0], np.float32)
    g = np.full(4, 0.5, np.float32)
    state, second = np.zeros(4, np.float32), np.zeros(4, np.float32)
    if name == "sgd":
        kernels.sgd_update(p, g, state, lr=0.1, momentum=0.9, first_step=True)
    elif name == "adam":
        kernels.adam_update(p, g, state, second, step=1, lr=0.01)
    elif name == "rmsprop":
        kernels.rmsprop_update(p, g, state, lr=0.01)
    else:
        kernels.adagrad_update(p, g, state, step=1, lr=0.01)
    assert np.isfinite(state).all() and np.isfinite(second).all(), (state, second)
    assert (p[[0, 2]] == [np.inf, -np.inf]).all() and np.isfinite(p[[1, 3]]).all(), p


@pytest.mark.parametrize("cls", ["Adam", "RMSprop"])
def test_a_deep_copy_of_a_flat_optimizer_repacks_its_own_buffers_and_counts(cls):
    """On the CUDA path a flat group's parameters are views of its buffers and Adam's step counts views of the
    group's device counts; a deep copy's are copies, so it packs and counts anew: the copy steps as the
    original does (its parameters would otherwise stop moving)."""
    from tests.nn.test_optim import _continue_after_deepcopy
    _continue_after_deepcopy(cls, dict(lr=0.01), True)


def test_a_flat_group_loading_unequal_step_counts_steps_parameter_by_parameter(monkeypatch):
    """A state dict whose parameters stepped unequally (one had no gradient in some steps) loaded into a packed
    Adam group: one launch would give every parameter the first one's count, so the group packs again, which
    refuses and says so; the steps equal a per-parameter Adam's."""
    import warnings

    import nn

    def make(flat):
        rng = np.random.default_rng(0)
        params = [nn.Parameter(rng.standard_normal(5).astype(np.float32)) for _ in range(2)]
        return params, nn.optim.Adam(params, lr=0.1, flat=flat)

    def set_grads(params, k):
        for i, p in enumerate(params):
            p.grad = nn.Tensor(np.full(5, 0.3 * (i + 1) + 0.1 * k, np.float32))
    source, source_optimizer = make(False)
    for k in range(5):
        set_grads(source, k)
        if k:
            source[1].grad = None
        source_optimizer.step()
    saved = source_optimizer.state_dict()
    (flat, flat_optimizer), (reference, reference_optimizer) = make(True), make(False)
    for params, optimizer in ((flat, flat_optimizer), (reference, reference_optimizer)):
        for k in range(2):   # the flat group packs
            set_grads(params, k)
            optimizer.step()
    assert flat_optimizer.param_groups[0].flat
    for optimizer in (flat_optimizer, reference_optimizer):
        optimizer.load_state_dict(saved)
    for p, q in zip(flat, reference):
        q.data[...] = p.data
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for params, optimizer in ((flat, flat_optimizer), (reference, reference_optimizer)):
            set_grads(params, 7)
            optimizer.step()
    assert any("steps parameter by parameter" in str(w.message) for w in caught)
    for p, q in zip(flat, reference):
        np.testing.assert_array_equal(p.data, q.data)


def test_a_graph_that_saved_a_flat_gradient_view_raises_after_the_next_backward_writes_it():
    """With flat=True the next backward's first gradient is written into the same view of the buffer (torch
    makes a new tensor after zero_grad): a graph that saved the old .grad raises at its backward instead of
    reading the new values."""
    import nn
    p = nn.Parameter(np.array([1.0, 2.0, 3.0], np.float32))
    optimizer = nn.optim.SGD([p], lr=0.1, flat=True)
    x = nn.Tensor(np.ones(3, np.float32), requires_grad=True)
    for k in range(2):   # pack the group; the second backward writes into the view
        optimizer.zero_grad()
        (p * float(k + 1)).sum().backward()
        optimizer.step()
    assert p.grad.data is optimizer.param_groups[0].flat.views[0][1]
    z = (x * p.grad).sum()
    optimizer.zero_grad()
    (p * 7.0).sum().backward()
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        z.backward()


def test_a_group_a_capture_left_unpacked_stays_unpacked_after_a_load(monkeypatch):
    """A step captured while some parameter had no gradient records per-parameter updates of the arrays in
    place, so the group is never packed again: not even after load_state_dict, whose loaded counts would
    otherwise let the next eager step pack (and move) the arrays the graph's replays update."""
    import nn
    params = [nn.Parameter(random_array(shape, seed=70 + i)) for i, shape in enumerate([(4,), (3,)])]
    optimizer = nn.optim.Adam(params, lr=0.01, flat=True)
    for p in params:
        p.grad = nn.Tensor(random_array(p.shape, seed=80))
    optimizer.step()                     # eager warm-up: packs the group
    params[1].grad = None
    graph = _RecordedGraph(monkeypatch)
    graph.capture(optimizer.step)        # a parameter without a gradient while capturing
    group = optimizer.param_groups[0]
    assert group.flat is False and group.captured_unpacked
    optimizer.load_state_dict(optimizer.state_dict())
    assert group.flat is False
    data = [p.data for p in params]
    for p in params:
        p.grad = nn.Tensor(random_array(p.shape, seed=81))
    optimizer.step()                     # eager, per parameter: the arrays stay those the graph updates
    assert all(p.data is array for p, array in zip(params, data))
