"""conv_transpose2d on a real GPU (the conv2d CUDA kernels and the 1x1 GEMM under it) at DCGAN generator and U-Net
decoder sizes and odd ones, against PyTorch in float64: outputs and the gradients of input, weight and bias; the
gradients written into given arrays; non-contiguous input; the nn layer with a torch twin's state dict and a small
decoder. The reference runs on the GPU when this torch build has CUDA, else on the CPU. Tolerances are relative to
the largest reference value, as in test_conv_gpu.py. Needs a GPU (skipped elsewhere)."""
import numpy as np
import pytest

import kernels
import nn
from tests.nn.test_layers_1d import compare_with_torch
from tests.oracle import assert_close, random_array, torch_module

SHAPES = {  # name: (input shape (N, C_in, H, W), C_out, kernel, keyword arguments)
    "dcgan 512->256 4x4/2": ((64, 512, 4, 4), 256, 4, dict(stride=2, padding=1)),
    "dcgan 256->128 4x4/2": ((64, 256, 8, 8), 128, 4, dict(stride=2, padding=1)),
    "dcgan 64->3 4x4/2": ((64, 64, 32, 32), 3, 4, dict(stride=2, padding=1)),
    "dcgan 100->512 4x4 from 1x1": ((64, 100, 1, 1), 512, 4, {}),
    "unet 256->128 2x2/2": ((8, 256, 32, 32), 128, 2, dict(stride=2)),
    "unet 128->64 2x2/2": ((8, 128, 64, 64), 64, 2, dict(stride=2)),
    "3x3/2 output_padding groups 2, odd": ((4, 48, 17, 19), 32, 3, dict(stride=2, padding=1, output_padding=1,
                                                                        groups=2)),
    "3x3/3 dilation 2, odd": ((4, 32, 13, 11), 24, 3, dict(stride=3, padding=1, output_padding=2, dilation=2)),
    "output_padding >= stride": ((4, 16, 21, 23), 16, 3, dict(dilation=2, output_padding=1)),
    "1x1 (GEMM path), odd": ((8, 64, 33, 35), 96, 1, {}),
    "depthwise 3x3/2": ((8, 64, 15, 17), 64, 3, dict(stride=2, padding=1, output_padding=1, groups=64)),
}


def _torch_reference(x, weight, bias, grad_out, kwargs):
    import torch
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cudnn.allow_tf32 = False
    tensors = [torch.tensor(a, dtype=torch.float64, device=device, requires_grad=True) for a in (x, weight, bias)]
    y = torch.nn.functional.conv_transpose2d(*tensors, **kwargs)
    y.backward(torch.tensor(grad_out, dtype=torch.float64, device=device))
    return [t.detach().cpu().numpy() for t in (y,) + tuple(t.grad for t in tensors)]


def _close(actual, expected, name):
    assert_close(actual, expected, rtol=1e-3, atol=2e-5 * max(float(np.abs(expected).max()), 1.0), name=name)


def _arrays(input_shape, c_out, kernel, kwargs, seed=0):
    groups = kwargs.get("groups", 1)
    x = random_array(input_shape, seed=seed + 1)
    weight = random_array((input_shape[1], c_out // groups, kernel, kernel), seed=seed + 2)
    bias = random_array((c_out,), seed=seed + 3)
    return x, weight, bias


@pytest.mark.parametrize("name", SHAPES)
def test_conv_transpose2d_on_gpu_matches_torch(name):
    import cupy
    input_shape, c_out, kernel, kwargs = SHAPES[name]
    x, weight, bias = _arrays(input_shape, c_out, kernel, kwargs)
    y = kernels.conv_transpose2d(cupy.asarray(x), cupy.asarray(weight), cupy.asarray(bias), **kwargs)
    grad_out = random_array(y.shape, seed=4)
    expected = _torch_reference(x, weight, bias, grad_out, kwargs)
    ours = (y,) + kernels.conv_transpose2d_backward(cupy.asarray(grad_out), cupy.asarray(x), cupy.asarray(weight),
                                                    **kwargs)
    for label, actual, wanted in zip(("y", "grad_x", "grad_weight", "grad_bias"), ours, expected):
        assert isinstance(actual, cupy.ndarray) and actual.dtype == np.float32
        _close(actual, wanted, label)


def test_gradients_into_given_arrays_and_non_contiguous_input_on_gpu():
    """grad_weight_out / grad_bias_out as views of one flat buffer (as nn's flat optimizers pass them), written by
    the kernels and returned; a transposed (non-contiguous) input."""
    import cupy
    kwargs = dict(stride=2, padding=1, output_padding=1, groups=2)
    x, weight, bias = _arrays((6, 40, 21, 18), 24, 3, kwargs, seed=10)
    x_gpu = cupy.asarray(np.ascontiguousarray(x.transpose(0, 1, 3, 2))).transpose(0, 1, 3, 2)
    assert not x_gpu.flags.c_contiguous
    y = kernels.conv_transpose2d(x_gpu, cupy.asarray(weight), cupy.asarray(bias), **kwargs)
    grad_out = random_array(y.shape, seed=14)
    expected = _torch_reference(x, weight, bias, grad_out, kwargs)
    buffer = cupy.full(weight.size + bias.size + 5, cupy.nan, cupy.float32)
    grad_weight_out = buffer[:weight.size].reshape(weight.shape)
    grad_bias_out = buffer[weight.size:weight.size + bias.size]
    grads = kernels.conv_transpose2d_backward(cupy.asarray(grad_out), x_gpu, cupy.asarray(weight), **kwargs,
                                              grad_weight_out=grad_weight_out, grad_bias_out=grad_bias_out)
    assert grads[1] is grad_weight_out and grads[2] is grad_bias_out
    for label, actual, wanted in zip(("y", "grad_x", "grad_weight", "grad_bias"), (y,) + grads, expected):
        _close(actual, wanted, label)
    assert bool(cupy.isnan(buffer[-5:]).all())


def test_conv_transpose2d_on_gpu_rejects_float64():
    import cupy
    with pytest.raises(TypeError, match="conv_transpose2d: x must be float32 on cuda"):
        kernels.conv_transpose2d(cupy.ones((1, 1, 4, 4)), cupy.ones((1, 1, 3, 3)))


MODULES = {  # name: (constructor, input shape, output_size)
    "dcgan": (lambda lib: lib.ConvTranspose2d(128, 64, 4, stride=2, padding=1), (16, 128, 16, 16), None),
    "unet": (lambda lib: lib.ConvTranspose2d(64, 32, 2, stride=2, bias=False), (4, 64, 33, 31), None),
    "output_size": (lambda lib: lib.ConvTranspose2d(32, 16, 3, stride=2, padding=1, groups=2), (4, 32, 15, 17),
                    (30, 34)),
}


@pytest.mark.parametrize("name", MODULES)
def test_module_on_gpu_matches_torch_twin(name):
    torch = torch_module()
    make, shape, output_size = MODULES[name]
    torch.manual_seed(0)
    theirs = make(torch.nn).double()
    ours = make(nn)
    ours.load_state_dict(theirs.state_dict())
    ours.to("cuda")
    their_parameters = dict(theirs.named_parameters())
    parameters = [(p, their_parameters[key]) for key, p in ours.named_parameters()]
    assert all(p.device == "cuda" for p, _ in parameters)
    compare_with_torch(lambda x: ours(x, output_size), lambda x: theirs(x, output_size),
                       [random_array(shape, seed=8)], np.float32, parameters, device="cuda", close=_close)


def test_decoder_on_gpu_matches_torch():
    """A DCGAN-like generator (4x4 stride 2 layers, batch norm in training, ReLU, tanh) from 4x4 codes to 32x32
    images: outputs and every parameter's gradient. The layers ahead of a batch norm have no bias, as DCGAN's
    (its gradient would be zero but for rounding, which no tolerance relative to it can bound)."""
    torch = torch_module()

    def decoder(lib):
        return lib.Sequential(lib.ConvTranspose2d(64, 32, 4, stride=2, padding=1, bias=False), lib.BatchNorm2d(32),
                              lib.ReLU(),
                              lib.ConvTranspose2d(32, 16, 4, stride=2, padding=1, bias=False), lib.BatchNorm2d(16),
                              lib.ReLU(),
                              lib.ConvTranspose2d(16, 3, 4, stride=2, padding=1), lib.Tanh())

    torch.manual_seed(0)
    theirs = decoder(torch.nn).double()
    ours = decoder(nn)
    ours.load_state_dict(theirs.state_dict())
    ours.to("cuda")
    their_parameters = dict(theirs.named_parameters())
    parameters = [(p, their_parameters[key]) for key, p in ours.named_parameters()]

    def close(actual, expected, name):   # three layers and two batch norms in float32 against float64
        assert_close(actual, expected, np.float32, rtol=2e-3, atol=1e-4 * max(float(np.abs(expected).max()), 1.0),
                     name=name)

    compare_with_torch(ours, theirs, [random_array((16, 64, 4, 4), seed=9)], np.float32, parameters, device="cuda",
                       close=close)
