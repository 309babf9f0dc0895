"""Compiling a run's kernels ahead, in several processes at once, into the disk cache (jit.py).

Numba compiles one kernel at a time, holding the GIL (its typing and lowering are Python), at the kernel's
first launch: a first CRNN run compiles ~30 kernels one after another (about 20 s on the H100 machine).
Recorded ahead instead (`recording`: a step run with its launches noted, not made), they are compiled at
once by new processes (`compile_in_processes`), which save them to the disk cache; the run's launches then
load them. nn.train records a twin of the model's training step and validation (`record_kernels` there).

Up to 8 processes, one core left to this one (NUMBANET_COMPILE_PROCESSES=N sets the count; 0 or 1 turns
compiling ahead off), each with its own CUDA context; none on machines with fewer than 3 cores, nor without
the disk cache. Anything going wrong is warned about and the kernels compile at their first launch, as
they would have anyway. The processes are spawned, so they import the main script: a script that calls
this must keep its top level under `if __name__ == "__main__":`, as for any use of multiprocessing
(`numbanet train` and `python -m nn.train` do).
"""
import concurrent.futures
import contextlib
import math
import multiprocessing
import os
import pickle
import warnings

from .. import backend
from . import jit

MAX_PROCESSES = 8
_recording = None   # a list while `recording()` is on: launch.launch appends (kernel, argument types) and returns


@contextlib.contextmanager
def recording():
    """Inside the block, `launch` records each kernel and its argument types instead of launching it (and
    gemm does not specialise its kernels: nothing compiles for the launches). Arrays keep whatever they held,
    so only code whose results are thrown away belongs here. Yields the list of (kernel, argument types)."""
    global _recording
    if _recording is not None:
        raise RuntimeError("recording: already recording")
    _recording = records = []
    try:
        yield records
    finally:
        _recording = None


def is_recording():
    return _recording is not None


def record_launch(kernel, args):
    """Called by `launch` while recording: the types a launch with these (device) arguments compiles for
    (as the dispatcher types them; the simulator's kernels, which compile nothing, by Numba's typeof)."""
    typeof = getattr(kernel, "typeof_pyval", None) or _argument_typeof
    _recording.append((kernel, tuple(typeof(a) for a in args)))


def _argument_typeof(value):
    from numba.cuda.typing.typeof import Purpose, typeof
    return typeof(value, Purpose.argument)


def processes_for_compiling():
    """How many processes compiling ahead may use here (under 2: it is not done)."""
    if not jit.caching_enabled() or backend.SIMULATOR:
        return 0
    chosen = os.environ.get("NUMBANET_COMPILE_PROCESSES")
    if chosen:
        if not chosen.isdigit():
            raise ValueError(f"NUMBANET_COMPILE_PROCESSES must be a whole number of processes, got {chosen!r}")
        return int(chosen)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(MAX_PROCESSES, cores - 1)


def is_cold():
    """Whether this build's cache directory holds no kernel yet (a first run: worth starting processes before
    the kernels it needs are even known)."""
    directory = jit.cache_directory()
    return not os.path.isdir(directory) or not any(name.endswith(".nbc") for name in os.listdir(directory))


class CompilingProcesses:
    """Up to `processes` new processes (spawned: a forked CUDA context is unusable) that compile kernels into
    the disk cache. `start()` has them import what they need at once, while this process records; `compile`
    hands them the recorded kernels the cache lacks and waits."""

    def __init__(self, processes=None, timeout=300, initializer=None):
        self.processes = processes_for_compiling() if processes is None else processes
        self.timeout, self.initializer = timeout, initializer   # initializer: "module:function", run first
        self.pool, self.started = None, 0

    def start(self, count=None):
        """Start `count` processes (all by default) now; returns self."""
        if getattr(multiprocessing.current_process(), "_inheriting", False):
            # a spawned process importing a main script that starts compiling at its top level: stop it here,
            # before it runs the rest of that script (a whole training run) instead of compiling
            raise RuntimeError("compile_ahead: the script that compiles ahead must keep its top level under "
                               "`if __name__ == \"__main__\":` (its compiling processes are spawned and import it)")
        count = self.processes if count is None else min(count, self.processes)
        if self.pool is None and count >= 2:
            try:
                self.pool = concurrent.futures.ProcessPoolExecutor(
                    count, mp_context=multiprocessing.get_context("spawn"), initializer=_start_compiling_process,
                    initargs=(jit.cache_directory(), self.initializer))
                for _ in range(count):   # (the pool starts its processes as work arrives)
                    self.pool.submit(_ready)
                self.started = count
            except Exception as error:   # no processes here (a sandbox, no spawn): this process compiles
                _warn(f"could not start processes to compile kernels ({error!r})")
                self.close(stop=True)
        return self

    def compile(self, records):
        """Compile the recorded (kernel, argument types) that neither this process nor the disk cache has.
        Returns how many were compiled and saved."""
        if self.processes < 2:
            return 0
        work = _missing(records)
        if len(work) < 3:   # too few to pay for new processes: compiled at their first launch
            return 0
        if self.pool is None:
            self.start(min(self.processes, math.ceil(len(work) / 2)))   # at least two kernels a process
            if self.pool is None:
                return 0
        work.sort(key=lambda item: -len(item[0]))   # the largest kernels (longest compiles) first
        try:
            futures = [self.pool.submit(_compile_sent_kernel, blob, argtypes) for blob, argtypes in work]
        except Exception as error:   # the pool broke meanwhile (a process failed to start): compile here
            _warn(f"the processes to compile kernels failed ({error!r}); this process compiles them")
            self.close(stop=True)
            return 0
        try:
            done, late = concurrent.futures.wait(futures, timeout=self.timeout)
        except BaseException:   # Ctrl-C: stop them, do not wait for their work
            self.close(stop=True)
            raise
        failed = [future.exception() for future in done if future.exception() is not None]
        saved = sum(future.result() for future in done if future.exception() is None)
        if late or failed or saved < len(done) - len(failed):
            _warn(f"{len(work)} kernels to compile in {self.started} processes: {len(late)} not done in "
                  f"{self.timeout} s, {len(failed)} failed{f' ({failed[0]!r} first)' if failed else ''}, "
                  f"{len(done) - len(failed) - saved} not saved; this process compiles them")
        self.close(stop=bool(late))
        return saved

    def close(self, stop=False):
        if self.pool is None:
            return
        if stop:   # a process stuck, or an interrupt
            for process in list(getattr(self.pool, "_processes", {}).values()):
                process.terminate()
        self.pool.shutdown(wait=not stop, cancel_futures=True)
        self.pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close(stop=exc_info[0] is not None)


def compile_in_processes(records, processes=None, timeout=300, initializer=None):
    """`CompilingProcesses(...).compile(records)`: compile the recorded kernels the disk cache lacks."""
    with CompilingProcesses(processes, timeout, initializer) as compiling:
        return compiling.compile(records)


def _missing(records):
    """(pickled kernel, argument types) of each distinct record neither compiled here nor in the disk cache;
    a kernel that cannot be pickled is left to compile at its first launch, with a warning."""
    from numba.cuda import serialize
    work, seen = [], set()
    for kernel, argtypes in records:
        if (id(kernel), argtypes) in seen or argtypes in kernel.overloads or not jit.has_disk_cache(kernel):
            continue
        seen.add((id(kernel), argtypes))
        try:
            if not kernel._cache.has_entry(argtypes, kernel.targetctx):
                work.append((serialize.dumps(kernel), argtypes))
        except Exception as error:
            _warn(f"cannot send {kernel.py_func.__qualname__} to another process ({error!r}); it compiles here")
    return work


_warned = set()


def _warn(message):
    if message not in _warned:
        _warned.add(message)
        warnings.warn(f"numbanet: {message}", RuntimeWarning, stacklevel=3)


# ---- in the compiling processes ---------------------------------------------------------------------------
def _start_compiling_process(directory, initializer):
    import signal
    import threading
    from multiprocessing.connection import wait
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C is the parent's to handle: it stops these
    parent = multiprocessing.parent_process()
    if parent is not None:   # a parent killed without stopping these (SIGKILL, OOM): do not outlive it
        threading.Thread(target=lambda: (wait([parent.sentinel]), os._exit(1)), daemon=True).start()
    jit.pinned_directory = directory   # this process saves where the one that sent the kernels loads
    os.environ["NUMBANET_KERNEL_CACHE"] = "1"
    if initializer:
        import importlib
        module, _, function = initializer.partition(":")
        getattr(importlib.import_module(module), function)()
    import numba.cuda   # noqa: F401  (imported before the first kernel arrives)


def _ready():
    return True


def _compile_sent_kernel(blob, argtypes):
    """Compile one kernel into the disk cache; whether its entry is there now."""
    kernel = jit.enable_disk_cache(pickle.loads(blob))
    kernel.compile(argtypes)
    return jit.has_disk_cache(kernel) and kernel._cache.has_entry(argtypes, kernel.targetctx)
