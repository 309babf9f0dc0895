"""conv2d and its gradients on the CPU path against torch.nn.functional.conv2d (float64) and finite differences."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import kernels
from tests.oracle import assert_close, finite_difference_gradient, random_array, torch_reference

# (input shape, weight shape, keyword arguments)
CONFIGURATIONS = [
    ((2, 3, 9, 11), (4, 3, 3, 3), dict(padding=1)),                        # padding k//2
    ((2, 5, 7, 6), (3, 5, 1, 1), dict()),                                   # 1x1
    ((2, 3, 9, 9), (4, 3, 1, 1), dict(stride=2)),                           # 1x1 stride 2
    ((2, 3, 15, 13), (4, 3, 7, 7), dict(stride=2, padding=3)),              # 7x7 stride 2 pad 3
    ((2, 2, 11, 10), (3, 2, 2, 2), dict(stride=3)),                         # stride larger than the kernel
    ((2, 3, 8, 7), (4, 3, 3, 3), dict(padding="same")),
    ((2, 3, 8, 7), (4, 3, 4, 2), dict(padding="same", dilation=(1, 2))),   # asymmetric 'same'
    ((2, 3, 8, 7), (4, 3, 3, 2), dict(padding="valid")),
    ((2, 3, 11, 9), (4, 3, 3, 3), dict(dilation=2, padding=2)),            # dilation 2
    ((2, 4, 9, 8), (6, 2, 3, 3), dict(groups=2, padding=1)),                # groups 2
    ((2, 6, 9, 7), (6, 1, 3, 3), dict(groups=6, padding=1)),                # depthwise
    ((2, 3, 9, 7), (6, 1, 3, 3), dict(groups=3, stride=2, padding=1)),      # depthwise, multiplier 2
    ((2, 4, 10, 9), (8, 1, 5, 3), dict(groups=4, stride=(2, 1), dilation=(1, 2), padding=(2, 1))),
    ((2, 3, 10, 12), (5, 3, 3, 5), dict(padding=(1, 2))),                   # rectangular kernel
    ((2, 3, 10, 12), (5, 3, 2, 4), dict(stride=(1, 2), padding=(0, 1))),
    ((1, 3, 13, 17), (4, 3, 3, 3), dict(stride=2, padding=1)),              # batch 1, odd sizes
    ((3, 1, 5, 7), (2, 1, 5, 7), dict()),                                   # kernel = input
    ((2, 3, 20, 17), (4, 3, 3, 3), dict(padding=1)),                        # >= 256 pixels: per-image GEMMs
    ((2, 4, 18, 33), (6, 2, 3, 3), dict(groups=2, stride=(1, 2), padding=(1, 2))),
    ((1, 2, 40, 9), (3, 2, 3, 1), dict(padding=(4, 0))),                   # padding beyond the kernel extent
]


def _torch_conv(**kwargs):
    import torch.nn.functional as F
    return lambda x, w, b: F.conv2d(x, w, b, **kwargs)


def _check_against_torch(input_shape, weight_shape, kwargs, dtype, seed=0):
    x = random_array(input_shape, dtype, seed=seed + 1)
    weight = random_array(weight_shape, dtype, seed=seed + 2)
    bias = random_array(weight_shape[:1], dtype, seed=seed + 3)
    y = kernels.conv2d(x, weight, bias, **kwargs)
    grad_out = random_array(y.shape, dtype, seed=seed + 4)
    expected, (grad_x, grad_weight, grad_bias) = torch_reference(_torch_conv(**kwargs), x, weight, bias,
                                                                 grad_output=grad_out)
    assert y.dtype == dtype
    reduction = weight_shape[1] * weight_shape[2] * weight_shape[3]
    assert_close(y, expected, dtype, scale=np.sqrt(reduction), name="y")
    ours = kernels.conv2d_backward(grad_out, x, weight, **kwargs)
    assert all(g.dtype == dtype for g in ours)
    pixels = grad_out.shape[0] * grad_out.shape[2] * grad_out.shape[3]
    assert_close(ours[0], grad_x, dtype, scale=np.sqrt(weight_shape[0] * weight_shape[2] * weight_shape[3]),
                 name="grad_x")
    assert_close(ours[1], grad_weight, dtype, scale=np.sqrt(pixels), name="grad_weight")
    assert_close(ours[2], grad_bias, dtype, scale=np.sqrt(pixels), name="grad_bias")


@pytest.mark.filterwarnings("ignore:Using padding=.same.")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("input_shape,weight_shape,kwargs", CONFIGURATIONS,
                         ids=[f"{i}-{c[2]}" for i, c in enumerate(CONFIGURATIONS)])
def test_conv2d_matches_torch(input_shape, weight_shape, kwargs, dtype):
    _check_against_torch(input_shape, weight_shape, kwargs, dtype)


@st.composite
def configurations(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    channels = groups * draw(st.integers(1, 3))
    out_channels = groups * draw(st.integers(1, 3))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    extent = [dilation[i] * (kernel[i] - 1) + 1 for i in range(2)]
    size = [max(1, extent[i] - 2 * padding[i]) + draw(st.integers(0, 6)) for i in range(2)]
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    return (draw(st.integers(1, 3)), channels, *size), (out_channels, channels // groups, *kernel), kwargs


@given(configurations(), st.integers(0, 1000))
def test_conv2d_random_configurations_match_torch(configuration, seed):
    input_shape, weight_shape, kwargs = configuration
    _check_against_torch(input_shape, weight_shape, kwargs, np.float64, seed=seed)


def test_conv2d_gradients_by_finite_differences():
    x = random_array((2, 2, 5, 6), np.float64, seed=11)
    weight = random_array((4, 1, 3, 2), np.float64, seed=12)
    bias = random_array((4,), np.float64, seed=13)
    kwargs = dict(stride=(2, 1), padding=(1, 1), dilation=(1, 2), groups=2)
    weights_out = random_array(kernels.conv2d(x, weight, bias, **kwargs).shape, np.float64, seed=14)

    def loss():
        return float((kernels.conv2d(x, weight, bias, **kwargs) * weights_out).sum())

    grad_x, grad_weight, grad_bias = kernels.conv2d_backward(weights_out, x, weight, **kwargs)
    assert_close(grad_x, finite_difference_gradient(loss, x), rtol=1e-6, atol=1e-8, name="grad_x")
    assert_close(grad_weight, finite_difference_gradient(loss, weight), rtol=1e-6, atol=1e-8, name="grad_weight")
    assert_close(grad_bias, finite_difference_gradient(loss, bias), rtol=1e-6, atol=1e-8, name="grad_bias")


def test_conv2d_backward_need_flags_and_split_functions():
    x = random_array((2, 3, 7, 8), np.float32, seed=21)
    weight = random_array((4, 3, 3, 3), np.float32, seed=22)
    grad_out = random_array(kernels.conv2d(x, weight, stride=2, padding=1).shape, np.float32, seed=23)
    full = kernels.conv2d_backward(grad_out, x, weight, stride=2, padding=1)
    only_weight = kernels.conv2d_backward(grad_out, x, weight, stride=2, padding=1,
                                          need_input=False, need_bias=False)
    assert only_weight[0] is None and only_weight[2] is None
    np.testing.assert_array_equal(only_weight[1], full[1])
    only_input = kernels.conv2d_backward(grad_out, x, weight, stride=2, padding=1,
                                         need_weight=False, need_bias=False)
    assert only_input[1] is None and only_input[2] is None
    np.testing.assert_array_equal(only_input[0], full[0])
    np.testing.assert_array_equal(kernels.conv2d_backward_input(grad_out, weight, x.shape, 2, 1), full[0])
    np.testing.assert_array_equal(kernels.conv2d_backward_weight(grad_out, x, weight.shape, 2, 1), full[1])
    np.testing.assert_array_equal(kernels.conv2d_backward_bias(grad_out), full[2])


def test_conv2d_non_contiguous_inputs():
    x = random_array((2, 9, 3, 8), np.float64, seed=31).transpose(0, 2, 3, 1)[:, :, ::2, :]
    weight = random_array((3, 3, 4, 4), np.float64, seed=32)[:, :, ::2, 1:]
    assert not x.flags.c_contiguous and not weight.flags.c_contiguous
    expected, _ = torch_reference(lambda x, w: _torch_conv(padding=1)(x, w, None), x, weight)
    assert_close(kernels.conv2d(x, weight, padding=1), expected, np.float64)


@pytest.mark.parametrize("call,error,message", [
    (lambda x, w: kernels.conv2d(x, w[:, :2]), ValueError, r"conv2d: input has 3 channels but weight expects 2"),
    (lambda x, w: kernels.conv2d(x, w, groups=2), ValueError, r"conv2d: groups=2 must divide"),
    (lambda x, w: kernels.conv2d(x, w, groups=0), ValueError, r"conv2d: groups must be a positive integer"),
    (lambda x, w: kernels.conv2d(x[:, :, :2], w), ValueError, r"conv2d: kernel 3x3 .* larger than the padded"),
    (lambda x, w: kernels.conv2d(x, w, dilation=4), ValueError, r"conv2d: kernel 3x3 \(dilated 9x9\)"),
    (lambda x, w: kernels.conv2d(x, w, stride=0), ValueError, r"conv2d: stride must be a positive integer"),
    (lambda x, w: kernels.conv2d(x, w, stride=(1, -1)), ValueError, r"conv2d: stride must be a positive"),
    (lambda x, w: kernels.conv2d(x, w, dilation=0), ValueError, r"conv2d: dilation must be a positive"),
    (lambda x, w: kernels.conv2d(x, w, padding=-1), ValueError, r"conv2d: padding must be a non-negative"),
    (lambda x, w: kernels.conv2d(x, w, padding=(1, 2, 3)), ValueError, r"conv2d: padding must be an int or"),
    (lambda x, w: kernels.conv2d(x, w, padding="full"), ValueError, r"conv2d: padding must be an int, a pair"),
    (lambda x, w: kernels.conv2d(x, w, stride=2, padding="same"), ValueError, r"conv2d: padding='same' needs"),
    (lambda x, w: kernels.conv2d(x[0], w), ValueError, r"conv2d: x must be 4-D, got shape \(3, 6, 7\)"),
    (lambda x, w: kernels.conv2d(x, w[0]), ValueError, r"conv2d: weight must be 4-D"),
    (lambda x, w: kernels.conv2d(x, w, np.ones(5, np.float32)), ValueError, r"conv2d: bias must have shape \(4,\)"),
    (lambda x, w: kernels.conv2d(x.astype(np.int32), w), TypeError, r"conv2d: x must be float32 or float64"),
    (lambda x, w: kernels.conv2d(x, w.astype(np.float64)), TypeError, r"conv2d: all arrays must share one dtype"),
    (lambda x, w: kernels.conv2d(x.tolist(), w), TypeError, r"conv2d: expected NumPy or CuPy arrays"),
    (lambda x, w: kernels.conv2d_backward(np.ones((2, 4, 3, 3), np.float32), x, w), ValueError,
     r"conv2d_backward: grad_out must have shape \(2, 4, 4, 5\)"),
    (lambda x, w: kernels.conv2d_backward_input(np.ones((2, 4, 4, 5), np.float32), w, (2, 3, 6)), ValueError,
     r"conv2d_backward_input: input_shape must be 4 positive ints"),
    (lambda x, w: kernels.conv2d_backward_weight(np.ones((2, 4, 4, 5), np.float32), x, (0, 3, 3, 3)), ValueError,
     r"conv2d_backward_weight: weight_shape must be 4 positive ints"),
    (lambda x, w: kernels.conv2d_backward_weight(np.ones((2, 4, 4, 5), np.float32), x, (4, 2, 3, 3)), ValueError,
     r"conv2d_backward_weight: input has 3 channels"),
])
def test_conv2d_rejects_bad_input(call, error, message):
    x = np.ones((2, 3, 6, 7), np.float32)
    weight = np.ones((4, 3, 3, 3), np.float32)
    with pytest.raises(error, match=message):
        call(x, weight)


@pytest.mark.parametrize("arguments, message", [
    (dict(stride=True), "stride must be a positive integer"),
    (dict(stride=1.0), "stride must be a positive integer"),
    (dict(stride=(1, True)), "stride must be a positive integer"),
    (dict(dilation=np.float64(1)), "dilation must be a positive integer"),
    (dict(groups=True), "groups must be a positive integer"),
    (dict(padding=1.0), "padding must be a non-negative integer"),
])
def test_conv2d_remembered_geometry_never_admits_a_bad_argument(arguments, message):
    """Each step's geometry is remembered by its arguments; True and 1.0 hash as 1 but stay errors."""
    x, weight = random_array((2, 3, 6, 7), seed=43), random_array((4, 3, 3, 3), seed=44)
    good = dict(stride=1, padding=1, dilation=1, groups=1)
    expected = kernels.conv2d(x, weight, **good)
    assert kernels.conv2d(x, weight, **good).shape == expected.shape   # the remembered geometry
    with pytest.raises(ValueError, match=message):
        kernels.conv2d(x, weight, **{**good, **arguments})
    # lists are not hashable: checked each time, same result
    np.testing.assert_array_equal(kernels.conv2d(x, weight, stride=[1, 1], padding=[1, 1]), expected)
    # a float in a shape is not remembered for the int shape (its output size would hold floats)
    assert kernels.conv2d_output_shape((2, 3, 6.0, 7), weight.shape, padding=1)[2] == 6.0
    assert kernels.conv2d_output_shape((2, 3, 6, 7), weight.shape, padding=1) == (2, 4, 6, 7)
    assert all(type(n) is int for n in kernels.conv2d_output_shape((2, 3, 6, 7), weight.shape, padding=1))


def test_conv2d_backward_into_given_gradient_arrays():
    x, weight = random_array((2, 3, 6, 7), np.float64, seed=45), random_array((4, 3, 3, 3), np.float64, seed=46)
    grad_out = random_array((2, 4, 3, 4), np.float64, seed=47)
    expected = kernels.conv2d_backward(grad_out, x, weight, stride=2, padding=1)
    outs = np.full(weight.shape, np.nan), np.full(4, np.nan)
    given = kernels.conv2d_backward(grad_out, x, weight, stride=2, padding=1, grad_weight_out=outs[0],
                                    grad_bias_out=outs[1])
    assert given[1] is outs[0] and given[2] is outs[1]
    for actual, wanted in zip(given, expected):
        np.testing.assert_array_equal(actual, wanted)
    with pytest.raises(ValueError, match=r"conv2d_backward: grad_bias_out must be \(4,\) float64, got \(3,\) float64"):
        kernels.conv2d_backward(grad_out, x, weight, stride=2, padding=1, grad_bias_out=np.zeros(3))


def test_conv2d_empty_batch():
    x = np.ones((0, 3, 8, 8), np.float32)
    weight = random_array((4, 3, 3, 3), seed=41)
    y = kernels.conv2d(x, weight, np.ones(4, np.float32), padding=1)
    assert y.shape == (0, 4, 8, 8)
    grad_x, grad_weight, grad_bias = kernels.conv2d_backward(y, x, weight, padding=1)
    assert grad_x.shape == x.shape
    np.testing.assert_array_equal(grad_weight, np.zeros_like(weight))
    np.testing.assert_array_equal(grad_bias, np.zeros(4, np.float32))


def test_conv2d_error_names_the_shapes():
    with pytest.raises(ValueError, match=r"input \(2, 3, 6, 7\), weight \(4, 2, 3, 3\)"):
        kernels.conv2d(np.ones((2, 3, 6, 7)), np.ones((4, 2, 3, 3)))


def test_conv2d_in_several_column_chunks_matches_torch(monkeypatch):
    """Large images are multiplied a few at a time; force one image per chunk."""
    from kernels.cpu import conv as cpu
    monkeypatch.setattr(cpu, "CHUNK_BYTES", 1)
    _check_against_torch((3, 2, 30, 21), (4, 2, 3, 3), dict(stride=(1, 2), padding=1), np.float64)
    _check_against_torch((3, 4, 16, 18), (6, 2, 3, 3), dict(groups=2, padding=1), np.float64)


@pytest.mark.parametrize("flat_max_width,flipped_max_work,col2im_min_width", [(32, 2, 16), (10**9, 10**9, 0), (0, 0, 0)],
                         ids=["chosen", "flat columns, flipped convolution", "im2col, col2im"])
def test_conv2d_small_stride_one_paths_match_torch(flat_max_width, flipped_max_work, col2im_min_width, monkeypatch):
    """Small stride-1 images take flat columns or im2col by output width, and the data gradient a flipped
    convolution or col2im by how much larger the input is than a wide output: each way on each shape."""
    from kernels.cpu import conv as cpu
    monkeypatch.setattr(cpu, "FLAT_MAX_WIDTH", flat_max_width)
    monkeypatch.setattr(cpu, "FLIPPED_MAX_WORK", flipped_max_work)
    monkeypatch.setattr(cpu, "COL2IM_MIN_WIDTH", col2im_min_width)
    _check_against_torch((3, 5, 3, 40), (4, 5, 3, 2), dict(), np.float64)              # the CRNN's last layer, 1x39
    _check_against_torch((2, 3, 5, 37), (4, 3, 3, 3), dict(padding=1), np.float64)     # 5x37, 'same'
    _check_against_torch((2, 3, 7, 6), (4, 3, 3, 3), dict(dilation=(2, 1)), np.float64)  # 3x4, valid
    _check_against_torch((2, 3, 7, 9), (4, 3, 3, 3), dict(padding=(0, 1)), np.float64)   # 5x9


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv2d_winograd_path_matches_torch(dtype, monkeypatch):
    """3x3 stride-1 layers with many channels take Winograd F(2x2, 3x3); force it on small, odd shapes."""
    from kernels.cpu import conv as cpu
    monkeypatch.setattr(cpu, "WINOGRAD_MIN_CHANNELS", 1)
    monkeypatch.setattr(cpu, "WINOGRAD_MIN_PIXELS", 1)
    monkeypatch.setattr(cpu, "CHUNK_BYTES", 4096)  # several image chunks
    assert cpu._use_winograd((4, 3, 3, 3), (1, 1), (1, 1), 1, (5, 7))
    _check_against_torch((3, 3, 9, 11), (4, 3, 3, 3), dict(padding=1), dtype)
    _check_against_torch((2, 3, 8, 7), (5, 3, 3, 3), dict(padding=(0, 2)), dtype)
    _check_against_torch((2, 2, 6, 6), (3, 2, 3, 3), dict(padding="same"), dtype)


def test_winograd_scratch_is_per_thread_and_never_part_of_a_result():
    """Winograd's transform buffers are scratch kept between calls: results made before a later (larger or
    smaller) call stay as they were, and threads running convolutions at once each get their own."""
    import threading

    from kernels.cpu import conv as cpu
    shapes = [((2, 16, 8, 9), (16, 16, 3, 3)), ((3, 24, 10, 12), (20, 24, 3, 3)), ((1, 16, 9, 8), (32, 16, 3, 3))]
    assert all(cpu._use_winograd(w, (1, 1), (1, 1), 1, x[2:]) for x, w in shapes)
    cases = [(random_array(x, np.float32, seed=i), random_array(w, np.float32, seed=10 + i))
             for i, (x, w) in enumerate(shapes)]

    def run(x, weight):
        y = kernels.conv2d(x, weight, None, padding=1)
        return (y,) + kernels.conv2d_backward(y, x, weight, padding=1)

    expected = [run(*case) for case in cases]
    kept = [tuple(a.copy() for a in results) for results in expected]
    for results, copies in zip(expected, kept):   # later calls left the earlier results alone
        assert all(np.array_equal(a, b) for a, b in zip(results, copies))
    failures = []

    def worker(order):
        try:
            for _ in range(10):
                for i in order:
                    for got, want in zip(run(*cases[i]), kept[i]):
                        assert_close(got, want, np.float32, name=f"shape {i}")
        except AssertionError as error:
            failures.append(error)
    threads = [threading.Thread(target=worker, args=(order,)) for order in ([0, 1, 2], [2, 1, 0], [1, 0, 2], [2, 0, 1])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures[0]
