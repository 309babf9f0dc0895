"""Module.register_buffer(persistent=), Module.state_dict(destination, prefix, keep_vars),
nn.utils.parameters_to_vector / vector_to_parameters and nn.save / nn.load, against torch where it has them."""
import io
import os
from collections import OrderedDict

import numpy as np
import pytest

import nn
from nn import checkpoint
from nn.utils import parameters_to_vector, vector_to_parameters
from tests.oracle import random_array, torch_module


# ---- non-persistent buffers --------------------------------------------------------------------------------
def _with_buffers(library, as_buffer):
    """A module with a persistent and a non-persistent buffer, inside a Sequential with a Linear."""
    class WithBuffers(library.Module):
        def __init__(self):
            super().__init__()
            self.linear = library.Linear(3, 2)
            self.register_buffer("kept", as_buffer(random_array((2,), seed=1)))
            self.register_buffer("scratch", as_buffer(random_array((4,), seed=2)), persistent=False)

        def forward(self, x):
            return self.linear(x)

    return library.Sequential(WithBuffers(), library.Linear(2, 2))


def _both_with_buffers():
    torch = torch_module()
    return _with_buffers(nn, lambda a: a), _with_buffers(torch.nn, torch.from_numpy)


def test_non_persistent_buffer_is_a_buffer_but_not_in_the_state_dict_as_torch():
    ours, theirs = _both_with_buffers()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert "0.scratch" not in ours.state_dict()
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in theirs.named_buffers()]
    assert len(list(ours.buffers())) == len(list(theirs.buffers())) == 2
    ours.to(dtype=np.float64)
    theirs.to(dtype=torch_module().float64)
    assert ours[0].scratch.dtype == np.float64 and theirs[0].scratch.dtype == torch_module().float64


def test_load_state_dict_strict_expects_no_non_persistent_buffer_as_torch():
    ours, theirs = _both_with_buffers()
    state = ours.state_dict()
    scratch = ours[0].scratch.copy()
    assert ours.load_state_dict(state) == theirs.load_state_dict(theirs.state_dict())   # strict, all matched
    np.testing.assert_array_equal(ours[0].scratch, scratch)   # not touched
    state["0.scratch"] = np.zeros(4, np.float32)
    torch_state = theirs.state_dict()
    torch_state["0.scratch"] = torch_module().zeros(4)
    with pytest.raises(KeyError, match="unexpected keys \\['0.scratch'\\]"):
        ours.load_state_dict(state)
    with pytest.raises(RuntimeError):
        theirs.load_state_dict(torch_state)
    result, expected = ours.load_state_dict(state, strict=False), theirs.load_state_dict(torch_state, strict=False)
    assert (result.missing_keys, result.unexpected_keys) == (expected.missing_keys, expected.unexpected_keys)
    np.testing.assert_array_equal(ours[0].scratch, scratch)


def test_persistence_changes_with_registering_again_assigning_a_parameter_and_deleting_as_torch():
    torch = torch_module()
    ours, theirs = _both_with_buffers()
    for module, array in ((ours[0], np.ones(4, np.float32)), (theirs[0], torch.ones(4))):
        module.register_buffer("scratch", array)                 # persistent now
        module.register_buffer("temporary", array, persistent=False)
        module.register_buffer("later", array, persistent=False)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours[0].temporary = nn.Parameter(np.ones(1, np.float32))     # a parameter now: saved
    theirs[0].temporary = torch.nn.Parameter(torch.ones(1))
    del ours[0].later
    del theirs[0].later
    ours[0].register_buffer("later", np.ones(1, np.float32))   # persistent: the old flag is gone
    theirs[0].register_buffer("later", torch.ones(1))
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert ours[0]._non_persistent_buffers_set == theirs[0]._non_persistent_buffers_set == set()


@pytest.mark.parametrize("name, value", [("a.b", "array"), ("", "array"), ("linear", "array"),
                                         ("fresh", 3), ("fresh", [1.0]), (1, "array")])
def test_register_buffer_errors_as_torch(name, value):
    torch = torch_module()
    ours, theirs = _both_with_buffers()
    with pytest.raises(Exception) as expected:
        theirs[0].register_buffer(name, torch.ones(1) if value == "array" else value, persistent=False)
    with pytest.raises(expected.type):
        ours[0].register_buffer(name, np.ones(1, np.float32) if value == "array" else value, persistent=False)


def test_register_buffer_replacing_an_existing_one_as_torch():
    torch = torch_module()
    ours, theirs = _both_with_buffers()
    ours[0].register_buffer("kept", np.ones(1, np.float32), persistent=False)
    theirs[0].register_buffer("kept", torch.ones(1), persistent=False)
    assert list(ours.state_dict()) == list(theirs.state_dict())


# ---- state_dict(destination, prefix, keep_vars) ----------------------------------------------------------
def test_state_dict_keep_vars_returns_the_parameters_and_buffers_themselves():
    ours, theirs = _both_with_buffers()
    kept = ours.state_dict(keep_vars=True)
    assert list(kept) == list(theirs.state_dict(keep_vars=True))
    assert kept["0.linear.weight"] is ours[0].linear.weight and isinstance(kept["0.linear.weight"], nn.Parameter)
    assert kept["0.kept"] is ours[0].kept
    default = ours.state_dict()   # unchanged: NumPy copies
    assert type(default["0.linear.weight"]) is np.ndarray
    assert not np.shares_memory(default["0.linear.weight"], ours[0].linear.weight.data)
    assert not np.shares_memory(default["0.kept"], ours[0].kept)
    other, _ = _both_with_buffers()
    other.load_state_dict(kept)   # Parameters load as arrays do, as in torch
    for (key, a), b in zip(ours.state_dict().items(), other.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=key)


def test_state_dict_prefix_and_destination_as_torch():
    ours, theirs = _both_with_buffers()
    destination, torch_destination = OrderedDict(first=1), OrderedDict(first=1)
    result = ours.state_dict(destination=destination, prefix="model.")
    expected = theirs.state_dict(destination=torch_destination, prefix="model.")
    assert result is destination and list(result) == list(expected)
    with pytest.warns(FutureWarning):
        positional = ours.state_dict(None, "p.", True)
    assert list(positional) == ["p." + key for key in ours.state_dict()]
    assert positional["p.1.bias"] is ours[1].bias


# ---- parameters_to_vector / vector_to_parameters ---------------------------------------------------------
def _twins():
    torch = torch_module()
    ours = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2)).double()
    theirs = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2)).double()
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    return ours, theirs


def test_parameters_to_vector_values_and_gradient_as_torch():
    torch = torch_module()
    ours, theirs = _twins()
    vector, expected = parameters_to_vector(ours.parameters()), torch.nn.utils.parameters_to_vector(theirs.parameters())
    assert vector.shape == tuple(expected.shape) and vector.requires_grad
    np.testing.assert_array_equal(vector.numpy(), expected.detach().numpy())
    weights = random_array(vector.shape, np.float64, seed=3)
    (vector * nn.Tensor(weights)).sum().backward()
    (expected * torch.from_numpy(weights)).sum().backward()
    for p, q in zip(ours.parameters(), theirs.parameters()):
        np.testing.assert_array_equal(p.grad.numpy(), q.grad.numpy())


def test_vector_to_parameters_writes_in_place_as_torch_values():
    torch = torch_module()
    ours, theirs = _twins()
    arrays = [p.data for p in ours.parameters()]
    values = random_array((sum(p.data.size for p in ours.parameters()) + 3,), np.float64, seed=4)  # 3 spare
    vector_to_parameters(nn.Tensor(values), ours.parameters())
    torch.nn.utils.vector_to_parameters(torch.from_numpy(values), theirs.parameters())
    for p, q, array in zip(ours.parameters(), theirs.parameters(), arrays):
        assert p.data is array   # in place: whatever holds the arrays sees the new values
        np.testing.assert_array_equal(p.data, q.detach().numpy())
    round_trip = parameters_to_vector(ours.parameters()).numpy()
    np.testing.assert_array_equal(round_trip, values[:-3])


def test_vector_to_parameters_casts_to_the_parameters_dtype_and_is_noted_as_a_write():
    model = nn.Linear(3, 2)   # float32
    loss = (model.weight * model.weight).sum()   # saves the weight for backward
    vector_to_parameters(nn.Tensor(np.arange(8, dtype=np.float64)), model.parameters())
    assert model.weight.dtype == np.float32
    np.testing.assert_array_equal(model.bias.data, [6.0, 7.0])
    with pytest.raises(RuntimeError):   # as any in-place write after the graph was recorded
        loss.backward()


def test_convert_parameters_errors():
    model = nn.Linear(3, 2)
    with pytest.raises(TypeError, match="vector_to_parameters: expected Tensor"):
        vector_to_parameters(np.zeros(8, np.float32), model.parameters())
    with pytest.raises(ValueError, match="vector_to_parameters: vec has 5 elements"):
        vector_to_parameters(nn.Tensor(np.zeros(5, np.float32)), model.parameters())
    with pytest.raises(ValueError, match="vector_to_parameters: vec must be 1-D"):
        vector_to_parameters(nn.Tensor(np.zeros((2, 4), np.float32)), model.parameters())
    with pytest.raises(ValueError, match="parameters_to_vector: expected a non-empty"):
        parameters_to_vector([])
    with pytest.raises(TypeError, match="parameters_to_vector: expected Tensors"):
        parameters_to_vector([np.zeros(2)])


# ---- nn.save / nn.load ------------------------------------------------------------------------------------
def _trained(seed, flat=False):
    nn.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    optimizer = nn.optim.Adam(model.parameters(), lr=0.01, flat=flat)
    for step in range(2):
        x = nn.Tensor(random_array((5, 4), seed=10 + step))
        optimizer.zero_grad()
        (model(x) ** 2).sum().backward()
        optimizer.step()
    return model, optimizer


def test_save_load_model_and_optimizer_state_dicts_resume_the_same(tmp_path):
    model, optimizer = _trained(0)
    path = tmp_path / "run.pt"
    nn.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 2}, path)
    loaded = nn.load(path)
    assert loaded["epoch"] == 2 and type(loaded["model"]) is OrderedDict
    assert list(loaded["model"]) == list(model.state_dict())
    restored, restored_optimizer = _trained(1)
    restored.load_state_dict(loaded["model"])
    restored_optimizer.load_state_dict(loaded["optimizer"])
    assert restored_optimizer.state_dict()["param_groups"] == optimizer.state_dict()["param_groups"]
    x = nn.Tensor(random_array((5, 4), seed=20))
    for net, opt in ((model, optimizer), (restored, restored_optimizer)):
        opt.zero_grad()
        (net(x) ** 2).sum().backward()
        opt.step()
    for (key, a), b in zip(model.state_dict().items(), restored.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=key)
    assert os.listdir(tmp_path) == ["run.pt"]   # no temporary file left


def test_save_load_nested_structures_and_tensors(tmp_path):
    tensor = nn.Tensor(random_array((2, 3), np.float64, seed=5), requires_grad=True)
    parameter = nn.Parameter(random_array((4,), seed=6))
    obj = {"tensor": tensor, "parameter": parameter, "ints": np.arange(3, dtype=np.int16),
           "nested": [1, 2.5, "text", None, True, (3, [np.float32(1.5), {"deep": (np.ones(0),)}])],
           7: "an int key", (1, "a"): "a tuple key", "nan": float("nan"), "big": 2 ** 70,
           "ordered": OrderedDict(b=1, a=2)}
    nn.save(obj, str(tmp_path / "nested.pt"))
    loaded = nn.load(str(tmp_path / "nested.pt"), weights_only=True)
    assert list(loaded) == list(obj)
    assert type(loaded["tensor"]) is nn.Tensor and loaded["tensor"].requires_grad
    assert loaded["tensor"].device == "cpu" and loaded["tensor"].dtype == np.float64
    np.testing.assert_array_equal(loaded["tensor"].numpy(), tensor.numpy())
    assert type(loaded["parameter"]) is nn.Parameter and loaded["parameter"].requires_grad
    np.testing.assert_array_equal(loaded["parameter"].numpy(), parameter.numpy())
    assert loaded["ints"].dtype == np.int16 and list(loaded["ints"]) == [0, 1, 2]
    first, second, text, none, true, (three, [scalar, deep]) = loaded["nested"]
    assert (first, second, text, none, true, three) == (1, 2.5, "text", None, True, 3)
    assert type(loaded["nested"][5]) is tuple and type(loaded["nested"][5][1]) is list
    assert scalar == 1.5 and scalar.dtype == np.float32
    assert type(deep["deep"]) is tuple and deep["deep"][0].shape == (0,)
    assert loaded[7] == "an int key" and loaded[(1, "a")] == "a tuple key"
    assert np.isnan(loaded["nan"]) and loaded["big"] == 2 ** 70
    assert type(loaded["ordered"]) is OrderedDict and list(loaded["ordered"]) == ["b", "a"]
    single = tmp_path / "tensor.pt"
    nn.save(tensor, single)
    np.testing.assert_array_equal(nn.load(single, map_location="cpu").numpy(), tensor.numpy())


def test_save_is_atomic_a_failed_save_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    nn.save({"w": np.ones(3)}, path)

    def fail_midway(stream, **arrays):
        stream.write(b"PK\x03\x04 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", fail_midway)
    with pytest.raises(OSError, match="disk full"):
        nn.save({"w": np.zeros(3)}, path)
    monkeypatch.undo()
    np.testing.assert_array_equal(nn.load(path)["w"], np.ones(3))
    assert os.listdir(tmp_path) == ["model.pt"]
    with pytest.raises(TypeError, match="nn.save: cannot save a Linear"):
        nn.save({"model": nn.Linear(2, 2)}, path)
    with pytest.raises(TypeError, match="nn.save: cannot save an array of Python objects"):
        nn.save(np.array([object()]), path)
    np.testing.assert_array_equal(nn.load(path)["w"], np.ones(3))


def test_load_errors_name_nn_load(tmp_path):
    good = tmp_path / "good.pt"
    nn.save({"w": random_array((50,))}, good)
    with pytest.raises(FileNotFoundError, match="nn.load: no such file"):
        nn.load(tmp_path / "missing.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:300])
    with pytest.raises(RuntimeError, match="nn.load: .*corrupt or truncated"):
        nn.load(truncated)
    flipped = bytearray(good.read_bytes())
    flipped[250] ^= 0xFF   # inside the first array's data: the zip's CRC check fails
    (tmp_path / "flipped.pt").write_bytes(bytes(flipped))
    with pytest.raises(RuntimeError, match="nn.load: .*corrupt or truncated"):
        nn.load(tmp_path / "flipped.pt")
    (tmp_path / "garbage.pt").write_bytes(b"\x80\x02not a file of ours")
    with pytest.raises(RuntimeError, match="nn.load: .*corrupt or truncated"):
        nn.load(tmp_path / "garbage.pt")
    checkpoint.save(str(tmp_path / "checkpoint.npz"), {"model": {"w": np.ones(2)}})
    with pytest.raises(RuntimeError, match="nn.load: .* was not written by nn.save"):
        nn.load(tmp_path / "checkpoint.npz")
    with pytest.raises(ValueError, match="nn.load: map_location must be"):
        nn.load(good, map_location="tpu")
    with pytest.raises(TypeError, match="nn.load: f must be a path .* or a binary file object with read"):
        nn.load(3)
    with pytest.raises(TypeError, match="nn.save: f must be a path .* or a binary file object with write"):
        nn.save({}, None)
    with pytest.raises(RuntimeError, match="nn.load: checkpoint <BytesIO> is corrupt or truncated"):
        nn.load(io.BytesIO(good.read_bytes()[:300]))


def test_save_load_through_file_objects(tmp_path):
    model, optimizer = _trained(0)
    buffer = io.BytesIO()
    nn.save({"model": model.state_dict(keep_vars=True), "optimizer": optimizer.state_dict()}, buffer)
    buffer.seek(0)
    loaded = nn.load(buffer, map_location="cpu")
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(_as_array(loaded["model"][key]), value, err_msg=key)
    assert isinstance(loaded["model"]["0.weight"], nn.Parameter)
    with open(tmp_path / "open.pt", "wb") as stream:
        nn.save(model.state_dict(), stream)
    with open(tmp_path / "open.pt", "rb") as stream:
        reloaded = nn.load(stream)
    assert list(reloaded) == list(model.state_dict())


def _as_array(value):
    return value.numpy() if isinstance(value, nn.Tensor) else value


def test_several_objects_in_one_stream_load_one_after_another():
    """nn.save twice into one stream, then nn.load twice: the first object, then the second (the first load
    stops at the end of its archive, as torch.load reads one object), even when arrays hold the archive's
    end-record bytes."""
    tricky = np.frombuffer(b"PK\x05\x06" * 8, dtype=np.uint8).copy()   # looks like an end record, is data
    stream = io.BytesIO()
    for item in ([1], {"tricky": tricky}, (3.5, "x")):
        nn.save(item, stream)
    stream.seek(0)
    assert nn.load(stream) == [1]
    np.testing.assert_array_equal(nn.load(stream)["tricky"], tricky)
    assert nn.load(stream) == (3.5, "x")


def test_save_makes_files_as_open_would_and_writes_through_a_symlink(tmp_path):
    """A new file gets open()'s mode (0666 less the umask; the temporary file's 0600 is not kept), an
    overwritten one keeps its mode, a symlink stays a link to the written target, and a missing folder is an
    error, as torch.save's."""
    umask = os.umask(0o022)
    try:
        path = tmp_path / "model.npz"
        nn.save({"a": 1}, path)
        assert os.stat(path).st_mode & 0o777 == 0o644
        os.chmod(path, 0o640)
        nn.save({"a": 2}, path)
        assert os.stat(path).st_mode & 0o777 == 0o640
    finally:
        os.umask(umask)
    target, link = tmp_path / "run3.npz", tmp_path / "latest.npz"
    nn.save([0], target)
    os.symlink(target, link)
    nn.save([7], link)
    assert os.path.islink(link) and nn.load(target) == [7]
    with pytest.raises(FileNotFoundError, match="nn.save: the folder .* does not exist"):
        nn.save([1], tmp_path / "no such folder" / "x.npz")


def test_load_of_a_npy_file_or_a_bad_description_names_nn_load(tmp_path):
    path = tmp_path / "weights.npy"
    np.save(path, np.arange(3))
    with pytest.raises(RuntimeError, match=r"nn.load: .*is a single array \(.npy\), not a checkpoint"):
        nn.load(path)
    odd = tmp_path / "odd.npz"
    np.savez(odd, meta=np.frombuffer(b"[1, 2]", dtype=np.uint8))
    with pytest.raises(RuntimeError, match="nn.load: .*corrupt or truncated"):
        nn.load(odd)


def test_list_subclasses_and_device_objects():
    """A list subclass comes back a list (not a tuple); map_location may be an object whose str() is a device,
    as torch.device('cpu')."""
    class Names(list):
        pass
    stream = io.BytesIO()
    nn.save({"names": Names(["a", "b"])}, stream)
    stream.seek(0)
    torch = torch_module()
    assert nn.load(stream, map_location=torch.device("cpu")) == {"names": ["a", "b"]}


def test_a_stream_whose_first_object_has_a_zip64_end_record_loads_that_object_first():
    """Over 65535 arrays np.savez writes zip64 end records: the first object of a stream is still found."""
    stream = io.BytesIO()
    nn.save({f"k{i}": np.full(1, i, np.float32) for i in range(66000)}, stream)
    nn.save({"second": np.ones(2)}, stream)
    stream.seek(0)
    assert "k0" in nn.load(stream)
    assert list(nn.load(stream)) == ["second"]
