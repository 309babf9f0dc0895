"""The nn core on CuPy arrays against PyTorch on the CPU: layers, a ConvNet and an MLP (loss, gradients,
optimizer steps, batch-norm statistics, eval mode), dropout, clip_grad_norm_ and device errors.
Needs a GPU (skipped elsewhere); fp32 on the GPU against float64 torch."""
import numpy as np
import pytest

import nn
from tests.nn.test_layers import _convnet, _mlp
from tests.oracle import assert_close, random_array, torch_module

GPU_TOLERANCE = dict(rtol=2e-3, atol=2e-4)


def to_gpu(array):
    import cupy
    return cupy.asarray(array)


def _twins(build):
    torch = torch_module()
    torch.manual_seed(0)
    theirs = build(torch.nn).double()
    ours = build(nn)
    ours.load_state_dict(theirs.state_dict())
    return ours.to("cuda"), theirs


def _compare_state(ours, theirs):
    for key, value in theirs.state_dict().items():
        assert_close(ours.state_dict()[key].astype(np.float64), value.numpy().astype(np.float64), np.float32,
                     name=key, **GPU_TOLERANCE)


# Adam only where no bias feeds a batch norm: that bias's gradient is rounding noise, which Adam's
# normalised step turns into lr-sized differences between fp32 and float64.
@pytest.mark.parametrize("name, input_shape, optimizer", [("convnet", (64, 2, 28, 27), "SGD"),
                                                          ("mlp", (256, 12), "AdamW"),
                                                          ("mlp", (256, 12), "Adam")])
def test_network_training_steps_on_gpu_match_torch(name, input_shape, optimizer):
    torch = torch_module()
    build = {"mlp": _mlp, "convnet": _convnet}[name]
    ours, theirs = _twins(build)
    if name == "mlp":
        ours[2].eval()
        theirs[2].eval()
    options = dict(lr=0.05, momentum=0.9, nesterov=True) if optimizer == "SGD" else dict(lr=0.01, amsgrad=True)
    ours_opt = getattr(nn.optim, optimizer)(ours.parameters(), **options)
    theirs_opt = getattr(torch.optim, optimizer)(theirs.parameters(), **options)
    target = np.random.default_rng(0).integers(0, 5, size=input_shape[0])
    for step in range(3):
        x = random_array(input_shape, seed=step)
        loss = nn.CrossEntropyLoss()(ours(nn.Tensor(to_gpu(x))), to_gpu(target))
        expected = torch.nn.CrossEntropyLoss()(theirs(torch.tensor(x, dtype=torch.float64)), torch.tensor(target))
        assert loss.device == "cuda"
        assert_close(loss.data, expected.detach().numpy(), np.float32, name=f"loss at step {step}", **GPU_TOLERANCE)
        ours_opt.zero_grad()
        theirs_opt.zero_grad()
        loss.backward()
        expected.backward()
        for (key, p), q in zip(ours.named_parameters(), theirs.parameters()):
            assert p.grad.device == "cuda"
            assert_close(p.grad.data, q.grad.numpy(), np.float32, name=f"step {step} grad of {key}", **GPU_TOLERANCE)
        ours_opt.step()
        theirs_opt.step()
    _compare_state(ours, theirs)
    ours.eval()
    theirs.eval()
    x = random_array(input_shape, seed=11)
    with nn.no_grad():
        out = ours(nn.Tensor(to_gpu(x)))
    assert_close(out.data, theirs(torch.tensor(x, dtype=torch.float64)).detach().numpy(), np.float32, **GPU_TOLERANCE)


LAYERS = {
    "linear_3d": (lambda lib: lib.Linear(300, 129), (4, 33, 300)),
    "conv_groups": (lambda lib: lib.Conv2d(32, 64, 3, stride=2, padding=1, groups=4), (16, 32, 31, 30)),
    "max_pool_ceil": (lambda lib: lib.MaxPool2d(3, 2, 1, ceil_mode=True), (16, 32, 31, 30)),
    "avg_pool": (lambda lib: lib.AvgPool2d(3, 2, 1, count_include_pad=False), (16, 32, 31, 30)),
    "adaptive": (lambda lib: lib.AdaptiveAvgPool2d((5, 3)), (16, 32, 31, 30)),
    "bn1d": (lambda lib: lib.BatchNorm1d(64, momentum=None), (128, 64, 7)),
    "bn2d": (lambda lib: lib.BatchNorm2d(32), (16, 32, 31, 30)),
    "log_softmax": (lambda lib: lib.LogSoftmax(dim=1), (64, 1000)),
    "leaky_relu": (lambda lib: lib.LeakyReLU(0.2), (64, 1000)),
}


@pytest.mark.parametrize("name", LAYERS)
def test_layer_on_gpu_matches_torch(name):
    torch = torch_module()
    build, shape = LAYERS[name]
    ours, theirs = _twins(build)
    for step in range(2):
        x = random_array(shape, seed=step)
        x_ours, x_theirs = nn.Tensor(to_gpu(x), requires_grad=True), torch.tensor(x, dtype=torch.float64, requires_grad=True)
        out, expected = ours(x_ours), theirs(x_theirs)
        assert_close(out.data, expected.detach().numpy(), np.float32, name="output", **GPU_TOLERANCE)
        grad = random_array(out.shape, seed=40 + step)
        out.backward(to_gpu(grad))
        expected.backward(torch.tensor(grad, dtype=torch.float64))
        assert_close(x_ours.grad.data, x_theirs.grad.numpy(), np.float32, name="input grad", **GPU_TOLERANCE)
        for (key, p), q in zip(ours.named_parameters(), theirs.parameters()):
            assert_close(p.grad.data, q.grad.numpy(), np.float32, name=f"grad of {key}", **GPU_TOLERANCE)
            p.grad, q.grad = None, None
    _compare_state(ours, theirs)


def test_dropout_on_gpu_statistics_and_seed():
    nn.manual_seed(5)
    x = nn.Tensor(to_gpu(np.ones((512, 1024), np.float32)), requires_grad=True)
    y = nn.functional.dropout(x, 0.2)
    kept = (y.data != 0).get()
    assert abs(kept.mean() - 0.8) < 0.005
    np.testing.assert_allclose(y.data.get()[kept], 1 / 0.8, rtol=1e-6)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.data.get(), np.where(kept, 1 / 0.8, 0.0), rtol=1e-6)
    nn.manual_seed(5)
    np.testing.assert_array_equal(nn.functional.dropout(x, 0.2).data.get(), y.data.get())


def test_clip_grad_norm_on_gpu_matches_torch():
    torch = torch_module()
    grads = [random_array(shape, seed=i) for i, shape in enumerate([(300, 200), (200,), (64, 3, 3, 3)])]
    ours = [nn.Parameter(to_gpu(np.zeros_like(g))) for g in grads]
    theirs = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for p, q, g in zip(ours, theirs, grads):
        p.grad = nn.Tensor(to_gpu(g))
        q.grad = torch.tensor(g, dtype=torch.float64)
    total = nn.utils.clip_grad_norm_(ours, 1.0)
    assert isinstance(total, nn.Tensor) and total.device == "cuda"
    assert float(total) == pytest.approx(float(torch.nn.utils.clip_grad_norm_(theirs, 1.0)), rel=1e-5)
    for p, q in zip(ours, theirs):
        assert_close(p.grad.data, q.grad.numpy(), np.float32, **GPU_TOLERANCE)


@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf")])
def test_clip_grad_norm_of_many_parameters_is_captured(norm_type):
    """40 parameters, like the CRNN: a captured clipping step must not copy anything from the host
    (on the H200, cupy.stack of 38 norms did, and the training step fell back to eager)."""
    import cupy
    grads = [to_gpu(random_array((7, 5), seed=100 + i)) for i in range(40)]
    params = [nn.Parameter(to_gpu(np.zeros((7, 5), np.float32))) for _ in grads]
    for p, g in zip(params, grads):
        p.grad = nn.Tensor(g.copy())

    def clip(scale):
        for p, g in zip(params, grads):
            p.grad.data[...] = g * scale
        return nn.utils.clip_grad_norm_(params, 1.0, norm_type).data

    captured = nn.capture(clip)
    for factor in (1.0, 2.0, 3.0):
        total = float(captured(cupy.full((), factor, cupy.float32)))
        scaled = [g.get() * factor for g in grads]
        if norm_type == float("inf"):
            expected = max(np.abs(g).max() for g in scaled)
        else:
            expected = sum((np.abs(g) ** norm_type).sum() for g in scaled) ** (1 / norm_type)
        assert total == pytest.approx(expected, rel=1e-5)
        for p, g in zip(params, scaled):
            assert_close(p.grad.data, g * min(1.0, 1.0 / (expected + 1e-6)), np.float32, rtol=1e-5, atol=1e-6)
    assert captured.captured


def test_parameters_on_another_device_than_the_input():
    layer = nn.Conv2d(3, 8, 3)
    x = nn.Tensor(to_gpu(random_array((2, 3, 8, 8))))
    with pytest.raises(ValueError, match=r"Conv2d\(3, 8\): parameter weight is on cpu but the input is on cuda"):
        layer(x)
    layer.to("cuda")
    with pytest.raises(ValueError, match=r"Conv2d\(3, 8\): parameter weight is on cuda but the input is on cpu"):
        layer(nn.Tensor(random_array((2, 3, 8, 8))))
    assert layer(x).device == "cuda"
    assert set(layer.state_dict()) == {"weight", "bias"} and isinstance(layer.state_dict()["weight"], np.ndarray)
