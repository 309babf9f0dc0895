"""Layer-norm kernels on a real GPU against torch in float64 on the CPU (of the same float32 values) at realistic
sizes: rows kept in shared memory and rows too long for it, one and two normalised dims, without weight or bias,
rows with a large mean, deterministic weight gradients, non-contiguous input, and nn.LayerNorm on the GPU."""
import numpy as np
import pytest

import kernels
import nn
from tests.nn.test_layer_norm_layer import compare_float32_step, lstm_layer_norm_models, twins
from tests.oracle import assert_close, random_array, torch_module


def _reference(x, normalized_shape, weight, bias, grad_out, eps=1e-5):
    """torch's y, mean, rstd and (grad_x, grad_weight, grad_bias) in float64 (None for an absent vector)."""
    torch = torch_module()

    def tensor(a):
        return None if a is None else torch.tensor(a, dtype=torch.float64, requires_grad=True)
    tx, tw, tb = tensor(x), tensor(weight), tensor(bias)
    y, mean, rstd = torch.native_layer_norm(tx, normalized_shape, tw, tb, eps)
    y.backward(torch.tensor(grad_out, dtype=torch.float64))
    grads = [None if t is None else t.grad.numpy() for t in (tx, tw, tb)]
    return y.detach().numpy(), mean.detach().numpy(), rstd.detach().numpy(), grads


def _gpu(a):
    import cupy
    return None if a is None else cupy.asarray(a, dtype=cupy.float32)


def _assert_matches(outputs, grads_gpu, reference, rows, name=""):
    y, mean, rstd, grads = reference
    for label, actual, expected in zip(("y", "mean", "rstd"), outputs, (y, mean, rstd)):
        assert actual.dtype == np.float32 and actual.shape == expected.shape, label
        assert_close(actual, expected, np.float32, scale=8, name=f"{label} {name}")
    for label, actual, expected in zip(("grad_x", "grad_weight", "grad_bias"), grads_gpu, grads):
        if expected is None:
            assert actual is None, label
        elif label == "grad_x":
            assert_close(actual, expected, np.float32, scale=16, name=f"{label} {name}")
        else:
            # float32 sums over `rows` terms of size ~1: about 1e-6 * rows absolute
            assert_close(actual, expected, np.float32, rtol=1e-3, atol=max(1e-4, 1e-6 * rows), name=f"{label} {name}")


# (x shape, normalized_shape, weight, bias): CRNN/RNN-sized rows (45 steps x 64, 26 x 32), a transformer-sized
# one, a row of 63 (two dims, shorter than a block's 64 threads), rows the backward (6000: 2 x 6000 floats) or
# both passes (20000) cannot keep in shared memory, and one row of 1 value
@pytest.mark.parametrize("shape,normalized_shape,with_weight,with_bias", [
    ((64, 45, 128), (128,), True, True),
    ((32 * 26, 512), (512,), True, False),
    ((8192, 1024), (1024,), True, True),
    ((40, 50, 7, 9), (7, 9), False, True),
    ((300, 6000), (6000,), True, True),
    ((37, 20000), (20000,), False, False),
    ((1000, 1), (1,), True, True),
])
def test_layer_norm_on_gpu_matches_torch(shape, normalized_shape, with_weight, with_bias):
    x = random_array(shape, seed=1, low=-2.0, high=3.0)
    grad_out = random_array(shape, seed=2)
    weight = random_array(normalized_shape, seed=3, low=0.5, high=1.5) if with_weight else None
    bias = random_array(normalized_shape, seed=4) if with_bias else None
    reference = _reference(x, normalized_shape, weight, bias, grad_out)
    outputs = kernels.layer_norm(_gpu(x), normalized_shape, _gpu(weight), _gpu(bias))
    grads_gpu = kernels.layer_norm_backward(_gpu(grad_out), _gpu(x), normalized_shape, outputs[1], outputs[2],
                                            _gpu(weight), _gpu(bias))
    rows = x.size // int(np.prod(normalized_shape))
    _assert_matches(outputs, grads_gpu, reference, rows, name=str(shape))


@pytest.mark.parametrize("features", [128, 1024, 20000])
def test_layer_norm_on_gpu_of_rows_with_a_large_mean(features):
    """Rows of 1000 + noise of 1e-2 (float32 steps near 1000 are 6e-5): the kernel's shifted sums keep y to the
    float32 precision of values of size 1, where torch's own float32 layer_norm is off by about 7e-3."""
    rng = np.random.default_rng(5)
    x = (1000.0 + 1e-2 * rng.standard_normal((64, features))).astype(np.float32)
    y_ref, mean_ref, rstd_ref, _ = _reference(x, (features,), None, None, np.zeros_like(x))
    y, mean, rstd = kernels.layer_norm(_gpu(x), features)
    assert_close(mean, mean_ref, np.float32, name="mean")
    assert_close(rstd, rstd_ref, np.float32, scale=8, name="rstd")
    assert_close(y, y_ref, np.float32, scale=8, name="y")


def test_layer_norm_weight_gradients_on_gpu_are_deterministic():
    import cupy
    x, grad_out = _gpu(random_array((4096, 768), seed=6)), _gpu(random_array((4096, 768), seed=7))
    weight, bias = _gpu(random_array((768,), seed=8)), _gpu(random_array((768,), seed=9))
    _, mean, rstd = kernels.layer_norm(x, 768, weight, bias)
    first = kernels.layer_norm_backward(grad_out, x, 768, mean, rstd, weight, bias)
    second = kernels.layer_norm_backward(grad_out, x, 768, mean, rstd, weight, bias)
    for a, b in zip(first, second):
        assert bool(cupy.array_equal(a, b))


def test_layer_norm_on_gpu_takes_non_contiguous_input():
    import cupy
    x = random_array((256, 96), seed=10)
    grad_out = random_array((96, 256), seed=11).T            # (256, 96), transposed memory
    weight, bias = random_array((96,), seed=12), random_array((96,), seed=13)
    reference = _reference(x, (96,), weight, bias, np.ascontiguousarray(grad_out))
    x_gpu = cupy.asfortranarray(_gpu(x))
    outputs = kernels.layer_norm(x_gpu, 96, _gpu(weight), _gpu(bias))
    grads = kernels.layer_norm_backward(cupy.asarray(grad_out), x_gpu, 96, outputs[1], outputs[2], _gpu(weight),
                                        _gpu(bias))
    _assert_matches(outputs, grads, reference, 256, name="non-contiguous")


def test_layer_norm_layer_on_gpu_matches_torch():
    """nn.LayerNorm on the GPU (over two dims) against torch's float64 layer with the same parameters: output and
    the gradients of input, weight and bias."""
    ours, theirs = twins((4, 64), dtype=np.float32)
    ours.to("cuda")
    x, grad = random_array((16, 45, 4, 64), seed=14, low=-2.0, high=3.0), random_array((16, 45, 4, 64), seed=15)
    compare_float32_step(ours, theirs, x, grad, to_device=_gpu)


def test_lstm_layer_norm_linear_model_on_gpu_matches_torch():
    import cupy
    torch = torch_module()
    ours, theirs = lstm_layer_norm_models(input_size=32, hidden_size=256, classes=10, dtype=np.float32)
    ours.to("cuda")
    x = random_array((16, 45, 32), seed=16)
    labels = np.random.default_rng(17).integers(0, 10, size=(16 * 45,))
    loss = nn.functional.cross_entropy(ours(nn.Tensor(_gpu(x))).reshape(-1, 10), cupy.asarray(labels))
    expected = torch.nn.functional.cross_entropy(theirs(torch.from_numpy(x.astype(np.float64))).reshape(-1, 10),
                                                 torch.from_numpy(labels))
    assert loss.device == "cuda"
    assert_close(loss.data, expected.detach().numpy(), np.float32, rtol=2e-3, atol=2e-4, name="loss")
    loss.backward()
    expected.backward()
    theirs_params = dict(theirs.named_parameters())
    for name, parameter in ours.named_parameters():
        # (fp32 through 45 LSTM steps against float64: the tolerance of tests/gpu/test_models_gpu.py's LSTMs)
        assert_close(parameter.grad.data, theirs_params[name].grad.numpy(), np.float32, rtol=5e-3, atol=5e-4,
                     name=f"grad of {name}")
