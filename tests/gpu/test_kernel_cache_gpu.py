"""The on-disk kernel cache (kernels/cuda/jit.py) on a real GPU: a new process with the same cache directory
loads every kernel a CRNN training step launches (convolutions with Winograd forced, batch norm, pooling,
the persistent bidirectional LSTM's cooperative kernels, the specialised GEMMs, CTC, SGD) instead of
compiling it: the same cubins (compared by hash), and losses and weights within the rounding two runs of
one step differ by (the conv weight gradients are summed with atomics). Needs a GPU (skipped elsewhere).
The unit tests without a GPU are tests/kernels/test_kernel_cache.py."""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from tests.gpu.test_models_gpu import LOSS_TOLERANCE, WEIGHT_TOLERANCE
from tests.oracle import assert_close

REPOSITORY = pathlib.Path(__file__).resolve().parents[2]
STEP_SCRIPT = """
import hashlib, json, sys, time
start = time.perf_counter()
import cupy, numpy as np
import nn
from kernels.cuda import conv_winograd, jit
from tests.gpu.test_launch_gpu import crnn_case
conv_winograd.force_algorithm = "winograd"
build, inputs, targets, _ = crnn_case(np.random.default_rng(3))
nn.manual_seed(0)
model = build().to("cuda")
optimizer = nn.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
x, y = nn.Tensor(cupy.asarray(inputs)), cupy.asarray(targets)
losses = []
for _ in range(2):
    optimizer.zero_grad()
    output = model(x)
    lengths = cupy.full(output.shape[1], output.shape[0], dtype=np.int64)
    loss = nn.functional.ctc_loss(output, y, lengths, cupy.full(len(y), y.shape[1], dtype=np.int64))
    loss.backward()
    optimizer.step()
    losses.append(float(loss.numpy()))
np.savez(sys.argv[1], losses=np.array(losses),
         **{name: p.numpy() for name, p in model.named_parameters()})
# (numba-cuda 0.30 links to a cuda.core ObjectCode, whose .code holds the cubin's bytes)
cubins = sorted(hashlib.sha256(getattr(code, "code", code)).hexdigest()
                for dispatcher in list(jit._dispatchers) for kernel in dispatcher.overloads.values()
                for code in [kernel.library.get_cubin()])
print(json.dumps({**jit.compile_counts(), "seconds": time.perf_counter() - start, "cubins": cubins}))
"""


def run_step(tmp_path, name, cache_dir):
    environment = dict(os.environ, NUMBANET_CACHE_DIR=str(cache_dir), NUMBANET_KERNEL_CACHE="1",
                       PYTHONPATH=os.pathsep.join(filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")])))
    result = subprocess.run([sys.executable, "-c", STEP_SCRIPT, str(tmp_path / f"{name}.npz")], cwd=REPOSITORY,
                            env=environment, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    counts = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"{name}: {counts['compiled']} compiled, {counts['loaded']} loaded, {counts['seconds']:.1f} s")
    return counts, np.load(tmp_path / f"{name}.npz")


@pytest.mark.timeout(560)   # two processes, the first compiling a CRNN step (gpu_check's --timeout is 100)
def test_a_new_process_loads_the_kernels_it_needs(tmp_path):
    cache_dir = tmp_path / "kernel-cache"
    cold, cold_results = run_step(tmp_path, "cold", cache_dir)
    assert cold["loaded"] == 0 and cold["compiled"] >= 15, cold
    assert any(cache_dir.rglob("*.nbc")), "nothing was written to the cache"
    warm, warm_results = run_step(tmp_path, "warm", cache_dir)
    assert warm["compiled"] == 0 and warm["loaded"] == cold["compiled"], (cold["compiled"], warm["compiled"])
    assert warm["cubins"] == cold["cubins"], "the loaded kernels are not the code the first process compiled"
    assert sorted(cold_results.files) == sorted(warm_results.files)
    assert_close(warm_results["losses"], cold_results["losses"], np.float32, **LOSS_TOLERANCE, name="losses")
    for name in cold_results.files:
        assert_close(warm_results[name], cold_results[name], np.float32, **WEIGHT_TOLERANCE, name=name)


AHEAD_SCRIPT = """
import json, sys
import cupy, numpy as np
from kernels.cuda import compile_ahead, jit
from nn import data, init, train
args = train.build_parser().parse_args(["crnn", "--device", "cuda", "--epochs", "1", "--seed", "5"])
run = train.Run(train.settings_from_args(args), sys.argv[1], "cuda", quiet=True)
full = run.splits["train"]
count = 3 * run.settings["batch_size"]     # full batches only: a smaller last one has shapes of its own
run.splits["train"] = data.Split(**{k: v[:count] for k, v in vars(full).items() if isinstance(v, np.ndarray)})
weights = {k: cupy.asnumpy(v) for k, v in run.model.state_dict().items()}
rng = init.rng_state()
cupy.random.seed(11)
ahead = run.compile_ahead()
misses = {id(d): sum(d._cache_misses.values()) for d in jit._dispatchers}
draws = cupy.asnumpy(cupy.random.random(4))
cupy.random.seed(11)
unchanged = (init.rng_state() == rng and np.array_equal(draws, cupy.asnumpy(cupy.random.random(4))) and
             all(np.array_equal(weights[k], cupy.asnumpy(v)) for k, v in run.model.state_dict().items()))
run.train_epoch()
run.model.eval()
run.task.evaluate(run.evaluated_model, run.splits["validation"], "cuda")
late = [d.py_func.__qualname__ for d in jit._dispatchers if sum(d._cache_misses.values()) > misses.get(id(d), 0)]
print(json.dumps({"ahead": ahead, "processes": compile_ahead.processes_for_compiling(), "unchanged": unchanged,
                  "compiled_late": late, "counts": jit.compile_counts()}))
"""


@pytest.mark.timeout(400)
def test_compiling_ahead_leaves_the_run_nothing_to_compile(tmp_path):
    """`numbanet train` on the GPU first records a twin of the model's training step and validation and
    compiles their kernels in other processes (train.Run.compile_ahead): the run itself then compiles no
    kernel, and its model and random generators (NumPy's and CuPy's) are as they were."""
    # two processes: this test runs beside the other GPU tests (pytest-xdist), and `numbanet train` takes 8
    environment = dict(os.environ, NUMBANET_CACHE_DIR=str(tmp_path / "kernel-cache"), NUMBANET_KERNEL_CACHE="1",
                       NUMBANET_COMPILE_PROCESSES="2",
                       PYTHONPATH=os.pathsep.join(filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")])))
    result = subprocess.run([sys.executable, "-c", AHEAD_SCRIPT, str(tmp_path / "run")], cwd=REPOSITORY,
                            env=environment, capture_output=True, text=True, timeout=360)
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    print(outcome)
    if outcome["processes"] < 2:
        pytest.skip(f"{outcome['processes']} processes for compiling on this machine: nothing is compiled ahead")
    assert outcome["unchanged"], "compile_ahead touched the model or the random generator"
    assert outcome["ahead"] >= 15, outcome
    assert outcome["compiled_late"] == [], outcome
