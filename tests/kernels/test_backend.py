"""kernels/backend.py: where an op runs, and the errors for arrays it cannot run on (no GPU needed)."""
import numpy as np
import pytest

from kernels import backend


class _CupyLike:
    """Stands in for a CuPy array: backend tells CuPy arrays apart by their module's name."""
    __module__ = "cupy._core.core"


def test_numpy_arrays_run_on_the_cpu_and_optional_arguments_are_skipped(monkeypatch):
    monkeypatch.delenv("NUMBANET_BACKEND", raising=False)
    assert backend.device_of("op", np.ones(3), None, np.zeros((2, 2))) == "cpu"
    assert backend.is_gpu_array(_CupyLike()) and not backend.is_gpu_array(np.ones(1))
    assert backend.device_of("op", _CupyLike(), None) == "cuda"


def test_mixed_devices_and_non_arrays_are_errors_naming_the_op():
    with pytest.raises(ValueError, match=r"conv2d: arrays live on different devices \(numpy, cupy\)"):
        backend.device_of("conv2d", np.ones(3), _CupyLike())
    with pytest.raises(TypeError, match="relu: expected NumPy or CuPy arrays, got list"):
        backend.device_of("relu", [1.0, 2.0])


def test_the_requested_backend_is_checked(monkeypatch):
    monkeypatch.setenv("NUMBANET_BACKEND", "gpu")
    with pytest.raises(ValueError, match="NUMBANET_BACKEND must be one of"):
        backend.device_of("relu", np.ones(3))
    monkeypatch.setenv("NUMBANET_BACKEND", "cpu")
    with pytest.raises(ValueError, match="relu: NUMBANET_BACKEND=cpu but the inputs are CuPy"):
        backend.device_of("relu", _CupyLike())
    if not backend.SIMULATOR:
        monkeypatch.setenv("NUMBANET_BACKEND", "cuda")
        with pytest.raises(ValueError, match="relu: NUMBANET_BACKEND=cuda needs CuPy arrays"):
            backend.device_of("relu", np.ones(3))


def test_to_device_refuses_unknown_devices_and_a_missing_gpu():
    with pytest.raises(ValueError, match="device must be 'cpu' or 'cuda', got 'gpu'"):
        backend.to_device(np.ones(2), "gpu")
    if not backend.gpu_available():
        with pytest.raises(RuntimeError, match="no usable GPU"):
            backend.to_device(np.ones(2), "cuda")
    x = np.ones(2)
    assert backend.to_device(x, "cpu") is x


def test_info_and_benchmark_reports_name_the_switches_in_force(monkeypatch):
    for key in [k for k in backend.switches()]:
        monkeypatch.delenv(key)
    assert backend.switches() == {} and backend.describe()["switches"] == "none"
    monkeypatch.setenv("NUMBANET_LAUNCHER", "direct")
    monkeypatch.setenv("NUMBANET_CONV_ALGORITHM", "implicit")
    assert backend.switches() == {"NUMBANET_CONV_ALGORITHM": "implicit", "NUMBANET_LAUNCHER": "direct"}
    assert backend.describe()["switches"] == "NUMBANET_CONV_ALGORITHM=implicit NUMBANET_LAUNCHER=direct"


def test_constant_arrays_are_made_once_per_value_and_never_kept_while_capturing(monkeypatch):
    """_checks.constant: the arrays ops only read (the recurrent backward's ones, full-length lengths, CTC's
    'sum' scale) are views of one kept array per dtype and value, so a call launches no fill on a GPU and
    varying sizes (sequence lengths) share it; one made during a CUDA graph capture is not kept, since its fill
    would run only when the graph is replayed."""
    from kernels import _checks
    monkeypatch.setattr(_checks, "_constants", {})
    monkeypatch.setattr(_checks, "_outgrown", [])
    like = np.ones(3, np.float32)
    first = _checks.constant(like, (2, 5), np.float32, 1)
    assert first.shape == (2, 5) and first.dtype == np.float32 and (first == 1).all() and first.flags.c_contiguous
    again = _checks.constant(like, [2, 5], "float32", 1)   # the same memory however the shape is spelled
    assert again.shape == (2, 5) and np.shares_memory(again, first)
    smaller = _checks.constant(like, (1, 7), np.float32, 1)
    assert smaller.shape == (1, 7) and np.shares_memory(smaller, first)
    import weakref
    outgrown = weakref.ref(first.base if first.base is not None else first)
    del first, again, smaller
    larger = _checks.constant(like, (3, 30), np.float32, 1)
    assert larger.shape == (3, 30) and (larger == 1).all()
    assert outgrown() is not None   # kept alive: a graph captured with a view of it would still read it
    for size in range(1, 90):   # sizes up to the kept one: no new array
        assert np.shares_memory(_checks.constant(like, (size,), np.float32, 1), larger)
    assert len(_checks._constants) == 1
    sevens = _checks.constant(like, (2, 5), np.float32, 7)
    assert (sevens == 7).all() and not np.shares_memory(sevens, larger)
    assert _checks.constant(like, (4,), np.int32, 1).dtype == np.int32
    assert len(_checks._constants) == 3
    monkeypatch.setattr(backend, "is_capturing", lambda: True)
    made = _checks.constant(like, (400,), np.float32, 3)
    assert (made == 3).all() and not np.shares_memory(_checks.constant(like, (400,), np.float32, 3), made)
