"""The one launcher for every CUDA kernel: device views, the stream, the grid.

Host cost decides the speed of small ops and of every time-stepped loop, so the launcher caches:
- Numba device views of CuPy arrays, keyed by what a view is (pointer, shape, strides, dtype). A
  view made with owner=None is only that description, so one cached for freed memory is still right
  for any later array with the same pointer and layout, and CuPy's memory pool hands the same
  pointers back every training step. Making a view costs tens of microseconds on an H200 (the
  driver is asked about the pointer); passing CuPy arrays straight to a kernel converts them and
  synchronises on every launch (about 41 us, GPU-NOTES.md).
- Configured kernels (`kernel[grid, block, stream, shared]`), keyed by those four.
Under the simulator, NumPy arrays go to the kernels as they are, and nothing is cached.

The direct launcher (the default; NUMBANET_LAUNCHER=numba turns it off) goes further: the first launch
of a kernel for one launch shape and argument layout goes through Numba, which compiles it and packs
its arguments; later launches replay that packing with only the data pointers and scalar values
replaced, straight to cuda.core's launch (Numba's dispatch, typing and per-argument packing skipped).
On an H100 it made eager training steps 1.1-1.8x faster (benchmarks/RESULTS.md).
"""
import contextlib
import ctypes
import os
import warnings

import numpy as np
from cuda.core import LaunchConfig, launch as core_launch
from numba import cuda
from numba.core.errors import NumbaPerformanceWarning
from numba.cuda import types                          # the types Numba packs by (numba-cuda 0.30)
from numba.cuda._compat import CUDA_CORE_GE_1_0
from numba.cuda.typing.typeof import Purpose, typeof

from .. import backend
from . import compile_ahead

# Small grids are deliberate here (per-step recurrent kernels, tiny layers): Numba's warning about
# them on every new launch configuration is noise to our users.
warnings.filterwarnings("ignore", message="Grid size .* under-utilization", category=NumbaPerformanceWarning)

CACHE_LIMIT = 8192  # entries per cache; cleared when full (a cold cache costs only the slow path)
_views = {}    # (pointer, shape, strides, dtype char) -> Numba view without an owner
_configured = {}  # (kernel, grid, block, stream, shared bytes) -> configured kernel


def device_view(x):
    """A Numba device array sharing `x`'s memory (CuPy); anything else is returned unchanged."""
    if not backend.is_gpu_array(x):
        return x
    key = (x.data.ptr, x.shape, x.strides, x.dtype.char)
    view = _views.get(key)
    if view is None:
        if len(_views) >= CACHE_LIMIT:
            _views.clear()
        view = _views[key] = cuda.from_cuda_array_interface(x.__cuda_array_interface__, owner=None,
                                                            sync=False)
    return view


_external_streams = {}


def current_stream():
    """CuPy's current stream as a Numba stream (0, the default stream, under the simulator)."""
    cupy = backend.cupy_module()
    if cupy is None:
        return 0
    pointer = cupy.cuda.get_current_stream().ptr
    if pointer == 0:
        return 0
    stream = _external_streams.get(pointer)
    if stream is None:
        stream = _external_streams[pointer] = cuda.external_stream(pointer)
    return stream


def ceil_div(a, b):
    return -(-a // b)


def launch(kernel, grid, block, *args, shared_bytes=0):
    """Launch `kernel[grid, block]` on the current stream with arrays converted to device views."""
    if compile_ahead._recording is not None:   # (compile_ahead.recording: note what would compile, launch nothing)
        compile_ahead.record_launch(kernel, [device_view(a) for a in args])
        return
    stream = current_stream()
    if backend.SIMULATOR:
        kernel[grid, block, stream, shared_bytes](*args)
        return
    key = (kernel, grid, block, stream, shared_bytes)
    configured = _configured.get(key)
    if configured is None:
        if len(_configured) >= CACHE_LIMIT:
            _configured.clear()
        configured = _configured[key] = kernel[grid, block, stream, shared_bytes]
    if launcher == "direct" and _replay_failed is None:
        _launch_direct(configured, key, args)
    else:
        configured(*[device_view(a) for a in args])


# ---- the direct launcher (the default; NUMBANET_LAUNCHER=numba turns it off) ----------------------------
LAUNCHERS = ("numba", "direct")


def launcher_from_environment():
    choice = os.environ.get("NUMBANET_LAUNCHER") or "direct"
    if choice not in LAUNCHERS:
        raise ValueError(f"NUMBANET_LAUNCHER must be one of {LAUNCHERS} (or unset), got {choice!r}")
    return choice


launcher = launcher_from_environment()   # read once: the per-launch path must not look it up
_replay_failed = None   # why replaying Numba's launches failed (then every launch goes through Numba)
_replays = {}           # (configured key, argument layouts) -> ReplayedLaunch, or None: through Numba


@contextlib.contextmanager
def using_launcher(name):
    """Launch through `name` ('numba' or 'direct') inside the block (benchmarks and tests compare them)."""
    global launcher
    if name not in LAUNCHERS:
        raise ValueError(f"using_launcher: expected one of {LAUNCHERS}, got {name!r}")
    saved, launcher = launcher, name
    try:
        yield
    finally:
        launcher = saved


def launcher_in_force():
    """'numba', 'direct', or why the direct launcher fell back to Numba: for benchmark reports."""
    if launcher == "direct" and _replay_failed is not None:
        return f"numba (direct replay failed: {_replay_failed})"
    return launcher


def replay_summary():
    """How many launch layouts the direct launcher replays and how many it left to Numba, and why it
    stopped, if it did: printed by the host profile next to its figures."""
    replayed = sum(replay is not None for replay in _replays.values())
    text = f"{replayed} launch layouts replayed, {len(_replays) - replayed} left to Numba"
    return text if _replay_failed is None else f"{text}; replaying stopped: {_replay_failed}"


def _layout_of(value):
    """What Numba types and packs an argument by, apart from its data pointer or scalar value."""
    if isinstance(value, (int, float, np.generic)):
        return type(value)
    return type(value), value.shape, value.strides, value.dtype.char


def _launch_direct(configured, key, args):
    layout = key + tuple(map(_layout_of, args))   # (map: no generator frame, on every launch)
    try:
        replay = _replays[layout]
    except KeyError:
        if len(_replays) >= CACHE_LIMIT:
            _replays.clear()
        views = [device_view(a) for a in args]
        configured(*views)   # compiles when needed; this launch goes through Numba
        _replays[layout] = ReplayedLaunch.from_numba(configured, args, views)
        return
    if replay is None:
        configured(*[device_view(a) for a in args])
    else:
        replay.launch(args)


def _cupy_pointer(array):
    return array.data.ptr


def _numba_pointer(array):
    return array.device_ctypes_pointer.value


def _packed_value(item):
    """A packed argument as a comparable value (ctypes scalars compare by identity)."""
    return item.value if isinstance(item, ctypes._SimpleCData) else item


class ReplayedLaunch:
    """Numba's packed arguments for one compiled kernel, launch shape and argument layout, replayed with
    new pointers and scalars. Numba packs an array as (meminfo, parent, size, itemsize, data pointer,
    shape..., strides...) and a scalar as one ctypes value; only the pointer and the scalar change."""
    POINTER_OFFSET = 4
    SCALAR_TYPES = (types.Integer, types.Boolean)   # and float32 / float64 (not float16: packed as bits)

    def __init__(self, function, config, stream, template, pointer_slots, scalar_slots):
        self.function, self.config, self.stream = function, config, stream
        self.template = template            # Numba's packed arguments of the first launch
        self.pointer_slots = pointer_slots  # (index in template, argument position, pointer getter)
        self.scalar_slots = scalar_slots    # (index in template, argument position, ctypes type or bool)

    @classmethod
    def packing(cls, compiled, args, views, stream):
        """(template, pointer slots, scalar slots) from `compiled._prepare_args`, or None for an argument
        this replay does not handle (records, tuples, complex or half numbers, host arrays). The slots are
        checked to give back the template from `args`, so a pointer or scalar in a place other than
        expected is never replayed."""
        template, pointer_slots, scalar_slots = [], [], []
        for position, (numba_type, arg, view) in enumerate(zip(compiled.argument_types, args, views)):
            start = len(template)
            compiled._prepare_args(numba_type, view, stream, [], template)
            if isinstance(numba_type, types.Array):
                if backend.is_gpu_array(arg):
                    getter = _cupy_pointer
                elif hasattr(arg, "device_ctypes_pointer"):
                    getter = _numba_pointer
                else:
                    return None
                pointer_slots.append((start + cls.POINTER_OFFSET, position, getter))
            elif ((isinstance(numba_type, cls.SCALAR_TYPES) or numba_type in (types.float32, types.float64))
                  and len(template) == start + 1):
                scalar_slots.append((start, position, type(template[start])))
            else:
                return None
        packing = template, tuple(pointer_slots), tuple(scalar_slots)
        replayed = cls.packed_from(*packing, args)
        if [_packed_value(a) for a in replayed] != [_packed_value(a) for a in template]:
            return None
        return packing

    @classmethod
    def from_numba(cls, configured, args, views):
        """The replay of the launch `configured(*views)` just made, or None where the kernel must keep going
        through Numba (a launch-configuration-sensitive or debug kernel, an argument the replay does not
        reproduce, or an overload Numba chose by converting a scalar's type). Any error from Numba or
        cuda.core internals that differ from numba-cuda 0.30's turns replaying off, with a warning."""
        global _replay_failed
        try:
            dispatcher = configured.dispatcher
            compiled = dispatcher.overloads.get(tuple(typeof(v, Purpose.argument) for v in views))
            if compiled is None and dispatcher.specialized:
                compiled = next(iter(dispatcher.overloads.values()))
            if (compiled is None or compiled.launch_config_sensitive or compiled.debug or compiled.extensions
                    or configured.pre_launch_callbacks):
                return None
            packing = cls.packing(compiled, args, views, configured.stream)
            if packing is None:
                return None
            return cls(compiled._codelibrary.get_cufunc().kernel, _launch_config(configured, compiled),
                       configured.stream, *packing)
        except Exception as error:   # the launch itself went through Numba: never fail the op here
            _replay_failed = repr(error)
            warnings.warn(f"the direct launcher cannot replay Numba's launches with this numba-cuda / "
                          f"cuda.core ({error!r}); kernels launch through Numba", RuntimeWarning, stacklevel=3)
            return None

    @staticmethod
    def packed_from(template, pointer_slots, scalar_slots, args):
        arguments = list(template)
        for slot, position, pointer in pointer_slots:
            arguments[slot] = pointer(args[position])
        for slot, position, pack_as in scalar_slots:
            arguments[slot] = pack_as(args[position])
        return arguments

    def launch(self, args):
        core_launch(self.stream, self.config, self.function,
                    *self.packed_from(self.template, self.pointer_slots, self.scalar_slots, args))


def _launch_config(configured, compiled):
    """cuda.core's LaunchConfig as Numba builds it for this launch (its keyword changed in cuda.core 1.0)."""
    cooperative = {"is_cooperative" if CUDA_CORE_GE_1_0 else "cooperative_launch": compiled.cooperative}
    return LaunchConfig(grid=configured.griddim, block=configured.blockdim, shmem_size=configured.sharedmem,
                        **cooperative)


def launch_1d(kernel, n, *args, threads=256):
    """One thread per element of a flat range of `n` items."""
    if n == 0:
        return
    launch(kernel, ceil_div(n, threads), threads, *args)


def stream_scratch(table, float_size, counter_size):
    """A float32 scratch of at least `float_size` and zeroed int32 counters of at least `counter_size` entries (the
    kernels that count on them put them back to zero), per array module and stream, kept in `table` (the calling
    module's dict). A size of 0 gets a fixed one-element stand-in, so a launch keeps one argument layout whatever
    larger calls grew (the direct launcher keys on it). An outgrown buffer is kept, not freed: a CUDA graph
    captured earlier (nn.capture) still writes to it."""
    xp = backend.cupy_module() or np
    key = (xp.__name__, 0 if xp is np else xp.cuda.get_current_stream().ptr)
    buffers = table.get(key)
    if buffers is None:
        buffers = table[key] = {"floats": xp.empty(1, xp.float32), "counters": xp.zeros(1, xp.int32),
                                "unused floats": xp.empty(1, xp.float32), "unused counters": xp.zeros(1, xp.int32),
                                "outgrown": []}
    if buffers["floats"].size < float_size:
        buffers["outgrown"].append(buffers["floats"])
        buffers["floats"] = xp.empty(float_size, xp.float32)
    if buffers["counters"].size < counter_size:
        buffers["outgrown"].append(buffers["counters"])
        buffers["counters"] = xp.zeros(counter_size, xp.int32)
    return (buffers["floats"] if float_size else buffers["unused floats"],
            buffers["counters"] if counter_size else buffers["unused counters"])


SLICE_TARGET_BLOCKS = 4 * 132   # blocks wanted on an H100/H200 (132 SMs) before a channel's sum is split


def batch_slices(batch, channels, plane, threads):
    """(images per slice, slices) for per-channel sums over (batch, plane) split over grid y (a block per channel
    left most SMs idle on a 32-channel layer: the conv bias gradient of 64x32x12x90 took 141 us on an H100, against
    about 5 us of reading): slices of whole images until about SLICE_TARGET_BLOCKS blocks exist, each of at least
    4 values a thread. The last block of a channel adds the slices' partials in order (the same sum every run)."""
    if batch == 0:
        return 1, 1
    wanted = min(batch, max(1, ceil_div(SLICE_TARGET_BLOCKS, channels)))
    per_slice = min(batch, max(ceil_div(batch, wanted), ceil_div(4 * threads, max(plane, 1))))
    return per_slice, ceil_div(batch, per_slice)
