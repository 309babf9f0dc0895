"""Which kernels a CRNN training step spends its GPU time in (needs a GPU and Nsight Compute).

    ncu --profile-from-start off --clock-control none --metrics gpu__time_duration.sum --csv \
        python3 -m benchmarks.kernel_times step > ncu.csv
    python3 -m benchmarks.kernel_times table ncu.csv

`step` runs the train suite's CRNN (12x90 strips, channels up to 256, batch 64) for three warm-up
steps, then one step between cudaProfilerStart/Stop, so ncu times only that step's kernels (ours and
CuPy's). `table` sums the durations per kernel name and prints the heaviest, with their share.
"""
import csv
import re
import sys
from collections import defaultdict


def profile_one_step():
    import cupy

    from benchmarks import train
    from kernels import backend

    specs = [spec for spec in train._specs("cuda", quick=False) if spec[0].startswith("crnn 12x90")]
    label, build, shape, kind, classes = specs[0]
    import nn
    nn.manual_seed(0)
    model = build().to("cuda")
    twin = train.torch_twin(model)
    make = train._make_inputs(shape, kind, classes, 64, "cuda")
    step, _, count = train._steps(model, twin, kind, shape, 64, backend.cupy_module())
    inputs = make(cupy, 0)[:count]
    for _ in range(3):
        step(*inputs)
    cupy.cuda.get_current_stream().synchronize()
    cupy.cuda.runtime.profilerStart()
    step(*inputs)
    cupy.cuda.get_current_stream().synchronize()
    cupy.cuda.runtime.profilerStop()
    print(f"profiled one step of {label}, b64", file=sys.stderr)


def summarize(path, top=18):
    totals, counts = defaultdict(float), defaultdict(int)
    with open(path) as handle:
        lines = [line for line in handle if line.startswith('"')]
    for row in csv.DictReader(lines):
        if row.get("Metric Name") != "gpu__time_duration.sum":
            continue
        name = re.sub(r"\(.*|\[abi:.*|cudapy::|kernels::cuda::", "", row["Kernel Name"])[:60]
        scale = {"nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3}.get(row.get("Metric Unit"), 1e-3)
        totals[name] += float(row["Metric Value"].replace(",", "")) * scale
        counts[name] += 1
    whole = sum(totals.values())
    print(f"GPU time of one CRNN step (b64): {whole / 1e3:.2f} ms in {sum(counts.values())} kernels")
    print(f"{'kernel':60s} {'calls':>5s} {'us':>9s} {'share':>6s}")
    for name, value in sorted(totals.items(), key=lambda item: -item[1])[:top]:
        print(f"{name:60s} {counts[name]:5d} {value:9.1f} {100 * value / whole:5.1f}%")


if __name__ == "__main__":
    if sys.argv[1:2] == ["step"]:
        profile_one_step()
    elif sys.argv[1:2] == ["table"] and len(sys.argv) == 3:
        summarize(sys.argv[2])
    else:
        raise SystemExit(__doc__)
