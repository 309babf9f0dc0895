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
    assert result.missing_keys == ["0.bias", "0.count"]


def test_load_state_dict_copies_into_the_modules_own_arrays():
    """As torch: the values are copied (cast to the module's dtype) into the arrays the module already has, so
    the caller's arrays are never aliased and whatever holds the module's arrays (an optimizer, a flat
    optimizer's buffer, a captured graph) sees the loaded values."""
    torch = torch_module()
    ours, theirs = nn.Linear(3, 4).double(), torch.nn.Linear(3, 4).double()
    arrays = [ours.weight.data, ours.bias.data]
    ours.load_state_dict(theirs.state_dict())
    assert ours.weight.data is arrays[0] and ours.bias.data is arrays[1]
    np.testing.assert_array_equal(ours.weight.data, theirs.weight.detach().numpy())
    with torch.no_grad():
        theirs.weight.add_(1.0)                                    # the source changes afterwards ...
    assert not np.array_equal(ours.weight.data, theirs.weight.detach().numpy())   # ... ours does not
    given = {"weight": np.full((4, 3), 0.5, np.float32), "bias": np.arange(4)}
    ours.load_state_dict(given)
    assert ours.weight.dtype == np.float64 and ours.bias.data.tolist() == [0.0, 1.0, 2.0, 3.0]
    ours.weight.data[0, 0] = 7.0
    assert given["weight"][0, 0] == 0.5


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



def _run_blocks(blocks, x, training, one_at_a_time=False):
    """Output, input gradient and parameter gradients of a Sequential called as one (batch norm and ReLU
    fused) or module by module (not fused)."""
    blocks.train(training)
    inputs = output = nn.Tensor(x, requires_grad=True)
    if one_at_a_time:
        for index in range(len(blocks)):
            output = blocks[index](output)
    else:
        output = blocks(inputs)
    projection = np.linspace(-1, 1, output.data.size, dtype=output.data.dtype).reshape(output.shape)
    (output * nn.Tensor(projection)).sum().backward()
    return [output.data, inputs.grad.data] + [p.grad.data.copy() for p in blocks.parameters()]


@pytest.fixture
def fused_calls(monkeypatch):
    """The relu flag of every batch norm op run (True: a ReLU fused into it)."""
    from nn import functional_conv
    calls, original = [], functional_conv._BatchNorm.forward

    def counted(self, *args, relu=False, **options):
        calls.append(relu)
        return original(self, *args, relu=relu, **options)
    monkeypatch.setattr(functional_conv._BatchNorm, "forward", counted)
    return calls


BATCH_NORM_CASES = {   # name: (batch norm, input shape, dtype, what else differs)
    "2d": (lambda d: nn.BatchNorm2d(3, dtype=d), (4, 3, 5, 5), np.float64, {}),
    "2d-float32": (lambda d: nn.BatchNorm2d(3, dtype=d), (4, 3, 5, 5), np.float32, {}),
    "1d-nc": (lambda d: nn.BatchNorm1d(3, dtype=d), (6, 3), np.float64, {}),
    "1d-ncl": (lambda d: nn.BatchNorm1d(3, momentum=None, dtype=d), (4, 3, 7), np.float64, {}),
    "no-affine": (lambda d: nn.BatchNorm2d(3, affine=False, dtype=d), (4, 3, 5, 5), np.float64, {}),
    "bias-without-weight": (lambda d: nn.BatchNorm2d(3, dtype=d), (4, 3, 5, 5), np.float64, {"weight": None}),
    "no-running-stats": (lambda d: nn.BatchNorm2d(3, track_running_stats=False, dtype=d), (4, 3, 5, 5), np.float64,
                         {}),
}


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("case", BATCH_NORM_CASES)
def test_sequential_runs_batch_norm_then_relu_fused_with_the_same_results(case, training, fused_calls):
    # nn.Sequential hands a BatchNorm followed by a ReLU to batch norm's kernels in one op (the ReLU fused):
    # outputs, gradients and buffers equal those of the two modules run one after the other, bit for bit
    make, shape, dtype, changes = BATCH_NORM_CASES[case]
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape).astype(dtype)

    def blocks():
        batch_norm = make(dtype)
        if batch_norm.affine:   # (random, and the bias away from 0: the ReLU clamps part of the values)
            batch_norm.weight.data[...] = np.random.default_rng(1).uniform(0.5, 1.5, 3)
            batch_norm.bias.data[...] = np.random.default_rng(2).uniform(-0.5, 0.5, 3)
        if batch_norm.running_mean is not None:
            batch_norm.running_mean[...] = np.random.default_rng(3).normal(size=3)
            batch_norm.running_var[...] = np.random.default_rng(4).uniform(0.5, 2.0, 3)
        if "weight" in changes:
            batch_norm.weight = None
        nn.manual_seed(0)
        return nn.Sequential(batch_norm, nn.ReLU(), nn.Flatten(), nn.Linear(int(np.prod(shape[1:])), 2, dtype=dtype))
    fused, separate = blocks(), blocks()
    results = _run_blocks(fused, x, training)
    expected = _run_blocks(separate, x, training, one_at_a_time=True)
    assert fused_calls == [True, False]
    for index, (actual, reference) in enumerate(zip(results, expected)):
        np.testing.assert_array_equal(actual, reference, err_msg=f"result {index}")
    for (name, actual), reference in zip(fused[0].named_buffers(), [b for _, b in separate[0].named_buffers()]):
        np.testing.assert_array_equal(actual, reference, err_msg=name)


class _LoggingBatchNorm(nn.BatchNorm1d):
    def forward(self, x):   # overridden: Sequential must call it
        return super().forward(x)


class _ReLUSubclass(nn.ReLU):
    pass


@pytest.mark.parametrize("modules,fused", [
    (lambda: [nn.BatchNorm1d(3), nn.ReLU()], [True]),
    (lambda: [nn.BatchNorm1d(3), nn.ReLU(), nn.BatchNorm1d(3)], [True, False]),
    (lambda: [_LoggingBatchNorm(3), nn.ReLU()], [False]),
    (lambda: [nn.BatchNorm1d(3), _ReLUSubclass()], [False]),
    (lambda: [nn.BatchNorm1d(3), nn.LeakyReLU()], [False]),
    (lambda: [nn.ReLU(), nn.BatchNorm1d(3)], [False]),
], ids=["bn-relu", "bn-relu-bn", "overridden-bn", "relu-subclass", "leaky", "relu-first"])
def test_sequential_fuses_only_a_plain_relu_right_after_an_unmodified_batch_norm(modules, fused, fused_calls):
    x = nn.Tensor(np.random.default_rng(1).normal(size=(6, 3)).astype(np.float32))
    output = nn.Sequential(*modules())(x)
    assert fused_calls == fused
    assert output.shape == (6, 3)


@pytest.mark.parametrize("where", ["batch norm instance", "relu instance", "batch norm class", "relu class"])
def test_a_forward_replaced_by_the_user_is_called_not_fused(where, fused_calls, monkeypatch):
    # (as when debugging or profiling: module(x) would call the replacement, so Sequential must too)
    from nn import layers
    blocks = nn.Sequential(nn.BatchNorm1d(3), nn.ReLU())
    seen = []
    target = {"batch norm instance": blocks[0], "relu instance": blocks[1],
              "batch norm class": layers._BatchNorm, "relu class": nn.ReLU}[where]
    original = target.forward

    def replaced(*args):
        seen.append(where)
        return original(*args)
    monkeypatch.setattr(target, "forward", replaced)
    blocks(nn.Tensor(np.random.default_rng(1).normal(size=(6, 3)).astype(np.float32)))
    assert seen == [where] and fused_calls == [False]
