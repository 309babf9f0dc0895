"""Resource checks without a GPU: compile every registered kernel to PTX for sm_90 and read ptxas.

Each module of kernels/cuda/ lists the signatures its launchers use in `PTX_SIGNATURES`, a list of
(label, kernel, argument types). A kernel passes when its PTX has no local-memory traffic
(ld.local/st.local: spills or stack arrays), no f64 instruction (fp32 kernels), and ptxas reports
zero spill bytes.
"""
import contextlib
import functools
import importlib
import os
import re
import shutil
import subprocess
import tempfile
import types

COOPERATIVE_RUNTIME = {"cudaCGGetIntrinsicHandle", "cudaCGSynchronize"}   # cuda.cg grid sync, in cudadevrt
KERNEL_MODULES = ("gemm", "pointwise", "reduce", "norm", "optim", "conv", "pool", "rnn", "ctc", "embedding",
                  "layer_norm")
TARGET_CC = (9, 0)


def registered_kernels():
    """(label, kernel, signature) for every kernel of every module that exists."""
    found = []
    for module_name in KERNEL_MODULES:
        try:
            module = importlib.import_module(f"kernels.cuda.{module_name}")
        except ModuleNotFoundError as error:
            if error.name == f"kernels.cuda.{module_name}":
                continue
            raise
        for label, kernel, signature in getattr(module, "PTX_SIGNATURES", ()):
            found.append((f"{module_name}.{label}", kernel, signature))
    return found


def argument_types(signature):
    """A PTX_SIGNATURES entry's argument types as the tuple a dispatcher compiles for (entries are tuples of
    types or Numba signatures)."""
    return tuple(signature) if isinstance(signature, tuple) else tuple(signature.args)


@functools.lru_cache(maxsize=None)
def compile_ptx(kernel, signature):
    from numba import cuda
    options = getattr(kernel, "targetoptions", {})
    # Same options as the launch compiles with, so registers are those the kernel really gets.
    with _device_functions_for_target():
        ptx, _ = cuda.compile_ptx(kernel.py_func, signature, cc=TARGET_CC,
                                  fastmath=options.get("fastmath", False),
                                  launch_bounds=options.get("launch_bounds"))
    return ptx


@contextlib.contextmanager
def _device_functions_for_target():
    """numba-cuda (0.30) compiles a kernel's device functions (kernels/cuda/device.py: inlined by NVVM,
    not by Numba) for the current GPU's compute capability, which needs a GPU. Without one, they are
    compiled for TARGET_CC; with one, nothing changes (so no launch ever links a device function compiled
    for another GPU than its own)."""
    from numba.cuda import dispatcher

    from .. import backend
    if backend.gpu_available() or not hasattr(dispatcher, "get_current_device"):
        yield
        return
    saved = dispatcher.get_current_device
    dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=TARGET_CC)
    try:
        yield
    finally:
        dispatcher.get_current_device = saved


def stand_ins_for_a_gpu():
    """(owner, attribute, value) that let numba-cuda compile kernels for TARGET_CC and save them in the disk
    cache without a GPU: its device queries answered, binding to a context skipped (tests and
    benchmarks/compile_cache.py; apply with monkeypatch, or for good with `compile_without_a_gpu`)."""
    from numba.cuda import codegen, dispatcher
    device = types.SimpleNamespace(compute_capability=TARGET_CC)
    return [(dispatcher, "get_current_device", lambda: device),
            (codegen.JITCUDACodegen, "magic_tuple", lambda self: ((13, 0), TARGET_CC)),
            (codegen.CUDACodeLibrary, "_ensure_cc", lambda self, cc: cc or (*TARGET_CC, "a")),
            (dispatcher._Kernel, "bind", lambda self: None)]


def compile_without_a_gpu():
    """The stand-ins, for the rest of this process (one made only to compile, e.g. compile_ahead's)."""
    for owner, attribute, value in stand_ins_for_a_gpu():
        setattr(owner, attribute, value)


_PTXAS_LINE = re.compile(r"Used (\d+) registers")
_SPILLS = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")
_SMEM = re.compile(r"(\d+) bytes smem")


def ptxas_report(ptx):
    """Registers, spill bytes and static shared memory from `ptxas -v`, or None without ptxas."""
    ptxas = shutil.which("ptxas")
    if ptxas is None:
        return None
    # NVVM from the CUDA 13.x wheels writes a newer PTX ISA version than ptxas 13.0 accepts.
    ptx = re.sub(r"^\.version \d+\.\d+", ".version 9.0", ptx, count=1, flags=re.M)
    with tempfile.TemporaryDirectory() as folder:
        source = os.path.join(folder, "kernel.ptx")
        with open(source, "w") as handle:
            handle.write(ptx)
        # Kernels that call the device runtime (cooperative-groups grid sync) are linked later: compile
        # them as relocatable code so that their extern functions stay unresolved here.
        relocatable = ["-c"] if re.search(r"^\.extern \.func", ptx, flags=re.M) else []
        result = subprocess.run([ptxas, f"-arch=sm_{TARGET_CC[0]}{TARGET_CC[1]}", "-v", *relocatable, source,
                                 "-o", os.path.join(folder, "kernel.cubin")],
                                capture_output=True, text=True)
    text = result.stdout + result.stderr
    if result.returncode != 0:
        raise RuntimeError(f"ptxas failed:\n{text}")
    registers = _PTXAS_LINE.search(text)
    spills = _SPILLS.search(text)
    smem = _SMEM.search(text)
    return {
        "registers": int(registers.group(1)) if registers else 0,
        "spill_bytes": (int(spills.group(1)) + int(spills.group(2))) if spills else 0,
        "shared_bytes": int(smem.group(1)) if smem else 0,
    }


def nvdisasm_path():
    """nvdisasm from PATH, or from the nvidia-cuda-nvdisasm wheel (a test dependency); None without either."""
    found = shutil.which("nvdisasm")
    if found:
        return found
    try:
        import nvidia
    except ImportError:
        return None
    for root in getattr(nvidia, "__path__", []):
        for candidate in (os.path.join(root, "cu13", "bin", "nvdisasm"), os.path.join(root, "cuda_nvdisasm", "bin",
                                                                                        "nvdisasm")):
            if os.path.exists(candidate):
                return candidate
    return None


def sass(ptx):
    """The machine code ptxas makes of `ptx` for TARGET_CC, as nvdisasm prints it; None without both tools."""
    ptxas, nvdisasm = shutil.which("ptxas"), nvdisasm_path()
    if ptxas is None or nvdisasm is None:
        return None
    ptx = re.sub(r"^\.version \d+\.\d+", ".version 9.0", ptx, count=1, flags=re.M)
    relocatable = ["-c"] if re.search(r"^\.extern \.func", ptx, flags=re.M) else []
    with tempfile.TemporaryDirectory() as folder:
        source, cubin = os.path.join(folder, "kernel.ptx"), os.path.join(folder, "kernel.cubin")
        with open(source, "w") as handle:
            handle.write(ptx)
        subprocess.run([ptxas, f"-arch=sm_{TARGET_CC[0]}{TARGET_CC[1]}", *relocatable, source, "-o", cubin],
                       check=True, capture_output=True)
        return subprocess.run([nvdisasm, "-c", cubin], check=True, capture_output=True, text=True).stdout


# "/*0070*/  @!P1 BRA `(.L_x_2) ;": the opcode, and a branch's target label
_SASS_INSTRUCTION = re.compile(r"^\s*/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)[^;]*?"
                               r"(?:`\((\.L_x_\d+)\))?\s*;")
_SASS_LABEL = re.compile(r"^(\.L_x_\d+):")


def fma_loops(sass_text):
    """(FFMAs, instructions, calls) of each loop of the machine code that holds FFMAs (a backward branch's span,
    nested loops counted in every loop around them)."""
    opcodes, targets, labels = [], [], {}
    for line in sass_text.splitlines():
        label = _SASS_LABEL.match(line)
        if label:
            labels[label.group(1)] = len(opcodes)
            continue
        instruction = _SASS_INSTRUCTION.match(line)
        if instruction:
            opcodes.append(instruction.group(1))
            targets.append(instruction.group(2))
    loops = []
    for end, (opcode, target) in enumerate(zip(opcodes, targets)):
        if opcode.startswith("BRA") and target in labels and labels[target] <= end:
            body = opcodes[labels[target]:end + 1]
            fmas = sum(1 for op in body if op.startswith("FFMA"))
            if fmas:
                loops.append((fmas, len(body), sum(1 for op in body if op.startswith("CALL"))))
    return loops


def fma_loop_share(sass_text):
    """(FFMAs, instructions) of the loop in the machine code with the most FFMAs, or None without a loop of
    FFMAs. The FFMA share bounds a multiply loop's speed: every other instruction (address arithmetic, bounds
    tests, loads) takes an issue slot that an FFMA could have had."""
    best = None
    for fmas, instructions, _ in fma_loops(sass_text):
        if best is None or fmas > best[0]:
            best = (fmas, instructions)
    return best


_CALL = re.compile(r"\bcall(?:\.uni)?\s+(?:\([^)]*\),\s*)?([A-Za-z_$][\w$]*)")


def ptx_calls(ptx):
    """The names of the functions that PTX calls (`call[.uni] [(ret),] name, (args);`)."""
    return set(_CALL.findall(ptx))


def check_kernel(label, kernel, signature, fma_loop=False):
    """The PTX and ptxas checks of one kernel; with `fma_loop`, also its FFMA loop's mix (fma_loop_share)."""
    ptx = compile_ptx(kernel, signature)
    body = ptx.split(".entry", 1)[-1]
    report = {
        "kernel": label,
        "local_memory": bool(re.search(r"\b(ld|st)\.local\b", body)),
        "f64": bool(re.search(r"\.f64\b", body)),
        # device functions are inlined (device.py): the only calls left are the device runtime's for grid
        # barriers (the persistent kernels: the handle call that marks them cooperative, and cudaCGSynchronize
        # under NUMBANET_GRID_BARRIER=runtime)
        "calls": sorted(ptx_calls(body) - COOPERATIVE_RUNTIME),
    }
    report.update(ptxas_report(ptx) or {"registers": None, "spill_bytes": None, "shared_bytes": None})
    if fma_loop:
        machine_code = sass(ptx)
        report["fma_loop"] = fma_loop_share(machine_code) if machine_code else None
    report["ok"] = (not report["local_memory"] and not report["f64"] and not report["spill_bytes"]
                    and not report["calls"])
    return report


def format_table(reports):
    lines = [f"{'kernel':48s} {'regs':>5s} {'spill B':>8s} {'smem B':>7s} {'local':>6s} {'f64':>4s}  ok  "
             f"FFMA loop (FFMAs / instructions)"]
    for r in reports:
        loop = r.get("fma_loop")
        lines.append(f"{r['kernel']:48s} {str(r['registers']):>5s} {str(r['spill_bytes']):>8s} "
                     f"{str(r['shared_bytes']):>7s} {('yes' if r['local_memory'] else 'no'):>6s} "
                     f"{('yes' if r['f64'] else 'no'):>4s}  {'yes' if r['ok'] else 'NO ':3s} "
                     + (f"{loop[0]} / {loop[1]} ({loop[0] / loop[1]:.0%})" if loop else ""))
    return "\n".join(lines)
