"""Layers against their PyTorch twins (state dict copied, float64 on the CPU path): outputs, input and
parameter gradients, buffers, train/eval modes, default initialisation and bad-input messages."""
import math

import numpy as np
import pytest

import nn
from tests.oracle import assert_close, random_array, torch_module


def twins(make_ours, make_theirs):
    """Our layer in float64 with the weights of the torch layer (also float64)."""
    theirs = make_theirs(torch_module()).double()
    ours = make_ours()
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def compare_step(ours, theirs, input_shape, seed=0):
    """One forward and backward through both; compares output, input grad and parameter grads."""
    torch = torch_module()
    x = random_array(input_shape, np.float64, seed=seed)
    x_ours, x_theirs = nn.Tensor(x.copy(), requires_grad=True), torch.tensor(x.copy(), requires_grad=True)
    out_ours, out_theirs = ours(x_ours), theirs(x_theirs)
    assert_close(out_ours.data, out_theirs.detach().numpy(), np.float64, name="output")
    grad = random_array(out_ours.shape, np.float64, seed=seed + 50)
    out_ours.backward(grad)
    out_theirs.backward(torch.tensor(grad))
    assert_close(x_ours.grad.data, x_theirs.grad.numpy(), np.float64, name="input grad")
    theirs_params = dict(theirs.named_parameters())
    assert [name for name, _ in ours.named_parameters()] == list(theirs_params)
    for name, parameter in ours.named_parameters():
        assert_close(parameter.grad.data, theirs_params[name].grad.numpy(), np.float64, name=f"grad of {name}")


def compare_buffers(ours, theirs):
    expected = theirs.state_dict()
    got = ours.state_dict()
    assert list(got) == list(expected)
    for key, value in expected.items():
        assert got[key].shape == tuple(value.shape), key
        assert_close(got[key].astype(np.float64), value.numpy().astype(np.float64), np.float64, name=key)


LAYERS = {
    "linear": (lambda: nn.Linear(5, 4, dtype=np.float64), lambda t: t.nn.Linear(5, 4), (3, 5)),
    "linear_3d_no_bias": (lambda: nn.Linear(5, 4, bias=False, dtype=np.float64),
                          lambda t: t.nn.Linear(5, 4, bias=False), (2, 3, 5)),
    "conv_stride_pad": (lambda: nn.Conv2d(3, 6, 3, stride=2, padding=1, dtype=np.float64),
                        lambda t: t.nn.Conv2d(3, 6, 3, stride=2, padding=1), (2, 3, 7, 8)),
    "conv_groups_dilation": (lambda: nn.Conv2d(4, 6, (3, 2), dilation=(2, 1), groups=2, bias=False, dtype=np.float64),
                             lambda t: t.nn.Conv2d(4, 6, (3, 2), dilation=(2, 1), groups=2, bias=False), (2, 4, 7, 6)),
    "conv_same": (lambda: nn.Conv2d(2, 3, 3, padding="same", dtype=np.float64),
                  lambda t: t.nn.Conv2d(2, 3, 3, padding="same"), (1, 2, 5, 6)),
    "max_pool": (lambda: nn.MaxPool2d(2), lambda t: t.nn.MaxPool2d(2), (2, 3, 6, 7)),
    "max_pool_ceil": (lambda: nn.MaxPool2d(3, 2, 1, ceil_mode=True), lambda t: t.nn.MaxPool2d(3, 2, 1, ceil_mode=True),
                      (2, 2, 8, 7)),
    "avg_pool": (lambda: nn.AvgPool2d(3, 2, 1, count_include_pad=False),
                 lambda t: t.nn.AvgPool2d(3, 2, 1, count_include_pad=False), (2, 3, 7, 6)),
    "adaptive_avg_pool": (lambda: nn.AdaptiveAvgPool2d((2, 3)), lambda t: t.nn.AdaptiveAvgPool2d((2, 3)), (2, 3, 5, 7)),
    "relu": (nn.ReLU, lambda t: t.nn.ReLU(), (3, 4)),
    "leaky_relu": (lambda: nn.LeakyReLU(0.1), lambda t: t.nn.LeakyReLU(0.1), (3, 4)),
    "tanh": (nn.Tanh, lambda t: t.nn.Tanh(), (3, 4)),
    "sigmoid": (nn.Sigmoid, lambda t: t.nn.Sigmoid(), (3, 4)),
    "flatten": (nn.Flatten, lambda t: t.nn.Flatten(), (2, 3, 4, 2)),
    "flatten_0_2": (lambda: nn.Flatten(0, 2), lambda t: t.nn.Flatten(0, 2), (2, 3, 4, 2)),
    "identity": (nn.Identity, lambda t: t.nn.Identity(), (3, 4)),
    "softmax": (lambda: nn.Softmax(dim=1), lambda t: t.nn.Softmax(dim=1), (3, 4, 2)),
    "log_softmax": (lambda: nn.LogSoftmax(dim=-1), lambda t: t.nn.LogSoftmax(dim=-1), (3, 4, 2)),
    "dropout_eval": (lambda: nn.Dropout(0.4).eval(), lambda t: t.nn.Dropout(0.4).eval(), (3, 4)),
}


@pytest.mark.parametrize("name", LAYERS)
def test_layer_matches_torch(name):
    make_ours, make_theirs, shape = LAYERS[name]
    ours, theirs = twins(make_ours, make_theirs)
    compare_step(ours, theirs, shape)


BATCH_NORMS = {
    "bn1d_2d": (lambda **k: nn.BatchNorm1d(3, dtype=np.float64, **k), lambda t, **k: t.nn.BatchNorm1d(3, **k), (6, 3), {}),
    "bn1d_3d": (lambda **k: nn.BatchNorm1d(3, dtype=np.float64, **k), lambda t, **k: t.nn.BatchNorm1d(3, **k), (4, 3, 5), {}),
    "bn2d": (lambda **k: nn.BatchNorm2d(3, dtype=np.float64, **k), lambda t, **k: t.nn.BatchNorm2d(3, **k), (2, 3, 4, 5),
             dict(momentum=0.3, eps=1e-3)),
    "bn2d_cumulative": (lambda **k: nn.BatchNorm2d(3, dtype=np.float64, **k), lambda t, **k: t.nn.BatchNorm2d(3, **k),
                        (2, 3, 4, 5), dict(momentum=None)),
    "bn2d_no_affine": (lambda **k: nn.BatchNorm2d(3, dtype=np.float64, **k), lambda t, **k: t.nn.BatchNorm2d(3, **k),
                       (2, 3, 4, 5), dict(affine=False)),
    "bn2d_no_running_stats": (lambda **k: nn.BatchNorm2d(3, dtype=np.float64, **k),
                              lambda t, **k: t.nn.BatchNorm2d(3, **k), (2, 3, 4, 5), dict(track_running_stats=False)),
}


@pytest.mark.parametrize("name", BATCH_NORMS)
def test_batch_norm_train_steps_then_eval(name):
    make_ours, make_theirs, shape, options = BATCH_NORMS[name]
    ours, theirs = twins(lambda: make_ours(**options), lambda t: make_theirs(t, **options))
    if options.get("affine", True):  # non-trivial affine parameters
        torch = torch_module()
        with torch.no_grad():
            theirs.weight.uniform_(0.5, 1.5)
            theirs.bias.uniform_(-0.5, 0.5)
        ours.load_state_dict(theirs.state_dict())
    for step in range(4):
        for model in (ours, theirs):
            model.zero_grad()
        compare_step(ours, theirs, shape, seed=10 * step)
        compare_buffers(ours, theirs)
    ours.eval()
    theirs.eval()
    compare_step(ours, theirs, shape, seed=77)
    compare_buffers(ours, theirs)


def test_batch_norm_state_dict_loads_into_torch():
    torch = torch_module()
    ours = nn.BatchNorm2d(3)
    ours(nn.Tensor(random_array((2, 3, 4, 4))))
    theirs = torch.nn.BatchNorm2d(3)
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    assert int(theirs.num_batches_tracked) == 1 and ours.state_dict()["num_batches_tracked"].shape == ()


def test_dropout_layer_train_and_eval():
    nn.manual_seed(3)
    layer = nn.Dropout(0.25)
    x = nn.Tensor(np.ones((100, 400), np.float32))
    y = layer(x).data
    assert abs((y == 0).mean() - 0.25) < 0.01
    np.testing.assert_allclose(y[y != 0], 1 / 0.75, rtol=1e-6)
    assert layer.eval()(x) is x
    for p in (-0.1, 1.5, "0.5"):
        with pytest.raises(ValueError, match="Dropout: p must be a probability in"):
            nn.Dropout(p)


def test_softmax_without_dim_follows_torch():
    torch = torch_module()
    for shape in [(4,), (3, 4), (2, 3, 4), (2, 3, 4, 5)]:
        x = random_array(shape, np.float64)
        with pytest.warns(UserWarning, match="Implicit dimension choice"):
            expected = torch.nn.Softmax()(torch.tensor(x))
        assert_close(nn.Softmax()(nn.Tensor(x)).data, expected.numpy(), np.float64)


# ---- default initialisation ---------------------------------------------------------------------

@pytest.mark.parametrize("make, fan_in", [(lambda: nn.Linear(200, 100), 200), (lambda: nn.Conv2d(8, 64, 3), 72)])
def test_default_initialisation_is_pytorchs(make, fan_in):
    nn.manual_seed(0)
    layer = make()
    bound = 1 / math.sqrt(fan_in)
    for values in (layer.weight.data, layer.bias.data):
        assert np.abs(values).max() <= bound and np.abs(values).max() > 0.9 * bound
    assert abs(layer.weight.data.std() - bound / math.sqrt(3)) < 0.05 * bound
    assert layer.weight.dtype == np.float32
    nn.manual_seed(0)
    np.testing.assert_array_equal(make().weight.data, layer.weight.data)


def test_state_dict_keys_match_torch():
    torch = torch_module()
    pairs = [(nn.Linear(3, 2), torch.nn.Linear(3, 2)), (nn.Conv2d(3, 4, 3, bias=False), torch.nn.Conv2d(3, 4, 3, bias=False)),
             (nn.BatchNorm1d(4), torch.nn.BatchNorm1d(4)), (nn.BatchNorm2d(4, affine=False), torch.nn.BatchNorm2d(4, affine=False)),
             (nn.BatchNorm2d(4, track_running_stats=False), torch.nn.BatchNorm2d(4, track_running_stats=False))]
    for ours, theirs in pairs:
        assert list(ours.state_dict()) == list(theirs.state_dict())
        for key, value in theirs.state_dict().items():
            assert ours.state_dict()[key].shape == tuple(value.shape)


# ---- bad input ----------------------------------------------------------------------------------

BAD_INPUTS = [
    (lambda: nn.Conv2d(3, 16, 3), (8, 1, 28, 28),
     r"Conv2d\(3, 16\): expected input of shape \(N, 3, H, W\) or \(3, H, W\), got \(8, 1, 28, 28\)"),
    (lambda: nn.Conv2d(3, 16, 3), (1, 28, 28),
     r"Conv2d\(3, 16\): expected input of shape \(N, 3, H, W\) or \(3, H, W\), got \(1, 28, 28\)"),
    (lambda: nn.Conv2d(3, 16, 3), (28, 28), r"Conv2d\(3, 16\): expected input of shape .*, got \(28, 28\)"),
    (lambda: nn.Linear(5, 4), (3, 6), r"Linear\(5, 4\): expected input of shape \(\*, 5\), got \(3, 6\)"),
    (lambda: nn.BatchNorm2d(3), (2, 4, 5, 5), r"BatchNorm2d\(3\): expected input of shape \(N, 3, H, W\), got \(2, 4, 5, 5\)"),
    (lambda: nn.BatchNorm1d(3), (2, 3, 4, 4), r"BatchNorm1d\(3\): expected input of shape \(N, 3\) or \(N, 3, L\), got"),
    (lambda: nn.MaxPool2d(2), (4, 4), r"MaxPool2d\(kernel_size=2, .*\): expected input of shape \(N, C, H, W\) or "
                                      r"\(C, H, W\), got \(4, 4\)"),
    (lambda: nn.AdaptiveAvgPool2d(1), (4, 4), r"AdaptiveAvgPool2d\(output_size=1\): expected input of shape"),
]


@pytest.mark.parametrize("name, args", [("Conv2d", (3, 2, 3)), ("MaxPool2d", (2,)), ("AvgPool2d", (2,)),
                                        ("AdaptiveAvgPool2d", (2,))])
def test_2d_layers_take_an_unbatched_input_as_torch(name, args):
    """(C, H, W) into Conv2d and the 2-D pools, as torch: outputs and gradients of torch's twin."""
    torch = torch_module()
    theirs = getattr(torch.nn, name)(*args).double()
    ours = getattr(nn, name)(*args).double()
    ours.load_state_dict(theirs.state_dict())
    x = random_array((3, 5, 6), np.float64, seed=21)
    leaf, their_leaf = nn.Tensor(x.copy(), requires_grad=True), torch.tensor(x, requires_grad=True)
    out, their_out = ours(leaf), theirs(their_leaf)
    assert out.shape == tuple(their_out.shape)
    assert_close(out.numpy(), their_out.detach().numpy(), np.float64)
    (out * nn.Tensor(np.arange(out.data.size, dtype=np.float64).reshape(out.shape))).sum().backward()
    (their_out * torch.arange(their_out.numel(), dtype=torch.float64).reshape(their_out.shape)).sum().backward()
    assert_close(leaf.grad.numpy(), their_leaf.grad.numpy(), np.float64)
    for key, parameter in ours.named_parameters():
        assert_close(parameter.grad.numpy(), dict(theirs.named_parameters())[key].grad.numpy(), np.float64)


@pytest.mark.parametrize("make, shape, message", BAD_INPUTS)
def test_bad_input_names_layer_expected_and_got(make, shape, message):
    with pytest.raises(ValueError, match=message):
        make()(nn.Tensor(np.ones(shape, np.float32)))


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match=r"Conv2d\(3, 16\): in_channels and out_channels must be divisible by groups"):
        nn.Conv2d(3, 16, 3, groups=2)
    with pytest.raises(ValueError, match="padding_mode"):
        nn.Conv2d(3, 16, 3, padding_mode="reflect")
    with pytest.raises(ValueError, match=r"BatchNorm2d\(4\): momentum"):
        nn.BatchNorm2d(4, momentum=2.0)
    bad = [(lambda: nn.Conv2d(3, 4, 0), r"Conv2d\(3, 4\): kernel_size must be a positive integer, got 0"),
           (lambda: nn.Conv2d(3, 4, 3, stride=(1, 0)), r"Conv2d\(3, 4\): stride must be a positive integer, got 0"),
           (lambda: nn.Conv2d(3, 4, 3, padding=-1), r"Conv2d\(3, 4\): padding must be a non-negative integer"),
           (lambda: nn.Conv2d(3, 4, 3, padding=(1, 1, 1)), r"Conv2d\(3, 4\): padding must be an int or a pair"),
           (lambda: nn.Conv2d(3, 4, 3, stride=2, padding="same"),
            r"Conv2d\(3, 4\): padding='same' needs stride 1, got stride \(2, 2\)"),
           (lambda: nn.Conv2d(3, 4, 3, padding="full"),
            r"Conv2d\(3, 4\): padding must be an int, a pair, 'same' or 'valid', got 'full'"),
           (lambda: nn.Conv2d(0, 4, 3), r"Conv2d\(0, 4\): in_channels must be a positive integer"),
           (lambda: nn.Linear(-1, 3), r"Linear\(-1, 3\): in_features must be a non-negative integer, got -1"),
           (lambda: nn.Linear(3, 2.5), r"Linear\(3, 2.5\): out_features must be a non-negative integer, got 2.5"),
           (lambda: nn.BatchNorm1d(-2), r"BatchNorm1d\(-2\): num_features must be a non-negative integer")]
    for make, message in bad:   # (torch makes some of these and fails only in forward, or deep in torch.empty)
        with pytest.raises(ValueError, match=message):
            make()
    with pytest.raises(TypeError, match=r"Linear\(3, 4\): dtype must be float32 or float64, got int32"):
        nn.Linear(3, 4, dtype=np.int32)


CONV_ARGUMENTS = [((3, 5, 3), {}), ((4, 6, 3), dict(padding="same", dilation=2, bias=False)),
                  ((4, 6, (3, 1)), dict(stride=(2, 1), padding=(1, 0), groups=2)), ((2, 2, 1), dict(padding="valid")),
                  ((2, 4, 2), dict(stride=3, dilation=(1, 2), padding=1, groups=2, bias=False))]


@pytest.mark.parametrize("layer", ["Conv1d", "Conv2d"])
def test_conv_attributes_repr_and_state_dict_are_torchs(layer):
    """torch's _ConvNd attributes and repr (defaults left out), as nn.ConvTranspose2d's test checks its own."""
    torch = torch_module()
    attributes = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "output_padding", "dilation",
                  "groups", "padding_mode", "transposed")
    for args, kwargs in CONV_ARGUMENTS:
        if layer == "Conv1d":   # one spatial dim: the first of each pair
            kwargs = {k: v[0] if isinstance(v, tuple) else v for k, v in kwargs.items()}
            args = args[:2] + (args[2][0] if isinstance(args[2], tuple) else args[2],)
        ours, theirs = getattr(nn, layer)(*args, **kwargs), getattr(torch.nn, layer)(*args, **kwargs)
        assert repr(ours) == repr(theirs)
        for attribute in attributes:
            assert getattr(ours, attribute) == getattr(theirs, attribute), (repr(theirs), attribute)
        assert {k: v.shape for k, v in ours.state_dict().items()} == \
            {k: tuple(v.shape) for k, v in theirs.state_dict().items()}


@pytest.mark.parametrize("make", [lambda **d: nn.Linear(3, 4, **d), lambda **d: nn.Conv2d(2, 3, 3, **d),
                                  lambda **d: nn.Conv1d(2, 3, 3, **d), lambda **d: nn.ConvTranspose2d(2, 3, 3, **d),
                                  lambda **d: nn.BatchNorm2d(3, **d), lambda **d: nn.BatchNorm1d(3, **d),
                                  lambda **d: nn.PReLU(3, **d), lambda **d: nn.Embedding(5, 3, **d)],
                         ids=["Linear", "Conv2d", "Conv1d", "ConvTranspose2d", "BatchNorm2d", "BatchNorm1d", "PReLU",
                              "Embedding"])
def test_layers_take_torchs_device_and_dtype_arguments(make):
    """torch's factory arguments: device= and dtype= by keyword, device before dtype by position."""
    layer = make(device="cpu", dtype=np.float64)
    tensors = list(layer.parameters()) + [b for b in layer.buffers() if b is not None and b.dtype.kind == "f"]
    assert tensors and all(t.dtype == np.float64 and nn.Tensor(t).device == "cpu" for t in tensors)
    with pytest.raises(ValueError, match=r"device must be 'cpu' or 'cuda', got 'tpu'"):
        make(device="tpu")


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("fused", [False, True], ids=["alone", "fused with ReLU"])
def test_batch_norm_without_bias_matches_torch(affine, fused):
    """torch 2.13's BatchNorm(bias=False): a weight and no bias (repr, state dict), in training and eval, also
    through nn.Sequential's fused batch norm + ReLU."""
    torch = torch_module()
    theirs = torch.nn.BatchNorm2d(3, affine=affine, bias=False).double()
    if affine:
        torch.nn.init.uniform_(theirs.weight, 0.5, 1.5)
    ours = nn.BatchNorm2d(3, affine=affine, bias=False, dtype=np.float64)
    ours.load_state_dict(theirs.state_dict())
    assert repr(ours) == repr(theirs) and list(ours.state_dict()) == list(theirs.state_dict())
    our_model = nn.Sequential(ours, nn.ReLU()) if fused else ours
    their_model = torch.nn.Sequential(theirs, torch.nn.ReLU()) if fused else theirs
    x, weights = random_array((4, 3, 5, 5), np.float64, seed=3), random_array((4, 3, 5, 5), np.float64, seed=4)
    for training in (True, False):
        our_model.train(training)
        their_model.train(training)
        leaf, their_leaf = nn.Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        y, their_y = our_model(leaf), their_model(their_leaf)
        (y * nn.Tensor(weights)).sum().backward()
        (their_y * torch.tensor(weights)).sum().backward()
        assert_close(y.numpy(), their_y.detach().numpy(), np.float64)
        assert_close(leaf.grad.numpy(), their_leaf.grad.numpy(), np.float64)
        if affine:
            assert_close(ours.weight.grad.numpy(), theirs.weight.grad.numpy(), np.float64)
        for key, value in theirs.state_dict().items():
            assert_close(np.asarray(ours.state_dict()[key]), value.numpy(), np.float64)


# ---- small networks end to end ------------------------------------------------------------------

def _mlp(lib, dtype=None):
    kw = {} if dtype is None else {"dtype": dtype}
    return lib.Sequential(lib.Linear(12, 16, **kw), lib.ReLU(), lib.Dropout(0.3), lib.Linear(16, 8, **kw), lib.Tanh(),
                          lib.Linear(8, 5, **kw))


def _convnet(lib, dtype=None):
    kw = {} if dtype is None else {"dtype": dtype}
    return lib.Sequential(lib.Conv2d(2, 4, 3, padding=1, **kw), lib.BatchNorm2d(4, **kw), lib.ReLU(), lib.MaxPool2d(2),
                          lib.Conv2d(4, 6, 3, **kw), lib.LeakyReLU(0.05), lib.AdaptiveAvgPool2d(2), lib.Flatten(),
                          lib.Linear(24, 5, **kw))


@pytest.mark.parametrize("name, input_shape", [("mlp", (6, 12)), ("convnet", (3, 2, 10, 9))])
def test_network_loss_grads_and_sgd_steps_match_torch(name, input_shape):
    torch = torch_module()
    build = {"mlp": _mlp, "convnet": _convnet}[name]
    torch.manual_seed(0)
    theirs = build(torch.nn).double()
    ours = build(nn, np.float64)
    ours.load_state_dict(theirs.state_dict())
    if name == "mlp":
        ours[2].eval()  # dropout off: the masks of the two libraries are not comparable
        theirs[2].eval()
    ours_opt = nn.optim.SGD(ours.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    theirs_opt = torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    target = np.random.default_rng(0).integers(0, 5, size=input_shape[0])
    for step in range(3):
        x = random_array(input_shape, np.float64, seed=step)
        loss_ours = nn.CrossEntropyLoss(label_smoothing=0.1)(ours(nn.Tensor(x)), target)
        loss_theirs = torch.nn.CrossEntropyLoss(label_smoothing=0.1)(theirs(torch.tensor(x)), torch.tensor(target))
        assert loss_ours.item() == pytest.approx(loss_theirs.item(), rel=1e-10)
        ours_opt.zero_grad()
        theirs_opt.zero_grad()
        loss_ours.backward()
        loss_theirs.backward()
        for (key, p), q in zip(ours.named_parameters(), theirs.parameters()):
            assert_close(p.grad.data, q.grad.numpy(), np.float64, name=f"step {step} grad of {key}")
        ours_opt.step()
        theirs_opt.step()
    compare_buffers(ours, theirs)


def test_rng_state_round_trip_repeats_dropout_masks():
    x = nn.Tensor(np.ones((20, 30), np.float32))
    nn.manual_seed(1)
    saved = nn.init.rng_state()
    first = nn.functional.dropout(x, 0.5).data
    nn.functional.dropout(x, 0.5)
    nn.init.set_rng_state(saved)
    np.testing.assert_array_equal(nn.functional.dropout(x, 0.5).data, first)


def test_one_element_sequences_stand_for_both_dims_as_torch():
    """stride=(2,), padding=[1], kernel_size=(2,): one value for both spatial dims, as torch's convolution and
    pooling take them."""
    torch = torch_module()
    x = random_array((1, 2, 7, 6), np.float64, seed=31)
    w = random_array((3, 2, 3, 3), np.float64, seed=32)
    tx, tw = torch.tensor(x), torch.tensor(w)
    F, tF = nn.functional, torch.nn.functional
    for ours, theirs in ((F.conv2d(nn.Tensor(x), nn.Tensor(w), stride=(2,), padding=[1]),
                          tF.conv2d(tx, tw, stride=(2,), padding=[1])),
                         (F.conv_transpose2d(nn.Tensor(x), nn.Tensor(w.transpose(1, 0, 2, 3).copy()), stride=(2,)),
                          tF.conv_transpose2d(tx, tw.transpose(0, 1), stride=(2,))),
                         (F.max_pool2d(nn.Tensor(x), (2,)), tF.max_pool2d(tx, (2,))),
                         (F.avg_pool2d(nn.Tensor(x), [3], stride=(2,)), tF.avg_pool2d(tx, [3], stride=(2,)))):
        assert_close(ours.numpy(), theirs.numpy(), np.float64)


def test_batch_norm_reset_parameters_dropout_and_avg_pool_arguments_as_torch():
    """BatchNorm's reset_parameters (a re-initialisation loop over modules skipped it), Dropout's repr and NumPy
    probabilities, AvgPool2d's stride=0 refused (it silently became the kernel size)."""
    torch = torch_module()
    ours, theirs = nn.BatchNorm1d(3, dtype=np.float64), torch.nn.BatchNorm1d(3).double()
    x = random_array((5, 3), np.float64, seed=8)
    for model, lib_x in ((ours, nn.Tensor(x)), (theirs, torch.tensor(x))):
        model(lib_x)
        model.weight.data[...] = 5.0
        model.reset_parameters()
    for key, value in theirs.state_dict().items():
        np.testing.assert_array_equal(np.asarray(ours.state_dict()[key]), value.numpy(), err_msg=key)
    for p in (0.25, 0, np.float32(0.25)):
        assert repr(nn.Dropout(p)) == repr(torch.nn.Dropout(p))
    assert nn.functional.dropout(nn.Tensor(x), p=np.float32(0.25), training=False).shape == x.shape
    assert repr(nn.AvgPool2d(3)) == repr(torch.nn.AvgPool2d(3))
    with pytest.raises(ValueError, match="avg_pool2d: stride"):
        nn.AvgPool2d(3, stride=0)(nn.Tensor(np.ones((1, 1, 6, 6), np.float32)))


def test_pad_takes_integer_and_bool_tensors_as_torch():
    torch = torch_module()
    tokens = np.array([[1, 2, 3], [4, 5, 6]])
    for array, value in ((tokens, 0), (tokens, 7), (tokens > 2, 0)):
        ours = nn.functional.pad(nn.Tensor(array), (1, 2), value=value)
        theirs = torch.nn.functional.pad(torch.from_numpy(array), (1, 2), value=value)
        assert ours.dtype == theirs.numpy().dtype
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
