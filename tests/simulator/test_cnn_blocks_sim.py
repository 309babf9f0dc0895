"""The CNN building blocks on the CUDA path, in the simulator (tiny shapes, NumPy arrays run the CUDA kernels and
take the GPU branches), against the same calls on the CPU path (NUMBANET_BACKEND=cpu; itself checked against torch
in tests/nn/test_cnn_blocks.py): outputs and the gradients of every input (group_norm, dropout2d under one seed,
pad, interpolate); GroupNorm's weight and bias gradients arriving in a flat optimizer's buffer; a conv -> GroupNorm
-> ReLU -> Upsample -> ZeroPad2d -> conv model's output and gradients."""
import numpy as np
import pytest

import nn
from tests.oracle import assert_close, random_array

F = nn.functional
TOLERANCE = {"rtol": 2e-4, "atol": 2e-5}


def _run(monkeypatch, backend, fn, arrays, seed=30):
    """fn(*leaves) on one backend: its output and the leaves' gradients of sum(output * w), as NumPy arrays."""
    monkeypatch.setenv("NUMBANET_BACKEND", backend)
    leaves = [nn.Tensor(a.copy(), requires_grad=True) for a in arrays]
    out = fn(*leaves)
    (out * nn.Tensor(random_array(out.shape, seed=seed))).sum().backward()
    return out.numpy(), [leaf.grad.numpy() for leaf in leaves]


def _assert_simulator_matches_cpu(monkeypatch, fn, arrays):
    expected, expected_grads = _run(monkeypatch, "cpu", fn, arrays)
    out, grads = _run(monkeypatch, "auto", fn, arrays)   # NumPy arrays run the CUDA kernels here
    assert out.dtype == expected.dtype == np.float32
    assert_close(out, expected, np.float32, name="output", **TOLERANCE)
    for i, (got, want) in enumerate(zip(grads, expected_grads, strict=True)):
        assert_close(got, want, np.float32, name=f"gradient {i}", **TOLERANCE)


def _seeded_dropout2d(x):
    nn.manual_seed(3)   # (the simulator draws from nn.manual_seed's generator too: the CPU run's mask)
    return F.dropout2d(x, 0.4)


CASES = {   # fn, array shapes
    "group_norm 3 groups": (lambda x, w, b: F.group_norm(x, 3, w, b), [(2, 6, 3, 5), (6,), (6,)]),
    "group_norm weight only, strided input": (lambda x, w: F.group_norm(x[:, :, ::2], 2, w, eps=1e-3),
                                              [(3, 4, 7), (4,)]),
    "group_norm no affine, one group": (lambda x: F.group_norm(x, 1), [(2, 5, 3, 3)]),
    "dropout2d": (_seeded_dropout2d, [(4, 6, 3, 2)]),
    "pad with crops and a value": (lambda x: F.pad(x[:, ::2], (2, -1, 1, 0), value=1.5), [(2, 6, 4, 5)]),
    "interpolate scale 2 (repeat path)": (lambda x: F.interpolate(x, scale_factor=2), [(2, 3, 3, 4)]),
    "interpolate to a size (gather, scatter-add)": (lambda x: F.interpolate(x, size=(7, 3)), [(2, 3, 3, 5)]),
}


@pytest.mark.parametrize("name", CASES)
def test_op_on_cuda_path_matches_cpu(monkeypatch, name):
    fn, shapes = CASES[name]
    _assert_simulator_matches_cpu(monkeypatch, fn, [random_array(s, seed=i + 1) for i, s in enumerate(shapes)])


def test_group_norm_gradients_are_written_straight_into_the_flat_buffer(monkeypatch):
    """GroupNorm's weight and bias gradients are summed into their views of a flat SGD buffer (out_for), no copy;
    the weights equal those of an SGD stepping parameter by parameter on the CPU."""
    from tests.simulator.test_optim_sim import _flat_gradient_arrivals
    x, target = nn.Tensor(random_array((2, 4, 3), seed=8)), nn.Tensor(random_array((2, 4, 3), seed=9))
    arrivals, flat, reference = _flat_gradient_arrivals(
        monkeypatch, lambda: [nn.GroupNorm(2, 4)], lambda model: ((model(x) - target) ** 2).sum())
    assert arrivals == [True] * 2
    for p, q in zip(flat, reference):
        assert_close(p.data, q.data, np.float32, **TOLERANCE)


def test_cnn_block_model_on_cuda_path_matches_cpu(monkeypatch):
    from tests.nn.test_cnn_blocks import cnn_block_model

    def run(x):
        nn.manual_seed(0)
        model = cnn_block_model(nn)
        return model(x), model

    x = random_array((2, 3, 3, 2), seed=10)
    results = []
    for backend in ("cpu", "auto"):
        monkeypatch.setenv("NUMBANET_BACKEND", backend)
        leaf = nn.Tensor(x.copy(), requires_grad=True)
        out, model = run(leaf)
        (out * nn.Tensor(random_array(out.shape, seed=11))).sum().backward()
        results.append([out.numpy(), leaf.grad.numpy()] + [p.grad.numpy() for p in model.parameters()])
    for i, (got, expected) in enumerate(zip(*reversed(results), strict=True)):
        assert_close(got, expected, np.float32, name=f"result {i}", **TOLERANCE)
