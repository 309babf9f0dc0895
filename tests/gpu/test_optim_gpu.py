"""Fused optimizer kernels on a real GPU against the CPU path (float64 reference) at realistic sizes."""
import numpy as np
import pytest

import kernels
from tests.oracle import assert_close, random_array

SIZE = 1_000_003   # not a multiple of the block size


@pytest.mark.parametrize("options", [dict(lr=0.1, weight_decay=0.01),
                                     dict(lr=0.05, momentum=0.9, dampening=0.1, maximize=True),
                                     dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4)])
def test_sgd_on_gpu_matches_cpu(options):
    import cupy
    param = random_array((SIZE,), np.float64, seed=1)
    buffer = np.zeros(SIZE) if options.get("momentum") else None
    param_gpu = cupy.asarray(param, dtype=cupy.float32)
    buffer_gpu = None if buffer is None else cupy.zeros(SIZE, cupy.float32)
    for step in range(5):
        grad = random_array((SIZE,), np.float64, seed=10 + step)
        kernels.sgd_update(param, grad, buffer, first_step=(step == 0), **options)
        kernels.sgd_update(param_gpu, cupy.asarray(grad, dtype=cupy.float32), buffer_gpu, first_step=(step == 0),
                           **options)
    assert_close(param_gpu, param, np.float32)
    if buffer is not None:
        assert_close(buffer_gpu, buffer, np.float32)


@pytest.mark.parametrize("decoupled,amsgrad,maximize", [(False, False, False), (False, True, True),
                                                        (True, True, False), (True, False, True)])
def test_adam_on_gpu_matches_cpu(decoupled, amsgrad, maximize):
    import cupy
    param = random_array((SIZE,), np.float64, seed=2)
    state = [np.zeros(SIZE) for _ in range(3)]
    param_gpu = cupy.asarray(param, dtype=cupy.float32)
    state_gpu = [cupy.zeros(SIZE, cupy.float32) for _ in range(3)]
    options = dict(lr=1e-2, weight_decay=0.05, decoupled_weight_decay=decoupled, amsgrad=amsgrad,
                   maximize=maximize)
    for step in range(1, 6):
        grad = random_array((SIZE,), np.float64, seed=20 + step) * (1 + 3 * (step % 2))
        kernels.adam_update(param, grad, state[0], state[1], step=step,
                            max_exp_avg_sq=state[2] if amsgrad else None, **options)
        kernels.adam_update(param_gpu, cupy.asarray(grad, dtype=cupy.float32), state_gpu[0], state_gpu[1],
                            step=step, max_exp_avg_sq=state_gpu[2] if amsgrad else None, **options)
    assert_close(param_gpu, param, np.float32)
    for actual, expected in zip(state_gpu[:2 + amsgrad], state[:2 + amsgrad]):
        assert_close(actual, expected, np.float32)


def test_adam_on_gpu_non_contiguous_param():
    import cupy
    storage = random_array((512, 300), np.float64, seed=3)
    grad = random_array((512, 150), np.float64, seed=4)
    storage_gpu = cupy.asarray(storage, dtype=cupy.float32)
    m, v = np.zeros((512, 150)), np.zeros((512, 150))
    m_gpu, v_gpu = cupy.zeros((512, 150), cupy.float32), cupy.zeros((512, 150), cupy.float32)
    kernels.adam_update(storage[:, ::2], grad, m, v, step=1, lr=0.1)
    kernels.adam_update(storage_gpu[:, ::2], cupy.asarray(grad, dtype=cupy.float32), m_gpu, v_gpu, step=1, lr=0.1)
    assert_close(storage_gpu, storage, np.float32)


def _cosine_lr(step, base=1e-2, period=7):
    return 0.5 * base * (1.0 + np.cos(np.pi * step / period))


@pytest.mark.parametrize("decoupled,amsgrad", [(False, True), (True, False)])
def test_adam_with_device_step_and_lr_matches_cpu(decoupled, amsgrad):
    """step and lr in 1-element CuPy arrays (as nn.optim passes them): bias corrections computed on the device."""
    import cupy
    param = random_array((SIZE,), np.float64, seed=5)
    state = [np.zeros(SIZE) for _ in range(3)]
    param_gpu = cupy.asarray(param, dtype=cupy.float32)
    state_gpu = [cupy.zeros(SIZE, cupy.float32) for _ in range(3)]
    step_gpu, lr_gpu = cupy.zeros(1, cupy.float32), cupy.zeros(1, cupy.float32)
    options = dict(weight_decay=0.05, decoupled_weight_decay=decoupled, amsgrad=amsgrad)
    for step in range(1, 8):
        grad = random_array((SIZE,), np.float64, seed=50 + step) * (1 + 3 * (step % 2))
        step_gpu += 1
        lr_gpu.fill(_cosine_lr(step))
        kernels.adam_update(param, grad, state[0], state[1], step=step, lr=float(np.float32(_cosine_lr(step))),
                            max_exp_avg_sq=state[2] if amsgrad else None, **options)
        kernels.adam_update(param_gpu, cupy.asarray(grad, dtype=cupy.float32), state_gpu[0], state_gpu[1],
                            step=step_gpu, lr=lr_gpu, max_exp_avg_sq=state_gpu[2] if amsgrad else None, **options)
    assert float(step_gpu[0]) == 7.0
    assert_close(param_gpu, param, np.float32)
    for actual, expected in zip(state_gpu[:2 + amsgrad], state[:2 + amsgrad]):
        assert_close(actual, expected, np.float32)


def test_sgd_with_device_lr_matches_cpu():
    import cupy
    param = random_array((SIZE,), np.float64, seed=6)
    buffer = np.zeros(SIZE)
    param_gpu, buffer_gpu = cupy.asarray(param, dtype=cupy.float32), cupy.zeros(SIZE, cupy.float32)
    lr_gpu = cupy.zeros(1, cupy.float32)
    for step in range(5):
        grad = random_array((SIZE,), np.float64, seed=60 + step)
        lr_gpu.fill(_cosine_lr(step, base=0.1))
        kernels.sgd_update(param, grad, buffer, lr=float(np.float32(_cosine_lr(step, base=0.1))), momentum=0.9,
                           first_step=(step == 0))
        kernels.sgd_update(param_gpu, cupy.asarray(grad, dtype=cupy.float32), buffer_gpu, lr=lr_gpu, momentum=0.9,
                           first_step=(step == 0))
    assert_close(param_gpu, param, np.float32)
    assert_close(buffer_gpu, buffer, np.float32)


def test_adam_update_replayed_from_a_cuda_graph_follows_step_and_lr():
    """The mechanism nn.capture relies on, without nn: a graph holding `step += 1` and the Adam kernel,
    replayed 10 times with lr rewritten between replays, equals 10 eager steps."""
    import cupy
    size = 100_003
    param = random_array((size,), np.float64, seed=7)
    grad = random_array((size,), np.float64, seed=8)
    expected, m, v = param.copy(), np.zeros(size), np.zeros(size)
    param_gpu, grad_gpu = cupy.asarray(param, dtype=cupy.float32), cupy.asarray(grad, dtype=cupy.float32)
    m_gpu, v_gpu = cupy.zeros(size, cupy.float32), cupy.zeros(size, cupy.float32)
    step_gpu, lr_gpu = cupy.zeros(1, cupy.float32), cupy.zeros(1, cupy.float32)

    def one_step():
        step_gpu[...] += 1
        kernels.adam_update(param_gpu, grad_gpu, m_gpu, v_gpu, step=step_gpu, lr=lr_gpu)

    lr_gpu.fill(_cosine_lr(1))
    one_step()                       # eager: compiles the kernels, step 1
    kernels.adam_update(expected, grad, m, v, step=1, lr=float(np.float32(_cosine_lr(1))))
    stream = cupy.cuda.Stream(non_blocking=True)
    stream.wait_event(cupy.cuda.get_current_stream().record())
    with stream:
        stream.begin_capture()
        one_step()
        graph = stream.end_capture()
    caller = cupy.cuda.get_current_stream()
    for step in range(2, 12):
        lr_gpu.fill(_cosine_lr(step))     # between replays, on the stream they run on
        graph.launch(stream=caller)
        kernels.adam_update(expected, grad, m, v, step=step, lr=float(np.float32(_cosine_lr(step))))
    caller.synchronize()
    assert float(step_gpu[0]) == 11.0
    assert_close(param_gpu, expected, np.float32)
    assert_close(m_gpu, m, np.float32)
    assert_close(v_gpu, v, np.float32)
