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


def _no_ceilings(monkeypatch):
    """run_suite without its 128 MiB copy (the ceilings are not what these tests look at)."""
    monkeypatch.setattr(harness, "measured_ceilings", lambda device: {"copy_GBps": 1.0, "fp32_peak_TFLOPs": None})


def test_max_pool_forward_is_timed_against_torch_with_our_indices_and_backwards_call_aten_directly():
    """torch's max_pool2d always writes int64 indices: our forward alone has no vendor time, our forward with
    indices is the one against torch's. The backward rows call ATen's backward ops directly (no input of theirs
    requires grad, so no autograd graph is replayed) and give autograd's gradient and ours."""
    import numpy as np
    import torch

    from benchmarks import pool
    rows = pool.cases("cpu", quick=True)
    for case in rows:
        inputs = case.make_inputs(np, 0)
        assert not any(isinstance(value, torch.Tensor) and value.requires_grad for value in inputs), case.label
        if case.label.startswith("max") and case.label.endswith(" fwd"):
            assert case.vendor is None
            continue
        ours, theirs = case.ours(*inputs), case.vendor(*inputs)
        if case.label.endswith("fwd+indices"):
            np.testing.assert_array_equal(ours[0], theirs.numpy())   # (torch's plain forward)
        elif case.label.endswith("bwd"):
            x, grad, _, tx, tgrad, _ = inputs
            leaf = tx.clone().requires_grad_(True)
            args = next(args for label, kind, args in pool.CONFIGS if case.label.startswith(label))
            pooled = (torch.nn.functional.max_pool2d if case.label.startswith("max")
                      else torch.nn.functional.avg_pool2d)(leaf, **args)
            expected = torch.autograd.grad(pooled, leaf, tgrad)[0].numpy()
            np.testing.assert_allclose(theirs.numpy(), expected, rtol=1e-6, atol=1e-6)
            np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5)
    assert not [case for case in rows if "cuDNN" in case.vendor_name]


def test_embedding_backward_calls_aten_directly_and_gives_autograds_gradient():
    import numpy as np
    import torch

    from benchmarks import embedding
    backward_rows = [case for case in embedding.cases("cpu", quick=True) if " bwd" in case.label]
    backward_rows += embedding._cases_for("cpu", *embedding.QUICK_CONFIGS[0], scale_grad_by_freq=True)[1:]
    assert [case.label.split("] ")[1] for case in backward_rows] == ["bwd", "bwd freq"]
    vocabulary = embedding.QUICK_CONFIGS[0][1]
    for case, by_frequency in zip(backward_rows, (False, True)):
        inputs = case.make_inputs(np, 0)
        assert not any(isinstance(value, torch.Tensor) and value.requires_grad for value in inputs)
        grad, tokens, grad_t, tokens_t = inputs
        weight = torch.zeros((vocabulary, grad.shape[-1]), requires_grad=True)
        looked_up = torch.nn.functional.embedding(tokens_t, weight, scale_grad_by_freq=by_frequency)
        expected = torch.autograd.grad(looked_up, weight, grad_t)[0].numpy()
        np.testing.assert_allclose(case.vendor(*inputs).numpy(), expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(case.ours(*inputs), expected, rtol=1e-4, atol=1e-4)


def test_input_sets_count_shared_memory_once_and_every_call_reads_a_set_of_its_own(monkeypatch):
    """The rotation counts a torch view of our array once (also inside lists), makes enough sets to exceed
    ROTATION_BYTES but no more than the calls read, and no call rereads a set another call of either side
    read: the vendor's calls go on from where ours stopped."""
    import numpy as np
    import torch
    x, w = np.ones((1024, 256), np.float32), np.ones(256, np.float32)
    assert harness.input_set_bytes((x, w, [torch.from_numpy(x), (torch.from_numpy(w),)], "text")) == \
        x.nbytes + w.nbytes
    assert harness.input_set_bytes((x, torch.from_numpy(x.copy()))) == 2 * x.nbytes
    size = x.nbytes
    assert harness.input_set_count((x,), calls=1000) == harness.ROTATION_BYTES // size
    assert harness.input_set_count((x,), calls=10) == 10

    def recording_case(rotation_sets):
        read = {"ours": [], "vendor": []}
        monkeypatch.setattr(harness, "ROTATION_BYTES", rotation_sets * size)
        case = harness.Case("stand-in", lambda xp, seed: (np.full(size // 4, seed, np.float32),),
                            lambda a: read["ours"].append(int(a[0])), lambda a: read["vendor"].append(int(a[0])),
                            "stand-in")
        harness.run_case(case, "cpu", {}, repeats=2)
        return read
    calls = harness.WARMUP_CALLS + 2
    read = recording_case(rotation_sets=1000)    # small sets: one set a call
    assert read == {"ours": list(range(calls)), "vendor": list(range(calls, 2 * calls))}
    read = recording_case(rotation_sets=3)       # large sets: enough to exceed ROTATION_BYTES
    assert read["ours"] == [0, 1, 2, 0, 1] and read["vendor"] == [2, 0, 1, 2, 0]


def test_the_host_cost_pass_is_capped_by_time():
    """At 8192^3 (38 ms a GEMM) 200 calls were 7.7 s of a suite's 25 s: the pass takes about `seconds` of the
    device's time at the measured time of a call, and stops once the host loop took that long."""
    import time
    calls = []

    def sleeping():
        calls.append(1)
        time.sleep(0.01)
    assert harness.host_cost_us(sleeping, (), "cpu", call_ms=10.0, seconds=0.05) > 9000
    assert len(calls) == 1 + 5                   # one warm-up, then 50 ms of 10 ms calls
    calls.clear()
    harness.host_cost_us(sleeping, (), "cpu", call_ms=0.001, seconds=0.05)   # the estimate too low: wall time
    assert len(calls) <= 1 + 7


def test_rnn_forward_rows_run_the_torch_module_in_eval_mode():
    """Under no_grad alone a module in training mode makes cuDNN run its training forward (reserve space),
    where ours runs inference: a forward row's torch module is in eval mode, a forward + backward row's not."""
    import numpy as np

    from benchmarks import rnn
    rows = rnn.cases("cpu", quick=True)
    assert any(case.label.endswith(" fwd") for case in rows) and any("bilstm" in case.label for case in rows)
    for case in rows:
        module = case.make_inputs(np, 0)[-4]
        assert module.training == case.label.endswith("fwd+bwd"), case.label


def test_the_train_suite_warms_the_libraries_once_before_the_first_model(monkeypatch):
    """torch's cuBLAS/cuDNN workspaces (and our GEMM's scratch) are allocated before the first model's memory
    baseline, not inside its peak; only when a model is built at all."""
    import numpy as np

    from benchmarks import train
    events = []
    monkeypatch.setattr(train.backend, "cupy_module", lambda: np)
    monkeypatch.setattr(train, "_warm_up_libraries", lambda xp: events.append("warm up"))

    def model_cases(label, *rest):
        events.append(f"build {label}")
        yield label
    monkeypatch.setattr(train, "_model_cases", model_cases)
    labels = list(train.cases("cuda", quick=True))
    assert events == ["warm up"] + [f"build {label}" for label in labels] and len(labels) == 3
    events.clear()
    assert list(train.cases("cuda", quick=True, only="nothing")) == [] and events == []


def test_a_step_that_cannot_be_captured_gives_a_failed_graph_row(monkeypatch, tmp_path):
    import json

    import numpy as np

    from benchmarks import train

    def uncapturable(step):
        def captured(*inputs):
            raise RuntimeError("a kernel reads the targets on the host")
        return captured
    monkeypatch.setattr(train.nn, "capture", uncapturable)
    _no_ceilings(monkeypatch)
    case = train._graph_case("cnn, b16, graph", lambda x: x, lambda *inputs: None,
                             lambda xp, seed: (np.ones(4),), 1, 16, np)
    harness.run_suite("train", [case], "cpu", output_dir=str(tmp_path), repeats=1)
    rows = json.loads((tmp_path / "train-cpu.json").read_text())["rows"]
    assert rows == [{"case": "cnn, b16, graph", "error": "RuntimeError: a kernel reads the targets on the host"}]


def test_a_suite_cut_by_its_time_cap_keeps_its_rows_and_the_summary_says_cut(monkeypatch, tmp_path):
    """The report is rewritten after every row ("complete": false until the last): a suite killed between rows
    (here: an exception no row catches) leaves its rows, and the summary marks it CUT, as a suite with no
    report at all."""
    import json

    import numpy as np

    from benchmarks import summary
    _no_ceilings(monkeypatch)
    path = tmp_path / "stand-in-cpu.json"
    seen = []

    def cases():
        yield harness.Case("first", lambda xp, seed: (np.ones(4),), lambda a: a, None, "-")
        seen.append(json.loads(path.read_text()))
        raise KeyboardInterrupt   # (not an Exception: as a kill, nothing after this runs)
    with pytest.raises(KeyboardInterrupt):
        harness.run_suite("stand-in", cases(), "cpu", output_dir=str(tmp_path), repeats=1)
    assert [row["case"] for row in seen[0]["rows"]] == ["first"] and seen[0]["complete"] is False
    assert not list(tmp_path.glob("*.tmp"))
    harness.run_suite("whole", [], "cpu", output_dir=str(tmp_path), repeats=1)
    table = summary.summarize(str(tmp_path), ["stand-in", "whole", "missing"]).splitlines()
    assert [line.split()[0] for line in table[1:]] == ["stand-in", "stand-in", "missing"]
    assert "CUT after 1 rows" in table[2] and "CUT: no report" in table[3]


def test_cpu_figures_compare_one_thread_with_one_and_say_so(monkeypatch, tmp_path):
    """Our CPU kernels are single-threaded: torch (and NumPy's BLAS) run on one thread during a CPU run, the
    report records both counts, and torch's count is restored after."""
    import json

    import torch

    import benchmarks
    _no_ceilings(monkeypatch)
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        benchmarks.run(["embedding"], device="cpu", output_dir=str(tmp_path), quick=True, repeats=1)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(saved)
    report = json.loads((tmp_path / "embedding-cpu.json").read_text())
    assert report["cpu_threads"] == {"ours": 1, "torch": 1} and report["complete"] is True


def test_the_ratio_plot_names_every_vendor():
    one = [{"case": "a", "vendor": "cuBLAS"}, {"case": "b", "vendor": "cuBLAS"}]
    assert harness.ratio_labels(one) == (["a", "b"], "speed relative to cuBLAS (vendor ms / ours ms)")
    names, title = harness.ratio_labels(one + [{"case": "c", "vendor": "torch"}])
    assert names == ["a [cuBLAS]", "b [cuBLAS]", "c [torch]"] and "vendor in []" in title


def test_crnn_errors_counts_each_image_once_a_strip_and_reads_images_independently():
    import numpy as np
    from benchmarks import crnn_errors
    sources = np.array([[4, 7, 4, -1], [7, 1, -1, -1], [4, 2, 3, -1]])
    failed = np.array([True, False, True])
    assert crnn_errors.failures_by_image(failed, sources) == {4: (2, 2), 7: (2, 1), 1: (1, 0), 2: (1, 1),
                                                              3: (1, 1)}
    from nn import data
    _, labels = data.load_digits_images()
    test_labels = labels[data.split_indices(len(labels))["test"]]
    readings = crnn_errors.independent_readings([0, 1, 2, 3, 4, 5])
    for reading in readings.values():   # ordinary test digits: read as labelled by both
        np.testing.assert_array_equal(reading, test_labels[:6])


def test_crnn_errors_refuses_a_checkpoint_of_another_model(tmp_path):
    from benchmarks import crnn_errors
    from nn import train
    output = str(tmp_path / "cnn")
    assert train.train_main(["cnn", "--device", "cpu", "--quiet", "--epochs", "1", "--output", output]) == 0
    with pytest.raises(SystemExit, match="crnn_errors: expected a crnn checkpoint, got a cnn one"):
        crnn_errors.main([f"{output}/checkpoint.npz"])
