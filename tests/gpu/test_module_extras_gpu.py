"""nn.save / nn.load, parameters_to_vector / vector_to_parameters and non-persistent buffers with CuPy arrays
and a model on the GPU. Needs a GPU."""
import numpy as np
import pytest

import nn
from nn.utils import parameters_to_vector, vector_to_parameters
from tests.oracle import random_array


def _cuda_model(seed=0):
    nn.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 4), nn.BatchNorm1d(4), nn.Linear(4, 3))
    model[1].register_buffer("scratch", np.ones(4, np.float32), persistent=False)
    return model.cuda()


def test_save_from_cupy_and_load_with_and_without_map_location(tmp_path):
    import cupy
    model = _cuda_model()
    assert isinstance(model[1].scratch, cupy.ndarray)   # a non-persistent buffer moves with .cuda()
    state = model.state_dict()
    assert "1.scratch" not in state
    tensor = nn.Tensor(cupy.asarray(random_array((3, 5), seed=1)), requires_grad=True)
    obj = {"model": model.state_dict(keep_vars=True), "raw": cupy.arange(5, dtype=cupy.float32), "tensor": tensor}
    path = tmp_path / "gpu.pt"
    nn.save(obj, path)
    on_host = nn.load(path)
    assert type(on_host["raw"]) is np.ndarray and on_host["tensor"].device == "cpu"
    assert type(on_host["model"]["0.weight"]) is nn.Parameter and on_host["model"]["0.weight"].device == "cpu"
    np.testing.assert_array_equal(on_host["tensor"].numpy(), tensor.numpy())
    on_gpu = nn.load(path, map_location="cuda")
    assert isinstance(on_gpu["raw"], cupy.ndarray) and on_gpu["tensor"].device == "cuda"
    assert on_gpu["tensor"].requires_grad and on_gpu["model"]["0.weight"].device == "cuda"
    np.testing.assert_array_equal(cupy.asnumpy(on_gpu["raw"]), np.arange(5, dtype=np.float32))
    for key, value in state.items():
        np.testing.assert_array_equal(on_host["model"][key].numpy() if isinstance(on_host["model"][key], nn.Tensor)
                                      else on_host["model"][key], value, err_msg=key)
    restored = _cuda_model(seed=1)   # other weights until the load (the same seed would pass without it)
    restored.load_state_dict({k: v.data if isinstance(v, nn.Tensor) else v for k, v in on_gpu["model"].items()})
    for (key, a), b in zip(model.state_dict().items(), restored.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=key)


def test_parameters_to_vector_on_the_gpu_and_the_device_check():
    import cupy
    model = _cuda_model()
    vector = parameters_to_vector(model.parameters())
    assert vector.device == "cuda"
    expected = np.concatenate([cupy.asnumpy(p.data).reshape(-1) for p in model.parameters()])
    np.testing.assert_array_equal(vector.numpy(), expected)
    arrays = [p.data for p in model.parameters()]
    values = random_array(expected.shape, seed=2)
    vector_to_parameters(nn.Tensor(cupy.asarray(values)), model.parameters())
    assert all(p.data is array for p, array in zip(model.parameters(), arrays))
    np.testing.assert_array_equal(parameters_to_vector(model.parameters()).numpy(), values)
    with pytest.raises(ValueError, match="vector_to_parameters: vec is on cpu"):
        vector_to_parameters(nn.Tensor(values), model.parameters())
    mixed = [model[0].weight, nn.Parameter(random_array((3,), seed=3))]
    with pytest.raises(TypeError, match="parameters_to_vector: found two parameters on different devices"):
        parameters_to_vector(mixed)
