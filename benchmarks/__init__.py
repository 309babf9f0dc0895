"""Benchmark suites, one module each, all run through benchmarks/harness.py (`numbanet bench SUITE`)."""
import contextlib
import importlib
import inspect
import itertools

SUITES = ("gemm", "pointwise", "conv", "pool", "rnn", "ctc", "embedding", "layer_norm", "train")


def available_suites():
    names = []
    for name in SUITES:
        try:
            importlib.import_module(f"benchmarks.{name}")
        except ModuleNotFoundError as error:
            if error.name == f"benchmarks.{name}":
                continue
            raise
        names.append(name)
    return names


def run(suites, device="auto", output_dir="bench-results", plot=False, quick=False, repeats=15, only=None):
    """Run the named suites (all by default); `only`: keep the cases whose label contains that text."""
    from . import harness
    device = harness.device_for_benchmarks(device)
    if device == "cpu":  # as `numbanet train` does on the CPU; process-wide, so PyTorch gets it too
        from kernels import backend
        backend.keep_freed_memory()
    # on the CPU one thread a side (our kernels are single-threaded; torch would take every core)
    with harness.single_threaded_cpu() if device == "cpu" else contextlib.nullcontext():
        return _run(suites, device, output_dir, plot, quick, repeats, only)


def _run(suites, device, output_dir, plot, quick, repeats, only):
    from . import harness
    reports, matched = [], False
    for name in suites or available_suites():
        if name not in SUITES:
            raise SystemExit(f"bench: unknown suite {name!r}; choose from {', '.join(available_suites())}")
        module = importlib.import_module(f"benchmarks.{name}")
        # A suite that builds and runs models while making its cases (train) takes `only` to skip the rest.
        takes_only = "only" in inspect.signature(module.cases).parameters
        cases = module.cases(device, quick=quick, **({"only": only} if takes_only else {}))
        if only:   # lazily: the train suite builds each model only when its rows come up
            cases = (case for case in cases if only in case.label)
            try:
                first = next(cases, None)
            except Exception as error:   # making the first match failed: run_suite makes it an error row
                cases = _raising(error)
            else:
                if first is None:
                    print(f"bench {name}: no case label contains {only!r}; skipped")
                    continue
                cases = itertools.chain([first], cases)
        matched = True
        reports.append(harness.run_suite(name, cases, device, output_dir=output_dir, plot=plot,
                                         repeats=repeats,
                                         measure_host_cost=getattr(module, "MEASURE_HOST_COST", False)))
    if only and not matched:
        raise SystemExit(f"bench: no case label of {', '.join(suites or available_suites())} contains {only!r}")
    return reports


def _raising(error):
    """Cases whose making fails with `error` (run_suite writes it as an error row and the report)."""
    raise error
    yield
