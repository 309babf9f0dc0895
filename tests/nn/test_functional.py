"""nn.functional forward and backward against torch.nn.functional (float64 on the CPU path)."""
import numpy as np
import pytest

import nn
import nn.functional as F
from tests.oracle import assert_close, random_array, torch_module, torch_reference


def check_op(ours, theirs, shapes, grad_of=None, seed=0, arrays=None):
    """Run ours(*Tensors) and theirs(*torch tensors) on the same float64 inputs; compare outputs and the
    gradients of sum(out * random) with respect to the inputs at the positions in `grad_of`."""
    arrays = arrays or [random_array(s, np.float64, seed=seed + i) for i, s in enumerate(shapes)]
    grad_of = list(range(len(arrays))) if grad_of is None else grad_of
    tensors = [nn.Tensor(a.copy(), requires_grad=i in grad_of) for i, a in enumerate(arrays)]
    out = ours(*tensors)
    grad_output = random_array(out.shape, np.float64, seed=seed + 99)
    expected, expected_grads = torch_reference(theirs, *arrays, grad_output=grad_output, grad_of=grad_of)
    assert_close(out.data, expected, np.float64, name="output")
    out.backward(grad_output)
    for i, expected_grad in zip(grad_of, expected_grads):
        assert_close(tensors[i].grad.data, expected_grad, np.float64, name=f"grad of input {i}")
    return out


# ---- activations --------------------------------------------------------------------------------

ACTIVATIONS = {
    "relu": (F.relu, lambda t: t.relu()),
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.2), lambda x: torch_module().nn.functional.leaky_relu(x, 0.2)),
    "sigmoid": (F.sigmoid, lambda t: t.sigmoid()),
    "tanh": (F.tanh, lambda t: t.tanh()),
    "tensor_methods": (lambda x: x.relu() + x.sigmoid() * x.tanh(), lambda x: x.relu() + x.sigmoid() * x.tanh()),
    "softmax_dim1": (lambda x: F.softmax(x, 1), lambda x: x.softmax(1)),
    "softmax_dim0": (lambda x: F.softmax(x, dim=0), lambda x: x.softmax(0)),
    "log_softmax_last": (lambda x: x.log_softmax(-1), lambda x: x.log_softmax(-1)),
}


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation(name):
    ours, theirs = ACTIVATIONS[name]
    check_op(ours, theirs, [(3, 5, 7)])


# ---- dropout ------------------------------------------------------------------------------------

def test_dropout_statistics_scaling_and_gradient():
    nn.manual_seed(0)
    x = nn.Tensor(np.ones((200, 500)), requires_grad=True)
    y = F.dropout(x, 0.3)
    kept = y.data != 0
    assert abs(kept.mean() - 0.7) < 0.01
    np.testing.assert_allclose(y.data[kept], 1 / 0.7)
    y.backward(np.full(y.shape, 2.0))
    np.testing.assert_allclose(x.grad.data, np.where(kept, 2 / 0.7, 0.0))
    assert F.dropout(x, 0.3, training=False) is x
    assert F.dropout(x, 0.0) is x
    assert float(np.abs(F.dropout(x, 1.0).data).max()) == 0.0
    nn.manual_seed(7)
    first = F.dropout(x, 0.5).data
    nn.manual_seed(7)
    np.testing.assert_array_equal(F.dropout(x, 0.5).data, first)
    with pytest.raises(ValueError, match="dropout: p must be a probability in"):
        F.dropout(x, 1.5)


# ---- linear algebra -----------------------------------------------------------------------------

@pytest.mark.parametrize("input_shape, bias", [((6, 5), True), ((2, 3, 5), True), ((7, 5), False), ((5,), True)])
def test_linear(input_shape, bias):
    torch = torch_module()
    shapes = [input_shape, (4, 5)] + ([(4,)] if bias else [])
    check_op(lambda *t: F.linear(*t), lambda *t: torch.nn.functional.linear(*t), shapes)


MATMUL_SHAPES = [
    [(4, 5), (5, 3)], [(2, 4, 5), (2, 5, 3)], [(2, 4, 5), (5, 3)], [(4, 5), (3, 5, 2)],
    [(5,), (5, 3)], [(4, 5), (5,)], [(2, 3, 4, 5), (2, 3, 5, 2)], [(2, 3, 4, 5), (5, 2)],
]


@pytest.mark.parametrize("shapes", MATMUL_SHAPES, ids=str)
def test_matmul_forms(shapes):
    check_op(lambda a, b: a @ b, lambda a, b: a @ b, shapes)


def test_matmul_bad_shapes():
    a, b = nn.Tensor(np.ones((2, 3))), nn.Tensor(np.ones((4, 2)))
    with pytest.raises(ValueError, match=r"matmul: inner dimensions differ: shapes \(2, 3\) and \(4, 2\)"):
        F.matmul(a, b)
    with pytest.raises(ValueError, match="batch dimensions must be equal"):
        F.matmul(nn.Tensor(np.ones((2, 2, 3))), nn.Tensor(np.ones((3, 3, 2))))


def test_flatten():
    torch = torch_module()
    check_op(lambda x: F.flatten(x, 1), lambda x: torch.flatten(x, 1), [(2, 3, 4, 5)])
    check_op(lambda x: F.flatten(x, 1, 2), lambda x: torch.flatten(x, 1, 2), [(2, 3, 4, 5)])


# ---- convolution, pooling, batch norm -----------------------------------------------------------

CONV_CASES = {
    "plain": (dict(), [(2, 3, 7, 6), (4, 3, 3, 3), (4,)]),
    "stride_pad": (dict(stride=2, padding=1), [(2, 3, 9, 8), (5, 3, 3, 2), (5,)]),
    "dilation_groups": (dict(padding=2, dilation=2, groups=2), [(1, 4, 7, 7), (6, 2, 3, 3), (6,)]),
    "same_no_bias": (dict(padding="same"), [(2, 2, 5, 6), (3, 2, 4, 3)]),
}


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("name", CONV_CASES)
def test_conv2d(name):
    torch = torch_module()
    options, shapes = CONV_CASES[name]
    check_op(lambda *t: F.conv2d(*t, **options), lambda *t: torch.nn.functional.conv2d(*t, **options), shapes)


POOL_CASES = {
    "max_2": ("max", dict(kernel_size=2)),
    "max_ceil_pad_dilation": ("max", dict(kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=True)),
    "max_dilated": ("max", dict(kernel_size=2, stride=1, dilation=2)),
    "avg_3_2": ("avg", dict(kernel_size=3, stride=2)),
    "avg_pad_exclude_ceil": ("avg", dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)),
    "avg_divisor": ("avg", dict(kernel_size=(2, 3), divisor_override=4)),
    "adaptive_3_2": ("adaptive", dict(output_size=(3, 2))),
    "adaptive_global": ("adaptive", dict(output_size=1)),
}


@pytest.mark.parametrize("name", POOL_CASES)
def test_pooling(name):
    torch = torch_module()
    kind, options = POOL_CASES[name]
    ours = {"max": F.max_pool2d, "avg": F.avg_pool2d, "adaptive": F.adaptive_avg_pool2d}[kind]
    theirs = {"max": torch.nn.functional.max_pool2d, "avg": torch.nn.functional.avg_pool2d,
              "adaptive": torch.nn.functional.adaptive_avg_pool2d}[kind]
    check_op(lambda x: ours(x, **options), lambda x: theirs(x, **options), [(2, 3, 7, 8)])


def test_max_pool2d_indices_match_torch():
    torch = torch_module()
    x = random_array((2, 3, 6, 7), np.float64)
    values, indices = F.max_pool2d(nn.Tensor(x), 3, 2, 1, return_indices=True)
    _, expected = torch.nn.functional.max_pool2d(torch.tensor(x), 3, 2, 1, return_indices=True)
    np.testing.assert_array_equal(indices.data, expected.numpy())
    assert not indices.requires_grad and values.shape == tuple(expected.shape)


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5), (3, 3, 4, 5)])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm(shape, training):
    torch = torch_module()
    running = [random_array((3,), np.float64, seed=5), random_array((3,), np.float64, seed=6, low=0.5, high=2.0)]
    ours_running = [r.copy() for r in running]
    theirs_running = [torch.tensor(r.copy()) for r in running]
    check_op(lambda x, w, b: F.batch_norm(x, *ours_running, w, b, training=training, momentum=0.2, eps=1e-3),
             lambda x, w, b: torch.nn.functional.batch_norm(x, *theirs_running, w, b, training=training,
                                                            momentum=0.2, eps=1e-3),
             [shape, (3,), (3,)])
    for mine, reference in zip(ours_running, theirs_running):
        assert_close(mine, reference.numpy(), np.float64, name="running statistics")


def test_batch_norm_without_weight_or_running_stats():
    torch = torch_module()
    check_op(lambda x: F.batch_norm(x, None, None, training=True),
             lambda x: torch.nn.functional.batch_norm(x, None, None, training=True), [(4, 3, 2, 2)])
    check_op(lambda x, b: F.batch_norm(x, None, None, None, b, training=True),
             lambda x, b: torch.nn.functional.batch_norm(x, None, None, None, b, training=True), [(5, 3), (3,)])


# ---- losses -------------------------------------------------------------------------------------

CROSS_ENTROPY_OPTIONS = [
    dict(), dict(reduction="sum"), dict(reduction="none"), dict(label_smoothing=0.15),
    dict(ignore_index=2), dict(weight=True), dict(weight=True, ignore_index=1, label_smoothing=0.1),
    dict(weight=True, reduction="none", label_smoothing=0.2),
]


@pytest.mark.parametrize("options", CROSS_ENTROPY_OPTIONS, ids=str)
@pytest.mark.parametrize("logits_shape", [(7, 4), (3, 4, 2, 3)])
def test_cross_entropy(options, logits_shape):
    torch = torch_module()
    rng = np.random.default_rng(1)
    target = rng.integers(0, 4, size=logits_shape[:1] + logits_shape[2:])
    options = dict(options)
    if options.pop("weight", False):
        options["weight"] = random_array((4,), np.float64, seed=3, low=0.2, high=2.0)
    torch_options = {k: torch.tensor(v) if k == "weight" else v for k, v in options.items()}
    check_op(lambda x: F.cross_entropy(x, target, **options),
             lambda x: torch.nn.functional.cross_entropy(x, torch.tensor(target), **torch_options),
             [logits_shape])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss(reduction):
    torch = torch_module()
    check_op(lambda a, b: F.mse_loss(a, b, reduction=reduction),
             lambda a, b: torch.nn.functional.mse_loss(a, b, reduction=reduction), [(3, 4), (3, 4)])


def test_loss_bad_input():
    x = nn.Tensor(np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"cross_entropy: expected logits \(N, C, ...\) with class indices \(N, ...\) "
                                         r"or class probabilities .* got logits of shape \(3, 4\) and target of "
                                         r"shape \(4,\)"):
        F.cross_entropy(x, np.zeros(4, np.int64))
    with pytest.raises(ValueError, match="cross_entropy: reduction must be one of"):
        F.cross_entropy(x, np.zeros(3, np.int64), reduction="avg")
    with pytest.raises(ValueError, match="mse_loss: input and target must have the same shape"):
        F.mse_loss(x, nn.Tensor(np.ones((4, 3))))
