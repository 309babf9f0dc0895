"""Recurrent layers on a real GPU at realistic sizes: the multi-block persistent kernels and the per-step
kernels, forward and backward, against the CPU path in float64 and against cuDNN through torch."""
import numpy as np
import pytest

import kernels
from kernels.cpu import rnn as cpu
from kernels.cuda import rnn as gpu
from kernels.cuda.rnn_kernels import CELLS
from kernels.cuda.rnn_persistent import GRID_BARRIERS
from tests.oracle import assert_close, random_array, to_numpy
from tests.recurrent_ops import run_bidirectional as shared_run_bidirectional

GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}


def layer(mode, T, B, I, H, seed=0):
    G = GATES[mode]
    scale = 1.0 / np.sqrt(H)
    return {
        "x": random_array((T, B, I), seed=seed),
        "h0": random_array((B, H), seed=seed + 1),
        "c0": random_array((B, H), seed=seed + 2) if mode == "lstm" else None,
        "w_ih": random_array((G * H, I), seed=seed + 3, low=-scale, high=scale),
        "w_hh": random_array((G * H, H), seed=seed + 4, low=-scale, high=scale),
        "b_ih": random_array((G * H,), seed=seed + 5, low=-scale, high=scale),
        "b_hh": random_array((G * H,), seed=seed + 6, low=-scale, high=scale),
    }


def on_gpu(a):
    import cupy
    return {k: (None if v is None else cupy.asarray(v)) for k, v in a.items()}


def run(mode, a, lengths, reverse, grad_y, grad_h, grad_c):
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
    return outputs, [g for g in grads if g is not None]


def reference(mode, a, lengths, reverse, grad_y, grad_h, grad_c):
    """The CPU path in float64."""
    d = {k: (None if v is None else v.astype(np.float64)) for k, v in a.items()}
    y, states, cells, gates, aux = cpu.forward(mode, d["x"], d["h0"], d["c0"], d["w_ih"], d["w_hh"], d["b_ih"],
                                               d["b_hh"], lengths, reverse)
    final = cpu.final_index(a["x"].shape[0], reverse)
    outputs = [y, states[final]] + ([cells[final]] if mode == "lstm" else [])
    to64 = (lambda g: None if g is None else g.astype(np.float64))
    grads = cpu.backward(mode, d["x"], d["w_ih"], d["w_hh"], True, True, lengths, reverse, states, cells, gates,
                         aux, to64(grad_y), to64(grad_h), to64(grad_c))
    return outputs, [g for g in grads if g is not None]


def compare(mode, T, B, I, H, path, lengths=None, reverse=False, seed=0):
    import cupy
    gpu.force_path = path
    try:
        a = layer(mode, T, B, I, H, seed)
        grad_y = random_array((T, B, H), seed=seed + 20)
        grad_h = random_array((B, H), seed=seed + 21)
        grad_c = random_array((B, H), seed=seed + 22) if mode == "lstm" else None
        device_lengths = None if lengths is None else cupy.asarray(lengths)
        outputs, grads = run(mode, on_gpu(a), device_lengths, reverse, cupy.asarray(grad_y), cupy.asarray(grad_h),
                             None if grad_c is None else cupy.asarray(grad_c))
    finally:
        gpu.force_path = None
    expected_outputs, expected_grads = reference(mode, a, lengths, reverse, grad_y, grad_h, grad_c)
    for index, (value, expected) in enumerate(zip(outputs, expected_outputs)):
        assert_close(value, expected, np.float32, scale=np.sqrt(H), name=f"{mode} output {index}")
    for index, (value, expected) in enumerate(zip(grads, expected_grads)):
        # float32 sums over T*B terms (weights) and through T steps (states): tolerance grows with both
        assert_close(value, expected, np.float32, scale=4 * np.sqrt(T * B), name=f"{mode} gradient {index}")


SHAPES = [(100, 64, 512, 512), (25, 16, 512, 512), (50, 1, 256, 256), (7, 5, 33, 1000)]


@pytest.mark.parametrize("path", ["persistent", "step"])
@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn_tanh"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T%dB%dI%dH%d" % s)
def test_matches_cpu(shape, mode, path):
    compare(mode, *shape, path)


@pytest.mark.parametrize("path", ["persistent", "step"])
@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn_relu"])
@pytest.mark.parametrize("reverse", [False, True])
def test_lengths_and_reverse(mode, path, reverse):
    lengths = np.random.default_rng(3).integers(1, 27, size=24)
    lengths[5] = 26
    compare(mode, 26, 24, 128, 200, path, lengths=lengths, reverse=reverse, seed=5)


@pytest.mark.parametrize("path", ["persistent", "step"])
def test_gate_sigmoid_is_the_float64_sigmoid_within_a_few_ulps(path, monkeypatch):
    """The GPU's gate sigmoid divides by div.approx (kernels/cuda/rnn_kernels.py). Through one LSTM step whose
    gate pre-activations are the inputs (w_ih = 1, w_hh = 0, no bias, 8 units: the persistent form updates
    a task's two samples in two lanes) the stored i, f and o gates must be the float64 sigmoid within 6 ulps
    where it is a normal float32, at most the smallest normal where it is subnormal, 0 and 1 at -inf and +inf,
    NaN at NaN."""
    import cupy
    monkeypatch.setattr(gpu, "force_path", path)
    rng = np.random.default_rng(0)
    magnitudes = 10.0 ** rng.uniform(-6, 2, 4000)
    values = np.concatenate([rng.uniform(-30, 30, 4000), np.where(rng.random(4000) < 0.5, -1, 1) * magnitudes,
                             [np.nan, np.inf, -np.inf, 0.0, -87.0, -88.0, -89.0, -104.0, 88.0]]).astype(np.float32)
    B, H = len(values), 8
    x = cupy.asarray(values.reshape(1, B, 1))
    *_, saved = kernels.lstm(x, None, None, cupy.ones((4 * H, 1), np.float32), cupy.zeros((4 * H, H), np.float32),
                             None, None, training=True)
    gates = to_numpy(saved.gates)[0]
    exact = 1.0 / (1.0 + np.exp(-values.astype(np.float64)))
    tiny = np.finfo(np.float32).tiny
    for gate in (0, 1, 3):   # i, f, o
        got = gates[:, gate * H:(gate + 1) * H]
        np.testing.assert_array_equal(got, np.repeat(got[:, :1], H, axis=1))   # every unit saw the same input
        got = got[:, 0].astype(np.float64)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(exact))
        normal = ~np.isnan(exact) & (exact >= tiny)
        ulps = np.abs(got[normal] - exact[normal]) / np.spacing(exact[normal].astype(np.float32))
        assert ulps.max() <= 6, f"gate {gate}: {ulps.max()} ulp from the float64 sigmoid"
        assert np.all(np.abs(got[~np.isnan(exact) & ~normal]) <= tiny)
    assert gates[B - 7, 0] == 0.0 and gates[B - 8, 0] == 1.0   # -inf, +inf


def test_persistent_kernels_use_many_blocks():
    compare("lstm", 3, 8, 16, 512, None)
    for kind in ("forward", "backward"):
        blocks, units, _, _ = gpu._plans[gpu._plan_key(kind, CELLS["lstm"], 8, 512, 1)]
        assert blocks > 1 and blocks * units >= 512 > (blocks - 1) * units


@pytest.mark.parametrize("barrier", GRID_BARRIERS)
@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_both_grid_barriers_match_cpu(mode, barrier, monkeypatch):
    """Both kinds of grid barrier (rnn_persistent.py; NUMBANET_GRID_BARRIER) over 200 steps of many blocks,
    forward and backward, against the CPU path."""
    monkeypatch.setattr(gpu, "grid_barrier", barrier)
    compare(mode, 200, 16, 64, 256, "persistent", seed=13)
    for kind in ("forward", "backward"):
        blocks = gpu._plans[gpu._plan_key(kind, CELLS[mode], 16, 256, 1)][0]
        assert blocks > 1   # the steps met at grid barriers


@pytest.mark.parametrize("barrier", GRID_BARRIERS)
def test_grid_barrier_leaves_no_race_run_to_run(barrier, monkeypatch):
    """A block that passed a barrier before every block had written the step's states would read stale ones,
    now and then: repeated runs would differ. The CRNN's layer shape (both directions in one launch of 128
    one-unit blocks) has no atomic sums in its recurrences or GEMMs, so 40 runs must agree bit for bit."""
    import cupy
    monkeypatch.setattr(gpu, "grid_barrier", barrier)
    T, B, I, H = 45, 32, 64, 64
    x, h0, c0, weights, grad_y, grad_h, grad_c = bidirectional_inputs("lstm", T, B, I, H, seed=21)
    weights = [tuple(cupy.asarray(a) for a in w) for w in weights]
    x, h0, c0, grad_y, grad_h, grad_c = (cupy.asarray(a) for a in (x, h0, c0, grad_y, grad_h, grad_c))
    first = None
    for _ in range(40):
        outputs, grads = run_bidirectional("lstm", x, h0, c0, weights, None, grad_y, grad_h, grad_c)
        results = [to_numpy(v) for v in outputs + grads]
        if first is None:
            first = results
            continue
        for index, (value, expected) in enumerate(zip(results, first)):
            assert np.array_equal(value, expected), f"result {index} differs between runs ({barrier} barrier)"
    blocks, _, _, per_block = gpu._plans[gpu._plan_key("forward", CELLS["lstm"], B, H, 2)]
    assert blocks > 2 and per_block == 1


def test_hidden_too_large_for_chip_uses_step_kernels():
    compare("lstm", 4, 2, 8, 1536, None)
    assert gpu._plans[gpu._plan_key("forward", CELLS["lstm"], 2, 1536, 1)] is None


def test_matches_cudnn():
    import cupy
    import torch
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    T, B, I, H = 50, 32, 256, 256
    a = layer("lstm", T, B, I, H, seed=9)
    module = torch.nn.LSTM(I, H).cuda()
    with torch.no_grad():
        for name, key in (("weight_ih_l0", "w_ih"), ("weight_hh_l0", "w_hh"), ("bias_ih_l0", "b_ih"),
                          ("bias_hh_l0", "b_hh")):
            getattr(module, name).copy_(torch.as_tensor(a[key], device="cuda"))
    x = torch.as_tensor(a["x"], device="cuda").requires_grad_(True)
    h0 = torch.as_tensor(a["h0"][None], device="cuda").requires_grad_(True)
    c0 = torch.as_tensor(a["c0"][None], device="cuda").requires_grad_(True)
    y, (h_n, c_n) = module(x, (h0, c0))
    grad_y = random_array((T, B, H), seed=10)
    y.backward(torch.as_tensor(grad_y, device="cuda"))
    g = on_gpu(a)
    ours_y, ours_h, ours_c, saved = kernels.lstm(g["x"], g["h0"], g["c0"], g["w_ih"], g["w_hh"], g["b_ih"], g["b_hh"],
                                                 training=True)
    grads = kernels.lstm_backward(saved, cupy.asarray(grad_y))
    assert_close(ours_y, y.detach().cpu().numpy(), np.float32, scale=16, name="y")
    assert_close(ours_h, h_n[0].detach().cpu().numpy(), np.float32, scale=16, name="h_n")
    assert_close(ours_c, c_n[0].detach().cpu().numpy(), np.float32, scale=16, name="c_n")
    assert_close(grads[0], x.grad.cpu().numpy(), np.float32, scale=64, name="grad x")
    assert_close(grads[4], module.weight_hh_l0.grad.cpu().numpy(), np.float32, scale=256, name="grad w_hh")


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_thousand_steps_stay_finite(mode):
    import cupy
    a = layer(mode, 1000, 4, 16, 64, seed=11)
    a["w_hh"] *= 4
    g = on_gpu(a)
    grad_y = cupy.ones((1000, 4, 64), cupy.float32)
    outputs, grads = run(mode, g, None, False, grad_y, None, None)
    assert all(bool(cupy.isfinite(v).all()) for v in outputs + grads)


def test_bad_input_on_gpu():
    import cupy
    a = layer("lstm", 3, 2, 4, 5)
    g = on_gpu(a)
    with pytest.raises(ValueError, match="lstm: arrays live on different devices"):
        kernels.lstm(g["x"], a["h0"], g["c0"], g["w_ih"], g["w_hh"], g["b_ih"], g["b_hh"])
    with pytest.raises(TypeError, match="lstm: x must be float32 on cuda"):
        kernels.lstm(g["x"].astype(cupy.float64), g["h0"], g["c0"], g["w_ih"], g["w_hh"], g["b_ih"], g["b_hh"])
    with pytest.raises(ValueError, match=r"lstm: lengths must lie in \[1, 3\]"):
        kernels.lstm(g["x"], g["h0"], g["c0"], g["w_ih"], g["w_hh"], g["b_ih"], g["b_hh"],
                     lengths=cupy.asarray([4, 1]))


# ---- both directions of a layer in one launch ---------------------------------------------------------

def run_bidirectional(mode, x, h0, c0, weights, lengths, grad_y, grad_h, grad_c):
    """Outputs and the gradients present, on whichever device the arrays live."""
    outputs, grads, _ = shared_run_bidirectional(mode, x, h0, c0, weights, lengths, grad_y, grad_h, grad_c)
    return outputs, [g for g in grads if g is not None]


def bidirectional_inputs(mode, T, B, I, H, seed):
    pair = (layer(mode, T, B, I, H, seed), layer(mode, T, B, I, H, seed + 50))
    weights = [tuple(a[k] for k in ("w_ih", "w_hh", "b_ih", "b_hh")) for a in pair]
    h0 = np.stack([pair[0]["h0"], pair[1]["h0"]])
    c0 = np.stack([pair[0]["c0"], pair[1]["c0"]]) if mode == "lstm" else None
    grad_y = random_array((T, B, 2 * H), seed=seed + 30)
    grad_h = random_array((2, B, H), seed=seed + 31)
    grad_c = random_array((2, B, H), seed=seed + 32) if mode == "lstm" else None
    return pair[0]["x"], h0, c0, weights, grad_y, grad_h, grad_c


def run_bidirectional_gpu(mode, inputs, lengths, path, directions):
    """The GPU results with our recurrence path and directions form forced ('combined' or 'separate')."""
    import cupy
    x, h0, c0, weights, grad_y, grad_h, grad_c = inputs
    move = (lambda a: None if a is None else cupy.asarray(a))
    saved = gpu.force_path, gpu.force_directions
    gpu.force_path, gpu.force_directions = path, directions
    try:
        return run_bidirectional(mode, move(x), move(h0), move(c0), [tuple(move(a) for a in w) for w in weights],
                                 move(lengths), move(grad_y), move(grad_h), move(grad_c))
    finally:
        gpu.force_path, gpu.force_directions = saved


def bidirectional_reference(mode, inputs, lengths):
    """The CPU path in float64."""
    to64 = (lambda a: None if a is None else a.astype(np.float64))
    x, h0, c0, weights, grad_y, grad_h, grad_c = inputs
    return run_bidirectional(mode, to64(x), to64(h0), to64(c0), [tuple(to64(a) for a in w) for w in weights],
                             lengths, to64(grad_y), to64(grad_h), to64(grad_c))


def assert_results_close(ours, expected, T, B, H, label):
    for index, (value, reference) in enumerate(zip(ours[0], expected[0])):
        assert_close(value, reference, np.float32, scale=np.sqrt(H), name=f"{label} output {index}")
    assert len(ours[1]) == len(expected[1])
    for index, (value, reference) in enumerate(zip(ours[1], expected[1])):
        assert_close(value, reference, np.float32, scale=4 * np.sqrt(T * B), name=f"{label} gradient {index}")


BIDIRECTIONAL_SHAPES = [(26, 16, 512, 64), (26, 16, 512, 256), (50, 4, 128, 512)]  # CRNN layers, a wide one


@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn_tanh"])
@pytest.mark.parametrize("shape", BIDIRECTIONAL_SHAPES, ids=lambda s: "T%dB%dI%dH%d" % s)
def test_bidirectional_combined_matches_separate_and_cpu(shape, mode):
    """One launch for both directions against one launch a direction (the old form) and the CPU path,
    with per-sample lengths (each sample's reverse direction starts at its own end)."""
    T, B, I, H = shape
    inputs = bidirectional_inputs(mode, T, B, I, H, seed=H)
    lengths = np.random.default_rng(H).integers(1, T + 1, size=B)
    lengths[0] = T
    combined = run_bidirectional_gpu(mode, inputs, lengths, "persistent", "combined")
    separate = run_bidirectional_gpu(mode, inputs, lengths, "persistent", "separate")
    blocks, units, _, per_block = gpu._plans[gpu._plan_key("forward", CELLS[mode], B, H, 2)]
    assert per_block == 1 and blocks == 2 * -(-H // units)
    expected = bidirectional_reference(mode, inputs, lengths)
    assert_results_close(combined, expected, T, B, H, f"{mode} combined")
    assert_results_close(separate, expected, T, B, H, f"{mode} separate")
    # The same arithmetic in both forms; only the units a block (so the order of partial sums) differ.
    assert_results_close(combined, [[to_numpy(v) for v in part] for part in separate], T, B, H, f"{mode} forms")


@pytest.mark.parametrize("mode, units", [("lstm", 4), ("lstm", 16), ("lstm", 64), ("gru", 64)])
def test_fewer_larger_persistent_blocks_give_the_same_results(mode, units, monkeypatch):
    """gpu.min_units (NUMBANET_RNN_UNITS) gives blocks of at least that many units, and the CRNN's layer
    shape still matches the CPU path. With 64 units (= H) each block owns its whole direction and the steps
    meet at block barriers only (step_barrier)."""
    T, B, I, H = 26, 16, 512, 64
    monkeypatch.setattr(gpu, "min_units", units)
    inputs = bidirectional_inputs(mode, T, B, I, H, seed=units)
    lengths = np.random.default_rng(units).integers(1, T + 1, size=B)
    ours = run_bidirectional_gpu(mode, inputs, lengths, "persistent", "combined")
    for kind in ("forward", "backward"):
        blocks, planned_units, _, _ = gpu._plans[gpu._plan_key(kind, CELLS[mode], B, H, 2)]
        assert planned_units >= units and blocks == 2 * -(-H // planned_units)
    assert_results_close(ours, bidirectional_reference(mode, inputs, lengths), T, B, H, f"{mode} u{units}")


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_bidirectional_step_kernels(mode):
    T, B, I, H = 12, 5, 64, 96
    inputs = bidirectional_inputs(mode, T, B, I, H, seed=7)
    lengths = np.array([12, 3, 7, 1, 12])
    ours = run_bidirectional_gpu(mode, inputs, lengths, "step", None)
    assert_results_close(ours, bidirectional_reference(mode, inputs, lengths), T, B, H, f"{mode} step")


def test_bidirectional_too_wide_for_one_launch_runs_each_direction():
    """H = 1024: one direction's persistent launch fits, both together do not; the op falls back to one
    persistent launch a direction without being told."""
    T, B, I, H = 4, 3, 32, 1024
    inputs = bidirectional_inputs("lstm", T, B, I, H, seed=13)
    ours = run_bidirectional_gpu("lstm", inputs, None, None, None)
    assert gpu._plans[gpu._plan_key("forward", CELLS["lstm"], B, H, 2)] is None
    assert gpu._plans[gpu._plan_key("forward", CELLS["lstm"], B, H, 1)] is not None
    assert_results_close(ours, bidirectional_reference("lstm", inputs, None), T, B, H, "lstm H1024")


@pytest.mark.parametrize("with_lengths", [False, True])
def test_bidirectional_matches_cudnn(with_lengths):
    import cupy
    import torch
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    T, B, I, H = 26, 16, 512, 256
    x, h0, c0, weights, grad_y, _, _ = bidirectional_inputs("lstm", T, B, I, H, seed=17)
    lengths = np.random.default_rng(17).integers(5, T + 1, size=B) if with_lengths else None
    module = torch.nn.LSTM(I, H, bidirectional=True).cuda()
    with torch.no_grad():
        for weight, suffix in zip(weights, ("_l0", "_l0_reverse")):
            for name, array in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), weight):
                getattr(module, name + suffix).copy_(torch.as_tensor(array, device="cuda"))
    x_t = torch.as_tensor(x, device="cuda").requires_grad_(True)
    packed = x_t
    if with_lengths:
        packed = torch.nn.utils.rnn.pack_padded_sequence(x_t, torch.as_tensor(lengths), enforce_sorted=False)
    y, (h_n, c_n) = module(packed, (torch.as_tensor(h0, device="cuda"), torch.as_tensor(c0, device="cuda")))
    if with_lengths:
        y = torch.nn.utils.rnn.pad_packed_sequence(y, total_length=T)[0]
    y.backward(torch.as_tensor(grad_y, device="cuda"))
    g = (lambda a: None if a is None else cupy.asarray(a))
    ours_y, ours_h, ours_c, saved = kernels.lstm_bidirectional(g(x), g(h0), g(c0), [tuple(g(a) for a in w)
                                                                                    for w in weights],
                                                               lengths=g(lengths), training=True)
    grads = kernels.lstm_bidirectional_backward(saved, g(grad_y))
    assert_close(ours_y, y.detach().cpu().numpy(), np.float32, scale=16, name="y")
    assert_close(ours_h, h_n.detach().cpu().numpy(), np.float32, scale=16, name="h_n")
    assert_close(ours_c, c_n.detach().cpu().numpy(), np.float32, scale=16, name="c_n")
    assert_close(grads[0], x_t.grad.cpu().numpy(), np.float32, scale=64, name="grad x")
    assert_close(grads[4], module.weight_hh_l0.grad.cpu().numpy(), np.float32, scale=256, name="grad w_hh")
    assert_close(grads[8], module.weight_hh_l0_reverse.grad.cpu().numpy(), np.float32, scale=256,
                 name="grad w_hh reverse")


def test_one_kernel_keeps_the_largest_shared_memory_allowance():
    """H = 700: one direction's plan (6 units a block, 67 KB of weights) and both directions' (11 units,
    123 KB) each need the kernel opted in above 48 KB; planning the smaller one after the larger one must
    not shrink the allowance the larger launch needs."""
    T, B, I, H = 3, 2, 16, 700
    inputs = bidirectional_inputs("lstm", T, B, I, H, seed=19)
    expected = bidirectional_reference("lstm", inputs, None)
    for directions in ("combined", "separate", "combined"):
        ours = run_bidirectional_gpu("lstm", inputs, None, "persistent", directions)
        assert_results_close(ours, expected, T, B, H, f"lstm H700 {directions}")
    for kind in ("forward", "backward"):
        both, one = (gpu._plans[gpu._plan_key(kind, CELLS["lstm"], B, H, d)] for d in (2, 1))
        assert both[1] > one[1]
