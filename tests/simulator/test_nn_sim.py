"""The nn package on the CUDA kernels, in the simulator: a tiny conv-bn-relu-pool-linear network's
loss, gradients, Adam steps and eval-mode forward against its PyTorch twin (float32); SGD steps; max-pool
gradients (one gather launch) and cross-entropy's target checks through nn."""
import numpy as np
import pytest

import nn
from tests.oracle import assert_close, random_array, torch_module

TOLERANCE = dict(rtol=2e-4, atol=2e-5)


def _net(lib):
    # no conv bias before the batch norm: its gradient is rounding noise, which Adam's step magnifies
    return lib.Sequential(lib.Conv2d(1, 2, 3, padding=1, bias=False), lib.BatchNorm2d(2), lib.ReLU(), lib.MaxPool2d(2),
                          lib.Flatten(), lib.Linear(8, 3))


def _twins():
    torch = torch_module()
    torch.manual_seed(0)
    theirs = _net(torch.nn)
    ours = _net(nn)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def _compare_grads(ours, theirs):
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters()):
        assert_close(p.grad.data, q.grad.numpy(), **TOLERANCE, name=f"grad of {name}")


def test_tiny_convnet_training_steps_match_torch():
    torch = torch_module()
    ours, theirs = _twins()
    ours_opt = nn.optim.Adam(ours.parameters(), lr=0.01, amsgrad=True)
    theirs_opt = torch.optim.Adam(theirs.parameters(), lr=0.01, amsgrad=True)
    target = np.array([0, 2])
    for step in range(2):
        x = random_array((2, 1, 4, 4), seed=step)
        loss = nn.CrossEntropyLoss()(ours(nn.Tensor(x)), target)
        expected = torch.nn.CrossEntropyLoss()(theirs(torch.tensor(x)), torch.tensor(target))
        assert_close(loss.data, expected.detach().numpy(), **TOLERANCE, name="loss")
        ours_opt.zero_grad()
        theirs_opt.zero_grad()
        loss.backward()
        expected.backward()
        _compare_grads(ours, theirs)
        ours_opt.step()
        theirs_opt.step()
    for key, value in theirs.state_dict().items():
        assert_close(ours.state_dict()[key].astype(np.float32), value.numpy().astype(np.float32), **TOLERANCE,
                     name=key)
    ours.eval()
    theirs.eval()
    x = random_array((2, 1, 4, 4), seed=9)
    assert_close(ours(nn.Tensor(x)).data, theirs(torch.tensor(x)).detach().numpy(), **TOLERANCE, name="eval output")


def test_functional_heads_match_torch():
    """The ops the tiny network does not use: matmul forms, activations, softmax, pooling variants, MSE."""
    torch = torch_module()
    a, b, c = random_array((2, 3, 4), seed=1), random_array((4, 5), seed=2), random_array((1, 2, 5, 4), seed=3)
    ta, tb, tc = (torch.tensor(v, requires_grad=True) for v in (a, b, c))
    xa, xb, xc = (nn.Tensor(v, requires_grad=True) for v in (a, b, c))
    F, TF = nn.functional, torch.nn.functional

    def ours_fn():
        h = F.log_softmax(F.tanh(xa @ xb), -1).sum() + F.sigmoid(F.leaky_relu(xa, 0.1)).sum()
        pooled = F.avg_pool2d(xc, 2, 1, count_include_pad=False) .sum() + F.adaptive_avg_pool2d(xc, (2, 3)).sum()
        return h + pooled + F.mse_loss(F.softmax(xb, 0), nn.Tensor(np.full((4, 5), 0.2, np.float32)))

    def theirs_fn():
        h = TF.log_softmax(torch.tanh(ta @ tb), -1).sum() + torch.sigmoid(TF.leaky_relu(ta, 0.1)).sum()
        pooled = TF.avg_pool2d(tc, 2, 1, count_include_pad=False).sum() + TF.adaptive_avg_pool2d(tc, (2, 3)).sum()
        return h + pooled + TF.mse_loss(TF.softmax(tb, 0), torch.full((4, 5), 0.2))

    out, expected = ours_fn(), theirs_fn()
    assert_close(out.data, expected.detach().numpy(), **TOLERANCE, name="value")
    out.backward()
    expected.backward()
    for mine, reference in zip((xa, xb, xc), (ta, tb, tc)):
        assert_close(mine.grad.data, reference.grad.numpy(), **TOLERANCE, name="grad")


def test_sgd_steps_match_torch():
    torch = torch_module()
    ours = [nn.Parameter(random_array((5, 7), seed=1)), nn.Parameter(random_array((3,), seed=2))]
    theirs = [torch.tensor(p.data.copy(), requires_grad=True) for p in ours]
    ours_opt = nn.optim.SGD(ours, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)
    theirs_opt = torch.optim.SGD(theirs, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)
    for step in range(3):
        for i, (p, q) in enumerate(zip(ours, theirs)):
            grad = random_array(p.shape, seed=10 * step + i)
            p.grad, q.grad = nn.Tensor(grad), torch.tensor(grad)
        ours_opt.step()
        theirs_opt.step()
    for p, q in zip(ours, theirs):
        assert_close(p.data, q.detach().numpy(), **TOLERANCE, name="parameter")


def test_max_pool2d_gradient_with_overlapping_dilated_windows_matches_torch():
    # nn's backward hands the kernels the window geometry, so the CUDA path gathers (one launch, no atomics):
    # overlapping windows, dilation and ceil_mode must still route each gradient to its window's maximum
    torch = torch_module()
    x = random_array((1, 2, 7, 9), seed=5)
    grad_out_shape = torch.nn.functional.max_pool2d(torch.tensor(x), 3, 2, 1, (2, 1), ceil_mode=True).shape
    grad_out = random_array(tuple(grad_out_shape), seed=6)
    ours = nn.Tensor(x, requires_grad=True)
    (nn.functional.max_pool2d(ours, 3, 2, 1, (2, 1), ceil_mode=True) * nn.Tensor(grad_out)).sum().backward()
    theirs = torch.tensor(x, requires_grad=True)
    (torch.nn.functional.max_pool2d(theirs, 3, 2, 1, (2, 1), ceil_mode=True) * torch.tensor(grad_out)).sum().backward()
    assert_close(ours.grad.data, theirs.grad.numpy(), **TOLERANCE)
    # and the backward is that one gather launch, not a zero fill and an atomic scatter
    from kernels.cuda import compile_ahead
    pooled = nn.functional.max_pool2d(nn.Tensor(x, requires_grad=True), 3, 2, 1, (2, 1), ceil_mode=True)
    with compile_ahead.recording() as records:
        pooled.backward(nn.Tensor(grad_out))
    assert [(getattr(kernel, "py_func", None) or kernel.fn).__name__ for kernel, _ in records] == \
        ["max_pool2d_backward_kernel"]


def test_cross_entropy_backward_checks_targets_a_captured_forward_could_not(monkeypatch):
    from kernels import backend
    logits = nn.Tensor(random_array((4, 3), seed=7), requires_grad=True)
    target = np.array([0, 3, 1, 2])   # 3: not a class
    monkeypatch.setattr(backend, "is_capturing", lambda: True)    # a forward recorded into a CUDA graph
    loss = nn.functional.cross_entropy(logits, target)
    monkeypatch.setattr(backend, "is_capturing", lambda: False)
    with pytest.raises(ValueError, match="cross_entropy_backward: target holds a class index outside"):
        loss.backward()
