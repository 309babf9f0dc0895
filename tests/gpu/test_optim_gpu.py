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
