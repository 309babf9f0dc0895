"""How every kernel is compiled: `cuda.jit`, with the compiled code kept on disk between runs.

A kernel compiles on its first launch for each argument signature, and Numba's typing and lowering take
0.2-1 s a kernel (benchmarks/RESULTS.md): some 20 s of a default CRNN run on an H100, paid again by
every new process. `@cached_jit` is `@cuda.jit` plus Numba's own CUDA disk cache (what `cache=True` turns
on), so a later process loads each kernel's cubin instead of compiling it. `specialize` is
`dispatcher.specialize` through the same cache (numba-cuda's makes its dispatcher without one).

Where: $NUMBANET_CACHE_DIR, else $XDG_CACHE_HOME/numbanet, else ~/.cache/numbanet; under it one
directory per build of the kernels, named by a hash of every source file of the `kernels` package and the
Python, Numba and numba-cuda versions. Numba's cache checks only a kernel's own source file and closure;
a kernel also inlines device functions and constants from other files, so the hash makes an edit
anywhere in `kernels/` start a fresh directory instead of loading stale code (and another checkout of
the same sources shares the entries). The key of an entry also holds the kernel's compile options
(fastmath, launch bounds), which Numba's key leaves out, and describes the kernel's code and closure value
by value (Numba pickles the closure, which differs for a kernel sent to another process by pickle, as
compile_ahead.py does). One file an entry, named by a hash of its key. The three last used build
directories are kept (other `kernels-*` directories in the root are removed when a new build starts), and
a process's first save removes the temporaries of saves cut short over an hour ago. NUMBANET_KERNEL_CACHE=0 turns the cache off; the directory can be deleted at any time.

Nothing is written until a kernel compiles for a GPU (the simulator and `cuda.compile_ptx` never use
the cache). Any error reading or writing it is warned about once and the kernel compiles as if there
were no cache: the cache can cost a compile, never a run.
"""
import contextlib
import functools
import hashlib
import os
import pathlib
import pickle
import shutil
import sys
import time
import types
import uuid
import warnings

import numba
import numpy as np
from numba import cuda

from .. import backend

PACKAGE_DIR = pathlib.Path(__file__).resolve().parent.parent   # kernels/


def cached_jit(function=None, **options):
    """`@cuda.jit(**options)` whose compiled code is kept on disk; `@cached_jit` or `@cached_jit(fastmath=True)`."""
    if function is None:
        return functools.partial(cached_jit, **options)
    dispatcher = cuda.jit(**options)(function)
    if not backend.SIMULATOR:
        _dispatchers.append(dispatcher)
        if caching_enabled():
            enable_disk_cache(dispatcher)
    return dispatcher


# Every kernel made by cached_jit or specialize (not under the simulator); kept, as the factories' caches
# keep them anyway, so that compile_counts never drops what a collected kernel had counted.
_dispatchers = []


def specialize(dispatcher, *args):
    """`dispatcher.specialize(*args)` (a dispatcher compiled for these arguments' types only, which skips
    typing them at each launch) whose kernel goes through the disk cache: numba-cuda's own makes a new
    dispatcher without one. The same function and options, so it shares the entries of `dispatcher`."""
    argtypes = tuple(dispatcher.typeof_pyval(a) for a in args)
    specialised = type(dispatcher)(dispatcher.py_func, targetoptions=dict(dispatcher.targetoptions))
    _dispatchers.append(specialised)
    if caching_enabled():
        enable_disk_cache(specialised)
    specialised.compile(argtypes)
    specialised.disable_compile()
    specialised._specialized = True
    return specialised


def compile_counts():
    """{'loaded': kernels this process took from the disk cache, 'compiled': kernels it compiled}, each
    counted once per argument signature: how much of a run's start-up was compiling."""
    loaded = compiled = 0
    for dispatcher in list(_dispatchers):
        loaded += sum(dispatcher._cache_hits.values())
        compiled += sum(dispatcher._cache_misses.values())
    return {"loaded": loaded, "compiled": compiled}


def caching_enabled():
    return os.environ.get("NUMBANET_KERNEL_CACHE", "1") != "0"


def cache_root():
    """The directory the builds' directories are made in (old `kernels-*` directories in it are removed)."""
    root = os.environ.get("NUMBANET_CACHE_DIR")
    if root:
        return os.path.abspath(root)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.abspath(os.path.join(base, "numbanet"))


def cache_directory():
    """This build's directory: the root, then `kernels-<hash of the sources and versions>` (or the directory
    a process compiling for another one was given: compile_ahead.py)."""
    return pinned_directory or os.path.join(cache_root(), f"kernels-{build_key()}")


pinned_directory = None


@functools.lru_cache(maxsize=None)
def build_key():
    """This process's build of the kernels (read once: the sources do not change under a running kernel)."""
    return sources_key(PACKAGE_DIR)


def sources_key(package_dir):
    """A hash of every .py file under `package_dir` (path and bytes) and of the compiler's versions."""
    import numba_cuda
    from numba.cuda.core import config
    digest = hashlib.sha256()
    # (and the one Numba setting that changes how kernels lower and link: NUMBA_CUDA_ENABLE_NRT)
    for version in (sys.version, numba.__version__, numba_cuda.__version__, str(config.CUDA_ENABLE_NRT)):
        digest.update(version.encode() + b"\0")
    for path in sorted(pathlib.Path(package_dir).rglob("*.py")):
        digest.update(path.relative_to(package_dir).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:20]


def function_identity(function, _depth=0):
    """What a kernel or device function compiles from, apart from globals (the build key covers those: they
    are constants of the sources): its name, code, default arguments and closure, each value described by
    what it is, so that the same function made in two processes, or sent from one to another by pickle, has
    one identity."""
    if _depth > 20:
        raise ValueError(f"function_identity: closures nested too deep at {function.__qualname__}")
    defaults = (function.__defaults__ or ()) + tuple(sorted((function.__kwdefaults__ or {}).items()))
    return (function.__module__, function.__qualname__, _code_identity(function.__code__),
            _value_identity(defaults, _depth),
            tuple(_value_identity(cell.cell_contents, _depth) for cell in function.__closure__ or ()))


def _code_identity(code):
    constants = tuple(_code_identity(c) if isinstance(c, types.CodeType) else _value_identity(c, 0)
                      for c in code.co_consts)
    return (code.co_code, code.co_argcount, code.co_kwonlyargcount, code.co_names, code.co_varnames,
            code.co_freevars, constants)


def _value_identity(value, depth):
    if hasattr(value, "py_func") and hasattr(value, "targetoptions"):   # a kernel or device function
        return ("dispatcher", function_identity(value.py_func, depth + 1), repr(sorted(value.targetoptions.items())))
    if isinstance(value, types.FunctionType):
        return ("function", function_identity(value, depth + 1))
    if isinstance(value, (tuple, list)):
        return (type(value).__name__,) + tuple(_value_identity(v, depth) for v in value)
    if isinstance(value, (frozenset, set)):   # (ordered by repr: their order follows the hash seed)
        return (type(value).__name__,) + tuple(sorted(repr(_value_identity(v, depth)) for v in value))
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes, type(Ellipsis))):
        return (type(value).__name__, repr(value))
    if isinstance(value, np.generic):   # a NumPy scalar (e.g. a float32 constant)
        return (value.dtype.str, value.tobytes())
    if type(value).__module__.partition(".")[0] == "numba" and " at 0x" not in repr(value):   # a Numba type
        return ("numba", type(value).__qualname__, repr(value))
    raise TypeError(f"function_identity: no stable description of a {type(value).__name__} in a kernel's "
                    f"closure; add one")


KEEP_BUILDS = 3   # build directories kept: each edit of the sources (or upgrade) starts a new one
_used = set()


def _remove_old_builds(current):
    """Remove the build directories beside `current` but the KEEP_BUILDS - 1 last used (a full GPU test run
    leaves some hundreds of MB in one). A process still loading from one just compiles instead."""
    root = os.path.dirname(current)
    others = []
    for entry in os.scandir(root):
        if entry.name.startswith("kernels-") and entry.path != current and entry.is_dir(follow_symlinks=False):
            others.append((entry.stat().st_mtime, entry.path))
    for _, path in sorted(others, reverse=True)[KEEP_BUILDS - 1:]:
        shutil.rmtree(path, ignore_errors=True)


STALE_TEMPORARY_SECONDS = 3600   # a save's temporary lives milliseconds: one an hour old was left by a killed process
_swept = set()


def _remove_stale_temporaries(directory):
    """Remove, once a process, the temporaries of saves cut short (a process killed between its write and its
    rename) from a build directory, which nothing else removes until the whole build is pruned."""
    if directory in _swept:
        return
    _swept.add(directory)
    cutoff = time.time() - STALE_TEMPORARY_SECONDS
    with contextlib.suppress(OSError):
        for entry in os.scandir(directory):
            if entry.name.endswith(".tmp"):
                with contextlib.suppress(OSError):   # (renamed or removed meanwhile by its own process: go on)
                    if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                        os.unlink(entry.path)


def _mark_used(directory):
    """Touch a build directory at its first load in a process, so that it counts as used when old ones go."""
    if directory not in _used:
        _used.add(directory)
        with contextlib.suppress(OSError):
            os.utime(directory)


def enable_disk_cache(dispatcher):
    """Give a `cuda.jit` dispatcher the on-disk cache (what `dispatcher.enable_caching()` does, but in this
    build's directory and with the compile options in the key)."""
    try:
        dispatcher._cache = _cache_class()(dispatcher)
    except Exception as error:   # a numba-cuda whose cache differs from 0.30's: compile without one
        _warn_unusable(error)
    return dispatcher


def has_disk_cache(kernel):
    return type(getattr(kernel, "_cache", None)).__name__ == "KernelCache"


_warned = False


def _warn_unusable(error):
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(f"numbanet: the kernel cache in {cache_root()} cannot be used ({error!r}); kernels "
                      f"compile without it (NUMBANET_KERNEL_CACHE=0 silences this)", RuntimeWarning,
                      stacklevel=3)


@functools.lru_cache(maxsize=None)
def _cache_class():
    """Numba's CUDA cache with our locator and key; built on first use, so importing the kernels does not
    reach into numba-cuda's internals (version 0.30) until a kernel is made."""
    from numba.cuda import serialize
    from numba.cuda.core.caching import _CacheLocator, _SourceFileBackedLocatorMixin
    from numba.cuda.dispatcher import CUDACache, CUDACacheImpl

    class BuildDirectoryLocator(_SourceFileBackedLocatorMixin, _CacheLocator):
        """Every kernel's entries in this build's directory, which is made at the first save only."""

        def __init__(self, py_func, py_file):
            self._py_file = py_file
            self._lineno = py_func.__code__.co_firstlineno
            self._cache_path = cache_directory()

        def get_cache_path(self):
            return self._cache_path

        def ensure_cache_path(self):
            new_build = not os.path.isdir(self._cache_path)
            super().ensure_cache_path()
            if new_build:
                _remove_old_builds(self._cache_path)
            _remove_stale_temporaries(self._cache_path)

        @classmethod
        def from_function(cls, py_func, py_file):
            return cls(py_func, py_file) if os.path.exists(py_file) else None

    class KernelCacheImpl(CUDACacheImpl):
        _locator_classes = [BuildDirectoryLocator]

    class KernelCache(CUDACache):
        _impl_class = KernelCacheImpl

        def __init__(self, dispatcher):
            self._options = repr(sorted(dispatcher.targetoptions.items()))
            super().__init__(dispatcher.py_func)

        def _index_key(self, sig, codegen):
            """Numba's key, but for the function: its code and closure described value by value (Numba
            pickles the closure, whose device functions pickle differently once a dispatcher has been
            through pickle, as compile_ahead.py sends them), and with the compile options."""
            import numba_cuda
            function = hashlib.sha256(repr(function_identity(self._py_func)).encode()).hexdigest()
            key = (sig, codegen.magic_tuple(), numba_cuda.__version__, function, ("options", self._options))
            if self._launch_config_key is not None:
                key += (("launch_config", self._launch_config_key),)
            return key

        # One file per entry, named by a hash of its key, instead of Numba's index of numbered data files:
        # processes saving at once (the processes of compile_in_processes, parallel tests, two runs) then
        # never write over each other's entries (with the index, kernels of one factory compiled at once lost
        # entries, or the index named a file another process had written another kernel into). The file also
        # holds its key, checked on load.
        def _entry_path(self, key):
            digest = hashlib.sha256(repr(key).encode()).hexdigest()[:24]
            return os.path.join(self._cache_path, f"{self._impl.filename_base}.{digest}.nbc")

        def _save_overload(self, sig, data):
            if not self._enabled or not self._impl.check_cachable(data):
                return
            self._impl.locator.ensure_cache_path()
            key = self._index_key(sig, data.codegen)
            path = self._entry_path(key)
            payload = serialize.dumps((repr(key), self._impl.reduce(data)))
            temporary = f"{path}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
            try:
                with open(temporary, "wb") as handle:
                    handle.write(payload)
                os.replace(temporary, path)   # atomic: a reader sees the old entry or the new, never half
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)

        def _load_overload(self, sig, target_context):
            if not self._enabled:
                return None
            key = self._index_key(sig, target_context.codegen())
            try:
                with open(self._entry_path(key), "rb") as handle:
                    entry = pickle.loads(handle.read())
            except FileNotFoundError:
                return None
            if not (isinstance(entry, tuple) and len(entry) == 2 and entry[0] == repr(key)):
                return None   # another kernel's entry (a hash collision): compile
            _mark_used(self._cache_path)
            return self._impl.rebuild(target_context, entry[1])

        def has_entry(self, sig, target_context):
            return os.path.exists(self._entry_path(self._index_key(sig, target_context.codegen())))

        def load_overload(self, sig, target_context):
            try:
                return super().load_overload(sig, target_context)
            except Exception as error:   # unreadable, truncated or foreign entry: compile instead
                _warn_unusable(error)
                return None

        def save_overload(self, sig, data):
            try:
                super().save_overload(sig, data)
            except Exception as error:   # read-only or full disk, unpicklable closure: keep the kernel
                _warn_unusable(error)

    return KernelCache
