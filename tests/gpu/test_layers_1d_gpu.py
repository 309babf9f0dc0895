"""The 1-D convolution and pooling ops and layers on CuPy arrays (the 2-D CUDA kernels on maps of height 1) at
sequence-CNN / CRNN sizes, against PyTorch in float64 on the CPU on the same float32 values: outputs,
max_pool1d's indices, the gradients of input, weight and bias, the modules with a torch twin's state dict, and a
Conv1d -> BatchNorm1d -> ReLU -> MaxPool1d -> LSTM -> Linear model's outputs and gradients. Tolerances are relative
to the largest reference value (float32 sums of up to a few thousand terms). Needs a GPU (skipped elsewhere)."""
import numpy as np
import pytest

import nn
from tests.nn.test_layers_1d import compare_with_torch, conv_lstm_model
from tests.oracle import assert_close, random_array, torch_module

F = nn.functional
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")   # torch's


def _close(actual, expected, name):
    assert_close(actual, expected, rtol=1e-3, atol=2e-5 * max(float(np.abs(expected).max()), 1.0), name=name)


def _compare(ours, theirs, arrays, parameters=()):
    compare_with_torch(ours, theirs, arrays, np.float32, parameters, device="cuda", close=_close)


CONV_CASES = {   # input shape, weight shape, keyword arguments (all with a bias)
    "audio frames": ((16, 64, 401), (128, 64, 5), dict(padding=2)),
    "strided dilated grouped": ((8, 64, 333), (96, 16, 3), dict(stride=2, padding=2, dilation=2, groups=4)),
    "same even kernel": ((8, 32, 250), (48, 32, 4), dict(padding="same")),
    "pointwise (GEMM path)": ((8, 128, 301), (64, 128, 1), {}),
    "depthwise": ((4, 64, 333), (64, 1, 7), dict(padding=3, groups=64)),
    "text embeddings, unbatched": ((300, 129), (100, 300, 3), dict(padding="valid")),
}


@pytest.mark.parametrize("name", CONV_CASES)
def test_conv1d_on_gpu_matches_torch(name):
    torch = torch_module()
    input_shape, weight_shape, kwargs = CONV_CASES[name]
    arrays = [random_array(input_shape, seed=1), random_array(weight_shape, seed=2),
              random_array(weight_shape[:1], seed=3)]
    _compare(lambda *t: F.conv1d(*t, **kwargs), lambda *t: torch.nn.functional.conv1d(*t, **kwargs), arrays)


POOL_CASES = {
    "max_pool1d with indices, ceil": (
        lambda f: (lambda t: f.max_pool1d(t, 3, 2, 1, ceil_mode=True, return_indices=True)), (16, 64, 401)),
    "max_pool1d dilated, unbatched": (lambda f: (lambda t: f.max_pool1d(t, 3, 1, 1, dilation=2)), (64, 257)),
    "max_pool1d halving": (lambda f: (lambda t: f.max_pool1d(t, 2, return_indices=True)), (32, 128, 200)),
    "avg_pool1d padding excluded, ceil": (
        lambda f: (lambda t: f.avg_pool1d(t, 4, 3, 2, ceil_mode=True, count_include_pad=False)), (16, 64, 401)),
    "avg_pool1d padding included": (lambda f: (lambda t: f.avg_pool1d(t, 3, 2, 1)), (16, 64, 400)),
    "adaptive_avg_pool1d not dividing": (lambda f: (lambda t: f.adaptive_avg_pool1d(t, 50)), (16, 64, 401)),
    "adaptive_avg_pool1d to one": (lambda f: (lambda t: f.adaptive_avg_pool1d(t, 1)), (64, 333)),
}


@pytest.mark.parametrize("name", POOL_CASES)
def test_pooling_on_gpu_matches_torch(name):
    torch = torch_module()
    make, shape = POOL_CASES[name]
    _compare(make(F), make(torch.nn.functional), [random_array(shape, seed=4)])


def test_max_pool1d_ties_on_gpu_give_torchs_indices():
    import cupy
    torch = torch_module()
    x = np.round(random_array((8, 32, 301), seed=5) * 2) / 2
    _, indices = F.max_pool1d(nn.Tensor(cupy.asarray(x)), 4, 2, 1, ceil_mode=True, return_indices=True)
    _, expected = torch.nn.functional.max_pool1d(torch.from_numpy(x), 4, 2, 1, ceil_mode=True, return_indices=True)
    assert isinstance(indices.data, cupy.ndarray)
    np.testing.assert_array_equal(cupy.asnumpy(indices.data), expected.numpy())


def test_non_contiguous_gpu_input_matches_torch():
    torch = torch_module()
    arrays = [random_array((8, 64, 803), seed=6), random_array((32, 64, 3), seed=7)]
    _compare(lambda x, w: F.max_pool1d(F.conv1d(x[:, :, ::2], w, padding=1), 2),
             lambda x, w: torch.nn.functional.max_pool1d(torch.nn.functional.conv1d(x[:, :, ::2], w, padding=1), 2),
             arrays)


MODULES = {
    "Conv1d": (lambda lib: lib.Conv1d(64, 96, 5, stride=2, padding=2, groups=2), (16, 64, 401)),
    "Conv1d same, no bias, unbatched": (lambda lib: lib.Conv1d(40, 64, 4, padding="same", bias=False), (40, 301)),
    "MaxPool1d": (lambda lib: lib.MaxPool1d(3, 2, 1, return_indices=True), (16, 64, 401)),
    "AvgPool1d": (lambda lib: lib.AvgPool1d(3, 2, 1, ceil_mode=True, count_include_pad=False), (16, 64, 401)),
    "AdaptiveAvgPool1d": (lambda lib: lib.AdaptiveAvgPool1d(37), (16, 64, 401)),
}


@pytest.mark.parametrize("name", MODULES)
def test_module_on_gpu_matches_torch_twin(name):
    torch = torch_module()
    make, shape = MODULES[name]
    torch.manual_seed(0)
    theirs = make(torch.nn).double()
    ours = make(nn)
    ours.load_state_dict(theirs.state_dict())
    ours.to("cuda")
    their_parameters = dict(theirs.named_parameters())
    parameters = [(p, their_parameters[key]) for key, p in ours.named_parameters()]
    assert all(p.device == "cuda" for p, _ in parameters)
    _compare(ours, theirs, [random_array(shape, seed=8)], parameters)


def test_conv_lstm_model_on_gpu_matches_torch():
    """Logits at every pooled step and the gradients of input and every parameter (BatchNorm1d in training)."""
    torch = torch_module()
    torch.manual_seed(0)
    theirs = conv_lstm_model(torch.nn, channels=40, features=64, hidden=128, classes=10).double()
    ours = conv_lstm_model(nn, channels=40, features=64, hidden=128, classes=10)
    ours.load_state_dict(theirs.state_dict())
    ours.to("cuda")
    their_parameters = dict(theirs.named_parameters())
    parameters = [(p, their_parameters[key]) for key, p in ours.named_parameters()]

    def close(actual, expected, name):   # fp32 through 100 LSTM steps against float64: the other LSTM GPU tests'
        assert_close(actual, expected, np.float32, rtol=5e-3, atol=5e-4, name=name)

    compare_with_torch(ours, theirs, [random_array((8, 40, 201), seed=9)], np.float32, parameters, device="cuda",
                       close=close)


def test_gpu_input_errors_name_the_1d_op():
    import cupy
    with pytest.raises(TypeError, match="conv1d: input must be float32 on cuda, got float64"):
        F.conv1d(nn.Tensor(cupy.ones((2, 3, 9))), nn.Tensor(cupy.ones((4, 3, 3), np.float32)))
    with pytest.raises(ValueError, match="conv1d: arrays live on different devices"):
        F.conv1d(nn.Tensor(cupy.ones((2, 3, 9), np.float32)), nn.Tensor(np.ones((4, 3, 3), np.float32)))
    with pytest.raises(ValueError, match=r"Conv1d\(3, 4\): parameter weight is on cpu but the input is on cuda"):
        nn.Conv1d(3, 4, 3)(nn.Tensor(cupy.ones((2, 3, 9), np.float32)))
    with pytest.raises(TypeError, match="max_pool1d: input must be float32 on cuda, got float64"):
        F.max_pool1d(nn.Tensor(cupy.ones((2, 3, 9))), 2)
