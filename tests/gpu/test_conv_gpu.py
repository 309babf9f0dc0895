"""conv2d kernels on a real GPU at the ANCHORS / DeepBench sizes, against PyTorch in float64.

The reference runs on the GPU when this torch build has CUDA (cuDNN in float64, TF32 irrelevant), else on
the CPU. Tolerances are relative to the largest reference value: float32 sums of up to ~200k terms.
"""
import functools

import numpy as np
import pytest

import kernels
from tests.oracle import assert_close, random_array

SHAPES = [  # (N, C, H, W, K, kernel, stride, padding, groups)
    (64, 64, 56, 56, 64, 3, 1, 1, 1),
    (64, 128, 28, 28, 128, 3, 1, 1, 1),
    (64, 256, 14, 14, 256, 3, 1, 1, 1),
    (32, 3, 224, 224, 64, 7, 2, 3, 1),
    (16, 64, 32, 128, 64, 3, 1, 1, 1),
    (16, 1, 48, 480, 16, 3, 1, 1, 1),
    (16, 16, 24, 240, 32, 3, 1, 1, 1),
    (16, 64, 6, 60, 128, 3, 1, 1, 1),
    (8, 64, 33, 35, 128, 1, 1, 0, 1),       # 1x1, odd sizes
    (8, 64, 33, 35, 96, 3, 2, 1, 2),        # groups 2, stride 2
    (8, 96, 29, 31, 96, 3, 1, 1, 96),       # depthwise
    (4, 32, 30, 30, 48, 5, 3, 2, 1),        # stride larger than... a 5x5 at stride 3
]


def _torch_reference(x, weight, bias, grad_out, stride, padding, groups):
    import torch
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cudnn.allow_tf32 = False
    tensors = [torch.tensor(a, dtype=torch.float64, device=device, requires_grad=True) for a in (x, weight, bias)]
    y = torch.nn.functional.conv2d(*tensors, stride=stride, padding=padding, groups=groups)
    y.backward(torch.tensor(grad_out, dtype=torch.float64, device=device))
    return [t.detach().cpu().numpy() for t in (y,) + tuple(t.grad for t in tensors)]


def _close(actual, expected, name):
    assert_close(actual, expected, rtol=1e-3, atol=2e-5 * float(np.abs(expected).max()), name=name)


@pytest.mark.parametrize("shape", SHAPES, ids=["x".join(map(str, s)) for s in SHAPES])
def test_conv2d_on_gpu_matches_torch(shape):
    import cupy
    n, c, h, w, k, size, stride, padding, groups = shape
    x = random_array((n, c, h, w), seed=1)
    weight = random_array((k, c // groups, size, size), seed=2)
    bias = random_array((k,), seed=3)
    y = kernels.conv2d(cupy.asarray(x), cupy.asarray(weight), cupy.asarray(bias), stride=stride, padding=padding,
                       groups=groups)
    grad_out = random_array(y.shape, seed=4)
    expected = _torch_reference(x, weight, bias, grad_out, stride, padding, groups)
    ours = (y,) + kernels.conv2d_backward(cupy.asarray(grad_out), cupy.asarray(x), cupy.asarray(weight),
                                          stride=stride, padding=padding, groups=groups)
    for name, actual, wanted in zip(("y", "grad_x", "grad_weight", "grad_bias"), ours, expected):
        assert isinstance(actual, cupy.ndarray)
        _close(actual, wanted, name)


def test_conv2d_on_gpu_same_padding_dilation_and_non_contiguous_input():
    import cupy
    x = random_array((4, 40, 19, 16), seed=5)
    weight = random_array((24, 8, 4, 3), seed=6)
    x_gpu = cupy.asarray(x).transpose(0, 3, 2, 1)        # (4, 16, 19, 40), not contiguous
    x_view = np.ascontiguousarray(x.transpose(0, 3, 2, 1))
    kwargs = dict(padding="same", dilation=(2, 1), groups=2)
    y = kernels.conv2d(x_gpu, cupy.asarray(weight), **kwargs)
    expected = kernels.conv2d(x_view.astype(np.float64), weight.astype(np.float64), **kwargs)
    _close(y, expected, "y")
    grad_out = random_array(y.shape, seed=7)
    grad_x, grad_weight, grad_bias = kernels.conv2d_backward(cupy.asarray(grad_out), x_gpu, cupy.asarray(weight),
                                                             need_bias=False, **kwargs)
    assert grad_bias is None
    expected_x, expected_weight, _ = kernels.conv2d_backward(grad_out.astype(np.float64), x_view.astype(np.float64),
                                                             weight.astype(np.float64), need_bias=False, **kwargs)
    _close(grad_x, expected_x, "grad_x")
    _close(grad_weight, expected_weight, "grad_weight")


def test_conv2d_on_gpu_rejects_float64():
    import cupy
    with pytest.raises(TypeError, match="conv2d: x must be float32 on cuda"):
        kernels.conv2d(cupy.ones((1, 1, 4, 4)), cupy.ones((1, 1, 3, 3)))


def test_conv2d_on_gpu_1x1_direct_path_matches_matmul_path(monkeypatch):
    """1x1 filters normally go through kernels.matmul; the implicit-GEMM kernels must agree with it."""
    import cupy
    from kernels import conv as public
    x = cupy.asarray(random_array((8, 96, 17, 29), seed=8))
    weight = cupy.asarray(random_array((80, 96, 1, 1), seed=9))
    bias = cupy.asarray(random_array((80,), seed=10))
    grad_out = cupy.asarray(random_array((8, 80, 17, 29), seed=11))
    through_gemm = (kernels.conv2d(x, weight, bias),) + kernels.conv2d_backward(grad_out, x, weight)
    monkeypatch.setattr(public, "GEMM_FOR_1X1", False)
    direct = (kernels.conv2d(x, weight, bias),) + kernels.conv2d_backward(grad_out, x, weight)
    for name, a, b in zip(("y", "grad_x", "grad_weight", "grad_bias"), through_gemm, direct):
        _close(a, cupy.asnumpy(b), name)


WINOGRAD_SHAPES = [  # (N, C, H, W, K, padding): stride-1 3x3 layers
    (64, 256, 6, 45, 256, 1),     # the train suite CRNN's heaviest layer
    (3, 64, 17, 19, 80, 1),       # odd sizes: clipped tiles
    (5, 72, 9, 11, 64, 0),
]


@pytest.mark.parametrize("algorithm", ["winograd", "implicit"])
@pytest.mark.parametrize("shape", WINOGRAD_SHAPES, ids=["x".join(map(str, s)) for s in WINOGRAD_SHAPES])
def test_winograd_and_implicit_gemm_on_gpu_match_torch(shape, algorithm, monkeypatch):
    """Both algorithms for the layers Winograd takes, with the images split over several chunks."""
    import cupy
    from kernels.cuda import conv_winograd
    monkeypatch.setattr(conv_winograd, "force_algorithm", algorithm)
    monkeypatch.setattr(conv_winograd, "CHUNK_BYTES", 2**20)
    launched = []
    original_launch = conv_winograd.launch_1d
    monkeypatch.setattr(conv_winograd, "launch_1d",
                        lambda kernel, *args, **kwargs: launched.append(kernel) or original_launch(kernel, *args,
                                                                                                   **kwargs))
    n, c, h, w, k, padding = shape
    x = random_array((n, c, h, w), seed=5)
    weight = random_array((k, c, 3, 3), seed=6)
    bias = random_array((k,), seed=7)
    y = kernels.conv2d(cupy.asarray(x), cupy.asarray(weight), cupy.asarray(bias), padding=padding)
    grad_out = random_array(y.shape, seed=8)
    expected = _torch_reference(x, weight, bias, grad_out, 1, padding, 1)
    ours = (y,) + kernels.conv2d_backward(cupy.asarray(grad_out), cupy.asarray(x), cupy.asarray(weight),
                                          padding=padding)
    for name, actual, wanted in zip(("y", "grad_x", "grad_weight", "grad_bias"), ours, expected):
        _close(actual, wanted, name)
    assert (conv_winograd.filter_gradient in launched) == (algorithm == "winograd")


GEMM_LAYERS = [  # (N, C, H, W, K, kernel, padding): layers whose implicit kernels launch under 2 * 132 blocks
    (64, 256, 3, 46, 256, (3, 2), 0),   # the benchmark CRNN's last layer (forward and input gradient by GEMM)
    (64, 32, 6, 45, 64, (3, 3), 1),     # the input gradient by GEMM (reduction 576), the others implicit
]


@functools.lru_cache(maxsize=None)
def _cpu_layer(shape):
    """Inputs and the CPU path's float64 results (y, grad_x, grad_weight, grad_bias) of one GEMM_LAYERS entry."""
    n, c, h, w, k, kernel, padding = shape
    x, weight, bias = random_array((n, c, h, w), seed=12), random_array((k, c) + kernel, seed=13), \
        random_array((k,), seed=14)
    y = kernels.conv2d(x.astype(np.float64), weight.astype(np.float64), bias.astype(np.float64), padding=padding)
    grad_out = random_array(y.shape, seed=15)
    return (x, weight, bias, grad_out), (y,) + kernels.conv2d_backward(grad_out.astype(np.float64),
                                                                       x.astype(np.float64),
                                                                       weight.astype(np.float64), padding=padding)


@pytest.mark.parametrize("algorithm", ["gemm", None], ids=["gemm", "automatic"])
@pytest.mark.parametrize("shape", GEMM_LAYERS, ids=["x".join(map(str, s[:5])) for s in GEMM_LAYERS])
def test_explicit_gemm_on_gpu_matches_cpu(shape, algorithm, monkeypatch):
    import cupy
    from kernels.cuda import conv_gemm, conv_winograd
    monkeypatch.setattr(conv_winograd, "force_algorithm", algorithm)
    launched = []
    original_launch_1d = conv_gemm.launch_1d
    monkeypatch.setattr(conv_gemm, "launch_1d",
                        lambda kernel, *args, **kw: launched.append(kernel) or original_launch_1d(kernel, *args, **kw))
    (x, weight, bias, grad_out), expected = _cpu_layer(shape)
    x, weight, bias, grad_out = (cupy.asarray(a) for a in (x, weight, bias, grad_out))
    ours = (kernels.conv2d(x, weight, bias, padding=shape[-1]),) + kernels.conv2d_backward(grad_out, x, weight,
                                                                                          padding=shape[-1])
    for name, actual, wanted in zip(("y", "grad_x", "grad_weight", "grad_bias"), ours, expected):
        _close(actual, wanted, name)
    forward_by_gemm, weight_by_gemm = algorithm == "gemm" or shape[1] == 256, algorithm == "gemm"
    assert launched == [conv_gemm.im2col] * forward_by_gemm + [conv_gemm.col2im] + [conv_gemm.im2col] * weight_by_gemm
