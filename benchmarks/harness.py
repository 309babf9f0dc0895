"""The one benchmark harness: our op against the vendor op, same process, same device, same inputs.

GPU: CUDA-event timing on the current stream after warm-up, median of repeats, with several input
sets used in turn so that the L2 cache does not flatter either side: as many sets as exceed ROTATION_BYTES
(distinct memory only: a torch view of our array counts once), but no more than the calls of both sides
read; our calls take the sets from the first, the vendor's go on from where ours stopped. CPU: perf_counter,
same rules, one thread a side (benchmarks.run), labelled as CPU figures. Each suite module
(benchmarks/gemm.py, ...) gives its `Case`s as an iterable (the train suite's builds each model only when its
rows come up).
"""
import contextlib
import json
import math
import os
import platform
import statistics
import time
import traceback
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Callable, Optional

import numpy as np

from kernels import backend

ROTATION_BYTES = 256 * 2**20   # input sets rotated until they exceed this (H100/H200 L2: 50-60 MiB)
WARMUP_CALLS = 3
HOST_COST_SECONDS = 0.5        # the host-cost pass: at most this much of the device's time (at 8192^3, 13 calls)


@dataclass
class Case:
    """One benchmark row. `make_inputs(xp, seed)` builds one input set on the device's array module."""
    label: str
    make_inputs: Callable[[Any, int], tuple]
    ours: Callable[..., Any]
    vendor: Optional[Callable[..., Any]]
    vendor_name: str
    flops: float = 0.0          # useful floating-point work per call (for TFLOP/s)
    bytes: float = 0.0          # compulsory memory traffic per call (for GB/s)
    samples: int = 0            # training samples processed per call (for samples/s)
    note: str = ""
    extra: dict = field(default_factory=dict)


def device_for_benchmarks(requested="auto"):
    if requested == "auto":
        return "cuda" if backend.gpu_available() else "cpu"
    if requested == "cuda" and not backend.gpu_available():
        raise SystemExit("bench: --device cuda requested but no usable GPU/CuPy was found")
    return requested


def array_module(device):
    if device == "cuda":
        return backend.cupy_module()
    return np


def vendor_torch():
    """PyTorch as the vendor side: fp32 against fp32 (TF32 off) and cuDNN's autotuner on. (On the CPU,
    benchmarks.run puts it on one thread, as ours: single_threaded_cpu.)"""
    import torch
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    return torch


def as_torch(torch, array):
    """A torch tensor sharing the memory of a NumPy or CuPy array (no copy)."""
    if backend.is_gpu_array(array):
        return torch.as_tensor(array, device="cuda")
    return torch.from_numpy(array)


def _synchronize(device):
    if device == "cuda":
        backend.synchronize()


def time_calls(fn, input_sets, device, warmup=WARMUP_CALLS, repeats=15, first_set=0):
    """Milliseconds per call for each repeat; the calls, warm-up first, take the inputs in turn from
    `input_sets`, starting at `first_set` (so that a timed call does not reread a warm-up call's set)."""
    def inputs(call):
        return input_sets[(first_set + call) % len(input_sets)]
    for i in range(warmup):
        fn(*inputs(i))
    _synchronize(device)
    times = []
    if device == "cuda":
        cupy = backend.cupy_module()
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        for r in range(repeats):
            start.record()
            fn(*inputs(warmup + r))
            end.record()
            end.synchronize()
            times.append(cupy.cuda.get_elapsed_time(start, end))
    else:
        for r in range(repeats):
            begin = time.perf_counter()
            fn(*inputs(warmup + r))
            times.append((time.perf_counter() - begin) * 1e3)
    return times


def host_cost_us(fn, inputs, device, call_ms, seconds=HOST_COST_SECONDS, max_calls=200):
    """Host-side cost of one call in microseconds: wall time of back-to-back calls, not waiting for the GPU.
    As many calls as take `seconds` of the device's time at `call_ms` a call (the GPU drains the queue at the
    end: 200 calls of a 38 ms GEMM were 7.7 s), at least 5 and at most `max_calls`; and no more once the host
    loop itself has taken `seconds`."""
    calls = int(max(5, min(max_calls, seconds * 1e3 / max(call_ms, 1e-6))))
    fn(*inputs)
    _synchronize(device)
    begin = time.perf_counter()
    done = 0
    while done < calls and (done < 5 or time.perf_counter() - begin < seconds):
        fn(*inputs)
        done += 1
    elapsed = time.perf_counter() - begin
    _synchronize(device)
    return elapsed / done * 1e6


@contextlib.contextmanager
def launches_replaced(replacement):
    """Inside the block, every kernel launch of kernels.cuda calls `replacement` (launch's arguments) instead
    of launching (the host profile and host proxy split or skip a step's launches)."""
    replaced = ReplacedLaunches(replacement)
    try:
        yield
    finally:
        replaced.restore()


class ReplacedLaunches:
    """Make `replacement` the `launch` of every kernels.cuda module that launches through launch.py, until
    `restore()`. Every module is imported before any is patched: one imported after launch.py's own `launch`
    was patched would bind the replacement (`from .launch import launch`) and never be restored."""

    def __init__(self, replacement):
        import importlib
        import pkgutil

        import kernels.cuda
        from kernels.cuda import launch
        modules = [importlib.import_module(f"kernels.cuda.{info.name}")
                   for info in pkgutil.iter_modules(kernels.cuda.__path__)]
        self.original = launch.launch
        self.patched = [module for module in modules if getattr(module, "launch", None) is self.original]
        for module in self.patched:
            module.launch = replacement

    def restore(self):
        for module in self.patched:
            module.launch = self.original


def measured_ceilings(device):
    """Peak fp32 FMA rate (from the card's SMs and clock) and a measured device copy bandwidth."""
    xp = array_module(device)
    n_bytes = 512 * 2**20 if device == "cuda" else 128 * 2**20
    source = xp.ones(n_bytes // 4, dtype=xp.float32)
    target = xp.empty_like(source)
    times = time_calls(lambda: target.__setitem__(Ellipsis, source), [()], device, warmup=2, repeats=9)
    copy_gbs = 2 * n_bytes / (min(times) * 1e-3) / 1e9  # a ceiling: the best copy seen, not the typical one
    peak_tflops = None
    if device == "cuda":
        cupy = backend.cupy_module()
        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        # 128 fp32 FMA units per SM on Hopper/Ampere-class cards, 2 flops per FMA.
        peak_tflops = props["multiProcessorCount"] * 128 * 2 * props["clockRate"] * 1e3 / 1e12
    return {"copy_GBps": copy_gbs, "fp32_peak_TFLOPs": peak_tflops}


def _data_pointer(value):
    """Where an array's or tensor's data starts (NumPy, CuPy, torch), or None for anything else."""
    if hasattr(value, "data_ptr"):                     # torch
        return value.data_ptr()
    if hasattr(value, "__array_interface__"):          # NumPy
        return value.__array_interface__["data"][0]
    if hasattr(value, "__cuda_array_interface__"):     # CuPy
        return value.__cuda_array_interface__["data"][0]
    return None


def input_set_bytes(inputs):
    """Bytes of one input set: its arrays and tensors (also inside lists, tuples and dicts), each block of
    memory once (a torch tensor made with as_torch shares our array's memory)."""
    sizes = {}

    def visit(value):
        if isinstance(value, (list, tuple)):
            for item in value:
                visit(item)
        elif isinstance(value, dict):
            for item in value.values():
                visit(item)
        else:
            pointer = _data_pointer(value)
            if pointer:
                sizes[pointer] = max(sizes.get(pointer, 0), getattr(value, "nbytes", 0))
    visit(inputs)
    return sum(sizes.values())


def input_set_count(inputs, calls):
    """Sets to rotate: enough to exceed ROTATION_BYTES, but no more than `calls` (the calls of both sides:
    a set beyond them would never be read). Their memory stays under ROTATION_BYTES plus one set."""
    size = input_set_bytes(inputs)
    if size == 0:
        return 1
    return max(1, min(calls, math.ceil(ROTATION_BYTES / size)))


def run_case(case, device, ceilings, repeats=15, measure_host_cost=False):
    xp = array_module(device)
    first = case.make_inputs(xp, 0)
    calls = WARMUP_CALLS + repeats   # a side's calls; the vendor's take the sets after ours
    sides = 2 if case.vendor is not None else 1
    input_sets = [first] + [case.make_inputs(xp, seed) for seed in range(1, input_set_count(first, sides * calls))]
    ours_ms = statistics.median(time_calls(case.ours, input_sets, device, repeats=repeats))
    vendor_ms = None
    if case.vendor is not None:
        vendor_ms = statistics.median(time_calls(case.vendor, input_sets, device, repeats=repeats,
                                                 first_set=calls))
    row = {"case": case.label, "ours_ms": ours_ms, "vendor": case.vendor_name, "vendor_ms": vendor_ms,
           "speed_vs_vendor": (vendor_ms / ours_ms) if vendor_ms else None, "note": case.note}
    if case.flops:
        row["ours_TFLOPs"] = case.flops / (ours_ms * 1e-3) / 1e12
        row["vendor_TFLOPs"] = case.flops / (vendor_ms * 1e-3) / 1e12 if vendor_ms else None
        peak = ceilings.get("fp32_peak_TFLOPs")
        row["pct_of_ceiling"] = 100 * row["ours_TFLOPs"] / peak if peak else None
    elif case.bytes:
        row["ours_GBps"] = case.bytes / (ours_ms * 1e-3) / 1e9
        row["vendor_GBps"] = case.bytes / (vendor_ms * 1e-3) / 1e9 if vendor_ms else None
        row["pct_of_ceiling"] = 100 * row["ours_GBps"] / ceilings["copy_GBps"]
    if case.samples:
        row["ours_samples_per_s"] = case.samples / (ours_ms * 1e-3)
        row["vendor_samples_per_s"] = case.samples / (vendor_ms * 1e-3) if vendor_ms else None
    if measure_host_cost and device == "cuda":  # on the CPU the call *is* the work
        row["host_cost_us"] = host_cost_us(case.ours, first, device, call_ms=ours_ms)
    row.update(case.extra)
    return row


def _fmt(value, digits=3):
    if value is None:
        return "-"
    return f"{value:.{digits}f}"


def format_table(suite, device, rows):
    lines = [f"{suite} on {device}: speed = vendor ms / ours ms (above 1: ours is faster)",
             f"{'case':38s} {'ours ms':>9s} {'vendor ms':>10s} {'speed':>6s} {'rate':>14s} {'% ceil':>7s}  vendor"]
    for row in rows:
        if "error" in row:
            lines.append(f"{row['case']:38s} FAILED: {row['error']}")
            continue
        if "ours_TFLOPs" in row:
            rate = f"{row['ours_TFLOPs']:.2f} TFLOP/s"
        elif "ours_GBps" in row:
            rate = f"{row['ours_GBps']:.0f} GB/s"
        elif "ours_samples_per_s" in row:
            rate = f"{row['ours_samples_per_s']:.0f} samples/s"
        else:
            rate = "-"
        lines.append(f"{row['case']:38s} {_fmt(row['ours_ms']):>9s} {_fmt(row['vendor_ms']):>10s} "
                     f"{_fmt(row['speed_vs_vendor'], 2):>6s} {rate:>14s} {_fmt(row.get('pct_of_ceiling'), 1):>7s}  "
                     f"{row['vendor']}")
    return "\n".join(lines)


def machine_description(device):
    facts = backend.describe()
    if device == "cuda":
        return f"{facts['gpu']} (cc {facts['compute_capability']})"
    return f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def run_suite(suite, cases, device, output_dir=None, plot=False, repeats=15, measure_host_cost=False):
    """Time every case, print the table, and write `<suite>-<device>.json` (and a PNG with plot). The JSON is
    rewritten after every row, "complete": false until the last, so that a suite cut by a time cap keeps the
    rows it timed and says it was cut (benchmarks/summary.py)."""
    ceilings = measured_ceilings(device)
    rows = []
    report = {"suite": suite, "device": device, "machine": machine_description(device),
              "date": date.today().isoformat(), "switches": backend.switches(), "ceilings": ceilings,
              "launcher": backend.describe().get("launcher", "none (no GPU)"), "complete": False, "rows": rows}
    if device == "cpu":
        report["cpu_threads"] = cpu_threads()
        print(f"{suite} on cpu: threads, ours {report['cpu_threads']['ours']}, "
              f"torch {report['cpu_threads']['torch']}", flush=True)
    path = os.path.join(output_dir, f"{suite}-{device}.json") if output_dir else None
    _write_report(report, path)
    cases = iter(cases)
    while True:
        try:   # making a case can fail too (the train suite builds and runs a model): keep the rows so far
            case = next(cases)
        except StopIteration:
            break
        except Exception as error:
            traceback.print_exc()
            rows.append({"case": "(making the next case)", "error": f"{type(error).__name__}: {error}"[:300]})
            print(format_table(suite, device, rows).splitlines()[-1], flush=True)
            _write_report(report, path)
            break
        try:
            row = run_case(case, device, ceilings, repeats=repeats, measure_host_cost=measure_host_cost)
        except Exception as error:  # one broken case must not cost the rest of the suite its figures
            traceback.print_exc()
            row = {"case": case.label, "error": f"{type(error).__name__}: {error}"[:300]}
        rows.append(row)
        print(format_table(suite, device, [row]).splitlines()[-1], flush=True)
        _write_report(report, path)
        case = None   # (not kept alive while the next case is made: the train suite's models)
    print(format_table(suite, device, rows))
    if any("host_cost_us" in row for row in rows):
        costs = ", ".join(f"{r['case']}: {r['host_cost_us']:.1f} us" for r in rows if "host_cost_us" in r)
        print(f"host cost of one call: {costs}")
    report["complete"] = True
    _write_report(report, path)
    if path and plot:
        plot_ratios(report, os.path.join(output_dir, f"{suite}-{device}.png"))
    return report


def _write_report(report, path):
    """Write the report to `path` whole or not at all (a temporary file renamed over it): a suite killed
    while writing leaves the previous version."""
    if not path:
        return
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path + ".tmp", "w") as handle:
        json.dump(report, handle, indent=2)
    os.replace(path + ".tmp", path)


def _torch_if_installed():
    try:
        import torch
    except ImportError:   # (torch comes with the test extra; the GEMM suite's vendor is NumPy)
        return None
    return torch


def cpu_threads():
    """Threads each side computes with on the CPU: ours, NumPy's BLAS (our other CPU kernels are single-threaded
    Numba); torch, its intra-op pool (None without torch)."""
    from threadpoolctl import threadpool_info
    torch = _torch_if_installed()
    blas = [pool["num_threads"] for pool in threadpool_info()
            if pool["user_api"] == "blas" and "numpy" in pool["filepath"]]
    return {"ours": max(blas + [1]), "torch": torch.get_num_threads() if torch else None}


@contextlib.contextmanager
def single_threaded_cpu():
    """Inside the block, the CPU figures compare one thread with one: torch's intra-op pool and every BLAS
    (NumPy's, which some of our CPU kernels and the GEMM suite's vendor call) on one thread; our Numba kernels
    are single-threaded. Both are restored after."""
    from threadpoolctl import threadpool_limits
    torch = _torch_if_installed()
    saved = torch.get_num_threads() if torch else None
    if torch:
        torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        if torch:
            torch.set_num_threads(saved)


def plot_ratios(report, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [r for r in report["rows"] if r.get("speed_vs_vendor") is not None]
    names, title = ratio_labels(rows)
    figure, axis = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.5))
    axis.barh(names, [r["speed_vs_vendor"] for r in rows], color="tab:blue")
    axis.axvline(1.0, color="black", linewidth=1)
    axis.set_xlabel(title)
    axis.set_title(f"{report['suite']} on {report['machine']}, {report['date']}")
    axis.invert_yaxis()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def ratio_labels(rows):
    """The bars' names and the axis title: one vendor is named on the axis, several each on its rows."""
    vendors = list(dict.fromkeys(r["vendor"] for r in rows))
    if len(vendors) == 1:
        return [r["case"] for r in rows], f"speed relative to {vendors[0]} (vendor ms / ours ms)"
    return [f"{r['case']} [{r['vendor']}]" for r in rows], "speed relative to the vendor in [] (vendor ms / ours ms)"
