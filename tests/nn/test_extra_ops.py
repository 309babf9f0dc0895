"""F.one_hot, F.normalize, the losses binary_cross_entropy / kl_div / huber_loss (and BCELoss, KLDivLoss,
HuberLoss), the activations softplus, relu6, hardtanh, prelu, softsign, mish, hardswish, hardsigmoid (and their
modules) and nn.Unflatten against torch 2.13 on the CPU path: values and gradients in float64 (float32 for a
few), every reduction, the kinks and edges (torch's gradient choice there), reprs, state dicts and errors."""
import warnings

import numpy as np
import pytest

import nn
from nn import functional as F
from tests.oracle import assert_close, random_array, torch_module


def _compare(ours_fn, torch_fn, arrays, grad_of=(0,), dtype=np.float64, name="op"):
    """ours_fn(*Tensors) against torch_fn(*float64 tensors): output, then the gradients of the inputs in `grad_of`
    under a random upstream gradient."""
    torch = torch_module()
    ours = [nn.Tensor(a.astype(dtype), requires_grad=i in grad_of) if a.dtype.kind == "f" else nn.Tensor(a)
            for i, a in enumerate(arrays)]
    theirs = [torch.tensor(a, dtype=torch.float64, requires_grad=i in grad_of) if a.dtype.kind == "f"
              else torch.tensor(a) for i, a in enumerate(arrays)]
    out, expected = ours_fn(*ours), torch_fn(*theirs)
    assert out.dtype == dtype and out.shape == tuple(expected.shape), name
    assert_close(out.data, expected.detach().numpy(), dtype, name=f"{name} output")
    grad = random_array(out.shape, np.float64, seed=5, low=0.5, high=1.5)
    out.backward(grad.astype(dtype))
    expected.backward(torch.tensor(grad))
    for i in grad_of:
        assert_close(ours[i].grad.data, theirs[i].grad.numpy(), dtype, name=f"{name} grad of input {i}")


# ---- one_hot and normalize ----------------------------------------------------------------------------------

def test_one_hot_matches_torch():
    torch = torch_module()
    for labels, classes in ((np.array([3, 0, 2, 2]), -1), (np.array([[1, 0], [4, 2]]), 6), (np.array(2), -1),
                            (np.zeros((0,), np.int64), 3), (np.array([0, 1]), 2)):
        out = F.one_hot(nn.Tensor(labels), classes)
        expected = torch.nn.functional.one_hot(torch.tensor(labels), classes)
        assert out.dtype == np.int64 and out.shape == tuple(expected.shape)
        np.testing.assert_array_equal(out.data, expected.numpy())
    assert F.one_hot(np.array([1, 0])).shape == (2, 2)   # a raw array too


def test_one_hot_errors_as_torch():
    with pytest.raises(ValueError, match="one_hot: class values must be non-negative, got -1"):
        F.one_hot(np.array([1, -1]))
    with pytest.raises(ValueError, match=r"one_hot: class values must be smaller than num_classes \(3\), got 5"):
        F.one_hot(np.array([1, 5]), 3)
    with pytest.raises(TypeError, match="one_hot: tensor must be int64 .*, got int32"):
        F.one_hot(np.array([1, 2], np.int32), 3)
    with pytest.raises(TypeError, match="one_hot: tensor must be int64 .*, got float64"):
        F.one_hot(np.array([1.0]))
    with pytest.raises(ValueError, match="one_hot: cannot infer the number of classes from an empty tensor"):
        F.one_hot(np.zeros((0,), np.int64))
    with pytest.raises(ValueError, match="one_hot: num_classes must be -1 or an int >= 0, got -2"):
        F.one_hot(np.array([1]), -2)
    with pytest.raises(ValueError, match="one_hot: cannot infer the number of classes from an empty tensor with "
                                         "num_classes=0"):
        F.one_hot(np.zeros((0,), np.int64), 0)
    with pytest.raises(ValueError, match=r"Unflatten: unflattened_size must be non-empty, got \(\)"):
        nn.Unflatten(1, ())


def test_one_hot_reads_nothing_back_while_capturing(monkeypatch):
    """While a CUDA graph is captured no device value may be read back: the range checks are skipped (as the
    kernels' index checks are), and num_classes=-1, which needs the largest class, is refused."""
    from kernels import backend
    monkeypatch.setattr(backend, "is_capturing", lambda: True)
    np.testing.assert_array_equal(F.one_hot(np.array([0, 2]), 3).data, [[1, 0, 0], [0, 0, 1]])
    F.one_hot(np.array([0, 7]), 3)   # (not checked while capturing: as torch's CUDA one_hot, no host read)
    with pytest.raises(ValueError, match="one_hot: num_classes=-1 needs the largest class read back"):
        F.one_hot(np.array([0, 2]))


@pytest.mark.parametrize("p", [2.0, 1, 3.0, 0.5, float("inf"), float("-inf"), 0, -1.5])
def test_normalize_matches_torch(p):
    torch = torch_module()
    x = random_array((3, 5, 4), np.float64, seed=1, low=-2, high=2)
    for dim in (1, -1, 0):
        _compare(lambda t, dim=dim: F.normalize(t, p=p, dim=dim),
                 lambda t, dim=dim: torch.nn.functional.normalize(t, p=p, dim=dim), [x], name=f"normalize dim={dim}")


def test_normalize_zero_rows_eps_and_float32():
    torch = torch_module()
    x = random_array((4, 3), np.float64, seed=2)
    x[1] = 0.0                  # a zero row stays zero, its gradient grad / eps
    x[2] = [1e-14, -2e-14, 0]   # a row whose norm is under eps
    x[3, 0] = 0.0               # a zero element in an ordinary row: |x|^(p-2) is infinite there below p = 2
    for p in (2.0, 1.0, 3.0, 0.5, 1.5, -1.5):
        _compare(lambda t, p=p: F.normalize(t, p=p, eps=1e-12), lambda t, p=p: torch.nn.functional.normalize(t, p=p),
                 [x], name=f"normalize zeros p={p}")
    _compare(lambda t: F.normalize(t, dim=0, eps=0.5), lambda t: torch.nn.functional.normalize(t, dim=0, eps=0.5),
             [x], name="normalize eps")
    ties = np.array([[1.0, -1.0, 0.5], [0.2, 0.3, 0.1]])   # the inf-norm's gradient shared by the ties, as torch
    _compare(lambda t: F.normalize(t, p=float("inf")), lambda t: torch.nn.functional.normalize(t, p=float("inf")),
             [ties], name="normalize inf ties")
    y = random_array((6, 7), np.float64, seed=3)
    _compare(F.normalize, torch.nn.functional.normalize, [y], dtype=np.float32, name="normalize float32")


def test_normalize_errors():
    with pytest.raises(IndexError, match=r"normalize: dim 1 is out of range for a tensor of 1 dims"):
        F.normalize(np.ones(3))
    with pytest.raises(TypeError, match="normalize: input must be float32 or float64, got int64"):
        F.normalize(np.ones((2, 3), np.int64))
    with pytest.raises(TypeError, match="normalize: input must be a Tensor or an array, got list"):
        F.normalize([[1.0, 2.0]])


# ---- losses -----------------------------------------------------------------------------------------------------

def _probabilities(shape, seed):
    return random_array(shape, np.float64, seed=seed, low=0.02, high=0.98)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_binary_cross_entropy_matches_torch(reduction):
    torch = torch_module()
    x, y = _probabilities((4, 5), 10), _probabilities((4, 5), 11)
    weight = random_array((5,), np.float64, seed=12, low=0.5, high=2)
    _compare(lambda a, b: F.binary_cross_entropy(a, b, reduction=reduction),
             lambda a, b: torch.nn.functional.binary_cross_entropy(a, b, reduction=reduction), [x, y], (0, 1),
             name=f"bce {reduction}")
    _compare(lambda a, b: F.binary_cross_entropy(a, b, weight, reduction),
             lambda a, b: torch.nn.functional.binary_cross_entropy(a, b, torch.tensor(weight), reduction=reduction),
             [x, y], (0, 1), name=f"bce weighted {reduction}")
    _compare(lambda a, b: nn.BCELoss(weight, reduction=reduction)(a, b),
             lambda a, b: torch.nn.BCELoss(torch.tensor(weight), reduction=reduction)(a, b), [x, y], (0,),
             name=f"BCELoss {reduction}")


def test_binary_cross_entropy_at_zero_and_one_clamps_the_log_as_torch():
    """p = 0 or 1 gives torch's finite loss (each log clamped at -100) and gradient ((x - y) / 1e-12 for x),
    and torch's infinite target gradient."""
    torch = torch_module()
    x = np.array([0.0, 1.0, 0.0, 1.0, 1e-50, 0.5])
    y = np.array([0.0, 1.0, 1.0, 0.0, 0.3, 0.5])
    _compare(lambda a, b: F.binary_cross_entropy(a, b, reduction="none"),
             lambda a, b: torch.nn.functional.binary_cross_entropy(a, b, reduction="none"), [x, y], (0, 1),
             name="bce edges")
    loss = F.binary_cross_entropy(nn.Tensor(x.astype(np.float32)), y.astype(np.float32), reduction="none")
    np.testing.assert_array_equal(loss.data[:4], [0, 0, 100, 100])


def test_binary_cross_entropy_float32():
    torch = torch_module()
    x, y = _probabilities((3, 7), 13), _probabilities((3, 7), 14)
    _compare(F.binary_cross_entropy, torch.nn.functional.binary_cross_entropy, [x, y], (0, 1), np.float32,
             name="bce float32")


def test_binary_cross_entropy_errors():
    x = nn.Tensor(np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match=r"binary_cross_entropy: all elements of input should be between 0 and 1, "
                                         r"got values in \[0.5, 1.5\]"):
        F.binary_cross_entropy(np.array([0.5, 1.5]), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="binary_cross_entropy: all elements of target should be between 0 and 1"):
        F.binary_cross_entropy(x, np.array([0.0, 1.1]))
    with pytest.raises(ValueError, match="binary_cross_entropy: all elements of input should be between 0 and 1"):
        F.binary_cross_entropy(np.array([np.nan, 0.5]), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"binary_cross_entropy: target must have the input's shape \(2,\), got"):
        F.binary_cross_entropy(x, np.array([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="binary_cross_entropy: reduction must be one of .*, got 'x'"):
        F.binary_cross_entropy(x, np.array([0.0, 1.0]), reduction="x")
    with pytest.raises(ValueError, match=r"binary_cross_entropy: weight of shape \(3,\) does not broadcast"):
        F.binary_cross_entropy(x, np.array([0.0, 1.0]), weight=np.ones(3))
    with pytest.raises(ValueError, match="BCELoss: reduction must be one of"):
        nn.BCELoss(reduction="avg")


@pytest.mark.parametrize("reduction", ["mean", "batchmean", "sum", "none"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div_matches_torch(reduction, log_target):
    torch = torch_module()
    x = np.log(_probabilities((3, 4), 20))
    y = _probabilities((3, 4), 21)
    y = np.log(y) if log_target else y
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _compare(lambda a, b: F.kl_div(a, b, reduction=reduction, log_target=log_target),
                 lambda a, b: torch.nn.functional.kl_div(a, b, reduction=reduction, log_target=log_target), [x, y],
                 (0, 1), name=f"kl_div {reduction} {log_target}")
        _compare(lambda a, b: nn.KLDivLoss(reduction=reduction, log_target=log_target)(a, b),
                 lambda a, b: torch.nn.KLDivLoss(reduction=reduction, log_target=log_target)(a, b), [x, y], (0,),
                 name=f"KLDivLoss {reduction}")


def test_kl_div_zero_targets_broadcasting_float32_and_the_mean_warning():
    torch = torch_module()
    x = np.log(_probabilities((2, 5), 22))
    y = _probabilities((2, 5), 23)
    y[0, 1] = y[1, 3] = 0.0   # 0 log 0 counts as 0 (the input's gradient there is 0)
    _compare(lambda a, b: F.kl_div(a, b, reduction="sum"),
             lambda a, b: torch.nn.functional.kl_div(a, b, reduction="sum"), [x, y], name="kl_div zeros")
    row = _probabilities((5,), 24)
    _compare(lambda a, b: F.kl_div(a, b, reduction="none"),
             lambda a, b: torch.nn.functional.kl_div(a, b, reduction="none"), [x, row], (0, 1), name="broadcast")
    _compare(lambda a, b: F.kl_div(a, b, reduction="batchmean"),
             lambda a, b: torch.nn.functional.kl_div(a, b, reduction="batchmean"), [x, _probabilities((2, 5), 25)],
             (0,), np.float32, name="kl_div float32")
    scalar = F.kl_div(nn.Tensor(np.array(-0.5)), np.array(0.25), reduction="batchmean")   # 0-dim: the sum
    assert scalar.item() == pytest.approx(0.25 * (np.log(0.25) + 0.5))
    with pytest.warns(UserWarning, match="reduction: 'mean' divides the total loss by both the batch size"):
        F.kl_div(nn.Tensor(x), y)
    with pytest.raises(ValueError, match=r"kl_div: reduction must be one of \('mean', 'batchmean', 'sum', "
                                         r"'none'\), got 'x'"):
        F.kl_div(nn.Tensor(x), y, reduction="x")
    with pytest.raises(ValueError, match=r"kl_div: input of shape \(2, 5\) and target of shape \(3,\) do not "
                                         r"broadcast together"):
        F.kl_div(nn.Tensor(x), np.ones(3))
    with pytest.raises(ValueError, match="KLDivLoss: reduction must be one of"):
        nn.KLDivLoss(reduction="avg")


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("delta", [1.0, 0.3, 2])
def test_huber_loss_matches_torch(reduction, delta):
    torch = torch_module()
    x = random_array((4, 6), np.float64, seed=30, low=-3, high=3)
    y = random_array((4, 6), np.float64, seed=31, low=-3, high=3)
    y[0, :3] = x[0, :3] + np.array([delta, -delta, 0.0])   # at the joins |d| = delta, and d = 0
    _compare(lambda a, b: F.huber_loss(a, b, reduction, delta),
             lambda a, b: torch.nn.functional.huber_loss(a, b, reduction, delta), [x, y], (0, 1),
             name=f"huber {reduction} {delta}")
    _compare(lambda a, b: nn.HuberLoss(reduction, delta)(a, b),
             lambda a, b: torch.nn.HuberLoss(reduction, delta)(a, b), [x, y], (0,), name="HuberLoss")
    weight = random_array((4, 6), np.float64, seed=32, low=0.5, high=2)
    _compare(lambda a, b: F.huber_loss(a, b, reduction, delta, weight=weight),
             lambda a, b: torch.nn.functional.huber_loss(a, b, reduction, delta, weight=torch.tensor(weight)),
             [x, y], (0, 1), name="huber weighted")


def test_huber_loss_float32_and_errors():
    torch = torch_module()
    x, y = random_array((5, 3), np.float64, seed=33, low=-3, high=3), random_array((5, 3), np.float64, seed=34)
    _compare(F.huber_loss, torch.nn.functional.huber_loss, [x, y], (0, 1), np.float32, name="huber float32")
    for delta in (0, -1.0):
        with pytest.raises(ValueError, match=f"huber_loss: delta must be a positive number, got {delta}"):
            F.huber_loss(nn.Tensor(x), y, delta=delta)
        with pytest.raises(ValueError, match=f"HuberLoss: delta must be a positive number, got {delta}"):
            nn.HuberLoss(delta=delta)
    with pytest.raises(ValueError, match="huber_loss: reduction must be one of"):
        F.huber_loss(nn.Tensor(x), y, reduction="avg")


def test_loss_reprs_and_state_dicts_as_torch():
    torch = torch_module()
    weight = np.array([0.5, 2.0])
    pairs = ((nn.BCELoss(), torch.nn.BCELoss()), (nn.BCELoss(reduction="sum"), torch.nn.BCELoss(reduction="sum")),
             (nn.BCELoss(weight), torch.nn.BCELoss(torch.tensor(weight))),
             (nn.KLDivLoss(reduction="batchmean", log_target=True),
              torch.nn.KLDivLoss(reduction="batchmean", log_target=True)),
             (nn.HuberLoss(), torch.nn.HuberLoss()), (nn.HuberLoss("sum", 2.0), torch.nn.HuberLoss("sum", 2.0)))
    for ours, theirs in pairs:
        assert repr(ours) == repr(theirs)
        assert list(ours.state_dict()) == list(theirs.state_dict())
    np.testing.assert_array_equal(nn.BCELoss(weight).state_dict()["weight"], weight)


# ---- activations ------------------------------------------------------------------------------------------------

def _torch_functions():
    functional = torch_module().nn.functional
    return {
        # name: (ours, torch's)
        "softplus": (F.softplus, functional.softplus),
        "softplus_beta": (lambda t: F.softplus(t, beta=2.0, threshold=5), lambda t: functional.softplus(t, 2.0, 5)),
        "relu6": (F.relu6, functional.relu6),
        "hardtanh": (F.hardtanh, functional.hardtanh),
        "hardtanh_bounds": (lambda t: F.hardtanh(t, -2.0, 3.0), lambda t: functional.hardtanh(t, -2.0, 3.0)),
        "softsign": (F.softsign, functional.softsign),
        "mish": (F.mish, functional.mish),
        "hardswish": (F.hardswish, functional.hardswish),
        "hardsigmoid": (F.hardsigmoid, functional.hardsigmoid),
    }


ACTIVATIONS = sorted(_torch_functions())


@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_activation_matches_torch(name, dtype):
    ours, theirs = _torch_functions()[name]
    x = random_array((4, 3, 5), np.float64, seed=40, low=-8, high=8)
    _compare(ours, theirs, [x], dtype=dtype, name=name)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_at_kinks_and_extremes_as_torch(name):
    """The bounds of hardtanh (-1, 1, -2, 3) and relu6 (0, 6), hardswish / hardsigmoid's -3 and 3, softplus at
    and beyond its threshold (x beta = 20, 5), large magnitudes and NaN: torch's values and gradient choices."""
    ours, theirs = _torch_functions()[name]
    x = np.array([-1.0, 1.0, 0.0, 6.0, -2.0, 3.0, -3.0, 2.5, 2.5000001, 19.999, 20.0, 20.001, 25.0, -30.0, 50.0,
                  -700.0, 700.0, 1e-8, -1e-8, np.nan])
    # (the NaN is last: torch's CPU hardtanh/relu6 backward gives a NaN input's gradient 0 in its vectorised body
    # but passes it in the scalar tail, where the last element falls, as its CUDA kernel does everywhere; ours
    # passes it wherever it is)
    _compare(ours, theirs, [x], name=name)
    if name in ("hardtanh", "relu6"):
        leaf = nn.Tensor(np.array([np.nan, 0.5, np.nan] * 7), requires_grad=True)
        ours(leaf).sum().backward()
        np.testing.assert_array_equal(leaf.grad.numpy(), np.ones(21))
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # float32 at +-1e4 (exp overflows) without a warning, as torch
        _compare(ours, theirs, [np.array([-1e4, -100.0, 1e4, 3.0, -3.0])], dtype=np.float32, name=name)


@pytest.mark.parametrize("channels", [1, 4])
@pytest.mark.parametrize("shape", [(3, 4, 5, 2), (3, 4), (2, 4, 3)])
def test_prelu_matches_torch(channels, shape):
    torch = torch_module()
    x = random_array(shape, np.float64, seed=41, low=-2, high=2)
    x.reshape(-1)[:3] = 0.0   # x == 0 takes the weight's side, as torch's derivative
    x.reshape(-1)[3] = np.nan   # so does NaN (the weight's gradient NaN), as torch
    x.reshape(-1)[4] = np.inf   # +inf takes the input's side: the weight's gradient 0 there (not 0 * inf), as torch
    weight = random_array((channels,), np.float64, seed=42, low=0.05, high=0.5)
    _compare(F.prelu, torch.nn.functional.prelu, [x, weight], (0, 1), name=f"prelu {channels}")
    _compare(F.prelu, torch.nn.functional.prelu, [x, weight], (0, 1), np.float32, name="prelu float32")


def test_prelu_takes_torch_scalar_weight_and_unbatched_inputs():
    torch = torch_module()
    x = random_array((4, 5), np.float64, seed=50, low=-2, high=2)
    for inputs in ([x, np.array(0.3)], [np.array(-0.7), np.array([0.3])], [np.array([-0.7, 0.5]), np.array([0.3])]):
        _compare(F.prelu, torch.nn.functional.prelu, inputs, (0, 1), name=f"prelu {inputs[1].shape}")


def test_prelu_module_shared_and_per_channel_as_torch():
    torch = torch_module()
    x = random_array((3, 4, 5), np.float64, seed=43, low=-2, high=2)
    for args in ((), (4,), (4, 0.1), (1, 0.5)):
        ours, theirs = nn.PReLU(*args, dtype=np.float64), torch.nn.PReLU(*args, dtype=torch.float64)
        assert repr(ours) == repr(theirs)
        state = theirs.state_dict()
        assert list(ours.state_dict()) == list(state) == ["weight"]
        np.testing.assert_array_equal(ours.state_dict()["weight"], state["weight"].numpy())
        assert ours.weight.dtype == np.float64 and nn.PReLU(*args).weight.dtype == np.float32
        with torch.no_grad():
            theirs.weight.uniform_(-0.5, 0.5)
        ours.load_state_dict(theirs.state_dict())
        x_ours, x_theirs = nn.Tensor(x.copy(), requires_grad=True), torch.tensor(x.copy(), requires_grad=True)
        out, expected = ours(x_ours), theirs(x_theirs)
        assert_close(out.data, expected.detach().numpy(), np.float64)
        out.sum().backward()
        expected.sum().backward()
        assert_close(x_ours.grad.data, x_theirs.grad.numpy(), np.float64, name="input grad")
        assert_close(ours.weight.grad.data, theirs.weight.grad.numpy(), np.float64, name="weight grad")


def test_prelu_errors():
    x = nn.Tensor(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"prelu: weight must have 1 element or one per input channel \(dim 1 of "
                                         r"the input, 3\), got 2 for input of shape \(2, 3\)"):
        F.prelu(x, np.ones(2))
    with pytest.raises(ValueError, match=r"prelu: weight must be a scalar or 1-D, got shape \(1, 3\)"):
        F.prelu(x, np.ones((1, 3)))
    with pytest.raises(TypeError, match="prelu: weight must have the input's dtype float64, got float32"):
        F.prelu(x, np.ones(3, np.float32))
    with pytest.raises(ValueError, match=r"PReLU\(num_parameters=4\)|prelu: weight must have 1 element"):
        nn.PReLU(4, dtype=np.float64)(x)
    with pytest.raises(ValueError, match="PReLU: num_parameters must be a positive int, got 0"):
        nn.PReLU(0)


def test_activation_modules_match_torch_reprs_and_values():
    torch = torch_module()
    pairs = ((nn.Softplus(), torch.nn.Softplus()), (nn.Softplus(2, 10), torch.nn.Softplus(2, 10)),
             (nn.ReLU6(), torch.nn.ReLU6()), (nn.ReLU6(True), torch.nn.ReLU6(True)),
             (nn.Hardtanh(), torch.nn.Hardtanh()), (nn.Hardtanh(-2.0, 3.0), torch.nn.Hardtanh(-2.0, 3.0)),
             (nn.Hardtanh(-2, 3, True), torch.nn.Hardtanh(-2, 3, True)), (nn.Softsign(), torch.nn.Softsign()),
             (nn.Mish(), torch.nn.Mish()), (nn.Mish(True), torch.nn.Mish(True)),
             (nn.Hardswish(), torch.nn.Hardswish()), (nn.Hardswish(True), torch.nn.Hardswish(True)),
             (nn.Hardsigmoid(), torch.nn.Hardsigmoid()), (nn.Hardsigmoid(True), torch.nn.Hardsigmoid(True)))
    x = random_array((3, 4), np.float64, seed=44, low=-6, high=6)
    for ours, theirs in pairs:
        assert repr(ours) == repr(theirs)
        assert dict(ours.state_dict()) == {} == dict(theirs.state_dict())
        if not getattr(theirs, "inplace", False):   # (torch's would write the leaf)
            _compare(ours, theirs, [x], name=repr(ours))
    assert isinstance(nn.ReLU6(), nn.Hardtanh) and nn.ReLU6().max_val == 6.0


def test_activation_errors_name_the_op():
    for name, fn in (("softplus", F.softplus), ("relu6", F.relu6), ("hardtanh", F.hardtanh), ("mish", F.mish),
                     ("hardswish", F.hardswish), ("hardsigmoid", F.hardsigmoid), ("softsign", F.softsign),
                     ("prelu", lambda t: F.prelu(t, np.ones(1)))):
        with pytest.raises(TypeError, match=f"{name}: input must be float32 or float64, got int64"):
            fn(np.arange(3))
        with pytest.raises(TypeError, match=f"{name}: input must be a Tensor or an array, got list"):
            fn([1.0])
    with pytest.raises(ValueError, match="hardtanh: min_val must not be greater than max_val, got min_val=2 and "
                                         "max_val=1"):
        F.hardtanh(np.ones(2), 2, 1)
    with pytest.raises(ValueError, match="Hardtanh: min_val must not be greater than max_val"):
        nn.Hardtanh(2, 1)
    with pytest.raises(TypeError, match="softplus: beta must be a real number, got 'x'"):
        F.softplus(np.ones(2), beta="x")
    with pytest.raises(TypeError, match=r"Softplus\(beta=1.0, threshold=20.0\): expected a Tensor or an array"):
        nn.Softplus()([1.0])


def test_activations_take_arrays_and_leave_them_unchanged():
    x = random_array((3, 4), np.float64, seed=45, low=-4, high=4)
    before = x.copy()
    for fn in (F.softplus, F.relu6, F.hardtanh, F.mish, F.hardswish, F.hardsigmoid, F.softsign):
        out = fn(x)
        assert isinstance(out, nn.Tensor) and not out.requires_grad
    np.testing.assert_array_equal(x, before)
    assert np.isnan(F.hardtanh(np.array([np.nan])).data[0])   # NaN kept, as torch's clamp


def test_writing_the_saved_input_in_place_raises_as_torch():
    for fn in (F.softplus, F.relu6, F.mish, F.hardswish, F.hardsigmoid):
        x = nn.tensor(random_array((3, 4), np.float64, seed=46), requires_grad=True)
        y = fn(x)
        with nn.no_grad():
            x.mul_(0.5)
        with pytest.raises(RuntimeError, match="modified by an in-?place operation"):
            y.sum().backward()


# ---- Unflatten ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dim, sizes, shape", [(1, (2, 3), (4, 6)), (-1, [2, -1], (4, 3, 6)), (0, (3, 1, 2), (6, 2)),
                                               (1, (-1,), (2, 5))])
def test_unflatten_matches_torch(dim, sizes, shape):
    torch = torch_module()
    ours, theirs = nn.Unflatten(dim, sizes), torch.nn.Unflatten(dim, sizes)
    assert repr(ours) == repr(theirs) and dict(ours.state_dict()) == {}
    _compare(ours, theirs, [random_array(shape, np.float64, seed=47)], name=repr(ours))


def test_unflatten_errors():
    x = nn.Tensor(np.ones((2, 6)))
    with pytest.raises(ValueError, match=r"Unflatten\(dim=1, unflattened_size=\(2, 4\)\): sizes \[2, 4\] don't "
                                         r"multiply up to the size of dim 1 \(6\) of the input of shape \(2, 6\)"):
        nn.Unflatten(1, (2, 4))(x)
    with pytest.raises(ValueError, match="unflattened_size may hold one -1 at most"):
        nn.Unflatten(1, (-1, -1))(x)
    with pytest.raises(ValueError, match="don't multiply up"):
        nn.Unflatten(1, (-1, 4))(x)
    with pytest.raises(IndexError, match=r"dim 3 is out of range for input of shape \(2, 6\) \(expected in "
                                         r"\[-2, 1\]\)"):
        nn.Unflatten(3, (2, 3))(x)
    with pytest.raises(TypeError, match="Unflatten: unflattened_size must be a tuple or list of ints, got int"):
        nn.Unflatten(1, 6)
    with pytest.raises(TypeError, match="Unflatten: unflattened_size must be a tuple or list of ints, got an "
                                        "element of type float"):
        nn.Unflatten(1, (2.0, 3))
    with pytest.raises(TypeError, match="Unflatten: dim must be an int, got str"):
        nn.Unflatten("a", (2, 3))


def extra_layers_model(lib, **kw):
    """Linear -> PReLU(8) -> Unflatten -> Hardswish -> Flatten -> Linear -> Mish -> Linear -> Softplus -> Sigmoid,
    for BCELoss (tests/gpu uses it too)."""
    return lib.Sequential(lib.Linear(5, 8, **kw), lib.PReLU(8, **kw), lib.Unflatten(1, (2, 4)), lib.Hardswish(),
                          lib.Flatten(), lib.Linear(8, 6, **kw), lib.Mish(), lib.Linear(6, 3, **kw), lib.Softplus(),
                          lib.Sigmoid())


def test_model_with_the_new_layers_matches_torch():
    """The model above with torch's state dict copied, under BCELoss: loss and every parameter's gradient."""
    torch = torch_module()
    torch.manual_seed(0)
    theirs = extra_layers_model(torch.nn).double()
    ours = extra_layers_model(nn, dtype=np.float64)
    ours.load_state_dict(theirs.state_dict())
    x, target = random_array((7, 5), np.float64, seed=48, low=-2, high=2), _probabilities((7, 3), 49)
    loss = nn.BCELoss()(ours(nn.Tensor(x)), target)
    expected = torch.nn.BCELoss()(theirs(torch.tensor(x)), torch.tensor(target))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-10)
    loss.backward()
    expected.backward()
    for (key, p), q in zip(ours.named_parameters(), theirs.parameters(), strict=True):
        assert_close(p.grad.data, q.grad.numpy(), np.float64, name=f"grad of {key}")
