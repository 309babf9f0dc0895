"""Recurrent CUDA kernels in the simulator against the CPU path: the per-step kernels and the one-block
form of the persistent kernels, forward and backward, tiny shapes (T <= 3, B <= 5, H <= 5, I <= 4)."""
import numpy as np
import pytest
from numba import cuda

import kernels
from kernels.cpu import rnn as cpu
from kernels.cuda import rnn as gpu
from kernels.cuda.launch import launch
from kernels.cuda.rnn_kernels import CELLS
from kernels.cuda.rnn_persistent import block_direction
from tests.oracle import assert_close, random_array
from tests.recurrent_ops import run_bidirectional as shared_run_bidirectional

GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}


def layer(mode, T, B, I, H, seed, bias=True):
    G = GATES[mode]
    return {
        "x": random_array((T, B, I), seed=seed),
        "h0": random_array((B, H), seed=seed + 1),
        "c0": random_array((B, H), seed=seed + 2) if mode == "lstm" else None,
        "w_ih": random_array((G * H, I), seed=seed + 3, low=-0.6, high=0.6),
        "w_hh": random_array((G * H, H), seed=seed + 4, low=-0.6, high=0.6),
        "b_ih": random_array((G * H,), seed=seed + 5) if bias else None,
        "b_hh": random_array((G * H,), seed=seed + 6) if bias else None,
    }


def run(mode, a, lengths, reverse, grad_y, grad_h, grad_c):
    """Forward outputs and gradients through the public ops (the CUDA kernels under the simulator)."""
    if mode == "lstm":
        *outputs, saved = kernels.lstm(a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"],
                                       lengths=lengths, reverse=reverse, training=True)
        grads = kernels.lstm_backward(saved, grad_y, grad_h, grad_c)
    elif mode == "gru":
        *outputs, saved = kernels.gru(a["x"], a["h0"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"],
                                      lengths=lengths, reverse=reverse, training=True)
        grads = kernels.gru_backward(saved, grad_y, grad_h)
    else:
        *outputs, saved = kernels.rnn(a["x"], a["h0"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"],
                                      nonlinearity=mode[4:], lengths=lengths, reverse=reverse, training=True)
        grads = kernels.rnn_backward(saved, grad_y, grad_h)
    assert saved.device == "cuda"
    return outputs, [g for g in grads if g is not None]


def reference(mode, a, lengths, reverse, grad_y, grad_h, grad_c):
    y, states, cells, gates, aux = cpu.forward(mode, a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"], a["b_ih"],
                                               a["b_hh"], lengths, reverse)
    final = cpu.final_index(a["x"].shape[0], reverse)
    outputs = [y, states[final]] + ([cells[final]] if mode == "lstm" else [])
    grads = cpu.backward(mode, a["x"], a["w_ih"], a["w_hh"], a["b_ih"] is not None, a["b_hh"] is not None,
                         lengths, reverse, states, cells, gates, aux, grad_y, grad_h, grad_c)
    return outputs, [g for g in grads if g is not None]


CASES = [  # (mode, T, B, I, H, lengths, reverse, bias)
    ("lstm", 3, 2, 3, 5, [2, 3], False, True),
    ("lstm", 2, 1, 4, 3, None, True, False),
    ("gru", 3, 2, 2, 4, [3, 1], True, True),
    ("gru", 1, 2, 3, 5, None, False, True),
    ("rnn_tanh", 3, 2, 4, 5, [1, 3], False, True),
    ("rnn_relu", 2, 2, 3, 4, None, True, True),
    ("lstm", 2, 5, 2, 3, [2, 1, 2, 2, 1], False, True),  # two groups of backward rows, the second partial
    # more sample pairs than threads: ksplit 1 in the step kernels (one thread updates both samples of a
    # task), several chunks a step in the persistent form (its parts 0 and 1 update b0 and b1)
    ("lstm", 2, 37, 2, 3, [1 + i % 2 for i in range(37)], False, True),
    ("gru", 2, 37, 3, 3, None, True, True),
    # persistent form: ksplit 4 (a halving step before the one into part 1) over three chunks, odd B
    ("gru", 2, 7, 3, 5, [2, 1, 2, 2, 1, 2, 1], False, True),
    # persistent form: ksplit 8 (two halving steps, as the CRNN's 16 has three) over ten chunks
    ("lstm", 2, 9, 2, 8, [2, 2, 1, 2, 1, 2, 2, 1, 2], False, True),
]


@pytest.mark.parametrize("path", ["step", "persistent"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-T{c[1]}B{c[2]}H{c[4]}-len{c[5] is not None}-rev{c[6]}")
def test_kernels_match_cpu(case, path, monkeypatch):
    mode, T, B, I, H, lengths, reverse, bias = case
    monkeypatch.setattr(gpu, "force_path", path)
    a = layer(mode, T, B, I, H, seed=T * 7 + H, bias=bias)
    lengths = None if lengths is None else np.array(lengths)
    grad_y = random_array((T, B, H), seed=40)
    grad_h = random_array((B, H), seed=41)
    grad_c = random_array((B, H), seed=42) if mode == "lstm" else None
    outputs, grads = run(mode, a, lengths, reverse, grad_y, grad_h, grad_c)
    expected_outputs, expected_grads = reference(mode, a, lengths, reverse, grad_y, grad_h, grad_c)
    for index, (value, expected) in enumerate(zip(outputs, expected_outputs)):
        assert_close(value, expected, np.float32, name=f"{mode} output {index}")
    assert len(grads) == len(expected_grads)
    for index, (value, expected) in enumerate(zip(grads, expected_grads)):
        assert_close(value, expected, np.float32, scale=4, name=f"{mode} gradient {index}")


def test_ksplit_covers_threads():
    assert gpu.ksplit_for(1, 5, 32) == 4
    assert gpu.ksplit_for(10, 5, 32) == 2
    assert gpu.ksplit_for(64, 512, 256) == 4
    assert gpu.ksplit_for(300, 512, 256) == 1
    assert gpu.ksplit_for(300, 512, 256, minimum=8) == 8
    assert gpu.ksplit_for(4, 512, 256, minimum=8) == 64
    assert gpu.ksplit_for(3, 5, 32, minimum=8) == 4


@pytest.mark.parametrize("mode, units, B, H", [("lstm", 2, 2, 5), ("gru", 2, 2, 5), ("lstm", 1, 2, 32),
                                               ("gru", 1, 5, 16)])
def test_step_kernels_split_units_over_blocks(mode, units, B, H, monkeypatch):
    """Two units a block: H = 5 takes three blocks, the last one with a single unit. One unit a block: the
    step kernels' reductions run at ksplit 16-32 (forward and phase B), the parts of a task in neighbouring
    threads (stride 1)."""
    monkeypatch.setattr(gpu, "force_path", "step")
    monkeypatch.setattr(gpu, "STEP_UNITS", units)
    T = 3
    a = layer(mode, T, B, 3, H, seed=60)
    lengths = np.array([3, 2, 1, 3, 2][:B])
    grad_y = random_array((T, B, H), seed=61)
    grad_h = random_array((B, H), seed=62)
    grad_c = random_array((B, H), seed=63) if mode == "lstm" else None
    outputs, grads = run(mode, a, lengths, True, grad_y, grad_h, grad_c)
    expected_outputs, expected_grads = reference(mode, a, lengths, True, grad_y, grad_h, grad_c)
    for value, expected in zip(outputs + grads, expected_outputs + expected_grads):
        assert_close(value, expected, np.float32, scale=4)


def test_final_state_gradients_only():
    """grad_y None (and grad_c_n None): only h_n carries a gradient."""
    T, B, H = 2, 2, 3
    a = layer("lstm", T, B, 2, H, seed=70)
    grad_h = random_array((B, H), seed=71)
    *_, saved = kernels.lstm(a["x"], None, None, a["w_ih"], a["w_hh"], a["b_ih"], None, training=True)
    grads = [g for g in kernels.lstm_backward(saved, None, grad_h) if g is not None]
    y, states, cells, gates, aux = cpu.forward("lstm", a["x"], None, None, a["w_ih"], a["w_hh"], a["b_ih"], None,
                                               None, False)
    expected = [g for g in cpu.backward("lstm", a["x"], a["w_ih"], a["w_hh"], True, False, None, False, states,
                                        cells, gates, aux, None, grad_h, None) if g is not None]
    assert len(grads) == len(expected) == 6
    for value, reference_value in zip(grads, expected):
        assert_close(value, reference_value, np.float32, scale=4)


def run_bidirectional(mode, pair, h0, c0, lengths, grad_y, grad_h, grad_c):
    """Both directions through the public bidirectional ops (the CUDA kernels under the simulator)."""
    weights = [tuple(a[k] for k in ("w_ih", "w_hh", "b_ih", "b_hh")) for a in pair]
    outputs, grads, saved = shared_run_bidirectional(mode, pair[0]["x"], h0, c0, weights, lengths, grad_y, grad_h,
                                                     grad_c)
    assert saved.device == "cuda"
    return outputs, [g for g in grads if g is not None]


def reference_bidirectional(mode, pair, lengths, grad_y, grad_h, grad_c):
    """The CPU path run once a direction, assembled like the bidirectional ops' results."""
    H = pair[0]["w_hh"].shape[1]
    runs = []
    for d, a in enumerate(pair):
        runs.append(reference(mode, a, lengths, bool(d), grad_y[:, :, d * H:(d + 1) * H], grad_h[d],
                              None if grad_c is None else grad_c[d]))
    (outputs0, grads0), (outputs1, grads1) = runs
    outputs = [np.concatenate([outputs0[0], outputs1[0]], axis=2)]
    outputs += [np.stack([a, b]) for a, b in zip(outputs0[1:], outputs1[1:])]
    states = 3 if mode == "lstm" else 2  # grad_x, grad_h0 [, grad_c0], then the weight gradients
    grads = [grads0[0] + grads1[0]] + [np.stack([a, b]) for a, b in zip(grads0[1:states], grads1[1:states])]
    return outputs, grads + grads0[states:] + grads1[states:]


BIDIRECTIONAL_CASES = [  # (mode, T, B, I, H, lengths)
    ("lstm", 3, 2, 3, 4, [3, 1]),
    ("gru", 3, 3, 2, 3, [2, 3, 1]),
    ("rnn_tanh", 3, 2, 3, 5, None),
]


@pytest.mark.parametrize("path", ["combined", "separate", "step"])
@pytest.mark.parametrize("case", BIDIRECTIONAL_CASES,
                         ids=lambda c: f"{c[0]}-T{c[1]}B{c[2]}H{c[4]}-len{c[5] is not None}")
def test_bidirectional_matches_cpu(case, path, monkeypatch):
    """One launch for both directions (combined: one block looping over the two directions in each step),
    one persistent launch a direction (separate) or the per-step kernels, against the CPU path."""
    mode, T, B, I, H, lengths = case
    if path == "step":
        monkeypatch.setattr(gpu, "force_path", "step")
    else:
        monkeypatch.setattr(gpu, "force_path", "persistent")
        monkeypatch.setattr(gpu, "force_directions", path)
    forward_layer = layer(mode, T, B, I, H, seed=80)
    reverse_layer = dict(layer(mode, T, B, I, H, seed=90), x=forward_layer["x"])
    pair = (forward_layer, reverse_layer)
    lengths = None if lengths is None else np.array(lengths)
    h0 = np.stack([forward_layer["h0"], reverse_layer["h0"]])
    c0 = np.stack([forward_layer["c0"], reverse_layer["c0"]]) if mode == "lstm" else None
    grad_y = random_array((T, B, 2 * H), seed=43)
    grad_h = random_array((2, B, H), seed=44)
    grad_c = random_array((2, B, H), seed=45) if mode == "lstm" else None
    launched = []

    def recording_launch(kernel, *args, **options):
        launched.append(kernel)
        return launch(kernel, *args, **options)

    monkeypatch.setattr(gpu, "launch", recording_launch)
    outputs, grads = run_bidirectional(mode, pair, h0, c0, lengths, grad_y, grad_h, grad_c)
    kernels_used = gpu._kernels(CELLS[mode])
    persistent = {kind: launched.count(kernels_used[f"persistent_{kind}"]) for kind in ("forward", "backward")}
    assert persistent == {kind: {"combined": 1, "separate": 2, "step": 0}[path] for kind in persistent}
    expected_outputs, expected_grads = reference_bidirectional(mode, pair, lengths, grad_y, grad_h, grad_c)
    assert len(outputs) == len(expected_outputs) and len(grads) == len(expected_grads)
    for index, (value, expected) in enumerate(zip(outputs, expected_outputs)):
        assert_close(value, expected, np.float32, name=f"{mode} output {index}")
    for index, (value, expected) in enumerate(zip(grads, expected_grads)):
        assert_close(value, expected, np.float32, scale=4, name=f"{mode} gradient {index}")


def test_combined_plan_in_the_simulator():
    """The simulator's combined form: one block, both directions' weights in its shared memory."""
    blocks, units, nbytes, per_block = gpu.persistent_plan("forward", CELLS["lstm"], 2, 5, directions=2)
    assert (blocks, units, per_block) == (1, 5, 2)
    assert nbytes == gpu.persistent_shared_bytes("forward", 4, 5, 5)


@pytest.mark.parametrize("mode", ["lstm", "gru"])
@pytest.mark.parametrize("directions", ["combined", "separate"])
def test_persistent_launches_pass_the_planned_types(mode, directions, monkeypatch):
    """The GPU plan (occupancy, shared-memory opt-in) and the resource check compile the persistent kernels
    for persistent_signature(kind); the launches must pass exactly those types, or the GPU would run
    another compilation of the kernel."""
    import numba
    monkeypatch.setattr(gpu, "force_directions", directions)
    launched = []

    def recording_launch(kernel, grid, block, *args, **options):
        launched.append((kernel, args))
        return launch(kernel, grid, block, *args, **options)

    monkeypatch.setattr(gpu, "launch", recording_launch)
    T, B, H = 2, 3, 3
    pair = (layer(mode, T, B, 2, H, seed=100), layer(mode, T, B, 2, H, seed=110))
    h0 = np.stack([pair[0]["h0"], pair[1]["h0"]])
    c0 = np.stack([pair[0]["c0"], pair[1]["c0"]]) if mode == "lstm" else None
    run_bidirectional(mode, pair, h0, c0, np.array([2, 1, 2]), random_array((T, B, 2 * H), seed=120),
                      random_array((2, B, H), seed=121), None if c0 is None else random_array((2, B, H), seed=122))
    kernels_used = gpu._kernels(CELLS[mode])
    for kind in ("forward", "backward"):
        runs = [args for kernel, args in launched if kernel is kernels_used[f"persistent_{kind}"]]
        assert len(runs) == (1 if directions == "combined" else 2)
        for args in runs:
            assert tuple(numba.typeof(a) for a in args) == gpu.persistent_signature(kind)


@cuda.jit
def _block_direction_of_each_block(out, directions, directions_per_block, units):
    first, unit0 = block_direction(directions, directions_per_block, units)
    if cuda.threadIdx.x == 0:
        out[cuda.blockIdx.x, 0] = first
        out[cuda.blockIdx.x, 1] = unit0


def test_block_direction_maps_a_two_direction_grid_as_the_gpu_launch_does():
    """The GPU form of the persistent kernels (one direction a block, D * blocks_per_direction blocks),
    which the simulator's one-block launches never reach: each block's direction and first unit."""
    where = _block_direction_of_each_block
    blocks_per_direction, units = 3, 5
    out = np.full((2 * blocks_per_direction, 2), -1, np.int64)
    where[2 * blocks_per_direction, 1](out, 2, 1, units)
    expected = [(d, b * units) for d in range(2) for b in range(blocks_per_direction)]
    assert [tuple(row) for row in out] == expected
    one_block = np.full((1, 2), -1, np.int64)       # the simulator's form: one block, both directions
    where[1, 1](one_block, 2, 2, units)
    assert tuple(one_block[0]) == (0, 0)


def test_the_units_switch_is_read_and_checked(monkeypatch):
    """NUMBANET_RNN_UNITS (the fewest units a persistent block owns, for benchmarks) must be a positive
    integer; it keys the plans apart from the automatic ones."""
    monkeypatch.setenv("NUMBANET_RNN_UNITS", "16")
    assert gpu.units_from_environment() == 16
    for wrong in ("0", "-4", "many"):
        monkeypatch.setenv("NUMBANET_RNN_UNITS", wrong)
        with pytest.raises(ValueError, match=f"NUMBANET_RNN_UNITS must be a positive integer.*'{wrong}'"):
            gpu.units_from_environment()
    monkeypatch.delenv("NUMBANET_RNN_UNITS")
    assert gpu.units_from_environment() is None
    automatic = gpu._plan_key("forward", CELLS["lstm"], 4, 64, 2)
    monkeypatch.setattr(gpu, "min_units", 16)
    assert gpu._plan_key("forward", CELLS["lstm"], 4, 64, 2) == automatic + (16,)


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_weight_gradients_written_into_given_arrays(mode):
    """weight_grad_outs on the CUDA path: the GEMMs write the weight gradients into the given arrays (NaN here to
    begin with), with the values of a backward that makes its own; for the LSTM the second bias's gradient (the
    same sums) is copied into its array."""
    T, B, I, H = 3, 2, 3, 4
    names = ("w_ih", "w_hh", "b_ih", "b_hh")
    pair = (layer(mode, T, B, I, H, seed=100), layer(mode, T, B, I, H, seed=110))
    weights = [tuple(a[k] for k in names) for a in pair]
    grad_y = random_array((T, B, 2 * H), seed=46)
    _, expected, _ = shared_run_bidirectional(mode, pair[0]["x"], None, None, weights, None, grad_y, None, None)
    outs = [tuple(np.full(a[k].shape, np.nan, np.float32) for k in names) for a in pair]
    _, given, saved = shared_run_bidirectional(mode, pair[0]["x"], None, None, weights, None, grad_y, None, None,
                                               weight_grad_outs=outs)
    assert saved.device == "cuda"
    assert all(g is out for g, out in zip(given[-8:], outs[0] + outs[1]))
    for value, wanted in zip(given, expected):
        np.testing.assert_array_equal(value, wanted)


class _NaNEmptyNumpy:
    """numpy, whose empty() is filled with NaN (-7 for integers): a buffer the kernels read before writing it
    shows up in the results."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def empty(shape, dtype=float):
        array = np.empty(shape, dtype)
        array.fill(np.nan if np.dtype(dtype).kind == "f" else -7)
        return array


class _NaNEmptyBackend:
    def __init__(self, real):
        self.real = real

    def __getattr__(self, name):
        return getattr(self.real, name)

    @staticmethod
    def array_module(x):
        return _NaNEmptyNumpy()


@pytest.mark.parametrize("path", ["step", "persistent"])
@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn_relu"])
def test_zero_initial_states_and_no_fill_for_buffers_the_kernels_never_read(mode, path, monkeypatch):
    """Every buffer kernels/cuda/rnn.py leaves empty (another cell's stand-ins, the states but for their zeroed
    ends) filled with NaN: with h0, c0, grad_h_n and grad_c_n absent, one direction reversed with lengths and a
    bidirectional layer give the CPU path's values with zero initial states, so nothing unwritten is read."""
    monkeypatch.setattr(gpu, "force_path", path)
    monkeypatch.setattr(gpu, "backend", _NaNEmptyBackend(gpu.backend))
    T, B, I, H = 3, 2, 3, 4
    a = layer(mode, T, B, I, H, seed=61)
    lengths = np.array([3, 2])
    grad_y = random_array((T, B, H), seed=62)
    ours = dict(a, h0=None, c0=None)
    outputs, grads = run(mode, ours, lengths, True, grad_y, None, None)
    zeros = dict(a, h0=np.zeros((B, H), np.float32), c0=np.zeros((B, H), np.float32) if mode == "lstm" else None)
    expected_outputs, expected_grads = reference(mode, zeros, lengths, True, grad_y, None, None)
    for index, (value, expected) in enumerate(zip(outputs, expected_outputs)):
        assert_close(value, expected, np.float32, name=f"{mode} output {index}")
    assert len(grads) == len(expected_grads)
    for index, (value, expected) in enumerate(zip(grads, expected_grads)):
        assert_close(value, expected, np.float32, scale=4, name=f"{mode} gradient {index}")
    pair = (a, dict(layer(mode, T, B, I, H, seed=71), x=a["x"]))
    grad_y2 = random_array((T, B, 2 * H), seed=63)
    outputs, grads = run_bidirectional(mode, pair, None, None, lengths, grad_y2, None, None)
    zero_pair = tuple(dict(p, h0=zeros["h0"], c0=zeros["c0"]) for p in pair)
    grad_h = np.zeros((2, B, H), np.float32)
    expected_outputs, expected_grads = reference_bidirectional(mode, zero_pair, lengths, grad_y2, grad_h,
                                                               grad_h if mode == "lstm" else None)
    for index, (value, expected) in enumerate(zip(outputs, expected_outputs)):
        assert_close(value, expected, np.float32, name=f"{mode} bidirectional output {index}")
    assert len(grads) == len(expected_grads)
    for index, (value, expected) in enumerate(zip(grads, expected_grads)):
        assert_close(value, expected, np.float32, scale=4, name=f"{mode} bidirectional gradient {index}")
