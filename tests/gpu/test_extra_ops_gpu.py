"""The ops of nn/functional_extra.py and nn/layers_extra.py on CuPy arrays (array-module code, no kernels of their
own) against torch on CUDA in float32 from the same memory, at realistic sizes: the activations and their
gradients, prelu shared and per channel, normalize, one_hot, the three losses in every reduction, Unflatten,
non-contiguous input; the kinks against torch's CPU float64 (the semantics followed, whatever CUDA torch picks
there); and a small model against its torch twin."""
import warnings

import numpy as np
import pytest

import nn
from nn import functional as F
from tests.nn.test_extra_ops import extra_layers_model
from tests.oracle import assert_close, random_array, torch_module


def _torch_gpu(torch, array, requires_grad):
    """A torch tensor with a CuPy array's values on torch's GPU (the CPU when this torch has none)."""
    import cupy
    if torch.cuda.is_available():
        tensor = torch.as_tensor(array, device="cuda").clone()
    else:
        tensor = torch.from_numpy(cupy.asnumpy(array))
    return tensor.requires_grad_(requires_grad)


def _compare_gpu(ours_fn, torch_fn, arrays, grad_of=(0,), name="op", rtol=None, atol=None):
    """ours_fn on CuPy float32 Tensors against torch_fn on torch float32 GPU tensors with the same values: output
    on the GPU and equal, then the gradients of the inputs in `grad_of`."""
    import cupy
    torch = torch_module()
    gpu = [cupy.asarray(a.astype(np.float32) if a.dtype.kind == "f" else a) for a in arrays]
    ours = [nn.Tensor(g, requires_grad=i in grad_of and g.dtype.kind == "f") for i, g in enumerate(gpu)]
    theirs = [_torch_gpu(torch, g, i in grad_of and g.dtype.kind == "f") for i, g in enumerate(gpu)]
    out, expected = ours_fn(*ours), torch_fn(*theirs)
    assert out.device == "cuda" and isinstance(out.data, cupy.ndarray), name
    assert out.shape == tuple(expected.shape), name
    assert_close(out.data, expected.detach().cpu().numpy(), np.float32, rtol=rtol, atol=atol, name=f"{name} output")
    grad = random_array(out.shape, np.float32, seed=5, low=0.5, high=1.5)
    out.backward(cupy.asarray(grad))
    expected.backward(_torch_gpu(torch, cupy.asarray(grad), False))
    for i in grad_of:
        assert ours[i].grad.device == "cuda"
        assert_close(ours[i].grad.data, theirs[i].grad.cpu().numpy(), np.float32, rtol=rtol, atol=atol,
                     name=f"{name} grad of input {i}")


def _activations():
    functional = torch_module().nn.functional
    return {
        "softplus": (F.softplus, functional.softplus),
        "softplus_beta": (lambda t: F.softplus(t, beta=2.0, threshold=5), lambda t: functional.softplus(t, 2.0, 5)),
        "relu6": (F.relu6, functional.relu6),
        "hardtanh": (lambda t: F.hardtanh(t, -2.0, 3.0), lambda t: functional.hardtanh(t, -2.0, 3.0)),
        "softsign": (F.softsign, functional.softsign),
        "mish": (F.mish, functional.mish),
        "hardswish": (F.hardswish, functional.hardswish),
        "hardsigmoid": (F.hardsigmoid, functional.hardsigmoid),
    }


ACTIVATIONS = ["hardsigmoid", "hardswish", "hardtanh", "mish", "relu6", "softplus", "softplus_beta", "softsign"]


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_on_gpu_matches_torch(name):
    ours, theirs = _activations()[name]
    x = random_array((64, 96, 33), np.float32, seed=80, low=-12, high=12)   # (no kink hit at random)
    _compare_gpu(ours, theirs, [x], name=name)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_on_gpu_at_kinks_and_extremes_as_torch_cpu(name):
    """The bounds, hardswish / hardsigmoid's -3 and 3, softplus at and past its threshold, huge magnitudes and
    NaN: values and gradients as torch's CPU float64 gives them (float32 tolerances)."""
    import cupy
    torch = torch_module()
    ours_fn, torch_fn = _activations()[name]
    x = np.array([-1.0, 1.0, 0.0, 6.0, -2.0, 3.0, -3.0, 2.5, 19.999, 20.0, 20.001, 25.0, -30.0, 50.0, -1e4, 1e4,
                  1e-8, -1e-8, np.nan], np.float32)
    ours = nn.Tensor(cupy.asarray(x), requires_grad=True)
    theirs = torch.tensor(x.astype(np.float64), requires_grad=True)
    out, expected = ours_fn(ours), torch_fn(theirs)
    grad = random_array(x.shape, np.float32, seed=81, low=0.5, high=1.5)
    out.backward(cupy.asarray(grad))
    expected.backward(torch.tensor(grad.astype(np.float64)))
    # (assert_close takes NaN where torch has NaN, and nowhere else)
    assert_close(out.data, expected.detach().numpy(), np.float32, name=f"{name} output")
    assert_close(ours.grad.data, theirs.grad.numpy(), np.float32, name=f"{name} gradient")


def test_activation_on_gpu_takes_non_contiguous_input():
    import cupy
    x = random_array((40, 30, 20), np.float32, seed=82, low=-6, high=6)
    x_gpu = cupy.asarray(x).transpose(2, 0, 1)
    assert not x_gpu.flags.c_contiguous
    for name in ACTIVATIONS:
        ours_fn, _ = _activations()[name]
        expected = ours_fn(nn.Tensor(np.ascontiguousarray(x.transpose(2, 0, 1)))).data
        assert_close(ours_fn(nn.Tensor(x_gpu)).data, expected, np.float32, name=name)


@pytest.mark.parametrize("channels", [1, 16])
def test_prelu_on_gpu_matches_torch(channels):
    torch = torch_module()
    x = random_array((32, 16, 9, 7), np.float32, seed=83, low=-2, high=2)
    x.reshape(-1)[:5] = 0.0
    weight = random_array((channels,), np.float32, seed=84, low=0.05, high=0.5)
    _compare_gpu(F.prelu, torch.nn.functional.prelu, [x, weight], (0, 1), name=f"prelu {channels}",
                 rtol=1e-4, atol=1e-3)   # (the weight's gradient sums up to 16k products)


@pytest.mark.parametrize("p", [2.0, 1.0, 3.0, float("inf")])
def test_normalize_on_gpu_matches_torch(p):
    torch = torch_module()
    x = random_array((256, 129), np.float32, seed=85, low=-2, high=2)
    x[3] = 0.0   # a zero row
    _compare_gpu(lambda t: F.normalize(t, p=p), lambda t: torch.nn.functional.normalize(t, p=p), [x],
                 name=f"normalize p={p}")


def test_one_hot_on_gpu_matches_torch():
    import cupy
    torch = torch_module()
    labels = np.random.default_rng(86).integers(0, 10, size=(64, 7))
    for classes in (-1, 12):
        out = F.one_hot(nn.Tensor(cupy.asarray(labels)), classes)
        assert isinstance(out.data, cupy.ndarray) and out.dtype == np.int64
        np.testing.assert_array_equal(cupy.asnumpy(out.data),
                                      torch.nn.functional.one_hot(torch.from_numpy(labels), classes).numpy())
    with pytest.raises(ValueError, match="one_hot: class values must be smaller than num_classes"):
        F.one_hot(nn.Tensor(cupy.asarray(labels)), 5)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_losses_on_gpu_match_torch(reduction):
    torch = torch_module()
    functional = torch.nn.functional
    x = random_array((128, 65), np.float32, seed=87, low=0.02, high=0.98)
    y = random_array((128, 65), np.float32, seed=88, low=0.02, high=0.98)
    weight = random_array((65,), np.float32, seed=89, low=0.5, high=2)
    scale = dict(rtol=1e-4, atol=1e-4) if reduction == "sum" else {}
    _compare_gpu(lambda a, b: F.binary_cross_entropy(a, b, reduction=reduction),
                 lambda a, b: functional.binary_cross_entropy(a, b, reduction=reduction), [x, y], (0, 1),
                 name=f"bce {reduction}", **scale)
    _compare_gpu(lambda a, b, w: nn.BCELoss(w, reduction=reduction)(a, b),
                 lambda a, b, w: torch.nn.BCELoss(w, reduction=reduction)(a, b), [x, y, weight], (0,),
                 name=f"BCELoss weighted {reduction}", **scale)
    log_x = np.log(x)
    for kl_reduction in ((reduction, "batchmean") if reduction == "mean" else (reduction,)):
        for log_target, target in ((False, y), (True, np.log(y))):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")   # ('mean' warns, as torch's)
                _compare_gpu(lambda a, b, r=kl_reduction, lt=log_target: F.kl_div(a, b, reduction=r, log_target=lt),
                             lambda a, b, r=kl_reduction, lt=log_target: functional.kl_div(a, b, reduction=r,
                                                                                          log_target=lt),
                             [log_x, target], (0, 1), name=f"kl_div {kl_reduction} {log_target}", **scale)
    d = random_array((128, 65), np.float32, seed=90, low=-3, high=3)
    for delta in (1.0, 0.4):
        _compare_gpu(lambda a, b, delta=delta: F.huber_loss(a, b, reduction, delta),
                     lambda a, b, delta=delta: functional.huber_loss(a, b, reduction, delta), [d, y], (0, 1),
                     name=f"huber {reduction} {delta}", **scale)


def test_bce_on_gpu_at_zero_and_one_and_its_range_error():
    import cupy
    torch = torch_module()
    x = np.array([0.0, 1.0, 0.0, 1.0, 0.5], np.float32)
    y = np.array([0.0, 1.0, 1.0, 0.0, 0.5], np.float32)
    ours = nn.Tensor(cupy.asarray(x), requires_grad=True)
    theirs = torch.tensor(x.astype(np.float64), requires_grad=True)
    loss = F.binary_cross_entropy(ours, cupy.asarray(y), reduction="none")
    expected = torch.nn.functional.binary_cross_entropy(theirs, torch.tensor(y.astype(np.float64)), reduction="none")
    np.testing.assert_allclose(cupy.asnumpy(loss.data), [0, 0, 100, 100, np.log(2, dtype=np.float32)], rtol=2e-7,
                               atol=0)   # (the device's logf may round the last 0.5/0.5 entry an ulp off)
    loss.sum().backward()
    expected.sum().backward()
    assert_close(ours.grad.data, theirs.grad.numpy(), np.float32)
    with pytest.raises(ValueError, match="binary_cross_entropy: all elements of input should be between 0 and 1"):
        F.binary_cross_entropy(nn.Tensor(cupy.asarray(x + 0.5)), cupy.asarray(y))


def test_unflatten_on_gpu():
    import cupy
    x = random_array((8, 24, 5), np.float32, seed=91)
    out = nn.Unflatten(1, (2, -1, 3))(nn.Tensor(cupy.asarray(x)))
    assert out.device == "cuda" and out.shape == (8, 2, 4, 3, 5)
    np.testing.assert_array_equal(cupy.asnumpy(out.data), x.reshape(8, 2, 4, 3, 5))


def test_extra_layers_model_on_gpu_matches_torch():
    """Linear-PReLU(8)-Unflatten-Hardswish-Flatten-Linear-Mish-Linear-Softplus-Sigmoid under BCELoss on the GPU
    against torch's float64 twin on the CPU with the same state dict: loss and every parameter's gradient."""
    import cupy
    torch = torch_module()
    torch.manual_seed(0)
    theirs = extra_layers_model(torch.nn).double()
    ours = extra_layers_model(nn)
    ours.load_state_dict(theirs.state_dict())
    ours.to("cuda")
    x = random_array((256, 5), np.float32, seed=92, low=-2, high=2)
    target = random_array((256, 3), np.float32, seed=93, low=0.02, high=0.98)
    loss = nn.BCELoss()(ours(nn.Tensor(cupy.asarray(x))), cupy.asarray(target))
    expected = torch.nn.BCELoss()(theirs(torch.from_numpy(x.astype(np.float64))),
                                  torch.from_numpy(target.astype(np.float64)))
    assert loss.device == "cuda"
    assert_close(loss.data, expected.detach().numpy(), np.float32, rtol=1e-4, atol=1e-5, name="loss")
    loss.backward()
    expected.backward()
    for (key, parameter), reference in zip(ours.named_parameters(), theirs.parameters(), strict=True):
        assert_close(parameter.grad.data, reference.grad.numpy(), np.float32, scale=5, name=f"grad of {key}")


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_torch_2_13_loss_forms_on_gpu(reduction):
    """cross_entropy with class-probability targets (weight, label smoothing; gradients of logits and targets)
    and mse_loss / l1_loss with weight=, on CuPy arrays against torch."""
    logits = random_array((64, 10, 3), np.float32, seed=1, low=-3, high=3)
    target = random_array((64, 10, 3), np.float32, seed=2, low=0.1, high=1.0)
    target /= target.sum(axis=1, keepdims=True)
    class_weight = random_array((10,), np.float32, seed=3, low=0.5, high=2.0)

    def probabilities(lib):
        return lambda x, t, w: lib.cross_entropy(x, t, weight=w, label_smoothing=0.2, reduction=reduction)
    functional = torch_module().nn.functional
    _compare_gpu(probabilities(F), probabilities(functional), [logits, target, class_weight], grad_of=(0, 1),
                 name=f"cross_entropy with probabilities, {reduction}")
    element_weight = random_array((64, 10, 3), np.float32, seed=4, low=0.0, high=2.0)
    for name in ("mse_loss", "l1_loss"):
        _compare_gpu(lambda x, t, w: getattr(F, name)(x, t, reduction=reduction, weight=w),
                     lambda x, t, w: getattr(functional, name)(x, t, reduction=reduction, weight=w),
                     [logits, target, element_weight], grad_of=(0, 1), name=f"{name} with weight, {reduction}")
