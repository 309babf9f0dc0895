"""vector_to_parameters with an optimizer made with flat=True, whose packing happens only where the CUDA
kernels run (here the simulator): the write lands in the flat buffer, which stays packed, and the steps
after it match a per-parameter optimizer's."""
import numpy as np
import pytest

from tests.oracle import assert_close, random_array

SHAPES = [(3, 5), (7,), (2, 2, 3)]


def _run(optimizer, flat):
    import nn
    from nn.utils import parameters_to_vector, vector_to_parameters
    params = [nn.Parameter(random_array(shape, seed=i)) for i, shape in enumerate(SHAPES)]
    options = {"lr": 0.05, "weight_decay": 0.01} if optimizer == "Adam" else {"lr": 0.1, "momentum": 0.9}
    stepper = getattr(nn.optim, optimizer)(params, flat=flat, **options)
    packed = None
    for step in range(3):
        for i, p in enumerate(params):
            p.grad = nn.Tensor(random_array(p.shape, seed=10 * step + i))
        stepper.step()
        if step == 0:
            packed = stepper.param_groups[0].flat
            size = sum(p.data.size for p in params)
            vector_to_parameters(nn.Tensor(random_array((size,), seed=99)), params)
            np.testing.assert_array_equal(parameters_to_vector(params).numpy(), random_array((size,), seed=99))
    return params, stepper, packed


@pytest.mark.parametrize("optimizer", ["Adam", "SGD"])
def test_vector_to_parameters_keeps_a_flat_group_packed_and_steps_as_per_parameter(optimizer):
    flat_params, flat_optimizer, packed = _run(optimizer, flat=True)
    params, _, _ = _run(optimizer, flat=False)
    assert packed is not None and packed is not False
    assert flat_optimizer.param_groups[0].flat is packed   # never packed again: the write went into its buffer
    for p, (data, _, _) in zip(flat_params, packed.views):
        assert p.data is data
    np.testing.assert_array_equal(packed.param_buffer, np.concatenate([p.data.reshape(-1) for p in flat_params]))
    for a, b in zip(flat_params, params):
        assert_close(a.data, b.data, np.float32)
