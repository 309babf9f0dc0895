"""pytest-benchmark over the GEMM benchmark cases (not collected by the default test run, which looks in
tests/ only): `python -m pytest benchmarks/test_bench_gemm.py` (GPU sizes on a GPU, quick CPU sizes
otherwise). Each call is followed by a device synchronisation so that GPU time is measured."""
import pytest

from benchmarks import gemm, harness

DEVICE = harness.device_for_benchmarks("auto")
CASES = gemm.cases(DEVICE, quick=DEVICE == "cpu")


@pytest.mark.parametrize("side", ["ours", "vendor"])
@pytest.mark.parametrize("case", CASES, ids=[case.label for case in CASES])
def test_gemm(benchmark, case, side):
    xp = harness.array_module(DEVICE)
    inputs = case.make_inputs(xp, 0)
    fn = case.ours if side == "ours" else case.vendor

    def call():
        result = fn(*inputs)
        harness._synchronize(DEVICE)
        return result

    benchmark.group = case.label
    benchmark.extra_info["gflop"] = case.flops / 1e9
    result = benchmark(call)
    assert result.shape == case.vendor(*inputs).shape
