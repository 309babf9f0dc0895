"""Module registration and state dicts, checked against the same structure in PyTorch."""
import numpy as np
import pytest

import nn
from tests.oracle import torch_module


class Affine(nn.Module):
    def __init__(self, n_in, n_out, bias=True):
        super().__init__()
        self.weight = nn.Parameter(np.random.default_rng(0).standard_normal((n_out, n_in)).astype(np.float32))
        if bias:
            self.bias = nn.Parameter(np.ones(n_out, np.float32))
        else:
            self.register_parameter("bias", None)
        self.register_buffer("count", np.zeros(1, np.float32))

    def forward(self, x):
        out = (x.unsqueeze(1) * self.weight).sum(2)  # elementwise on purpose: tests Module, not matmul
        return out + self.bias if self.bias is not None else out


def test_state_dict_keys_match_pytorch_naming():
    torch = torch_module()
    ours = nn.Sequential(Affine(3, 4), Affine(4, 2, bias=False))
    theirs = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2, bias=False))
    ours_keys = [k for k in ours.state_dict() if not k.endswith("count")]
    assert ours_keys == list(theirs.state_dict().keys())
    assert [name for name, _ in ours.named_parameters()] == [name for name, _ in theirs.named_parameters()]
    ours.load_state_dict({**theirs.state_dict(), "0.count": np.ones(1), "1.count": np.ones(1)})
    np.testing.assert_array_equal(ours[0].weight.data, theirs[0].weight.detach().numpy())
    assert ours[0].count[0] == 1


def test_load_state_dict_strict_errors_and_atomicity():
    model = nn.Sequential(Affine(3, 4))
    good = model.state_dict()
    before = model[0].weight.data.copy()
    with pytest.raises(KeyError, match="missing keys"):
        model.load_state_dict({"0.weight": good["0.weight"] * 2})
    with pytest.raises(KeyError, match="unexpected keys"):
        model.load_state_dict({**good, "extra": np.zeros(1)})
    with pytest.raises(ValueError, match=r"0.weight: expected \(4, 3\), got \(3, 4\)"):
        model.load_state_dict({**good, "0.weight": good["0.weight"].T})
    np.testing.assert_array_equal(model[0].weight.data, before)
    result = model.load_state_dict({"0.weight": good["0.weight"] * 2}, strict=False)
    assert result["missing_keys"] == ["0.bias", "0.count"]


def test_train_eval_zero_grad_and_buffers():
    model = nn.Sequential(Affine(3, 4), Affine(4, 1))
    model.eval()
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())
    out = model(nn.Tensor(np.ones((2, 3), np.float32))).sum()
    out.backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    model[0].count = np.full(1, 5.0, np.float32)
    assert model.state_dict()["0.count"][0] == 5.0
