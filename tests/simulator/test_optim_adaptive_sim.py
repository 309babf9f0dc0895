"""RMSprop and Adagrad CUDA kernels in the simulator against the CPU path (tiny, odd sizes), and the optimizers'
device-scalar, flat=True and replayed-graph paths there."""
import numpy as np
import pytest

import kernels
from kernels.cpu import optim as cpu
from tests.oracle import assert_close, random_array
from tests.simulator.test_optim_sim import _RecordedGraph

SHAPE = (3, 43)   # 129 elements: not a multiple of the block size


def _grad(seed, step):
    return random_array(SHAPE, seed=seed + step) * (1 + 3 * (step % 2))


def _rmsprop_state(param, momentum, centered):
    return (np.zeros_like(param), np.zeros_like(param) if centered else None,
            np.zeros_like(param) if momentum else None)


RMSPROP_CASES = [dict(momentum=0.0, centered=False, weight_decay=0.0, maximize=False),
                 dict(momentum=0.9, centered=True, weight_decay=0.1, maximize=True),
                 dict(momentum=0.5, centered=False, weight_decay=0.1, maximize=False, alpha=0.9),
                 dict(momentum=0.0, centered=True, weight_decay=0.0, maximize=False, alpha=0.3, eps=1e-4)]


@pytest.mark.parametrize("options", RMSPROP_CASES, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_rmsprop_kernel_matches_cpu(options):
    hyper = dict(dict(lr=0.01, alpha=0.99, eps=1e-8), **options)
    centered = hyper.pop("centered")
    param = random_array(SHAPE, seed=1)
    state = _rmsprop_state(param, options["momentum"], centered)
    expected = [param.astype(np.float64)] + [None if s is None else s.astype(np.float64) for s in state]
    for step in range(3):
        grad = _grad(10, step)
        kernels.rmsprop_update(param, grad, *state, centered=centered, **hyper)
        cpu.rmsprop_update(expected[0], grad.astype(np.float64), *expected[1:], **hyper)
    for actual, reference in zip((param,) + state, expected):
        if actual is not None:
            assert_close(actual, reference, np.float32)


def test_rmsprop_kernel_with_device_lr_matches_cpu():
    param = random_array(SHAPE, seed=2)
    state = _rmsprop_state(param, 0.9, True)
    expected = [param.astype(np.float64)] + [s.astype(np.float64) for s in state]
    lr_array = np.zeros(1, np.float32)
    hyper = dict(alpha=0.95, eps=1e-8, weight_decay=0.1, momentum=0.9, maximize=True)
    for step in range(3):
        grad = _grad(20, step)
        lr_array[0] = 0.01 * 0.5 ** step   # changes between calls, as in a replayed graph
        kernels.rmsprop_update(param, grad, *state, lr=lr_array, centered=True, **hyper)
        cpu.rmsprop_update(expected[0], grad.astype(np.float64), *expected[1:], lr=float(lr_array[0]), **hyper)
    for actual, reference in zip((param,) + state, expected):
        assert_close(actual, reference, np.float32)


@pytest.mark.parametrize("options", [dict(lr_decay=0.0, weight_decay=0.0, maximize=False, initial=0.0),
                                     dict(lr_decay=0.3, weight_decay=0.1, maximize=True, initial=0.2)])
def test_adagrad_kernel_matches_cpu(options):
    options = dict(options)
    initial, lr_decay = options.pop("initial"), options.pop("lr_decay")
    param = random_array(SHAPE, seed=3)
    state_sum = np.full_like(param, initial)
    expected, expected_sum = param.astype(np.float64), state_sum.astype(np.float64)
    for step in range(1, 4):
        grad = _grad(30, step)
        kernels.adagrad_update(param, grad, state_sum, step=step, lr=0.05, lr_decay=lr_decay, eps=1e-10, **options)
        cpu.adagrad_update(expected, grad.astype(np.float64), expected_sum, clr=0.05 / (1 + (step - 1) * lr_decay),
                           eps=1e-10, **options)
    assert_close(param, expected, np.float32)
    assert_close(state_sum, expected_sum, np.float32)


def test_adagrad_kernel_with_device_step_and_lr_matches_cpu():
    """The kernel derives the decayed rate lr / (1 + (step - 1) * lr_decay) from the device scalars in float32."""
    param = random_array(SHAPE, seed=4)
    state_sum = np.full_like(param, 0.1)
    expected, expected_sum = param.astype(np.float64), state_sum.astype(np.float64)
    step_array, lr_array = np.zeros(1, np.float32), np.zeros(1, np.float32)
    for step in range(1, 5):
        grad = _grad(40, step)
        step_array += 1
        lr_array[0] = 0.05 * (1.0 + np.cos(np.pi * step / 5))
        kernels.adagrad_update(param, grad, state_sum, step=step_array, lr=lr_array, lr_decay=0.25, weight_decay=0.1)
        cpu.adagrad_update(expected, grad.astype(np.float64), expected_sum,
                           clr=float(lr_array[0]) / (1 + (step - 1) * 0.25), eps=1e-10, weight_decay=0.1,
                           maximize=False)
    assert step_array[0] == 4   # read, never written, by the kernel
    assert_close(param, expected, np.float32)
    assert_close(state_sum, expected_sum, np.float32)


def test_kernels_update_non_contiguous_arrays_in_place():
    storage, state_storage = random_array((4, 20), seed=5), np.full((2, 4, 20), 0.1, np.float32)
    grad = random_array((4, 10), seed=6)
    expected = storage.astype(np.float64)
    expected_state = state_storage.astype(np.float64)
    param, views = storage[:, ::2], [state_storage[k, :, ::2] for k in range(2)]
    kernels.rmsprop_update(param, grad, views[0], views[1], centered=True, lr=0.1)
    kernels.adagrad_update(param, grad, views[1], step=2, lr=0.1, lr_decay=0.5)
    reference, reference_views = np.ascontiguousarray(expected[:, ::2]), [np.ascontiguousarray(v)
                                                                          for v in expected_state[:, :, ::2]]
    cpu.rmsprop_update(reference, grad.astype(np.float64), reference_views[0], reference_views[1], None, lr=0.1,
                       alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, maximize=False)
    cpu.adagrad_update(reference, grad.astype(np.float64), reference_views[1], clr=0.1 / 1.5, eps=1e-10,
                       weight_decay=0.0, maximize=False)
    expected[:, ::2] = reference
    expected_state[:, :, ::2] = reference_views
    assert_close(storage, expected, np.float32)
    assert_close(state_storage, expected_state, np.float32)


def test_device_scalar_arrays_must_be_float32_on_cuda():
    p, g = np.ones(4, np.float32), np.ones(4, np.float32)
    with pytest.raises(TypeError, match="adagrad_update: step array must be float32 on cuda, got int64"):
        kernels.adagrad_update(p, g, p.copy(), step=np.ones(1, np.int64))
    with pytest.raises(TypeError, match="rmsprop_update: lr array must be float32 on cuda, got float64"):
        kernels.rmsprop_update(p, g, p.copy(), lr=np.ones(1))


OPTIMIZER_CASES = [("RMSprop", dict(lr=0.01, momentum=0.9, centered=True)),
                   ("Adagrad", dict(lr=0.05, lr_decay=0.2, initial_accumulator_value=0.1)),
                   ("RMSprop", dict(lr=0.01, momentum=0.9, centered=True, flat=True)),
                   ("Adagrad", dict(lr=0.05, lr_decay=0.2, initial_accumulator_value=0.1, flat=True))]


@pytest.mark.parametrize("cls, options", OPTIMIZER_CASES,
                         ids=[f"{c}-flat" if o.get("flat") else c for c, o in OPTIMIZER_CASES])
def test_optimizer_step_replayed_like_a_graph_matches_eager_cpu_steps(cls, options, monkeypatch):
    """What nn.capture needs: a step recorded once after an eager warm-up (its kernel launches and the one
    in-place step-count add), replayed while a scheduler changes lr, follows eager steps on the CPU path
    (NUMBANET_BACKEND=cpu); with flat=True the group is one launch. The step counts end where torch's would."""
    import nn

    def make(options):
        params = [nn.Parameter(random_array(shape, seed=90 + i)) for i, shape in enumerate([(6, 5), (7,)])]
        for i, p in enumerate(params):
            p.grad = nn.Tensor(random_array(p.shape, seed=95 + i))   # fixed arrays, as a captured backward's
        optimizer = getattr(nn.optim, cls)(params, **options)
        return params, optimizer, nn.optim.CosineAnnealingLR(optimizer, T_max=3)

    def gradients(params, step):
        for p in params:
            p.grad.data[...] = random_array(p.shape, seed=100 + step)

    replayed, optimizer, scheduler = make(options)
    graph = _RecordedGraph(monkeypatch)
    for step in range(6):
        gradients(replayed, step)
        if step == 0:
            optimizer.step()                   # eager warm-up: state, device lr and counts, the packing
        else:
            if step == 1:
                graph.capture(optimizer.step)  # records, runs nothing
            graph.replay()
        scheduler.step()
    assert len(graph.work) == (1 if options.get("flat") else 2) + 1   # the update launches and one count add
    assert optimizer.param_groups[0].step_counts.tolist() == [6.0, 6.0]
    with monkeypatch.context() as patch:
        patch.setenv("NUMBANET_BACKEND", "cpu")
        eager, eager_optimizer, eager_scheduler = make({k: v for k, v in options.items() if k != "flat"})
        for step in range(6):
            gradients(eager, step)
            eager_optimizer.step()
            eager_scheduler.step()
        expected = eager_optimizer.state_dict()
    for a, b in zip(replayed, eager):
        assert_close(a.data, b.data, np.float32)
    saved = optimizer.state_dict()
    assert saved["param_groups"] == expected["param_groups"]
    for index, entry in expected["state"].items():
        assert saved["state"][index]["step"] == entry["step"] == 6
        for key, value in entry.items():
            if key != "step":
                assert_close(saved["state"][index][key], value, np.float32, name=key)
