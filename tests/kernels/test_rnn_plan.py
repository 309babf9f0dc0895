"""The persistent recurrent kernels' plan while compile_ahead records a step (kernels/cuda/rnn.py
persistent_plan): a stand-in that takes the launches the real plan gives, made without compiling anything
(the occupancy query compiles the kernel: that compile belongs to compile_ahead's processes, not to the
recording process) and not kept; outside recording the plan is made as before. The GPU branch, on the
CPU: backend.SIMULATOR off and the compile the plan would need refused. The compile and load of what is
recorded, for sm_90 without a GPU: tests/kernels/test_kernel_cache.py."""
import numpy as np
import pytest

from kernels import backend
from kernels.cuda import compile_ahead, rnn
from kernels.cuda.rnn_kernels import CELLS, GATE_COUNT
from kernels.cuda.rnn_persistent import persistent_kernels_for

LSTM = CELLS["lstm"]


@pytest.fixture
def gpu_branch(monkeypatch):
    """persistent_plan's GPU branch, every plan forgotten and the switches unset; returns the list of the
    compiles asked for (each refused with an error)."""
    asked = []

    def refuse(kernel, signature):
        asked.append((kernel, signature))
        raise RuntimeError("compiled for the occupancy query")
    monkeypatch.setattr(backend, "SIMULATOR", False)
    monkeypatch.setattr(rnn, "_compiled", refuse)
    monkeypatch.setattr(rnn, "_plans", {})
    for name in ("force_path", "force_directions", "min_units"):
        monkeypatch.setattr(rnn, name, None)
    return asked


def record_a_layer(mode="lstm", directions=2, T=3, B=2, I=3, H=5):
    """The launches of one layer's forward and backward (`directions` directions) on the CUDA code path,
    recorded with NumPy arrays (its GEMMs run on the CPU path then, and are not recorded)."""
    rng = np.random.default_rng(0)

    def random(*shape):
        return rng.standard_normal(shape).astype(np.float32)
    G = GATE_COUNT[CELLS[mode]]
    weights = [(random(G * H, I), random(G * H, H), random(G * H), random(G * H)) for _ in range(directions)]
    x = random(T, B, I)
    with compile_ahead.recording() as records, np.errstate(all="ignore"):
        _, buffers = rnn.forward_directions(mode, x, None, None, weights, None)
        rnn.backward_directions(mode, x, [w[:2] for w in weights], (True,) * directions, (True,) * directions,
                                buffers, 0, random(T, B, directions * H), None, None)
    return records


@pytest.mark.parametrize("directions", [1, 2])
@pytest.mark.parametrize("kind", ["forward", "backward"])
def test_recording_plans_without_compiling_or_keeping_the_plan(gpu_branch, kind, directions):
    kept = {("other", LSTM, 1, 1, 1): None}
    rnn._plans.update(kept)
    with compile_ahead.recording():
        plan = rnn.persistent_plan(kind, LSTM, 4, 64, directions)
    assert gpu_branch == [], "the recording compiled a kernel"
    assert rnn._plans == kept, "the stand-in plan was kept"
    blocks, units, nbytes, per_block = plan
    assert (blocks, units, per_block) == (directions * 64, 1, 1)   # one direction a block, as on the GPU
    assert nbytes == rnn.persistent_shared_bytes(kind, GATE_COUNT[LSTM], 64, 1)


def test_outside_recording_the_plan_compiles_and_is_kept_as_before(gpu_branch):
    with pytest.raises(RuntimeError, match="compiled for the occupancy query"):
        rnn.persistent_plan("forward", LSTM, 4, 64, 2)
    kernel = persistent_kernels_for(LSTM, rnn.grid_barrier)["persistent_forward"]
    assert gpu_branch == [(kernel, rnn.persistent_signature("forward"))]
    # (_use_persistent keeps a failed query's answer, None, and warns, as before)
    with pytest.warns(UserWarning, match="persistent backward kernel unavailable"):
        assert rnn._use_persistent("backward", LSTM, 4, 64) is None
    assert rnn._plans == {rnn._plan_key("backward", LSTM, 4, 64, 1): None}
    # a real plan already made is what the recording takes too (here: the per-step kernels)
    with compile_ahead.recording():
        assert rnn.persistent_plan("backward", LSTM, 4, 64) is None
        assert rnn._launch_groups("backward", LSTM, 4, 64, 1) == [(0, 1, None)]


def test_the_stand_in_plan_gives_one_combined_launch_for_two_directions(gpu_branch, monkeypatch):
    with compile_ahead.recording():
        plans = {kind: rnn.persistent_plan(kind, LSTM, 4, 64, 2) for kind in ("forward", "backward")}
        for kind, plan in plans.items():
            assert rnn._launch_groups(kind, LSTM, 4, 64, 2) == [(0, 2, plan)]
        monkeypatch.setattr(rnn, "force_directions", "combined")   # fits: no error while recording
        assert rnn._launch_groups("forward", LSTM, 4, 64, 2) == [(0, 2, plans["forward"])]
        monkeypatch.setattr(rnn, "force_directions", "separate")
        groups = rnn._launch_groups("forward", LSTM, 4, 64, 2)
        assert [(first, count) for first, count, _ in groups] == [(0, 1), (1, 1)]
        assert all(plan[:2] == (64, 1) for _, _, plan in groups)
        monkeypatch.setattr(rnn, "force_directions", None)
        monkeypatch.setattr(rnn, "force_path", "step")
        assert rnn._launch_groups("forward", LSTM, 4, 64, 2) == [(0, 1, None), (1, 1, None)]
        monkeypatch.setattr(rnn, "force_path", "persistent")
        monkeypatch.setattr(rnn, "min_units", 16)   # NUMBANET_RNN_UNITS: blocks of at least 16 units
        (_, _, (blocks, units, nbytes, _)), = rnn._launch_groups("backward", LSTM, 4, 64, 2)
        assert (blocks, units, nbytes) == (8, 16, rnn.persistent_shared_bytes("backward", 4, 64, 16))
    assert gpu_branch == [] and rnn._plans == {}


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_a_recorded_layer_takes_the_persistent_kernels_with_their_planned_types(gpu_branch, mode):
    """What compile_ahead's processes are handed for a bidirectional layer: one combined persistent launch
    forward and one backward, with the argument types the real plan's occupancy query compiles for
    (persistent_signature), so that the query at the first launch finds the kernel in the disk cache."""
    records = record_a_layer(mode)
    kernels = persistent_kernels_for(CELLS[mode], rnn.grid_barrier)
    assert records == [(kernels["persistent_forward"], rnn.persistent_signature("forward")),
                       (kernels["persistent_backward"], rnn.persistent_signature("backward"))]
    assert gpu_branch == [] and rnn._plans == {}


def test_an_unknown_grid_barrier_is_refused_by_name():
    import os
    import subprocess
    import sys
    result = subprocess.run([sys.executable, "-c", "import kernels.cuda.rnn"], capture_output=True, text=True,
                            env={**os.environ, "NUMBANET_GRID_BARRIER": "spin"}, timeout=120)
    assert result.returncode != 0
    assert "NUMBANET_GRID_BARRIER must be one of ('atomic', 'runtime') (or unset), got 'spin'" in result.stderr
    with pytest.raises(ValueError, match=r"persistent rnn kernels: grid_barrier must be one of .*got 'spin'"):
        persistent_kernels_for(LSTM, "spin")
