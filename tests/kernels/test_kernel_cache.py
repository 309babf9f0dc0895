"""The on-disk kernel cache (kernels/cuda/jit.py), without a GPU: kernels are really compiled (for sm_90,
with numba-cuda's device queries answered by stand-ins), saved through the cache and loaded back in a
fresh dispatcher. What only a GPU can check (a loaded kernel launches and gives the same results, in a
new process) is tests/gpu/test_kernel_cache_gpu.py."""
import hashlib
import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys
import threading
import types

import pytest

from kernels import backend

if backend.SIMULATOR:
    pytest.skip("numba-cuda's dispatcher, not the simulator's", allow_module_level=True)
from numba import cuda, float32                                   # noqa: E402
from numba.cuda.core.caching import NullCache                     # noqa: E402
from numba.cuda import dispatcher                                 # noqa: E402

from kernels.cuda import compile_ahead, jit, resources            # noqa: E402
from kernels.cuda.pointwise import relu_kernel                    # noqa: E402

REPOSITORY = pathlib.Path(__file__).resolve().parents[2]
STAND_IN_CODEGEN = types.SimpleNamespace(magic_tuple=lambda: ((13, 0), (9, 0)))


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """A fresh cache root, warnings re-armed, and numba-cuda's device queries answered for sm_90."""
    monkeypatch.setenv("NUMBANET_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("NUMBANET_KERNEL_CACHE", raising=False)
    monkeypatch.setattr(jit, "_warned", False)
    monkeypatch.setattr(jit, "_used", set())
    for owner, attribute, value in resources.stand_ins_for_a_gpu():   # (binding to a context skipped too)
        monkeypatch.setattr(owner, attribute, value)
    return tmp_path / "cache"


def _scale(x, y, factor):
    i = cuda.grid(1)
    if i < x.size:
        y[i] = x[i] * factor


def _compile_and_save(kernel, argtypes):
    compiled = dispatcher._Kernel(kernel.py_func, argtypes, **kernel.targetoptions)
    kernel._cache.save_overload(argtypes, compiled)
    return compiled


def _fresh(kernel):
    """A new dispatcher for the same function and options, as a new process would make."""
    return jit.enable_disk_cache(type(kernel)(kernel.py_func, targetoptions=dict(kernel.targetoptions)))


def test_every_registered_kernel_is_cached_in_this_builds_directory():
    kernels = resources.registered_kernels()
    assert len(kernels) > 90
    for label, kernel, _ in kernels:
        assert type(kernel._cache).__name__ == "KernelCache", label
        assert kernel._cache.cache_path == jit.cache_directory(), label


def test_the_switch_turns_the_cache_off(monkeypatch):
    monkeypatch.setenv("NUMBANET_KERNEL_CACHE", "0")
    assert isinstance(jit.cached_jit(_scale)._cache, NullCache)
    monkeypatch.setenv("NUMBANET_KERNEL_CACHE", "1")
    assert type(jit.cached_jit(fastmath=True)(_scale)._cache).__name__ == "KernelCache"


def test_the_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("NUMBANET_CACHE_DIR", str(tmp_path / "mine"))
    assert jit.cache_directory() == os.path.join(tmp_path / "mine", f"kernels-{jit.build_key()}")
    monkeypatch.delenv("NUMBANET_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert jit.cache_root() == os.path.join(tmp_path / "xdg", "numbanet")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert jit.cache_root() == os.path.join(os.path.expanduser("~"), ".cache", "numbanet")


def test_an_edit_anywhere_in_the_kernels_package_starts_a_new_directory(tmp_path):
    """Numba's own key sees only a kernel's file and closure; a device function lives in another file."""
    copy = tmp_path / "kernels"
    shutil.copytree(jit.PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert jit.sources_key(copy) == jit.build_key()
    device_file = copy / "cuda" / "device.py"
    device_file.write_text(device_file.read_text() + "\n# an edit\n")
    assert jit.sources_key(copy) != jit.build_key()


def test_keys_are_unique_and_the_same_in_another_process():
    """A key holds the pickled closure (tile sizes, device functions): it must not depend on the process
    (hash seed, import order), or no later run would ever find an entry."""
    script = (
        "import hashlib, types\n"
        "from kernels.cuda import resources\n"
        "codegen = types.SimpleNamespace(magic_tuple=lambda: ((13, 0), (9, 0)))\n"
        "for label, kernel, signature in resources.registered_kernels():\n"
        "    argtypes = resources.argument_types(signature)\n"
        "    key = kernel._cache._index_key(argtypes, codegen)\n"
        "    print(label, kernel._cache._impl.filename_base, hashlib.sha256(repr(key).encode()).hexdigest())\n")
    runs = []
    for seed in ("1", "2"):
        environment = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=str(REPOSITORY))
        environment.pop("NUMBA_ENABLE_CUDASIM", None)
        runs.append(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                                   cwd=REPOSITORY, env=environment).stdout.splitlines())
    assert runs[0] == runs[1]
    assert len(runs[0]) == len(resources.registered_kernels())
    entries = [line.split()[1:] for line in runs[0]]
    assert len(set(map(tuple, entries))) == len(entries), "two kernels would share one cache entry"


def test_a_compiled_kernel_comes_back_from_disk(cache_dir):
    """The real round trip: compile, save, and load in a fresh dispatcher the same code."""
    argtypes = resources.argument_types(dict((label, s) for label, _, s in resources.registered_kernels())["pointwise.relu"])
    compiled = _compile_and_save(_fresh(relu_kernel), argtypes)   # (relu_kernel's own cache: the real root)
    assert [p.suffix for p in pathlib.Path(jit.cache_directory()).iterdir()] == [".nbc"]   # one file an entry
    loaded = _fresh(relu_kernel)._cache.load_overload(argtypes, relu_kernel.targetctx)
    assert type(loaded) is dispatcher._Kernel
    assert loaded.argument_types == compiled.argument_types
    assert loaded.library.get_asm_str() == compiled.library.get_asm_str()


def test_other_options_or_another_closure_miss(cache_dir):
    """Numba's key leaves out the compile options (fastmath, launch bounds); ours holds them. Kernels of
    one factory (one source line) are told apart by their closures."""
    precise, fast = jit.cached_jit(_scale), jit.cached_jit(fastmath=True)(_scale)
    argtypes = (float32[::1], float32[::1], float32)
    _compile_and_save(precise, argtypes)
    assert _fresh(precise)._cache.load_overload(argtypes, precise.targetctx) is not None
    assert _fresh(fast)._cache.load_overload(argtypes, fast.targetctx) is None

    two, three = _scaler(float32(2)), _scaler(float32(3))
    _compile_and_save(two, argtypes[:2])
    assert _fresh(two)._cache.load_overload(argtypes[:2], two.targetctx) is not None
    assert _fresh(three)._cache.load_overload(argtypes[:2], three.targetctx) is None


def test_an_entry_holding_another_kernel_is_not_loaded(cache_dir):
    """An entry's file is named by a hash of its key and holds the key, checked on load (with Numba's index
    of numbered files, two processes saving kernels of one factory at once could leave a name on the other
    kernel's code)."""
    argtypes = (float32[::1], float32[::1])
    two, three = _scaler(float32(2)), _scaler(float32(3))
    _compile_and_save(two, argtypes)
    _compile_and_save(three, argtypes)
    first, second = sorted(pathlib.Path(jit.cache_directory()).glob("*.nbc"))
    first_bytes, second_bytes = first.read_bytes(), second.read_bytes()
    first.write_bytes(second_bytes)   # each name now holds the other kernel
    second.write_bytes(first_bytes)
    assert _fresh(two)._cache.load_overload(argtypes, two.targetctx) is None
    assert _fresh(three)._cache.load_overload(argtypes, three.targetctx) is None
    first.write_bytes(first_bytes)
    second.write_bytes(second_bytes)
    assert _fresh(two)._cache.load_overload(argtypes, two.targetctx) is not None
    assert _fresh(three)._cache.load_overload(argtypes, three.targetctx) is not None


def test_a_corrupt_entry_is_compiled_again_with_one_warning(cache_dir):
    kernel = jit.cached_jit(_scale)
    argtypes = (float32[::1], float32[::1], float32)
    _compile_and_save(kernel, argtypes)
    for data in pathlib.Path(jit.cache_directory()).glob("*.nbc"):
        data.write_bytes(data.read_bytes()[:40])
    with pytest.warns(RuntimeWarning, match="kernel cache .* cannot be used"):
        assert _fresh(kernel)._cache.load_overload(argtypes, kernel.targetctx) is None
    assert jit._warned


def test_an_unwritable_cache_costs_the_save_not_the_kernel(cache_dir, monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("NUMBANET_CACHE_DIR", str(blocker))
    kernel = jit.cached_jit(_scale)
    argtypes = (float32[::1], float32[::1], float32)
    with pytest.warns(RuntimeWarning, match="kernel cache .* cannot be used"):
        compiled = _compile_and_save(kernel, argtypes)
    assert "scale" in compiled.library.get_asm_str()
    assert kernel._cache.load_overload(argtypes, kernel.targetctx) is None


def test_a_copy_of_the_sources_with_other_times_shares_the_entries(cache_dir, tmp_path):
    """A fresh clone or another checkout has other file times: the build directory's name, not the times,
    says whether an entry is fresh (Numba's index, stamped with the file's time, would have each checkout
    overwrite it in turn)."""
    module_file = tmp_path / "scale_module.py"
    module_file.write_text(pathlib.Path(__file__).read_text())   # this file's _scale, in a file we may touch
    spec = importlib.util.spec_from_file_location("scale_module", module_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    kernel = jit.cached_jit(module._scale)
    argtypes = (float32[::1], float32[::1], float32)
    _compile_and_save(kernel, argtypes)
    os.utime(module_file, (1e9, 1e9))
    assert _fresh(kernel)._cache.load_overload(argtypes, kernel.targetctx) is not None


def test_only_the_last_used_builds_are_kept(cache_dir):
    old_builds = [cache_dir / f"kernels-old{index}" for index in range(5)]
    for index, build in enumerate(old_builds):
        build.mkdir(parents=True)
        (build / "entry.nbc").write_bytes(b"x")
        os.utime(build, (1e9 + index, 1e9 + index))   # old0 least recently used
    (cache_dir / "unrelated").mkdir()
    kernel = jit.cached_jit(_scale)
    argtypes = (float32[::1], float32[::1], float32)
    _compile_and_save(kernel, argtypes)               # makes this build's directory
    kept = sorted(path.name for path in cache_dir.iterdir())
    assert kept == sorted(["kernels-old3", "kernels-old4", "unrelated", os.path.basename(jit.cache_directory())])
    os.utime(jit.cache_directory(), (1e9, 1e9))
    assert _fresh(kernel)._cache.load_overload(argtypes, kernel.targetctx) is not None
    assert os.stat(jit.cache_directory()).st_mtime > 1e9 + 10, "a load marks its build directory used"


def test_a_killed_saves_temporary_is_removed_once_it_is_stale(cache_dir, monkeypatch):
    monkeypatch.setattr(jit, "_swept", set())
    build = pathlib.Path(jit.cache_directory())
    build.mkdir(parents=True)
    stale, fresh = build / "a.nbc.123.deadbeef.tmp", build / "b.nbc.456.cafecafe.tmp"
    for path in (stale, fresh):
        path.write_bytes(b"half an entry")
    os.utime(stale, (1e9, 1e9))                       # left by a process killed long ago
    _compile_and_save(jit.cached_jit(_scale), (float32[::1], float32[::1], float32))
    assert not stale.exists()
    assert fresh.exists(), "a temporary another process may still be writing was removed"
    assert len(list(build.glob("*.nbc"))) == 1


def test_a_temporary_renamed_during_the_sweep_does_not_stop_it(cache_dir, monkeypatch):
    monkeypatch.setattr(jit, "_swept", set())
    build = pathlib.Path(cache_dir)
    build.mkdir(parents=True)
    stale = build / "c.nbc.789.feedface.tmp"
    stale.write_bytes(b"half an entry")
    os.utime(stale, (1e9, 1e9))
    vanished = types.SimpleNamespace(name="a.nbc.1.0.tmp", path=str(build / "a.nbc.1.0.tmp"),
                                     stat=lambda follow_symlinks: os.stat(build / "a.nbc.1.0.tmp"))
    scandir = os.scandir
    monkeypatch.setattr(os, "scandir", lambda path: [vanished] + list(scandir(path)))   # renamed by its writer
    jit._remove_stale_temporaries(str(build))
    assert not stale.exists()


def test_compiling_through_the_dispatcher_saves_loads_and_counts(cache_dir):
    argtypes = (float32[::1], float32[::1], float32)
    before = jit.compile_counts()
    first = jit.cached_jit(_scale)   # (counted while it lives, as kernels do: module level or factory-cached)
    first.compile(argtypes)
    middle = jit.compile_counts()
    assert (middle["compiled"] - before["compiled"], middle["loaded"] - before["loaded"]) == (1, 0)
    second = jit.cached_jit(_scale)  # another dispatcher of the same kernel, as in a new process
    second.compile(argtypes)
    after = jit.compile_counts()
    assert (after["compiled"] - middle["compiled"], after["loaded"] - middle["loaded"]) == (0, 1)


def test_the_specialised_gemm_goes_through_the_cache(cache_dir):
    """gemm launches a specialised dispatcher (no argument typing per launch); numba-cuda's `specialize`
    makes it without the cache, so every process compiled each GEMM variant again."""
    import numpy as np

    from kernels.cuda import gemm
    x, flat = np.ones((1, 3, 3), np.float32), np.ones((1, 9), np.float32)   # C, and the flat operands
    args = (flat, flat, x, np.ones(1, np.float32), np.ones(1, np.float32), np.zeros(1, np.int32), np.float32(1),
            np.float32(0), 0, 1)
    before = jit.compile_counts()
    gemm._specialised.pop(("64x64", False, True), None)
    specialised = gemm._launchable("64x64", False, True, args)
    assert specialised.specialized and type(specialised._cache).__name__ == "KernelCache"
    assert jit.compile_counts()["compiled"] - before["compiled"] == 1
    again = jit.specialize(gemm.gemm_kernel("64x64", False, True), *args)
    assert jit.compile_counts()["loaded"] - before["loaded"] == 1
    assert again.specialized and list(again.overloads) == list(specialised.overloads)
    gemm._specialised.pop(("64x64", False, True), None)


def _scaler(factor, **options):
    """A kernel factory: kernels of one source line that differ only in a closure constant."""
    @jit.cached_jit(**options)
    def scale(x, y):
        i = cuda.grid(1)
        if i < x.size:
            y[i] = x[i] * factor
    return scale


def test_keys_survive_the_pickling_that_sends_kernels_to_other_processes():
    """compile_ahead.py pickles each kernel to its processes: a kernel rebuilt there must have the key it
    has here, or nothing they compile would ever be loaded (Numba's own key pickles the closure, whose
    device functions pickle differently once rebuilt: 29 of the 101 registered kernels differed)."""
    script = (
        "import hashlib, pickle, sys, types\n"
        "from kernels.cuda import jit\n"
        "codegen = types.SimpleNamespace(magic_tuple=lambda: ((13, 0), (9, 0)))\n"
        "for blob, argtypes in pickle.load(sys.stdin.buffer):\n"
        "    kernel = jit.enable_disk_cache(pickle.loads(blob))\n"
        "    print(hashlib.sha256(repr(kernel._cache._index_key(argtypes, codegen)).encode()).hexdigest())\n")
    from numba.cuda import serialize
    sent, expected = [], []
    for _, kernel, signature in resources.registered_kernels():
        argtypes = resources.argument_types(signature)
        sent.append((serialize.dumps(kernel), argtypes))
        key = kernel._cache._index_key(argtypes, STAND_IN_CODEGEN)
        expected.append(hashlib.sha256(repr(key).encode()).hexdigest())
    import pickle
    environment = dict(os.environ, PYTHONHASHSEED="7", PYTHONPATH=str(REPOSITORY))
    environment.pop("NUMBA_ENABLE_CUDASIM", None)
    result = subprocess.run([sys.executable, "-c", script], input=pickle.dumps(sent), capture_output=True,
                            check=True, cwd=REPOSITORY, env=environment)
    assert result.stdout.decode().split() == expected


def test_recorded_launches_are_compiled_in_other_processes(cache_dir):
    import numpy as np

    from kernels.cuda import launch
    kernels = [jit.cached_jit(_scale), _scaler(float32(2)), _scaler(float32(3))]
    x = np.zeros(5, np.float32)
    y = np.full(5, 7, np.float32)
    with compile_ahead.recording() as records:
        launch.launch(kernels[0], 1, 32, x, y, np.float32(2))
        launch.launch(kernels[1], 1, 32, x, y)
        launch.launch(kernels[1], 1, 32, x, y)      # (the same twice: compiled once)
        launch.launch(kernels[2], 1, 32, x, y)
    assert (y == 7).all(), "a recorded launch ran"
    vector = float32[::1]
    assert records == [(kernels[0], (vector, vector, float32))] + [(kernels[1], (vector, vector))] * 2 + [
        (kernels[2], (vector, vector))]
    before = jit.compile_counts()
    initializer = "kernels.cuda.resources:compile_without_a_gpu"
    assert compile_ahead.compile_in_processes(records, processes=2, initializer=initializer) == 3
    assert compile_ahead.compile_in_processes(records, processes=2, initializer=initializer) == 0   # all on disk
    for kernel, argtypes in records:
        kernel.compile(argtypes)
    after = jit.compile_counts()
    assert (after["compiled"] - before["compiled"], after["loaded"] - before["loaded"]) == (0, 3)


def test_a_gemm_recorded_is_not_kept_unspecialised(cache_dir):
    import numpy as np

    from kernels.cuda import gemm
    x, flat = np.ones((1, 3, 3), np.float32), np.ones((1, 9), np.float32)   # C, and the flat operands
    args = (flat, flat, x, np.ones(1, np.float32), np.ones(1, np.float32), np.zeros(1, np.int32), np.float32(1),
            np.float32(0), 0, 1)
    gemm._specialised.pop(("64x64", True, True), None)
    with compile_ahead.recording():
        assert not gemm._launchable("64x64", True, True, args).specialized
    assert gemm._launchable("64x64", True, True, args).specialized
    gemm._specialised.pop(("64x64", True, True), None)


def test_the_recorded_persistent_rnn_kernels_are_loaded_by_the_first_real_plan(cache_dir, monkeypatch):
    """The recording takes the persistent recurrent kernels without compiling them (rnn.persistent_plan's
    stand-in); compiling what it recorded, as a compiling process does, fills the one cache entry that the
    real plan's occupancy query (rnn._compiled) asks for at the first launch: a load, no compile."""
    from types import SimpleNamespace

    from kernels.cuda import rnn
    from kernels.cuda.rnn_kernels import CELLS
    from kernels.cuda.rnn_persistent import persistent_kernels_for
    from tests.kernels.test_rnn_plan import record_a_layer
    cell = CELLS["lstm"]
    kernels = {name: _fresh(kernel)   # (in cache_dir)
               for name, kernel in persistent_kernels_for(cell, rnn.grid_barrier).items()}
    monkeypatch.setattr(rnn, "persistent_kernels_for", lambda *_: kernels)
    monkeypatch.setattr(jit, "_dispatchers", [*kernels.values()])   # (counted: those, and the compiling ones)
    for name, value in (("_plans", {}), ("_compiled_cache", {}), ("force_path", None), ("force_directions", None),
                        ("min_units", None)):
        monkeypatch.setattr(rnn, name, value)
    before = jit.compile_counts()
    records = record_a_layer("lstm", directions=2, B=2, H=5)
    assert jit.compile_counts() == before and rnn._plans == {}, "the recording compiled or kept a plan"
    assert records == [(kernels[f"persistent_{kind}"], rnn.persistent_signature(kind))
                       for kind in ("forward", "backward")]
    for kernel, argtypes in records:   # what compile_ahead's processes do, each with its own dispatcher
        assert compile_ahead._missing([(kernel, argtypes)]), "already in the cache"
        jit._dispatchers.append(_fresh(kernel))
        jit._dispatchers[-1].compile(argtypes)
    middle = jit.compile_counts()
    assert (middle["compiled"] - before["compiled"], middle["loaded"] - before["loaded"]) == (2, 0)
    # the first real launch: the plan's device queries answered for an H100 (132 SMs, one block an SM)
    device = SimpleNamespace(MULTIPROCESSOR_COUNT=132, MAX_SHARED_MEMORY_PER_BLOCK_OPTIN=227 * 1024)
    monkeypatch.setattr(rnn, "cuda", SimpleNamespace(get_current_device=lambda: device))
    monkeypatch.setattr(dispatcher._Kernel, "max_cooperative_grid_blocks", lambda self, blockdim, dynsmemsize=0: 132)
    for kind in ("forward", "backward"):
        groups = rnn._launch_groups(kind, cell, 2, 5, 2)
        assert [(first, count) for first, count, _ in groups] == [(0, 2)], "not one launch, as recorded"
        assert rnn._plans[rnn._plan_key(kind, cell, 2, 5, 2)] == groups[0][2]
    after = jit.compile_counts()
    assert (after["compiled"] - middle["compiled"], after["loaded"] - middle["loaded"]) == (0, 2)
    assert all(argtypes in kernel.overloads for kernel, argtypes in records)   # (the launches find them)


def compile_without_a_gpu_or_a_cache():
    """resources.compile_without_a_gpu, and a cache directory that cannot be made: every save fails."""
    resources.compile_without_a_gpu()
    jit.pinned_directory = "/dev/null/kernels"


_LOCK = threading.Lock()


def _locked_kernel():
    def locked(x, y):   # a kernel (made in a factory: pickled by value) whose globals cannot be pickled
        with _LOCK:
            y[0] = x[0]
    return locked


def test_what_cannot_be_sent_or_is_too_little_compiles_here(cache_dir, monkeypatch):
    argtypes = (float32[::1], float32[::1])
    monkeypatch.setattr(compile_ahead.CompilingProcesses, "start",
                        lambda self, count=None: pytest.fail("processes started for too little work"))
    with pytest.warns(RuntimeWarning, match="cannot send .*locked to another process"):
        assert compile_ahead.compile_in_processes([(jit.cached_jit(_locked_kernel()), argtypes)], processes=2) == 0
    two = [(_scaler(float32(index)), argtypes) for index in range(2)]
    assert compile_ahead.compile_in_processes(two, processes=2) == 0   # two kernels: not worth two processes
    monkeypatch.setenv("NUMBANET_COMPILE_PROCESSES", "1")
    assert compile_ahead.processes_for_compiling() == 1
    monkeypatch.setenv("NUMBANET_COMPILE_PROCESSES", "many")
    with pytest.raises(ValueError, match="NUMBANET_COMPILE_PROCESSES must be a whole number of processes, got 'many'"):
        compile_ahead.processes_for_compiling()
    monkeypatch.setenv("NUMBANET_KERNEL_CACHE", "0")
    assert compile_ahead.processes_for_compiling() == 0   # nothing to compile into


def test_kernels_compiled_but_not_saved_are_not_counted(cache_dir):
    argtypes = (float32[::1], float32[::1])
    records = [(_scaler(float32(index)), argtypes) for index in range(3)]
    with pytest.warns(RuntimeWarning, match="3 not saved; this process compiles them"):
        assert compile_ahead.compile_in_processes(
            records, processes=2, initializer=f"{__name__}:compile_without_a_gpu_or_a_cache") == 0


def failing_start():
    raise RuntimeError("this process cannot start")


def test_processes_that_fail_to_start_leave_the_compiling_here(cache_dir):
    argtypes = (float32[::1], float32[::1])
    records = [(_scaler(float32(index)), argtypes) for index in range(3)]
    with compile_ahead.CompilingProcesses(2, initializer=f"{__name__}:failing_start") as compiling:
        compiling.start()
        assert compiling.pool.submit(compile_ahead._ready).exception(timeout=60) is not None   # broken by now
        with pytest.warns(RuntimeWarning, match="this process compiles them"):
            assert compiling.compile(records) == 0


def test_a_spawned_process_importing_an_unguarded_script_stops(monkeypatch):
    """A script without the __main__ guard runs again in each spawned process as it imports it: starting to
    compile there stops that process, with the reason, instead of running the rest of the script."""
    import multiprocessing
    monkeypatch.setattr(multiprocessing.current_process(), "_inheriting", True, raising=False)
    with pytest.raises(RuntimeError, match="must keep its top level under `if __name__ == \"__main__\":`"):
        compile_ahead.CompilingProcesses(2).start()


def test_the_compiling_processes_do_not_outlive_a_killed_parent(tmp_path):
    script = ("import os, sys\n"
              "from kernels.cuda import compile_ahead\n"
              "compiling = compile_ahead.CompilingProcesses(2).start()\n"
              "compiling.pool.submit(compile_ahead._ready).result()\n"
              "print(*compiling.pool._processes, flush=True)\n"
              "os._exit(0)   # gone without stopping them, as after SIGKILL\n")
    environment = dict(os.environ, PYTHONPATH=str(REPOSITORY), NUMBANET_CACHE_DIR=str(tmp_path))
    environment.pop("NUMBA_ENABLE_CUDASIM", None)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            cwd=REPOSITORY, env=environment)
    pids = [int(word) for word in result.stdout.split()]
    assert len(pids) == 2, result.stderr[-2000:]

    def alive(pid):
        try:
            with open(f"/proc/{pid}/status") as status:
                return "\tZ" not in status.read().split("State:")[1].splitlines()[0]
        except FileNotFoundError:
            return False
    import time
    deadline = time.monotonic() + 20
    while any(map(alive, pids)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(map(alive, pids)), "a compiling process outlived its parent"
