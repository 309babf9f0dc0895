"""cross_entropy's torch 2.13 forms through nn on the CUDA kernels, in the simulator (float32, tiny shapes):
class-probability targets (log_softmax, multiply and sum kernels) and unbatched class indices."""
import numpy as np

import nn
from tests.oracle import assert_close, random_array, torch_module

TOLERANCE = dict(rtol=2e-4, atol=2e-5)


def test_cross_entropy_with_class_probabilities_matches_torch():
    torch = torch_module()
    logits = random_array((2, 3, 2), seed=1, low=-3, high=3)
    target = random_array((2, 3, 2), seed=2, low=0.1, high=1.0)
    target /= target.sum(axis=1, keepdims=True)
    weight = np.array([0.5, 2.0, 1.0], np.float32)
    x = nn.Tensor(logits.copy(), requires_grad=True)
    loss = nn.CrossEntropyLoss(weight=weight, label_smoothing=0.3)(x, target)
    loss.backward()
    x_t = torch.tensor(logits, requires_grad=True)
    loss_t = torch.nn.CrossEntropyLoss(weight=torch.tensor(weight), label_smoothing=0.3)(x_t, torch.tensor(target))
    loss_t.backward()
    assert_close(loss.data, loss_t.detach().numpy(), **TOLERANCE, name="loss")
    assert_close(x.grad.data, x_t.grad.numpy(), **TOLERANCE, name="grad of logits")


def test_cross_entropy_unbatched_class_index_matches_torch():
    torch = torch_module()
    logits = random_array((4,), seed=3, low=-3, high=3)
    x = nn.Tensor(logits.copy(), requires_grad=True)
    loss = nn.functional.cross_entropy(x, np.array(2), reduction="none")
    loss.backward()
    x_t = torch.tensor(logits, requires_grad=True)
    loss_t = torch.nn.functional.cross_entropy(x_t, torch.tensor(2), reduction="none")
    loss_t.backward()
    assert loss.shape == ()
    assert_close(loss.data, loss_t.detach().numpy(), **TOLERANCE, name="loss")
    assert_close(x.grad.data, x_t.grad.numpy(), **TOLERANCE, name="grad of logits")
