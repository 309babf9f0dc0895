"""`python -m benchmarks.compile_cache [TEXT] [--processes N]`: what the kernel cache (kernels/cuda/jit.py)
saves, and what compiling in several processes (compile_ahead.py) takes, without a GPU.

Compiles every registered kernel (kernels/cuda/*.py PTX_SIGNATURES, or those whose label contains TEXT)
for sm_90 as a launch would (Numba's typing and lowering, then NVVM to PTX; numba-cuda's device queries
answered by resources.compile_without_a_gpu's stand-ins), saves each through the cache into an
empty directory, then loads them all back in a fresh process. With --processes N, the same kernels are
then compiled into another empty directory by N new processes, timed from the call to its return
(processes started and their imports included). A GPU adds to both sides: the cubin link when compiling,
the module load when loading. Prints the totals and the ten slowest compiles.
"""
import json
import os
import subprocess
import sys
import tempfile
import time

_LOAD_ALL = """
import json, sys, time
from kernels.cuda import resources
resources.compile_without_a_gpu()
text = sys.argv[1]
times, missing = {}, []
for label, kernel, signature in resources.registered_kernels():
    if text in label:
        argtypes = resources.argument_types(signature)
        start = time.perf_counter()
        loaded = kernel._cache.load_overload(argtypes, kernel.targetctx)
        times[label] = time.perf_counter() - start
        if loaded is None:
            missing.append(label)
print(json.dumps({"times": times, "missing": missing}))
"""


def main(argv):
    processes = 0
    if "--processes" in argv:
        at = argv.index("--processes")
        processes = int(argv[at + 1])
        argv = argv[:at] + argv[at + 2:]
    text = argv[0] if argv else ""
    os.environ.pop("NUMBA_ENABLE_CUDASIM", None)
    with tempfile.TemporaryDirectory(prefix="numbanet-cache-") as directory:
        os.environ["NUMBANET_CACHE_DIR"] = directory
        compile_and_load(text)
    if processes:
        with tempfile.TemporaryDirectory(prefix="numbanet-cache-") as directory:
            os.environ["NUMBANET_CACHE_DIR"] = directory
            compile_in_processes(text, processes)


def compile_in_processes(text, processes):
    from kernels.cuda import compile_ahead, jit, resources
    records = []
    for label, kernel, signature in resources.registered_kernels():
        if text in label:
            jit.enable_disk_cache(kernel)   # (a cache in the new directory)
            records.append((kernel, resources.argument_types(signature)))
    start = time.perf_counter()
    compiled = compile_ahead.compile_in_processes(records, processes=processes,
                                                  initializer="kernels.cuda.resources:compile_without_a_gpu")
    print(f"compiled again by {processes} new processes: {compiled} kernels in {time.perf_counter() - start:.1f} s")


def compile_and_load(text):
    from numba.cuda import dispatcher

    from kernels.cuda import jit, resources
    resources.compile_without_a_gpu()
    kernels = [(label, kernel, signature) for label, kernel, signature in resources.registered_kernels()
               if text in label]
    if not kernels:
        raise SystemExit(f"compile_cache: no registered kernel's label contains {text!r}")
    compile_times = {}
    for label, kernel, signature in kernels:
        argtypes = resources.argument_types(signature)
        start = time.perf_counter()
        compiled = dispatcher._Kernel(kernel.py_func, argtypes, **kernel.targetoptions)
        compiled.library.get_asm_str()   # the PTX, as the cubin link of a launch would need it
        compile_times[label] = time.perf_counter() - start
        kernel._cache.save_overload(argtypes, compiled)
    size = sum(entry.stat().st_size for entry in os.scandir(jit.cache_directory()))
    result = subprocess.run([sys.executable, "-c", _LOAD_ALL, text], capture_output=True, text=True, check=True,
                            env=dict(os.environ, PYTHONPATH=os.getcwd()))
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"{len(kernels)} kernels: compiled in {sum(compile_times.values()):.1f} s (the first pays Numba's "
          f"start-up), loaded from the cache in a new process in {sum(loaded['times'].values()):.2f} s; "
          f"{size / 1e6:.1f} MB on disk; {len(loaded['missing'])} not found {loaded['missing'] or ''}")
    print("slowest compiles (s):")
    for label, seconds in sorted(compile_times.items(), key=lambda item: -item[1])[:10]:
        print(f"  {label:<44} {seconds:6.2f}   load {loaded['times'][label] * 1e3:6.1f} ms")


if __name__ == "__main__":
    main(sys.argv[1:])
