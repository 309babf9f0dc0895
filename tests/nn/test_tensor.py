"""Tensor arithmetic and autograd against PyTorch (float64 on the CPU)."""
import numpy as np
import pytest

import nn
from tests.oracle import assert_close, random_array, torch_module


def _both(*shapes, seed=0):
    torch = torch_module()
    arrays = [random_array(s, np.float64, seed=seed + i, low=0.5, high=1.5) for i, s in enumerate(shapes)]
    ours = [nn.Tensor(a.copy(), requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    return ours, theirs


EXPRESSIONS = {
    "add_broadcast": (lambda a, b: (a + b * 2.0).sum(), [(3, 4), (4,)]),
    "sub_div": (lambda a, b: ((a - b) / (b + 1.0)).sum(), [(2, 3), (2, 3)]),
    "rsub_rdiv": (lambda a, b: ((1.0 - a) * (2.0 / b)).mean(), [(5,), (5,)]),
    "pow_exp_log": (lambda a, b: ((a ** 3).exp().log() * b).sum(), [(2, 2), (2, 2)]),
    "reshape_permute": (lambda a, b: (a.reshape(2, 3, 2).permute(2, 0, 1) * b).sum(), [(3, 4), (2, 2, 3)]),
    "transpose_sum_dim": (lambda a, b: (a.transpose(0, 1).sum(1) * b).sum(), [(3, 4), (4,)]),
    "index_slices": (lambda a, b: (a[1:, ::2] * b).sum(), [(3, 4), (2, 2)]),
    "max_dim": (lambda a, b: (a.max(1)[0] * b + a.max(0, keepdim=True).values.sum()).sum(), [(3, 5), (3,)]),
    "mean_keepdim": (lambda a, b: (a.mean(0, keepdim=True) * b).sum(), [(3, 4), (1, 4)]),
    "reuse": (lambda a, b: (a * a + a * b).sum(), [(4,), (4,)]),
}


@pytest.mark.parametrize("name", EXPRESSIONS)
def test_expression_matches_torch(name):
    fn, shapes = EXPRESSIONS[name]
    ours, theirs = _both(*shapes)
    out, ref = fn(*ours), fn(*theirs)
    out.backward()
    ref.backward()
    assert_close(out.data, ref.detach().numpy(), np.float64)
    for mine, torch_tensor in zip(ours, theirs):
        assert_close(mine.grad.data, torch_tensor.grad.numpy(), np.float64)


def test_cat_stack_and_integer_index():
    torch = torch_module()
    ours, theirs = _both((2, 3), (4, 3))
    index = np.array([0, 2, 2, 5])
    out = (nn.cat(ours, 0)[index] * nn.stack([ours[0][0], ours[1][1]], 1).sum()).sum()
    ref = (torch.cat(theirs, 0)[torch.tensor(index)] * torch.stack([theirs[0][0], theirs[1][1]], 1).sum()).sum()
    out.backward()
    ref.backward()
    for mine, torch_tensor in zip(ours, theirs):
        assert_close(mine.grad.data, torch_tensor.grad.numpy(), np.float64)


def test_no_grad_records_nothing_and_second_backward_fails():
    x = nn.Tensor(np.ones(3), requires_grad=True)
    with nn.no_grad():
        y = (x * 2.0).sum()
    assert not y.requires_grad
    z = (x * x).sum()
    z.backward()
    with pytest.raises(RuntimeError, match="second time"):
        z.backward()
    w = (x * x).sum()
    w.backward(retain_graph=True)
    w.backward()
    assert_close(x.grad.data, np.full(3, 2.0 + 4.0), np.float64)


def test_backward_needs_grad_for_non_scalar():
    x = nn.Tensor(np.ones(3), requires_grad=True)
    with pytest.raises(RuntimeError, match="grad must be given"):
        (x * 2.0).backward()
