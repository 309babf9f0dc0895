"""Embedding lookup and its weight gradient on the CPU path against torch.nn.functional.embedding (float64)."""
import numpy as np
import pytest

import kernels
from tests.oracle import assert_close, finite_difference_gradient, random_array, torch_reference


def _indices(shape, num_embeddings, dtype=np.int64, seed=0):
    """Random indices with repeats (fewer rows than lookups) that use row 0 and the last row."""
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, num_embeddings, size=shape).astype(dtype)
    flat = indices.reshape(-1)
    if flat.size >= 2:
        flat[0], flat[-1] = 0, num_embeddings - 1
    return indices


def _torch_embedding(**options):
    def run(weight, indices):
        import torch
        return torch.nn.functional.embedding(indices, weight, **options)
    return run


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("index_shape", [(7,), (3, 5), (2, 3, 4), ()])
def test_embedding_matches_torch(index_shape, index_dtype, dtype):
    weight = random_array((13, 7), dtype, seed=1)
    indices = _indices(index_shape, 13, index_dtype, seed=2)
    grad_output = random_array(index_shape + (7,), dtype, seed=3)
    expected, (expected_grad,) = torch_reference(_torch_embedding(), weight, indices, grad_output=grad_output,
                                                 grad_of=[0])
    out = kernels.embedding(weight, indices)
    assert out.dtype == dtype and out.shape == index_shape + (7,)
    np.testing.assert_array_equal(out, expected.astype(dtype))   # a copy of rows: exact
    assert_close(kernels.embedding_backward(grad_output, indices, 13), expected_grad, dtype)


@pytest.mark.parametrize("padding_idx", [0, 4, -1, -13])
@pytest.mark.parametrize("scale_grad_by_freq", [False, True])
def test_embedding_backward_padding_and_frequency_match_torch(padding_idx, scale_grad_by_freq):
    weight = random_array((13, 5), np.float64, seed=4)
    indices = _indices((6, 9), 13, seed=5)
    indices[1, :4] = 4            # repeated rows, one of them a padding row in some cases
    indices[2, 3] = 13 + padding_idx if padding_idx < 0 else padding_idx
    grad_output = random_array((6, 9, 5), np.float64, seed=6)
    options = dict(padding_idx=padding_idx, scale_grad_by_freq=scale_grad_by_freq)
    expected, (expected_grad,) = torch_reference(_torch_embedding(**options), weight, indices,
                                                 grad_output=grad_output, grad_of=[0])
    assert_close(kernels.embedding(weight, indices, padding_idx=padding_idx), expected, np.float64)
    grad_weight = kernels.embedding_backward(grad_output, indices, 13, **options)
    assert_close(grad_weight, expected_grad, np.float64)
    assert not grad_weight[padding_idx].any()


def test_embedding_backward_repeats_and_missing_rows():
    """One row looked up many times sums all its gradients; rows never looked up get zero."""
    grad_output = random_array((50, 3), np.float64, seed=7)
    indices = np.full(50, 2, np.int64)
    indices[::7] = 5
    grad_weight = kernels.embedding_backward(grad_output, indices, 8)
    assert_close(grad_weight[2], grad_output[indices == 2].sum(0), np.float64)
    assert_close(grad_weight[5], grad_output[indices == 5].sum(0), np.float64)
    assert not np.delete(grad_weight, [2, 5], axis=0).any()
    scaled = kernels.embedding_backward(grad_output, indices, 8, scale_grad_by_freq=True)
    assert_close(scaled[2], grad_output[indices == 2].mean(0), np.float64)


def test_embedding_gradient_by_finite_differences():
    weight = random_array((6, 4), np.float64, seed=8)
    indices = np.array([[1, 3, 1], [5, 1, 0]], np.int64)
    weights = random_array((2, 3, 4), np.float64, seed=9)
    numeric = finite_difference_gradient(lambda: float((kernels.embedding(weight, indices) * weights).sum()), weight)
    assert_close(kernels.embedding_backward(weights, indices, 6), numeric, rtol=1e-6, atol=1e-8)


def test_embedding_non_contiguous_inputs():
    weight = random_array((7, 11), np.float64, seed=10).T          # (11, 7), Fortran order
    indices = _indices((5, 8), 11, seed=11).T                        # (8, 5), non-contiguous
    grad_output = random_array((5, 7, 8), np.float64, seed=12).transpose(2, 0, 1)   # (8, 5, 7)
    expected, (expected_grad,) = torch_reference(_torch_embedding(scale_grad_by_freq=True), weight, indices,
                                                 grad_output=grad_output, grad_of=[0])
    assert_close(kernels.embedding(weight, indices), expected, np.float64)
    assert_close(kernels.embedding_backward(grad_output, indices, 11, scale_grad_by_freq=True), expected_grad,
                 np.float64)


def test_embedding_empty_indices():
    weight = random_array((4, 3), np.float64, seed=13)
    indices = np.zeros((2, 0), np.int64)
    assert kernels.embedding(weight, indices).shape == (2, 0, 3)
    grad_weight = kernels.embedding_backward(np.zeros((2, 0, 3)), indices, 4, padding_idx=1, scale_grad_by_freq=True)
    assert grad_weight.shape == (4, 3) and not grad_weight.any()


def test_embedding_of_zero_width_rows():
    """embedding_dim 0: empty rows, and the index check still applies."""
    weight = np.zeros((4, 0))
    indices = np.array([[3, 0], [1, 1]], np.int64)
    assert kernels.embedding(weight, indices).shape == (2, 2, 0)
    assert kernels.embedding_backward(np.zeros((2, 2, 0)), indices, 4).shape == (4, 0)
    with pytest.raises(IndexError, match="embedding: indices hold a value outside"):
        kernels.embedding(weight, indices + 1)
    with pytest.raises(IndexError, match="embedding_backward: indices hold a value outside"):
        kernels.embedding_backward(np.zeros((2, 2, 0)), indices - 1, 4)


def test_embedding_rejects_bad_input():
    weight = random_array((5, 3), seed=14)
    indices = np.array([0, 4, 2], np.int64)
    with pytest.raises(TypeError, match="embedding: indices must be int32 or int64, got float32"):
        kernels.embedding(weight, indices.astype(np.float32))
    for dtype in (np.uint8, np.int16, np.bool_):
        with pytest.raises(TypeError, match="embedding: indices must be int32 or int64"):
            kernels.embedding(weight, indices.astype(dtype))
    with pytest.raises(IndexError, match=r"embedding: indices hold a value outside \[0, 5\)"):
        kernels.embedding(weight, np.array([0, 5], np.int64))
    with pytest.raises(IndexError, match="embedding: .*negative indices are not allowed"):
        kernels.embedding(weight, np.array([[1, -1]], np.int32))
    with pytest.raises(ValueError, match=r"embedding: weight must be 2-D, got shape \(15,\)"):
        kernels.embedding(weight.reshape(-1), indices)
    with pytest.raises(ValueError, match=r"embedding: weight must be 2-D, got shape \(1, 5, 3\)"):
        kernels.embedding(weight[None], indices)
    with pytest.raises(TypeError, match="embedding: weight must be float32 or float64"):
        kernels.embedding(weight.astype(np.int64), indices)
    with pytest.raises(ValueError, match=r"embedding: padding_idx must be within \[-5, 5\)"):
        kernels.embedding(weight, indices, padding_idx=5)
    with pytest.raises(TypeError, match="embedding: expected NumPy or CuPy arrays"):
        kernels.embedding(weight, [0, 1])
    grad_output = random_array((3, 3), seed=15)
    with pytest.raises(ValueError, match=r"embedding_backward: grad_output must have shape indices.shape \+ "
                                         r"\(embedding_dim,\) = \(3, embedding_dim\), got \(2, 3\)"):
        kernels.embedding_backward(grad_output[:2], indices, 5)
    with pytest.raises(ValueError, match="embedding_backward: grad_output must have shape"):
        kernels.embedding_backward(grad_output.reshape(-1), indices, 5)
    with pytest.raises(IndexError, match=r"embedding_backward: indices hold a value outside \[0, 4\)"):
        kernels.embedding_backward(grad_output, indices, 4)
    with pytest.raises(IndexError, match="embedding_backward: .*negative"):
        kernels.embedding_backward(grad_output, -indices, 5)
    with pytest.raises(TypeError, match="embedding_backward: indices must be int32 or int64"):
        kernels.embedding_backward(grad_output, indices.astype(np.float64), 5)
    with pytest.raises(ValueError, match="embedding_backward: num_embeddings must be a non-negative integer"):
        kernels.embedding_backward(grad_output, indices, 5.0)
    with pytest.raises(ValueError, match=r"embedding_backward: padding_idx must be within \[-5, 5\)"):
        kernels.embedding_backward(grad_output, indices, 5, padding_idx=-6)


def test_longlong_indices_count_as_int64():
    """NumPy's longlong ('q') is a type of its own next to int64 ('l') on Linux; torch's Long covers both."""
    weight = random_array((7, 3), np.float32, seed=1)
    indices = np.array([[0, 6], [3, 3]], dtype=np.longlong)
    np.testing.assert_array_equal(kernels.embedding(weight, indices), weight[indices.astype(np.int64)])
    grad = kernels.embedding_backward(random_array((2, 2, 3), np.float32, seed=2), indices, 7)
    assert grad.shape == (7, 3)


def test_embedding_backward_into_a_given_array():
    indices = np.array([[1, 4, 1], [0, 4, 4]])
    grad_output = random_array((2, 3, 5), np.float64, seed=90)
    expected = kernels.embedding_backward(grad_output, indices, 6, padding_idx=0)
    out = np.full((6, 5), np.nan)
    assert kernels.embedding_backward(grad_output, indices, 6, padding_idx=0, grad_weight_out=out) is out
    np.testing.assert_array_equal(out, expected)
    with pytest.raises(ValueError, match=r"embedding_backward: grad_weight_out must be \(6, 5\) float64, got \(5, 5\)"):
        kernels.embedding_backward(grad_output, indices, 6, grad_weight_out=np.zeros((5, 5)))
