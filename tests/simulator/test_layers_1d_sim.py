"""The 1-D convolution and pooling ops and layers on the CUDA kernels, in the simulator (tiny shapes), against
the same calls on the CPU path (NUMBANET_BACKEND=cpu; itself checked against torch in tests/nn): outputs,
max_pool1d's indices and the gradients of input, weight and bias, batched and unbatched."""
import numpy as np
import pytest

import nn
from tests.oracle import assert_close, random_array

F = nn.functional
TOLERANCE = dict(rtol=2e-4, atol=2e-5)


def _run(monkeypatch, backend, fn, arrays, seed=30):
    """fn(*leaves) on one backend: its outputs and the leaves' gradients of sum(output * w), as NumPy arrays."""
    monkeypatch.setenv("NUMBANET_BACKEND", backend)
    leaves = [nn.Tensor(a.copy(), requires_grad=True) for a in arrays]
    outputs = fn(*leaves)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    total = None
    for i, out in enumerate(outputs):
        if np.issubdtype(out.dtype, np.floating):
            term = (out * nn.Tensor(random_array(out.shape, seed=seed + i))).sum()
            total = term if total is None else total + term
    total.backward()
    return [o.numpy() for o in outputs], [leaf.grad.numpy() for leaf in leaves]


def _assert_simulator_matches_cpu(monkeypatch, fn, arrays):
    expected_outputs, expected_grads = _run(monkeypatch, "cpu", fn, arrays)
    outputs, grads = _run(monkeypatch, "auto", fn, arrays)   # NumPy arrays run the CUDA kernels here
    for i, (got, expected) in enumerate(zip(outputs, expected_outputs, strict=True)):
        assert got.dtype == expected.dtype, f"output {i}"
        if np.issubdtype(expected.dtype, np.floating):
            assert_close(got, expected, np.float32, name=f"output {i}", **TOLERANCE)
        else:
            np.testing.assert_array_equal(got, expected, err_msg=f"output {i}")
    for i, (got, expected) in enumerate(zip(grads, expected_grads, strict=True)):
        assert_close(got, expected, np.float32, name=f"gradient {i}", **TOLERANCE)


CASES = {   # fn, array shapes
    "conv1d stride padding dilation groups": (
        lambda x, w, b: F.conv1d(x, w, b, stride=2, padding=1, dilation=2, groups=2), [(2, 4, 11), (4, 2, 3), (4,)]),
    "conv1d same even kernel, unbatched": (lambda x, w, b: F.conv1d(x, w, b, padding="same"),
                                           [(3, 9), (2, 3, 4), (2,)]),
    "conv1d pointwise (GEMM path)": (lambda x, w, b: F.conv1d(x, w, b), [(2, 3, 7), (5, 3, 1), (5,)]),
    "conv1d and max_pool1d of a strided slice": (
        lambda x, w: F.max_pool1d(F.conv1d(x[:, :, ::2], w, padding=1), 2, return_indices=True),
        [(1, 2, 13), (3, 2, 3)]),
    "max_pool1d ceil with indices": (lambda x: F.max_pool1d(x, 3, 2, 1, ceil_mode=True, return_indices=True),
                                     [(2, 3, 10)]),
    "max_pool1d dilated, unbatched": (lambda x: F.max_pool1d(x, 3, 1, 1, dilation=2), [(3, 9)]),
    "avg_pool1d padding excluded, ceil": (
        lambda x: F.avg_pool1d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False), [(2, 3, 10)]),
    "avg_pool1d padding included, unbatched": (lambda x: F.avg_pool1d(x, 4, 3, 2), [(2, 11)]),
    "adaptive_avg_pool1d not dividing": (lambda x: F.adaptive_avg_pool1d(x, 4), [(2, 3, 11)]),
}


@pytest.mark.parametrize("name", CASES)
def test_op_on_cuda_kernels_matches_cpu(monkeypatch, name):
    fn, shapes = CASES[name]
    _assert_simulator_matches_cpu(monkeypatch, fn, [random_array(s, seed=i + 1) for i, s in enumerate(shapes)])


def _layers_run(monkeypatch, backend, x):
    """A Conv1d -> BatchNorm1d -> ReLU -> MaxPool1d -> AvgPool1d -> AdaptiveAvgPool1d stack built from one seed:
    its output, the input gradient and the parameters' gradients."""
    monkeypatch.setenv("NUMBANET_BACKEND", backend)
    nn.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), nn.BatchNorm1d(4), nn.ReLU(), nn.MaxPool1d(2),
                          nn.AvgPool1d(2, 1, 1), nn.AdaptiveAvgPool1d(3))
    leaf = nn.Tensor(x.copy(), requires_grad=True)
    out = model(leaf)
    (out * nn.Tensor(random_array(out.shape, seed=6))).sum().backward()
    return [out.numpy(), leaf.grad.numpy()] + [p.grad.numpy() for p in model.parameters()]


def test_layers_on_cuda_kernels_match_cpu(monkeypatch):
    x = random_array((2, 2, 9), seed=5)
    expected = _layers_run(monkeypatch, "cpu", x)
    for i, (got, want) in enumerate(zip(_layers_run(monkeypatch, "auto", x), expected, strict=True)):
        assert_close(got, want, np.float32, name=f"result {i}", **TOLERANCE)


def test_conv1d_gradients_are_written_straight_into_the_flat_buffer(monkeypatch):
    """Conv1d's 3-D weight is viewed as the 2-D op's 4-D weight inside its Function (not through a reshape before
    it), so with flat=True its weight and bias gradients arrive as their views of the flat buffer, no copy; the
    weights equal those of an SGD stepping parameter by parameter on the CPU."""
    from tests.simulator.test_optim_sim import _flat_gradient_arrivals
    x = nn.Tensor(random_array((2, 4, 7), seed=8))
    arrivals, flat, reference = _flat_gradient_arrivals(
        monkeypatch, lambda: [nn.Sequential(nn.Conv1d(4, 4, 3, padding=1, groups=2), nn.ReLU(),
                                            nn.Conv1d(4, 2, 2, stride=2, dilation=2))],
        lambda model: (model(x) ** 2).sum())
    assert arrivals == [True] * 4
    for p, q in zip(flat, reference):
        assert_close(p.data, q.data, np.float32)
