"""CPU path of the recurrent layers against torch.nn.LSTM / GRU / RNN (float64, same weights) and
float64 finite differences: outputs, final states and every gradient, with lengths and reverse."""
import os

import numpy as np
import pytest

import kernels
from tests.oracle import assert_close, finite_difference_gradient, random_array, torch_module
from tests.recurrent_ops import run_bidirectional

MODES = ("lstm", "gru", "rnn_tanh", "rnn_relu")
GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}


def make_layer(mode, T, B, I, H, dtype=np.float64, seed=0, bias=True):
    """Random inputs, states and PyTorch-layout weights for one layer (scaled like PyTorch's init)."""
    G = GATES[mode]
    scale = 1.0 / np.sqrt(H)
    arrays = {
        "x": random_array((T, B, I), dtype, seed),
        "h0": random_array((B, H), dtype, seed + 1),
        "c0": random_array((B, H), dtype, seed + 2) if mode == "lstm" else None,
        "w_ih": random_array((G * H, I), dtype, seed + 3, -scale, scale),
        "w_hh": random_array((G * H, H), dtype, seed + 4, -scale, scale),
        "b_ih": random_array((G * H,), dtype, seed + 5, -scale, scale) if bias else None,
        "b_hh": random_array((G * H,), dtype, seed + 6, -scale, scale) if bias else None,
    }
    return arrays


def ours_forward(mode, a, lengths=None, reverse=False, training=False):
    if mode == "lstm":
        return kernels.lstm(a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"],
                            lengths=lengths, reverse=reverse, training=training)
    if mode == "gru":
        return kernels.gru(a["x"], a["h0"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"],
                           lengths=lengths, reverse=reverse, training=training)
    return kernels.rnn(a["x"], a["h0"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"], nonlinearity=mode[4:],
                       lengths=lengths, reverse=reverse, training=training)


def ours_backward(mode, saved, grad_y, grad_h, grad_c, weight_grad_outs=None):
    """Gradients as a dict keyed like the inputs of make_layer."""
    if mode == "lstm":
        names = ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh")
        grads = kernels.lstm_backward(saved, grad_y, grad_h, grad_c, weight_grad_outs=weight_grad_outs)
    else:
        names = ("x", "h0", "w_ih", "w_hh", "b_ih", "b_hh")
        backward = kernels.gru_backward if mode == "gru" else kernels.rnn_backward
        grads = backward(saved, grad_y, grad_h, weight_grad_outs=weight_grad_outs)
    return dict(zip(names, grads))


def torch_run(mode, a, lengths, reverse, grad_y, grad_h, grad_c):
    """The same layer in float64 PyTorch; reverse uses the backward half of a bidirectional layer,
    lengths a packed sequence (enforce_sorted=False). Returns (outputs, gradients) as dicts."""
    torch = torch_module()
    T, B, I = a["x"].shape
    H = a["w_hh"].shape[1]
    bias = a["b_ih"] is not None
    kind = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}.get(mode, torch.nn.RNN)
    options = {} if kind is not torch.nn.RNN else {"nonlinearity": mode[4:]}
    layer = kind(I, H, bias=bias, bidirectional=reverse, **options).double()
    suffix = "_l0_reverse" if reverse else "_l0"
    tensors = {}
    with torch.no_grad():
        for name in ("w_ih", "w_hh", "b_ih", "b_hh"):
            if a[name] is None:
                continue
            parameter = getattr(layer, name.replace("w_", "weight_").replace("b_", "bias_") + suffix)
            parameter.copy_(torch.tensor(a[name]))
            tensors[name] = parameter
    directions = 2 if reverse else 1
    for name in ("x", "h0", "c0"):
        if a[name] is None:
            continue
        value = torch.tensor(a[name], dtype=torch.float64)
        if name != "x":  # (directions, B, H) with ours in the last direction
            value = torch.cat([torch.zeros_like(value)[None]] * (directions - 1) + [value[None]])
        tensors[name] = value.requires_grad_(True)
    x = tensors["x"]
    if lengths is not None:
        x = torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor(lengths), enforce_sorted=False)
    state = (tensors["h0"], tensors["c0"]) if mode == "lstm" else tensors["h0"]
    y, final = layer(x, state)
    if lengths is not None:
        y = torch.nn.utils.rnn.pad_packed_sequence(y, total_length=T)[0]
    y = y[..., H:] if reverse else y
    h_n, c_n = (final[0][-1], final[1][-1]) if mode == "lstm" else (final[-1], None)
    loss = (y * torch.tensor(grad_y)).sum() + (h_n * torch.tensor(grad_h)).sum()
    if c_n is not None:
        loss = loss + (c_n * torch.tensor(grad_c)).sum()
    loss.backward()
    outputs = {"y": y.detach().numpy(), "h_n": h_n.detach().numpy()}
    if c_n is not None:
        outputs["c_n"] = c_n.detach().numpy()
    grads = {}
    for name, tensor in tensors.items():
        grad = tensor.grad.numpy()
        grads[name] = grad[-1] if name in ("h0", "c0") else grad
    return outputs, grads


def check_against_torch(mode, T, B, I, H, dtype=np.float64, lengths=None, reverse=False, bias=True, seed=0):
    a = make_layer(mode, T, B, I, H, dtype, seed, bias)
    grad_y = random_array((T, B, H), np.float64, seed + 10)
    grad_h = random_array((B, H), np.float64, seed + 11)
    grad_c = random_array((B, H), np.float64, seed + 12)
    result = ours_forward(mode, a, lengths, reverse, training=True)
    expected, expected_grads = torch_run(mode, a, lengths, reverse, grad_y, grad_h, grad_c)
    names = ("y", "h_n", "c_n") if mode == "lstm" else ("y", "h_n")
    scale = np.sqrt(T * H)
    for name, value in zip(names, result[:-1]):
        assert_close(value, expected[name], dtype, scale=scale, name=f"{mode} {name}")
    if lengths is not None:
        padded = np.arange(T)[:, None] >= np.asarray(lengths)[None, :]
        assert not result[0][padded].any(), "outputs past a sample's length must be zero"
    grads = ours_backward(mode, result[-1], grad_y.astype(dtype), grad_h.astype(dtype), grad_c.astype(dtype))
    for name, grad in grads.items():
        if a[name] is None:
            assert grad is None, f"{mode}: gradient of absent {name} must be None"
            continue
        assert_close(grad, expected_grads[name], dtype, scale=scale * np.sqrt(B * T), name=f"{mode} grad {name}")


SHAPES = [(1, 1, 3, 5), (6, 3, 4, 33), (4, 2, 7, 8)]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T%dB%dI%dH%d" % s)
def test_matches_torch(mode, shape):
    check_against_torch(mode, *shape)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("reverse", [False, True])
def test_variable_unsorted_lengths_match_packed_torch(mode, reverse):
    check_against_torch(mode, 6, 4, 3, 7, lengths=np.array([3, 6, 1, 4]), reverse=reverse, seed=3)


@pytest.mark.parametrize("mode", MODES)
def test_reverse_matches_bidirectional_torch(mode):
    check_against_torch(mode, 5, 3, 4, 6, reverse=True, seed=5)


@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn_tanh"])
def test_without_bias(mode):
    check_against_torch(mode, 4, 2, 3, 5, bias=False, lengths=np.array([4, 2]), seed=7)


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_float32_matches_torch(mode):
    check_against_torch(mode, 8, 5, 6, 40, dtype=np.float32, lengths=np.array([8, 3, 5, 8, 1]), seed=9)


def test_missing_states_are_zeros_and_grad_y_may_be_none():
    a = make_layer("lstm", 4, 2, 3, 5, seed=11)
    zero_a = dict(a, h0=np.zeros((2, 5)), c0=np.zeros((2, 5)))
    none_a = dict(a, h0=None, c0=None)
    expected = ours_forward("lstm", zero_a, training=True)
    got = ours_forward("lstm", none_a, training=True)
    for value, reference in zip(got[:3], expected[:3]):
        assert_close(value, reference)
    grad_h = random_array((2, 5), np.float64, 12)
    only_final = kernels.lstm_backward(got[3], None, grad_h)
    with_zeros = kernels.lstm_backward(expected[3], np.zeros((4, 2, 5)), grad_h, np.zeros((2, 5)))
    for value, reference in zip(only_final, with_zeros):
        assert_close(value, reference)


def test_non_contiguous_input():
    a = make_layer("gru", 5, 3, 4, 6, seed=13)
    strided = dict(a, x=np.ascontiguousarray(a["x"].transpose(1, 0, 2)).transpose(1, 0, 2),
                   w_hh=np.asfortranarray(a["w_hh"]))
    assert not strided["x"].flags.c_contiguous
    for value, reference in zip(ours_forward("gru", strided), ours_forward("gru", a)):
        assert_close(value, reference)


@pytest.mark.parametrize("mode", MODES)
def test_gradients_by_finite_differences(mode):
    lengths = np.array([3, 2])
    a = make_layer(mode, 3, 2, 2, 3, seed=17)
    if mode == "rnn_relu":
        a["b_ih"] = a["b_ih"] + 0.3  # keep pre-activations away from the kink
    grad_y = random_array((3, 2, 3), np.float64, 18)
    grad_h = random_array((2, 3), np.float64, 19)
    grad_c = random_array((2, 3), np.float64, 20)

    def loss():
        result = ours_forward(mode, a, lengths, reverse=True)
        total = (result[0] * grad_y).sum() + (result[1] * grad_h).sum()
        if mode == "lstm":
            total += (result[2] * grad_c).sum()
        return float(total)

    saved = ours_forward(mode, a, lengths, reverse=True, training=True)[-1]
    grads = ours_backward(mode, saved, grad_y, grad_h, grad_c)
    for name, grad in grads.items():
        numeric = finite_difference_gradient(loss, a[name])
        assert_close(grad, numeric, rtol=1e-6, atol=1e-8, name=f"{mode} grad {name}")


@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn_tanh"])
def test_thousand_steps_stay_finite(mode):
    a = make_layer(mode, 1000, 2, 4, 16, np.float32, seed=21)
    a["w_hh"] *= 4  # strong recurrence: saturating gates must not overflow
    result = ours_forward(mode, a, training=True)
    assert all(np.isfinite(value).all() for value in result[:-1])
    grads = ours_backward(mode, result[-1], np.ones((1000, 2, 16), np.float32), None, None)
    assert all(np.isfinite(value).all() for value in grads.values() if value is not None)


def test_bad_input():
    a = make_layer("lstm", 3, 2, 4, 5, np.float32)
    args = [a[k] for k in ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh")]
    with pytest.raises(ValueError, match=r"lstm: w_ih must have shape \(20, 3\), got \(20, 4\)"):
        kernels.lstm(a["x"][:, :, :3], *args[1:])
    with pytest.raises(ValueError, match=r"lstm: h0 must have shape \(2, 5\), got \(3, 5\)"):
        kernels.lstm(args[0], np.zeros((3, 5), np.float32), *args[2:])
    with pytest.raises(ValueError, match=r"lstm: c0 must have shape"):
        kernels.lstm(*args[:2], np.zeros((2, 4), np.float32), *args[3:])
    with pytest.raises(ValueError, match=r"lstm: w_hh must have shape \(4\*H, H\)"):
        kernels.lstm(*args[:4], np.zeros((20, 4), np.float32), *args[5:])
    with pytest.raises(ValueError, match=r"lstm: x must be 3-D"):
        kernels.lstm(a["x"][0], *args[1:])
    with pytest.raises(ValueError, match=r"lstm: lengths must lie in \[1, 3\]"):
        kernels.lstm(*args, lengths=np.array([4, 1]))
    with pytest.raises(ValueError, match=r"lstm: lengths must lie in \[1, 3\]"):
        kernels.lstm(*args, lengths=np.array([0, 1]))
    with pytest.raises(ValueError, match=r"lstm: lengths must have shape \(2,\)"):
        kernels.lstm(*args, lengths=np.array([1, 2, 3]))
    with pytest.raises(TypeError, match="lstm: lengths must hold integers"):
        kernels.lstm(*args, lengths=np.array([1.0, 2.0]))
    with pytest.raises(TypeError, match="lstm: all arrays must share one dtype"):
        kernels.lstm(args[0].astype(np.float64), *args[1:])
    with pytest.raises(TypeError, match="lstm: x must be float32 or float64"):
        kernels.lstm(args[0].astype(np.int32), *args[1:])
    with pytest.raises(ValueError, match="rnn: nonlinearity must be 'tanh' or 'relu'"):
        g = make_layer("rnn_tanh", 3, 2, 4, 5, np.float32)
        kernels.rnn(g["x"], g["h0"], g["w_ih"], g["w_hh"], g["b_ih"], g["b_hh"], nonlinearity="sigmoid")
    with pytest.raises(ValueError, match=r"gru: w_hh must have shape \(3\*H, H\)"):
        kernels.gru(a["x"], a["h0"], a["w_ih"], a["w_hh"], None, None)
    saved = kernels.lstm(*args, training=True)[-1]
    with pytest.raises(ValueError, match=r"lstm_backward: grad_y must have shape \(3, 2, 5\)"):
        kernels.lstm_backward(saved, np.zeros((3, 2, 4), np.float32))
    with pytest.raises(TypeError, match="gru_backward: saved must come from the matching forward"):
        kernels.gru_backward(saved, None)


def test_persistent_kernels_fit_their_block_size():
    """A persistent block has PERSISTENT_THREADS threads: its kernels must need no more registers than
    an SM has for them, without spilling (compiled for sm_90 here, no GPU needed)."""
    import shutil
    from kernels.cuda import resources, rnn_kernels
    from kernels.cuda.rnn import PTX_SIGNATURES
    if shutil.which("ptxas") is None:
        pytest.skip("needs ptxas")
    for label, kernel, signature in PTX_SIGNATURES:
        if label.startswith("lstm_persistent"):
            report = resources.check_kernel(label, kernel, signature)
            assert report["ok"] and report["registers"] <= rnn_kernels.PERSISTENT_REGISTERS, report


def torch_bidirectional(mode, pair, h0, c0, lengths, grad_y, grad_h, grad_c):
    """One float64 bidirectional torch layer with both directions' weights: outputs and gradients (lists)."""
    torch = torch_module()
    T, _, I = pair[0]["x"].shape
    H = pair[0]["w_hh"].shape[1]
    kind = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}.get(mode, torch.nn.RNN)
    options = {} if kind is not torch.nn.RNN else {"nonlinearity": mode[4:]}
    module = kind(I, H, bidirectional=True, **options).double()
    with torch.no_grad():
        for a, suffix in zip(pair, ("_l0", "_l0_reverse")):
            for name in ("w_ih", "w_hh", "b_ih", "b_hh"):
                parameter = getattr(module, name.replace("w_", "weight_").replace("b_", "bias_") + suffix)
                parameter.copy_(torch.tensor(a[name]))
    x = torch.tensor(pair[0]["x"]).requires_grad_(True)
    states = [torch.tensor(s).requires_grad_(True) for s in (h0, c0) if s is not None]
    packed = x if lengths is None else torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor(lengths),
                                                                               enforce_sorted=False)
    y, final = module(packed, tuple(states) if mode == "lstm" else states[0])
    if lengths is not None:
        y = torch.nn.utils.rnn.pad_packed_sequence(y, total_length=T)[0]
    final = list(final) if mode == "lstm" else [final]
    loss = (y * torch.tensor(grad_y)).sum() + sum((f * torch.tensor(g)).sum() for f, g in zip(final, (grad_h, grad_c)))
    loss.backward()
    outputs = [y.detach().numpy()] + [f.detach().numpy() for f in final]
    grads = [x.grad.numpy()] + [s.grad.numpy() for s in states]
    for suffix in ("_l0", "_l0_reverse"):
        grads += [getattr(module, kind_name + suffix).grad.numpy()
                  for kind_name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    return outputs, grads


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("lengths", [None, [5, 2, 4]], ids=["full", "lengths"])
def test_bidirectional_matches_torch(mode, lengths):
    """Both directions in one op (reverse from each sample's own end) against a bidirectional torch layer."""
    T, B, I, H = 5, 3, 4, 6
    pair = (make_layer(mode, T, B, I, H, seed=30), make_layer(mode, T, B, I, H, seed=40))
    pair[1]["x"] = pair[0]["x"]
    weights = [tuple(a[k] for k in ("w_ih", "w_hh", "b_ih", "b_hh")) for a in pair]
    h0 = random_array((2, B, H), np.float64, 50)
    c0 = random_array((2, B, H), np.float64, 51) if mode == "lstm" else None
    grad_y = random_array((T, B, 2 * H), np.float64, 52)
    grad_h = random_array((2, B, H), np.float64, 53)
    grad_c = random_array((2, B, H), np.float64, 54) if mode == "lstm" else None
    lengths = None if lengths is None else np.array(lengths)
    outputs, grads, _ = run_bidirectional(mode, pair[0]["x"], h0, c0, weights, lengths, grad_y, grad_h, grad_c)
    expected_outputs, expected_grads = torch_bidirectional(mode, pair, h0, c0, lengths, grad_y, grad_h, grad_c)
    assert len(outputs) == len(expected_outputs) and len(grads) == len(expected_grads)
    for index, (value, expected) in enumerate(zip(outputs, expected_outputs)):
        assert_close(value, expected, name=f"{mode} output {index}")
    for index, (value, expected) in enumerate(zip(grads, expected_grads)):
        assert_close(value, expected, scale=np.sqrt(T * B), name=f"{mode} gradient {index}")


def test_bidirectional_bad_input():
    a = make_layer("lstm", 3, 2, 4, 5, np.float32)
    weights = [tuple(a[k] for k in ("w_ih", "w_hh", "b_ih", "b_hh"))] * 2
    with pytest.raises(TypeError, match=r"lstm_bidirectional: weights must be two \(w_ih, w_hh, b_ih, b_hh\)"):
        kernels.lstm_bidirectional(a["x"], None, None, weights[:1])
    with pytest.raises(ValueError, match=r"lstm_bidirectional: h0 must be 3-D, got shape \(2, 5\)"):
        kernels.lstm_bidirectional(a["x"], a["h0"], None, weights)
    with pytest.raises(ValueError, match=r"lstm_bidirectional: c0 must have shape \(2, 2, 5\), got \(3, 2, 5\)"):
        kernels.lstm_bidirectional(a["x"], None, np.zeros((3, 2, 5), np.float32), weights)
    short = [weights[0], (a["w_ih"][:16], a["w_hh"][:16, :4], None, None)]
    with pytest.raises(ValueError, match="lstm_bidirectional: both directions need one hidden size"):
        kernels.lstm_bidirectional(a["x"], None, None, short)
    with pytest.raises(ValueError, match=r"lstm_bidirectional: lengths must lie in \[1, 3\]"):
        kernels.lstm_bidirectional(a["x"], None, None, weights, lengths=np.array([4, 1]))
    saved = kernels.lstm_bidirectional(a["x"], None, None, weights, training=True)[-1]
    with pytest.raises(ValueError, match=r"lstm_bidirectional_backward: grad_y must have shape \(3, 2, 10\)"):
        kernels.lstm_bidirectional_backward(saved, np.zeros((3, 2, 5), np.float32))
    with pytest.raises(TypeError, match="gru_bidirectional_backward: saved must come from the matching"):
        kernels.gru_bidirectional_backward(saved, None)


@pytest.mark.parametrize("mode", MODES)
def test_weight_gradients_into_given_arrays(mode):
    """weight_grad_outs: the four weight gradients (per direction) land in the given arrays, which are returned;
    an out for a missing bias, a wrong shape or a wrong structure is an error naming the op."""
    T, B, I, H = 4, 3, 5, 6
    names = ("w_ih", "w_hh", "b_ih", "b_hh")
    a = make_layer(mode, T, B, I, H, seed=60)
    saved = ours_forward(mode, a, training=True)[-1]
    grad_y = random_array((T, B, H), np.float64, 61)
    expected = ours_backward(mode, saved, grad_y, None, None)
    outs = tuple(np.full(a[k].shape, np.nan) for k in names)
    given = ours_backward(mode, saved, grad_y, None, None, weight_grad_outs=outs)
    assert all(given[k] is out for k, out in zip(names, outs))
    for key, wanted in expected.items():
        np.testing.assert_array_equal(given[key], wanted, err_msg=key)
    weights = [tuple(a[k] for k in names)] * 2
    grad_y2 = random_array((T, B, 2 * H), np.float64, 62)
    _, expected, _ = run_bidirectional(mode, a["x"], None, None, weights, None, grad_y2, None, None)
    reverse_outs = tuple(np.full(a[k].shape, np.nan) for k in names)
    _, given, _ = run_bidirectional(mode, a["x"], None, None, weights, None, grad_y2, None, None,
                                    weight_grad_outs=((None,) * 4, reverse_outs))
    assert all(g is out for g, out in zip(given[-4:], reverse_outs))
    for value, wanted in zip(given, expected):
        np.testing.assert_array_equal(value, wanted)
    op = f"{mode[:3]}_backward" if mode != "lstm" else "lstm_backward"
    wrong_shape = rf"{op}: weight_grad_outs\[0\] \(w_hh\) must be \(\d+, 6\) float64, got"
    with pytest.raises(ValueError, match=wrong_shape):
        ours_backward(mode, saved, grad_y, None, None, weight_grad_outs=(None, np.zeros((2, 6)), None, None))
    unbiased = ours_forward(mode, {**a, "b_ih": None, "b_hh": None}, training=True)[-1]
    bias_out = (None, None, np.zeros(a["b_ih"].shape), None)
    with pytest.raises(ValueError, match=rf"{op}: an out for grad_b_ih was given, but the layer has no b_ih"):
        ours_backward(mode, unbiased, grad_y, None, None, weight_grad_outs=bias_out)
    with pytest.raises(TypeError, match=rf"{op}: weight_grad_outs must be 1 \(w_ih, w_hh, b_ih, b_hh\)"):
        ours_backward(mode, saved, grad_y, None, None, weight_grad_outs=(None, None))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_loop_tanh_is_numpy_tanh_within_float_rounding(dtype):
    """The CPU loops compute tanh with their own vectorisable arithmetic (kernels/cpu/rnn_loops.py): through
    a tanh RNN step that is exactly tanh of its input (w_ih = 1, w_hh = 0, no bias), it must agree with
    np.tanh to 2 ulp over wide magnitudes, saturate to +-1 and pass NaN."""
    rng = np.random.default_rng(0)
    magnitudes = 10.0 ** rng.uniform(-30, 1.5, 100_000)
    values = np.concatenate([rng.uniform(-12, 12, 100_000), np.where(rng.random(100_000) < 0.5, -1, 1) * magnitudes,
                             [np.nan, np.inf, -np.inf, 0.0, 40.0, -40.0]]).astype(dtype)
    y, _ = kernels.rnn(values.reshape(1, -1, 1), None, np.ones((1, 1), dtype), np.zeros((1, 1), dtype), None, None)
    got, expected = y.reshape(-1), np.tanh(values)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    finite = ~np.isnan(expected)
    ulps = np.abs(got[finite].astype(np.float64) - expected[finite]) / np.spacing(np.abs(expected[finite]))
    assert ulps.max() <= 2, f"{np.dtype(dtype).name} tanh: {ulps.max()} ulp from np.tanh"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fallback_gemm_matches_numpy(dtype):
    """The np.dot callback that the loops' BLAS name is bound to where NumPy's own CBLAS cannot be found:
    both products the loops make (a @ b.T, a @ b), beta 0 ignoring what C held (NaN), beta 1 adding."""
    import ctypes

    from numba import types

    from kernels.cpu import rnn_loops
    real = types.float32 if dtype == np.float32 else types.float64
    gemm = rnn_loops._fallback_gemm(real).ctypes
    rng = np.random.default_rng(1)
    M, N, K = 5, 7, 3
    a = rng.standard_normal((M, K)).astype(dtype)
    pointer = lambda array: array.ctypes.data_as(ctypes.POINTER(np.ctypeslib.as_ctypes_type(dtype)))
    for trans_b, b in ((rnn_loops.TRANS, rng.standard_normal((N, K)).astype(dtype)),
                       (rnn_loops.NO_TRANS, rng.standard_normal((K, N)).astype(dtype))):
        product = a @ (b.T if trans_b == rnn_loops.TRANS else b)
        c = np.full((M, N), np.nan, dtype)
        gemm(rnn_loops.ROW_MAJOR, rnn_loops.NO_TRANS, trans_b, M, N, K, 1.0, pointer(a), K, pointer(b),
             b.shape[1], 0.0, pointer(c), N)
        assert_close(c, product, dtype)
        start = rng.standard_normal((M, N)).astype(dtype)
        c = start.copy()
        gemm(rnn_loops.ROW_MAJOR, rnn_loops.NO_TRANS, trans_b, M, N, K, 1.0, pointer(a), K, pointer(b),
             b.shape[1], 1.0, pointer(c), N)
        assert_close(c, product + start, dtype)


_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # (this tree's kernels)


def _cpu_environment(**variables):
    """The environment for a fresh process that runs this tree's CPU path (not the simulator's)."""
    environment = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    return dict(environment, NUMBANET_BACKEND="cpu", **variables)


def test_loops_through_the_np_dot_fallback_match_torch():
    """Where NumPy's own CBLAS is not found (or NUMBANET_RNN_BLAS=np.dot), the loops' BLAS name is bound to
    the np.dot callback: the recurrent layers, forward and backward, still agree with torch through it (a
    fresh process, since the binding is made at import)."""
    import subprocess
    import sys
    script = (
        "from kernels.cpu import rnn_loops\n"
        "assert rnn_loops.BLAS_SOURCE == 'np.dot fallback', rnn_loops.BLAS_SOURCE\n"
        "from tests.kernels import test_rnn as t\n"
        "for mode in t.MODES:\n"
        "    t.test_matches_torch(mode, (4, 3, 5, 6))\n"
        "    t.test_variable_unsorted_lengths_match_packed_torch(mode, True)\n"
        "for mode in ('lstm', 'gru'):\n"
        "    t.test_float32_matches_torch(mode)\n"
        "print('fallback ok')\n")
    result = subprocess.run([sys.executable, "-c", script], env=_cpu_environment(NUMBANET_RNN_BLAS="np.dot"),
                            cwd=_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "fallback ok" in result.stdout, result.stderr[-3000:]


def test_unknown_blas_choice_is_refused():
    import subprocess
    import sys
    result = subprocess.run([sys.executable, "-c", "import kernels.cpu.rnn_loops"],
                            env=_cpu_environment(NUMBANET_RNN_BLAS="mkl"), cwd=_ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode != 0 and "NUMBANET_RNN_BLAS must be one of" in result.stderr
