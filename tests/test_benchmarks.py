"""`numbanet bench --only TEXT`: the suites keep only the cases whose label contains TEXT."""
import pytest

from benchmarks import harness
from nn import cli


def _suites_run(monkeypatch, argv):
    ran = {}
    monkeypatch.setattr(harness, "run_suite",
                        lambda suite, cases, device, **options: ran.setdefault(suite, [c.label for c in cases]))
    assert cli.main(["bench", "--device", "cpu", "--quick", *argv]) == 0
    return ran


def test_only_keeps_the_matching_cases_and_skips_suites_without_one(monkeypatch, capsys):
    every = _suites_run(monkeypatch, ["pool", "conv"])
    ran = _suites_run(monkeypatch, ["pool", "conv", "--only", "max"])
    assert set(ran) == {"pool"}
    assert ran["pool"] == [label for label in every["pool"] if "max" in label] and ran["pool"]
    assert "bench conv: no case label contains 'max'; skipped" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no case label of pool, conv contains 'nothing'"):
        _suites_run(monkeypatch, ["pool", "conv", "--only", "nothing"])


def test_host_proxy_times_the_cuda_path_without_a_gpu():
    """benchmarks/host_proxy.py runs an eager step through kernels/cuda's wrappers with launches skipped
    (in its own process: it turns the simulator on before numba is imported)."""
    import subprocess
    import sys
    for model in ("lstm", "crnn"):
        result = subprocess.run([sys.executable, "-m", "benchmarks.host_proxy", model], capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        # "lstm: U us of host work a step, N launches skipped, 0 simulated"
        words = result.stdout.replace(",", "").split()
        assert words[0] == f"{model}:" and float(words[1]) > 0
        assert int(words[-5]) > 0 and words[-2:] == ["0", "simulated"]


def test_host_proxy_counts_the_array_operations_a_gpu_step_would_launch():
    """`host_proxy crnn --array-ops` counts, by calling line, the array operations that would each be a CuPy
    kernel on a GPU: it sees the ones that remain (the recurrent layers' input projection bias sums), and none
    of those this project removed (fills of the recurrent stand-ins and of the backward's ones vector, CTC's
    divisors remade in the forward and again in the backward)."""
    import subprocess
    import sys
    result = subprocess.run([sys.executable, "-m", "benchmarks.host_proxy", "crnn", "--array-ops"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    summary = next(line for line in lines if line.startswith("array operations a step"))
    totals = dict(part.rsplit(" ", 1) for part in summary.split(": ", 1)[1].split(", "))
    assert float(totals["kernel"]) > 0 and float(totals["fill"]) > 0
    sites = [line.split() for line in lines if line.startswith("  ")]   # calls, kind, name, file:line, function
    assert any(site[2] == "add" and site[4] == "projection_bias" for site in sites)
    assert not [site for site in sites if site[3].startswith("kernels/cuda/rnn.py") and site[2] in ("ones", "full")]
    assert not [site for site in sites if site[4] == "forward_directions" and site[2] == "zeros"]   # stand-ins
    backward_zeros = [site for site in sites if site[4] == "backward_directions" and site[2] == "zeros"]
    assert [float(site[0]) for site in backward_zeros] == [2.0]   # grad_h and grad_c: one fill a layer
    assert not [site for site in sites if site[3].startswith("kernels/ctc.py") and site[2] in ("maximum", "upload")
                and site[4] != "prepare_targets"]


def test_array_op_counting_runs_a_model_with_dropout():
    """benchmarks/array_ops.py stands in for CuPy's random draws too (dropout draws its mask with a dtype, which
    NumPy's draws do not take): counted, not a crash."""
    import subprocess
    import sys
    script = (
        "import os\n"
        "os.environ['NUMBA_ENABLE_CUDASIM'] = '1'\n"
        "os.environ.pop('NUMBANET_BACKEND', None)\n"
        "import numpy as np\n"
        "from benchmarks import array_ops, host_proxy\n"
        "host_proxy._skip_launches()\n"
        "import nn\n"
        "model = nn.Sequential(nn.Linear(4, 5), nn.Dropout(0.3), nn.ReLU(), nn.Linear(5, 2))\n"
        "x, = array_ops.install(model, np.random.rand(3, 4).astype(np.float32))\n"
        "array_ops.counting(True)\n"
        "model(nn.Tensor(x)).sum().backward()\n"
        "array_ops.counting(False)\n"
        "array_ops.report(1)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "random.random" in result.stdout


def test_launches_replaced_restores_every_module_even_one_first_imported_inside():
    """harness.launches_replaced (the host profile's and host proxy's patcher) gives every kernels.cuda module
    its launcher back, also a module not imported before the block (in a fresh process: rnn is not yet)."""
    import subprocess
    import sys
    script = (
        "import sys\n"
        "from benchmarks.harness import launches_replaced\n"
        "from kernels.cuda import launch\n"
        "assert 'kernels.cuda.rnn' not in sys.modules\n"
        "calls = []\n"
        "with launches_replaced(lambda *args, **options: calls.append(args)):\n"
        "    from kernels.cuda import rnn, pointwise\n"
        "    rnn.launch(None, 1, 1)\n"
        "import kernels.cuda.norm as norm\n"
        "print(len(calls), rnn.launch is launch.launch, norm.launch is launch.launch, launch.launch.__name__)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["1", "True", "True", "launch"]


def test_only_reaches_the_train_suite_before_it_builds_models(monkeypatch):
    """The train suite builds and runs each model while making its cases: --only skips the others there."""
    from benchmarks import train
    built = []
    real_specs = train._specs

    def counting_specs(device, quick):
        return [(label, lambda build=build, label=label: (built.append(label), build())[1], shape, kind, classes)
                for label, build, shape, kind, classes in real_specs(device, quick)]
    monkeypatch.setattr(train, "_specs", counting_specs)
    ran = _suites_run(monkeypatch, ["train", "--only", "cnn"])
    assert ran["train"] == ["cnn 8x8 digits, b16"]
    assert built == ["cnn 8x8 digits"]


def test_train_suite_times_each_row_before_it_builds_the_next_model(monkeypatch):
    """The train suite's rows come one at a time: a model is built only after the rows before it were timed
    (built all at once, the CNN's first row was timed beside three other models and their graphs)."""
    from benchmarks import train
    events = []
    real_specs = train._specs

    def recording_specs(device, quick):
        return [(label, lambda build=build, label=label: (events.append(f"build {label}"), build())[1], shape,
                 kind, classes) for label, build, shape, kind, classes in real_specs(device, quick)]

    def recording_suite(suite, cases, device, **options):
        for case in cases:
            events.append(f"time {case.label}")
    monkeypatch.setattr(train, "_specs", recording_specs)
    monkeypatch.setattr(harness, "run_suite", recording_suite)
    assert cli.main(["bench", "--device", "cpu", "--quick", "train"]) == 0
    assert [e for e in events if e.startswith("build")] == [f"build {label}" for label, *_ in real_specs("cpu", True)]
    assert all(events[i].startswith("build") == (i % 2 == 0) for i in range(len(events))), events


def test_only_turns_a_failure_making_the_first_match_into_an_error_row(monkeypatch, tmp_path):
    """With --only, the first matching case is made before run_suite (to skip suites without one): a failure
    there still reaches run_suite, as an error row in the written report, instead of ending the run."""
    import json

    import benchmarks
    from benchmarks import train
    real_specs = train._specs

    def failing_cnn(device, quick):
        label, _, shape, kind, classes = real_specs(device, quick)[0]
        return [(label, lambda: (_ for _ in ()).throw(RuntimeError("out of memory")), shape, kind, classes)]
    monkeypatch.setattr(train, "_specs", failing_cnn)
    benchmarks.run(["train"], device="cpu", output_dir=str(tmp_path), quick=True, repeats=1, only="cnn")
    rows = json.loads((tmp_path / "train-cpu.json").read_text())["rows"]
    assert rows == [{"case": "(making the next case)", "error": "RuntimeError: out of memory"}]


def test_a_suite_that_fails_while_making_a_case_keeps_the_rows_before_it(monkeypatch, tmp_path):
    """The train suite builds and runs each model between rows: a failure there is an error row after the
    rows already timed, and the report is still written."""
    import json

    import benchmarks
    from benchmarks import train
    real_specs = train._specs

    def failing_second(device, quick):
        specs = real_specs(device, quick)[:2]
        label, _, shape, kind, classes = specs[1]
        return specs[:1] + [(label, lambda: (_ for _ in ()).throw(RuntimeError("out of memory")), shape, kind,
                             classes)]
    monkeypatch.setattr(train, "_specs", failing_second)
    benchmarks.run(["train"], device="cpu", output_dir=str(tmp_path), quick=True, repeats=2)
    rows = json.loads((tmp_path / "train-cpu.json").read_text())["rows"]
    assert [row["case"] for row in rows] == ["cnn 8x8 digits, b16", "(making the next case)"]
    assert rows[0]["ours_ms"] > 0 and rows[1]["error"] == "RuntimeError: out of memory"


def test_compile_cache_compiles_saves_and_loads_kernels_without_a_gpu():
    """benchmarks/compile_cache.py: the named kernels compile for sm_90, go through the cache and all come back
    in a new process."""
    import os
    import subprocess
    import sys
    environment = {key: value for key, value in os.environ.items() if key != "NUMBA_ENABLE_CUDASIM"}
    result = subprocess.run([sys.executable, "-m", "benchmarks.compile_cache", "pointwise.relu"], capture_output=True,
                            text=True, timeout=300, env=environment)
    assert result.returncode == 0, result.stderr[-2000:]
    # "2 kernels: compiled in S s (...), loaded from the cache in a new process in S s; M MB on disk; 0 not found"
    assert result.stdout.startswith("2 kernels: compiled in ") and "; 0 not found" in result.stdout
