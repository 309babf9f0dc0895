"""use_deterministic_algorithms on a real GPU: the forms it selects give the same bits every run where the
default forms' float atomics need not, and they agree with the CPU path. Needs a GPU (skipped elsewhere).

The default forms' own run-to-run spread is why the GPU tests that compare captured and eager training run
under the switch (test_capture_gpu.py): on an H100 (nineteenth session) two eager CNN trainings with the atomic
weight gradient drifted apart by up to 27% of a conv weight, and with one split a tile they were bit-identical."""
import numpy as np
import pytest

import kernels
import nn
from kernels.cpu import conv as cpu_conv
from kernels.cpu import embedding as cpu_embedding
from kernels.cuda import conv as cuda_conv
from tests.gpu.test_capture_gpu import CASES, make_training
from tests.oracle import assert_close, random_array

RUNS = 5


def test_conv_weight_gradient_is_the_same_every_run_and_matches_cpu(deterministic):
    import cupy
    x = random_array((16, 16, 24, 60), seed=1)
    grad_out = random_array((16, 32, 24, 60), seed=2)
    weight_shape = (32, 16, 3, 3)
    assert cuda_conv.backward_weight_algorithm(x.shape, weight_shape, (24, 60), (1, 1), (1, 1), 1) == "implicit"
    config, grid = cuda_conv._weight_launch(weight_shape, 1)
    assert cuda_conv.weight_gradient_splits(grid[0] * grid[1], -(-16 * 24 * 60 // config.block_k)) > 1
    runs = [kernels.conv2d_backward_weight(cupy.asarray(grad_out), cupy.asarray(x), weight_shape, padding=1).get()
            for _ in range(RUNS)]
    for run in runs[1:]:
        np.testing.assert_array_equal(run, runs[0])
    expected = cpu_conv.conv2d_backward_weight(grad_out.astype(np.float64), x.astype(np.float64), weight_shape,
                                               (1, 1), (1, 1, 1, 1), (1, 1), 1)
    assert_close(runs[0], expected, np.float32)


@pytest.mark.parametrize("scale_grad_by_freq", [False, True])
def test_embedding_backward_is_the_same_every_run_and_matches_cpu(deterministic, scale_grad_by_freq):
    import cupy
    rng = np.random.default_rng(3)
    tokens = rng.integers(0, 5000, size=(64, 50))
    tokens[rng.random(tokens.shape) < 0.3] = 1      # a hot token: thousands of rows summed into one
    grad_output = random_array((64, 50, 128), seed=4)
    runs = [kernels.embedding_backward(cupy.asarray(grad_output), cupy.asarray(tokens), 5000, padding_idx=0,
                                       scale_grad_by_freq=scale_grad_by_freq).get() for _ in range(RUNS)]
    for run in runs[1:]:
        np.testing.assert_array_equal(run, runs[0])
    expected = cpu_embedding.embedding_backward(grad_output.astype(np.float64), tokens, 5000, 0, scale_grad_by_freq)
    assert_close(runs[0], expected, np.float32)


def test_two_cnn_trainings_are_bit_identical(deterministic):
    """The user's promise: the same seed and batches give the same weights, run after run (eager steps)."""
    import cupy
    build, shape, optimizer_name, options = CASES["cnn-sgd-momentum"]
    trainings = [make_training(build, optimizer_name, options) for _ in range(2)]
    rng = np.random.default_rng(5)
    for _ in range(12):
        inputs = nn.Tensor(cupy.asarray(rng.random(shape, dtype=np.float32)))
        targets = cupy.asarray(rng.integers(0, 10, size=shape[0]))
        for _, _, scheduler, step in trainings:
            step(inputs, targets)
            scheduler.step()
    (first, *_), (second, *_) = trainings
    for (key, p), (_, q) in zip(first.named_parameters(), second.named_parameters()):
        np.testing.assert_array_equal(q.data.get(), p.data.get(), err_msg=key)


def test_integer_array_indexing_backward_is_refused(deterministic):
    import cupy
    leaf = nn.Tensor(cupy.asarray(random_array((5, 3), seed=6)), requires_grad=True)
    loss = leaf[cupy.asarray([0, 0, 3])].sum()
    with pytest.raises(RuntimeError, match="scatter_add .* does not have a deterministic implementation"):
        loss.backward()
    mask = leaf.data > 0.5                          # a mask's backward stores: allowed
    leaf.grad = None
    leaf[mask].sum().backward()
    np.testing.assert_array_equal(leaf.grad.data.get(), mask.get().astype(np.float32))
