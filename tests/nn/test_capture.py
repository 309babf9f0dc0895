"""nn.capture on the CPU: the wrapped step runs eagerly and gives exactly the eager results.
(The CUDA-graph path is checked against eager steps in tests/gpu/test_models_gpu.py.)"""
import numpy as np
import pytest

import nn
from nn import models
from tests.oracle import random_array


def make_training(seed):
    nn.manual_seed(seed)
    model = models.CNN(channels=(4, 8), hidden=16)
    optimizer = nn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def step(images, labels):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        return loss

    return model, step


def test_cpu_capture_runs_the_step_eagerly_with_identical_results():
    eager_model, eager_step = make_training(0)
    captured_model, step = make_training(0)
    captured = nn.capture(step)
    rng = np.random.default_rng(1)
    for i in range(4):
        images = nn.Tensor(random_array((5, 1, 8, 8), seed=i, low=0.0))
        labels = rng.integers(0, 10, size=5)
        a = eager_step(images, labels)
        b = captured(images, labels)
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not captured.captured  # nothing to capture without a GPU
    for (name, p), (_, q) in zip(eager_model.named_parameters(), captured_model.named_parameters()):
        np.testing.assert_array_equal(p.numpy(), q.numpy(), err_msg=name)


def test_capture_argument_checks():
    with pytest.raises(TypeError, match="capture: step_fn must be callable"):
        nn.capture(3)
    with pytest.raises(ValueError, match="capture: warmup must be a positive integer"):
        nn.capture(lambda: None, warmup=0)
