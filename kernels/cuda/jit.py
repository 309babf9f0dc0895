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
(fastmath, launch bounds), which Numba's key leaves out. The three last used build directories are kept
(other `kernels-*` directories in the root are removed when a new build starts).
NUMBANET_KERNEL_CACHE=0 turns the cache off; the directory can be deleted at any time.

Nothing is written until a kernel compiles for a GPU (the simulator and `cuda.compile_ptx` never use
the cache). Any error reading or writing it is warned about once and the kernel compiles as if there
were no cache: the cache can cost a compile, never a run.
"""
import contextlib
import functools
import hashlib
import os
import pathlib
import shutil
import sys
import warnings
import weakref

import numba
from numba import cuda

from .. import backend

PACKAGE_DIR = pathlib.Path(__file__).resolve().parent.parent   # kernels/


def cached_jit(function=None, **options):
    """`@cuda.jit(**options)` whose compiled code is kept on disk; `@cached_jit` or `@cached_jit(fastmath=True)`."""
    if function is None:
        return functools.partial(cached_jit, **options)
    dispatcher = cuda.jit(**options)(function)
    if not backend.SIMULATOR:
        _dispatchers.add(dispatcher)
        if caching_enabled():
            enable_disk_cache(dispatcher)
    return dispatcher


_dispatchers = weakref.WeakSet()   # every kernel made by cached_jit or specialize (not under the simulator)


def specialize(dispatcher, *args):
    """`dispatcher.specialize(*args)` (a dispatcher compiled for these arguments' types only, which skips
    typing them at each launch) whose kernel goes through the disk cache: numba-cuda's own makes a new
    dispatcher without one. The same function and options, so it shares the entries of `dispatcher`."""
    argtypes = tuple(dispatcher.typeof_pyval(a) for a in args)
    specialised = type(dispatcher)(dispatcher.py_func, targetoptions=dict(dispatcher.targetoptions))
    _dispatchers.add(specialised)
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
    """This build's directory: the root, then `kernels-<hash of the sources and versions>`."""
    return os.path.join(cache_root(), f"kernels-{build_key()}")


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

        def get_source_stamp(self):
            # Freshness is the directory's business (its name hashes the sources), not the file's mtime:
            # another checkout or a fresh clone of the same sources shares the entries instead of
            # overwriting the index in turn.
            return build_key()

        def ensure_cache_path(self):
            new_build = not os.path.isdir(self._cache_path)
            super().ensure_cache_path()
            if new_build:
                _remove_old_builds(self._cache_path)

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
            return super()._index_key(sig, codegen) + (("options", self._options),)

        # Each entry carries its key, checked on load. Numba numbers a function's data files from its index
        # as it read it, so two processes saving at once (parallel tests, two runs) can leave the index
        # naming one file for a key whose kernel the other process wrote over it: without the check, the
        # kernels of one factory (the same signature, other tile sizes) would load each other's code.
        def _save_overload(self, sig, data):
            if not self._enabled or not self._impl.check_cachable(data):
                return
            self._impl.locator.ensure_cache_path()
            key = self._index_key(sig, data.codegen)
            self._cache_file.save(key, (repr(key), self._impl.reduce(data)))

        def _load_overload(self, sig, target_context):
            if not self._enabled:
                return None
            key = self._index_key(sig, target_context.codegen())
            entry = self._cache_file.load(key)
            if not (isinstance(entry, tuple) and len(entry) == 2 and entry[0] == repr(key)):
                return None   # none, or another kernel's: compile (and the save puts this one back)
            _mark_used(self._cache_path)
            return self._impl.rebuild(target_context, entry[1])

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
