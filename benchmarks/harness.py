"""The one benchmark harness: our op against the vendor op, same process, same device, same inputs.

GPU: CUDA-event timing on the current stream after warm-up, median of repeats, with several input
sets used in turn so that the L2 cache does not flatter either side. CPU: perf_counter, same rules,
labelled as CPU figures. Each suite module (benchmarks/gemm.py, ...) gives its `Case`s as an iterable (the train suite's
builds each model only when its rows come up).
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
MAX_INPUT_SETS = 8


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
    """PyTorch as the vendor side: fp32 against fp32 (TF32 off) and cuDNN's autotuner on."""
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


def time_calls(fn, input_sets, device, warmup=3, repeats=15):
    """Milliseconds per call for each repeat, inputs taken in turn from `input_sets`."""
    for i in range(warmup):
        fn(*input_sets[i % len(input_sets)])
    _synchronize(device)
    times = []
    if device == "cuda":
        cupy = backend.cupy_module()
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        for r in range(repeats):
            start.record()
            fn(*input_sets[r % len(input_sets)])
            end.record()
            end.synchronize()
            times.append(cupy.cuda.get_elapsed_time(start, end))
    else:
        for r in range(repeats):
            begin = time.perf_counter()
            fn(*input_sets[r % len(input_sets)])
            times.append((time.perf_counter() - begin) * 1e3)
    return times


def host_cost_us(fn, inputs, device, calls=200):
    """Host-side cost of one call in microseconds: wall time of back-to-back calls, not waiting for the GPU."""
    fn(*inputs)
    _synchronize(device)
    begin = time.perf_counter()
    for _ in range(calls):
        fn(*inputs)
    elapsed = time.perf_counter() - begin
    _synchronize(device)
    return elapsed / calls * 1e6


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


def _input_set_count(inputs):
    size = sum(getattr(a, "nbytes", 0) for a in inputs)
    if size == 0:
        return 1
    return max(1, min(MAX_INPUT_SETS, math.ceil(ROTATION_BYTES / size)))


def run_case(case, device, ceilings, repeats=15, measure_host_cost=False):
    xp = array_module(device)
    first = case.make_inputs(xp, 0)
    input_sets = [first] + [case.make_inputs(xp, seed) for seed in range(1, _input_set_count(first))]
    ours_ms = statistics.median(time_calls(case.ours, input_sets, device, repeats=repeats))
    vendor_ms = None
    if case.vendor is not None:
        vendor_ms = statistics.median(time_calls(case.vendor, input_sets, device, repeats=repeats))
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
        row["host_cost_us"] = host_cost_us(case.ours, first, device)
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
    """Time every case, print the table, and write `<suite>-<device>.json` (and a PNG with plot)."""
    ceilings = measured_ceilings(device)
    rows = []
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
            break
        try:
            row = run_case(case, device, ceilings, repeats=repeats, measure_host_cost=measure_host_cost)
        except Exception as error:  # one broken case must not cost the rest of the suite its figures
            traceback.print_exc()
            row = {"case": case.label, "error": f"{type(error).__name__}: {error}"[:300]}
        rows.append(row)
        print(format_table(suite, device, [row]).splitlines()[-1], flush=True)
        case = None   # (not kept alive while the next case is made: the train suite's models)
    print(format_table(suite, device, rows))
    if any("host_cost_us" in row for row in rows):
        costs = ", ".join(f"{r['case']}: {r['host_cost_us']:.1f} us" for r in rows if "host_cost_us" in r)
        print(f"host cost of one call: {costs}")
    report = {"suite": suite, "device": device, "machine": machine_description(device),
              "date": date.today().isoformat(), "switches": backend.switches(), "ceilings": ceilings,
              "launcher": backend.describe().get("launcher", "none (no GPU)"),
              "rows": rows}
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
        with open(os.path.join(output_dir, f"{suite}-{device}.json"), "w") as handle:
            json.dump(report, handle, indent=2)
        if plot:
            plot_ratios(report, os.path.join(output_dir, f"{suite}-{device}.png"))
    return report


def plot_ratios(report, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [r for r in report["rows"] if r.get("speed_vs_vendor") is not None]
    figure, axis = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.5))
    axis.barh([r["case"] for r in rows], [r["speed_vs_vendor"] for r in rows], color="tab:blue")
    axis.axvline(1.0, color="black", linewidth=1)
    axis.set_xlabel(f"speed relative to {rows[0]['vendor'] if rows else 'vendor'} (vendor ms / ours ms)")
    axis.set_title(f"{report['suite']} on {report['machine']}, {report['date']}")
    axis.invert_yaxis()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
