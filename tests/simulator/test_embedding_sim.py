"""CUDA embedding kernels in the simulator against the CPU path: tiny sizes, indices repeated so that several
threads add into one gradient row (the atomics), int32 and int64 indices, the padding row, the counts; the
backward both in its atomic form and in the sorted form of use_deterministic_algorithms."""
import numpy as np
import pytest

import kernels
from kernels.cpu import embedding as cpu
from kernels.cuda import embedding as gpu
from tests.oracle import assert_close, random_array


@pytest.fixture(params=[False, True], ids=["atomic", "deterministic"])
def backward_form(request, monkeypatch):
    """The backward's atomic form, or its sorted form under use_deterministic_algorithms (where the atomic
    kernels must not run)."""
    if request.param:
        def refused(*args):
            raise AssertionError("an atomic embedding kernel ran under use_deterministic_algorithms")
        monkeypatch.setattr(gpu, "backward_kernel", refused)
        monkeypatch.setattr(gpu, "count_kernel", refused)
    with kernels.backend.deterministic_algorithms(request.param):
        yield request.param


def _indices(shape, num_embeddings, dtype, seed):
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, num_embeddings, size=shape).astype(dtype)
    indices.reshape(-1)[:4] = 3          # one row looked up four times
    return indices


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_embedding_kernel_matches_cpu(index_dtype):
    weight = random_array((9, 7), seed=1)
    indices = _indices((3, 5), 9, index_dtype, seed=2)
    out = kernels.embedding(weight, indices)
    assert out.shape == (3, 5, 7) and out.dtype == np.float32
    np.testing.assert_array_equal(out, cpu.embedding(weight, indices))


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("padding_idx,scale_grad_by_freq", [(None, False), (3, False), (None, True), (-2, True)])
def test_embedding_backward_kernels_match_cpu(index_dtype, padding_idx, scale_grad_by_freq, backward_form):
    indices = _indices((4, 6), 9, index_dtype, seed=3)
    indices[1, 2:4] = 7                  # 7 is the padding row for padding_idx=-2
    grad_output = random_array((4, 6, 5), seed=4)
    grad_weight = kernels.embedding_backward(grad_output, indices, 9, padding_idx=padding_idx,
                                             scale_grad_by_freq=scale_grad_by_freq)
    padding = -1 if padding_idx is None else padding_idx % 9
    expected = cpu.embedding_backward(grad_output.astype(np.float64), indices, 9, padding, scale_grad_by_freq)
    assert grad_weight.dtype == np.float32
    assert_close(grad_weight, expected, np.float32)
    if padding_idx is not None:
        assert not grad_weight[padding].any()
    out = np.full((9, 5), np.nan, np.float32)   # grad_weight_out: zeroed, then added into by the kernel
    assert kernels.embedding_backward(grad_output, indices, 9, padding_idx=padding_idx,
                                      scale_grad_by_freq=scale_grad_by_freq, grad_weight_out=out) is out
    assert_close(out, expected, np.float32)


def test_embedding_kernels_non_contiguous_and_empty(backward_form):
    weight = random_array((5, 6), seed=5).T                      # (6, 5), non-contiguous
    indices = _indices((4, 3), 6, np.int64, seed=6).T            # (3, 4), non-contiguous
    np.testing.assert_array_equal(kernels.embedding(weight, indices), cpu.embedding(weight, indices))
    grad_output = random_array((4, 5, 3), seed=7).transpose(2, 0, 1)   # (3, 4, 5)
    assert_close(kernels.embedding_backward(grad_output, indices, 6),
                 cpu.embedding_backward(grad_output.astype(np.float64), indices, 6, -1, False), np.float32)
    empty = np.zeros((0, 2), np.int64)
    assert kernels.embedding(weight, empty).shape == (0, 2, 5)
    grad_weight = kernels.embedding_backward(np.zeros((0, 2, 5), np.float32), empty, 6, scale_grad_by_freq=True)
    assert grad_weight.shape == (6, 5) and not grad_weight.any()
    zero_width = np.zeros((4, 0), np.float32)            # no thread runs: the index check is made on the host
    assert kernels.embedding(zero_width, np.array([3, 0])).shape == (2, 0)
    with pytest.raises(IndexError, match="embedding: indices hold a value outside"):
        kernels.embedding(zero_width, np.array([4, 0]))
    with pytest.raises(IndexError, match="embedding_backward: indices hold a value outside"):
        kernels.embedding_backward(np.zeros((2, 0), np.float32), np.array([-1, 0]), 4)


def test_embedding_kernels_flag_out_of_range_indices(backward_form):
    weight = random_array((4, 3), seed=8)
    for bad in (4, -1):
        indices = np.array([[0, bad], [2, 1]], np.int32)
        with pytest.raises(IndexError, match=r"embedding: indices hold a value outside \[0, 4\)"):
            kernels.embedding(weight, indices)
        grad_output = random_array((2, 2, 3), seed=9)
        with pytest.raises(IndexError, match=r"embedding_backward: indices hold a value outside \[0, 4\)"):
            kernels.embedding_backward(grad_output, indices, 4, scale_grad_by_freq=True)
        # unchecked (a forward checked them): the bad index adds nothing, the others are summed as usual
        grad_weight = kernels.embedding_backward(grad_output, indices, 4, check_indices=False)
        good = np.array([[0, 0], [2, 1]], np.int64)
        mask = np.array([[1, 0], [1, 1]], np.float32)[..., None]
        assert_close(grad_weight, cpu.embedding_backward((grad_output * mask).astype(np.float64), good, 4, -1, False),
                     np.float32)


def test_embedding_rejects_float64_on_cuda():
    with pytest.raises(TypeError, match="embedding: weight must be float32 on cuda, got float64"):
        kernels.embedding(random_array((3, 2), np.float64), np.array([0, 1]))


def test_embedding_layer_runs_the_kernels():
    """nn.Embedding's forward and weight gradient through the CUDA kernels (max_norm renormalises first)."""
    import nn
    nn.manual_seed(0)
    layer = nn.Embedding(8, 4, padding_idx=1, max_norm=1.5, scale_grad_by_freq=True)
    weight = layer.weight.data.copy().astype(np.float64)
    indices = np.array([[1, 5, 5], [2, 1, 7]], np.int64)
    grad_output = random_array((2, 3, 4), seed=10)
    out = layer(indices)
    out.backward(grad_output)
    for row in np.unique(indices):       # the renormalisation of the rows looked up, in float64
        norm = np.linalg.norm(weight[row])
        if norm > 1.5:
            weight[row] *= 1.5 / (norm + 1e-7)
    assert_close(layer.weight.data, weight, np.float32)
    assert_close(out.data, weight[indices], np.float32)
    assert_close(layer.weight.grad.data, cpu.embedding_backward(grad_output.astype(np.float64), indices, 8, 1, True),
                 np.float32)
