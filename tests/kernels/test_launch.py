"""The direct launcher's replay of Numba's argument packing (kernels/cuda/launch.py), without a GPU: the
plan is made by numba-cuda's own `_Kernel._prepare_args` on stand-in device arrays, and replaying it with
new pointers and scalars must give what `_prepare_args` gives for them."""
import ctypes

import numpy as np
import pytest

from kernels import backend

if backend.SIMULATOR:
    pytest.skip("numba-cuda's dispatcher, not the simulator's", allow_module_level=True)
from numba.cuda import types                                                  # noqa: E402
from numba.cuda.cudadrv.devicearray import _StridedLayoutShim, _StridedMemoryViewShim   # noqa: E402
from numba.cuda.dispatcher import _Kernel                                     # noqa: E402

from kernels.cuda import launch                                               # noqa: E402


class _DeviceArray:
    """Stands in for a Numba device array: what `_prepare_args` and the launcher read of one."""
    __cuda_memory__ = True

    def __init__(self, pointer, shape, dtype=np.float32, strides=None):
        self.shape, self.dtype = shape, np.dtype(dtype)
        self.strides = strides or tuple(int(s) for s in np.empty(shape, dtype).strides)
        self.device_ctypes_pointer = ctypes.c_void_p(pointer)
        c_order = self.strides == tuple(np.empty(shape, dtype).strides)
        self._strided_memory_view_shim = _StridedMemoryViewShim(
            ptr=pointer, shape=shape, dtype=self.dtype, size=int(np.prod(shape)),
            _layout=_StridedLayoutShim(strides_in_bytes=self.strides, is_contiguous_c=c_order,
                                       is_contiguous_f=False, is_contiguous_any=c_order))


class _Compiled:
    """Stands in for a compiled kernel: its argument types and Numba's real packing."""
    extensions = []

    def __init__(self, argument_types, prepare=_Kernel._prepare_args):
        self.argument_types = argument_types
        self._prepare = prepare

    def _prepare_args(self, ty, val, stream, retr, kernelargs):
        self._prepare(self, ty, val, stream, retr, kernelargs)


def _numba_packing(compiled, args):
    packed = []
    for numba_type, value in zip(compiled.argument_types, args):
        compiled._prepare_args(numba_type, value, 0, [], packed)
    return [launch._packed_value(item) for item in packed]


ARGUMENT_TYPES = (types.Array(types.float32, 2, "C"), types.int64, types.Array(types.int32, 1, "A"),
                  types.float32, types.float64, types.boolean, types.Array(types.float32, 3, "C"))


def _arguments(pointers, count, scale, flag):
    a, b, c = pointers
    return (_DeviceArray(a, (5, 7)), count, _DeviceArray(b, (9,), np.int32, strides=(8,)), np.float32(scale),
            scale * 2.0, flag, _DeviceArray(c, (2, 3, 11)))


def test_replaying_numba_packing_with_new_pointers_and_scalars_gives_numba_packing():
    compiled = _Compiled(ARGUMENT_TYPES)
    first = _arguments((0x7000, 0x8000, 0x9000), 3, 0.5, True)
    packing = launch.ReplayedLaunch.packing(compiled, first, first, 0)
    assert packing is not None
    template, pointer_slots, scalar_slots = packing
    assert len(pointer_slots) == 3 and len(scalar_slots) == 4
    later = _arguments((0x17000, 0x18000, 0x19000), 41, -1.25, False)
    replayed = launch.ReplayedLaunch.packed_from(template, pointer_slots, scalar_slots, later)
    assert [launch._packed_value(item) for item in replayed] == _numba_packing(compiled, later)
    # the types packed are Numba's too (a float32 scalar as c_float, an int64 as c_int64)
    assert [type(item) for item in replayed] == [type(item) for item in template]


def test_a_packing_the_replay_does_not_reproduce_is_left_to_numba():
    """Were Numba to pack the data pointer elsewhere, the packing's self-check refuses it; half floats
    (packed as their bits) and complex numbers are not replayed either."""
    def pointer_last(self, ty, val, stream, retr, kernelargs):
        _Kernel._prepare_args(self, ty, val, stream, retr, kernelargs)
        if isinstance(ty, types.Array):
            kernelargs.append(kernelargs.pop(len(kernelargs) - 1 - 2 * ty.ndim))  # the pointer to the end
    args = _arguments((0x7000, 0x8000, 0x9000), 3, 0.5, True)
    assert launch.ReplayedLaunch.packing(_Compiled(ARGUMENT_TYPES, pointer_last), args, args, 0) is None
    for numba_type, value in ((types.complex64, np.complex64(1 + 2j)), (types.float16, np.float16(1.5))):
        assert launch.ReplayedLaunch.packing(_Compiled((numba_type,)), (value,), (value,), 0) is None


def test_argument_layouts_tell_apart_what_numba_compiles_or_packs_differently():
    base = launch._layout_of(_DeviceArray(0x7000, (5, 7)))
    assert launch._layout_of(_DeviceArray(0x9000, (5, 7))) == base                # another pointer: same plan
    assert launch._layout_of(_DeviceArray(0x7000, (7, 5))) != base
    assert launch._layout_of(_DeviceArray(0x7000, (5, 7), np.int32)) != base
    assert launch._layout_of(_DeviceArray(0x7000, (5, 7), strides=(56, 4))) != base
    assert len({launch._layout_of(v) for v in (1, True, 1.0, np.float32(1), np.int32(1))}) == 5


def test_an_unknown_launcher_is_an_error(monkeypatch):
    monkeypatch.setenv("NUMBANET_LAUNCHER", "fast")
    with pytest.raises(ValueError, match="NUMBANET_LAUNCHER must be one of .*'fast'"):
        launch.launcher_from_environment()
    monkeypatch.setenv("NUMBANET_LAUNCHER", "numba")
    assert launch.launcher_from_environment() == "numba"
    monkeypatch.delenv("NUMBANET_LAUNCHER")
    assert launch.launcher_from_environment() == "direct"   # the default since it was timed on an H100


def test_using_launcher_sets_the_launcher_for_its_block_only(monkeypatch):
    assert launch.launcher_in_force() == launch.launcher
    monkeypatch.setattr(launch, "_replays", {"a": None, "b": object(), "c": object()})
    assert launch.replay_summary() == "2 launch layouts replayed, 1 left to Numba"
    monkeypatch.setattr(launch, "_replay_failed", "AttributeError('x')")
    assert launch.replay_summary().endswith("replaying stopped: AttributeError('x')")
    with launch.using_launcher("direct"):
        assert launch.launcher_in_force() == "numba (direct replay failed: AttributeError('x'))"
    monkeypatch.setattr(launch, "_replay_failed", None)
    with launch.using_launcher("direct"):
        assert launch.launcher == "direct"
    assert launch.launcher == launch.launcher_from_environment()
    with pytest.raises(ValueError, match="using_launcher: expected one of"):
        with launch.using_launcher("fast"):
            pass
