"""CUDA conv2d kernels in the simulator against the CPU path: tiny shapes, every kernel and tile shape."""
import numpy as np
import pytest

import kernels
from kernels import conv as public
from kernels.cpu import conv as cpu
from kernels.cuda import conv as gpu
from kernels.cuda import conv_gemm
from kernels.cuda import conv_winograd as winograd
from kernels.cuda.conv_forward import CONFIGS
from kernels.cuda.conv_weight import WEIGHT_CONFIGS
from tests.oracle import assert_close, random_array

# (input shape, weight shape, keyword arguments): small enough for the simulator's one-thread-per-thread model.
CONFIGURATIONS = [
    ((1, 2, 5, 7), (3, 2, 3, 3), dict(padding=1)),
    ((2, 3, 5, 7), (4, 3, 3, 2), dict(stride=2, padding=(1, 0))),           # stride 2, rectangular kernel
    ((1, 3, 5, 7), (2, 3, 2, 2), dict(stride=3)),                           # stride larger than the kernel
    ((1, 2, 6, 7), (3, 2, 3, 3), dict(dilation=2, padding=2)),             # dilation 2
    ((1, 2, 7, 6), (2, 2, 3, 2), dict(stride=2, dilation=2, padding=1)),   # phases without any tap
    ((1, 4, 5, 7), (4, 2, 3, 3), dict(groups=2, padding="same")),          # groups 2, 'same'
    ((1, 3, 5, 7), (3, 1, 3, 3), dict(groups=3, padding=1, stride=2)),     # depthwise
]


def _reference(x, weight, bias, grad_out, kwargs):
    geometry = public._geometry("reference", x.shape, weight.shape, kwargs.get("stride", 1),
                                kwargs.get("padding", 0), kwargs.get("dilation", 1), kwargs.get("groups", 1))
    arguments = geometry[:4]
    return (cpu.conv2d(x, weight, bias, *arguments),
            cpu.conv2d_backward_input(grad_out, weight, x.shape, *arguments),
            cpu.conv2d_backward_weight(grad_out, x, weight.shape, *arguments),
            cpu.conv2d_backward_bias(grad_out))


@pytest.mark.parametrize("input_shape,weight_shape,kwargs", CONFIGURATIONS,
                         ids=[str(c[2]) for c in CONFIGURATIONS])
def test_conv2d_kernels_match_cpu(input_shape, weight_shape, kwargs):
    x = random_array(input_shape, seed=1)
    weight = random_array(weight_shape, seed=2)
    bias = random_array(weight_shape[:1], seed=3)
    y = kernels.conv2d(x, weight, bias, **kwargs)
    grad_out = random_array(y.shape, seed=4)
    expected = _reference(x, weight, bias, grad_out, kwargs)
    ours = (y,) + kernels.conv2d_backward(grad_out, x, weight, **kwargs)
    for name, actual, wanted in zip(("y", "grad_x", "grad_weight", "grad_bias"), ours, expected):
        assert_close(actual, wanted, np.float32, name=name)


@pytest.mark.parametrize("through_gemm", [True, False], ids=["matmul", "implicit-gemm"])
def test_1x1_filters_through_matmul_and_direct_match_cpu(through_gemm, monkeypatch):
    monkeypatch.setattr(public, "GEMM_FOR_1X1", through_gemm)
    x = random_array((2, 3, 5, 7), seed=12)
    weight = random_array((4, 3, 1, 1), seed=13)
    bias = random_array((4,), seed=14)
    grad_out = random_array((2, 4, 5, 7), seed=15)
    expected = _reference(x, weight, bias, grad_out, {})
    ours = (kernels.conv2d(x, weight, bias),) + kernels.conv2d_backward(grad_out, x, weight)
    for name, actual, wanted in zip(("y", "grad_x", "grad_weight", "grad_bias"), ours, expected):
        assert_close(actual, wanted, np.float32, name=name)
    assert_close(kernels.conv2d(x, weight), expected[0] - bias[None, :, None, None], np.float32, name="no bias")


def test_conv2d_forward_without_bias_matches_cpu():
    x = random_array((1, 2, 5, 6), seed=5)
    weight = random_array((3, 2, 2, 3), seed=6)
    expected = cpu.conv2d(x, weight, None, (1, 1), (0, 0, 0, 0), (1, 1), 1)
    assert_close(kernels.conv2d(x, weight), expected, np.float32)


@pytest.mark.parametrize("config", [c for _, c in CONFIGS], ids=[f"{c.block_rows}x{c.block_cols}" for _, c in CONFIGS])
def test_every_tile_shape_matches_cpu(config, monkeypatch):
    """Each tile is chosen only for some channel counts and grid sizes; force each on a tiny shape."""
    monkeypatch.setattr(gpu, "choose_config", lambda rows, columns, groups: config)
    x = random_array((1, 3, 3, 5), seed=7)
    weight = random_array((5, 3, 3, 3), seed=8)
    grad_out = random_array((1, 5, 3, 3), seed=9)
    kwargs = dict(stride=(1, 2), padding=1)
    expected = _reference(x, weight, None, grad_out, kwargs)
    assert_close(kernels.conv2d(x, weight, **kwargs), expected[0], np.float32, name="y")
    assert_close(kernels.conv2d_backward_input(grad_out, weight, x.shape, **kwargs), expected[1], np.float32,
                 name="grad_x")


@pytest.mark.parametrize("config", [c for _, _, c in WEIGHT_CONFIGS],
                         ids=[f"{c.block_rows}x{c.block_cols}" for _, _, c in WEIGHT_CONFIGS])
def test_weight_gradient_tiles_and_split_reduction_match_cpu(config, monkeypatch):
    """Several blocks share one weight tile's pixel reduction (atomic adds), for every tile shape."""
    monkeypatch.setattr(gpu, "choose_weight_config", lambda rows, columns: config)
    x = random_array((2, 2, 6, 7), seed=10)
    grad_out = random_array((2, 3, 6, 7), seed=11)
    weight_shape = (3, 2, 3, 3)
    assert gpu.weight_gradient_splits(1, 2 * 6 * 7 // 16 + 1) > 1
    expected = cpu.conv2d_backward_weight(grad_out, x, weight_shape, (1, 1), (1, 1, 1, 1), (1, 1), 1)
    assert_close(kernels.conv2d_backward_weight(grad_out, x, weight_shape, padding=1), expected, np.float32)



@pytest.mark.parametrize("partial_floats, splits_used", [(1 << 20, None), (2 * 54, 2), (54, 1)],
                         ids=["all splits", "splits capped by the partials", "one split"])
def test_deterministic_weight_gradient_sums_split_partials_in_order(deterministic, monkeypatch, partial_floats,
                                                                     splits_used):
    """Under use_deterministic_algorithms each split stores its partial gW (no atomics, no zero fill) and one
    fixed-order sum follows; the partials' room caps the splits."""
    monkeypatch.setattr(gpu, "DETERMINISTIC_PARTIAL_FLOATS", partial_floats)
    launched = []
    real_launch = gpu.launch
    monkeypatch.setattr(gpu, "launch", lambda kernel, grid, *args: launched.append((grid, args[-2:])) or
                        real_launch(kernel, grid, *args))
    x = random_array((2, 2, 12, 14), seed=10)
    grad_out = random_array((2, 3, 12, 14), seed=11)
    weight_shape = (3, 2, 3, 3)
    expected = cpu.conv2d_backward_weight(grad_out, x, weight_shape, (1, 1), (1, 1, 1, 1), (1, 1), 1)
    out = np.full(weight_shape, np.nan, np.float32)   # every entry must be written
    gpu.conv2d_backward_weight(grad_out, x, out, (1, 1), (1, 1, 1, 1), (1, 1), 1)
    assert_close(out, expected, np.float32)
    (grid, (splits, partial_size)), = launched
    full = gpu.weight_gradient_splits(1, 2 * 12 * 14 // 16)
    assert full > 2 and grid[2] == splits == (full if splits_used is None else splits_used)
    assert partial_size == (0 if splits == 1 else 54)



def test_deterministic_weight_gradient_of_a_grouped_convolution(deterministic):
    """Each split's partial holds every group's rows (grid z = groups x splits)."""
    x = random_array((2, 4, 10, 9), seed=12)
    grad_out = random_array((2, 6, 10, 9), seed=13)
    expected = cpu.conv2d_backward_weight(grad_out, x, (6, 2, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 2)
    assert_close(kernels.conv2d_backward_weight(grad_out, x, (6, 2, 3, 3), padding=1, groups=2), expected,
                 np.float32)

WINOGRAD_CONFIGURATIONS = [
    ((2, 3, 5, 7), (4, 3, 3, 3), dict(padding=1)),                 # odd sizes: clipped last tiles
    ((1, 2, 6, 4), (3, 2, 3, 3), dict(padding=0)),                 # no padding, even sizes
    ((1, 2, 5, 6), (2, 2, 3, 3), dict(padding=(2, 1))),            # padding wider than the filter's reach
]


@pytest.mark.parametrize("input_shape,weight_shape,kwargs", WINOGRAD_CONFIGURATIONS,
                         ids=[str(c[2]) for c in WINOGRAD_CONFIGURATIONS])
def test_winograd_forward_and_gradients_match_cpu(input_shape, weight_shape, kwargs, monkeypatch):
    """Forced on few channels (the simulator's scale); for two images, a tiny chunk makes each its own chunk."""
    monkeypatch.setattr(winograd, "force_algorithm", "winograd")
    if input_shape[0] > 1:
        monkeypatch.setattr(winograd, "CHUNK_BYTES", 1)
    launched = []
    original_launch = winograd.launch_1d

    def recording_launch(kernel, *args, **kwargs):
        launched.append(kernel)
        return original_launch(kernel, *args, **kwargs)

    monkeypatch.setattr(winograd, "launch_1d", recording_launch)
    test_conv2d_kernels_match_cpu(input_shape, weight_shape, kwargs)  # grad_x: the output transform, no bias
    chunks = input_shape[0] if input_shape[0] > 1 else 1
    # forward and data gradient: a filter transform, then data and output transforms a chunk; weight
    # gradient: data and gradient transforms a chunk, then the filter gradient
    assert launched.count(winograd.filter_transform) == 2 and launched.count(winograd.filter_gradient) == 1
    assert launched.count(winograd.output_transform) == 2 * chunks
    assert launched.count(winograd.data_transform) == 3 * chunks
    assert launched.count(winograd.gradient_transform) == chunks


def test_winograd_takes_only_stride_1_3x3_layers_with_many_channels(monkeypatch):
    monkeypatch.setattr(winograd, "force_algorithm", None)
    layer = dict(stride=(1, 1), dilation=(1, 1), groups=1, out_hw=(6, 45), batch=64)
    assert winograd.use_winograd((256, 256, 3, 3), **layer)
    assert not winograd.use_winograd((256, 32, 3, 3), **layer)                 # few input channels
    assert not winograd.use_winograd((256, 256, 3, 3), **dict(layer, stride=(2, 1)))
    assert not winograd.use_winograd((256, 256, 3, 3), **dict(layer, dilation=(2, 2)))
    assert not winograd.use_winograd((256, 128, 3, 3), **dict(layer, groups=2))
    assert not winograd.use_winograd((256, 256, 3, 2), **layer)
    # from 64 channels on small maps (800 pixels; 512 for the weight gradient), from 256 on any (H100)
    assert winograd.use_winograd((128, 64, 3, 3), **layer)
    assert winograd.use_winograd((128, 128, 3, 3), **dict(layer, out_hw=(28, 28)))                 # 784 pixels
    assert not winograd.use_winograd((128, 128, 3, 3), **dict(layer, out_hw=(28, 28)), weight_gradient=True)
    assert winograd.use_winograd((128, 64, 3, 3), **dict(layer, out_hw=(16, 50)))                  # the paper CRNN's
    assert not winograd.use_winograd((128, 64, 3, 3), **dict(layer, out_hw=(16, 50)), weight_gradient=True)
    assert winograd.use_winograd((128, 64, 3, 3), **layer, weight_gradient=True)                   # 270 pixels
    assert not winograd.use_winograd((128, 128, 3, 3), **dict(layer, out_hw=(32, 32)))             # 1024 pixels
    assert winograd.use_winograd((256, 256, 3, 3), **dict(layer, out_hw=(28, 28)))
    assert not winograd.use_winograd((64, 64, 3, 3), **dict(layer, batch=32))    # 0.64 GFLOP: too little work
    monkeypatch.setattr(winograd, "force_algorithm", "implicit")
    assert not winograd.use_winograd((256, 256, 3, 3), **layer)


def test_a_misspelt_algorithm_switch_is_an_error(monkeypatch):
    import importlib
    monkeypatch.setenv("NUMBANET_CONV_ALGORITHM", "winnograd")
    with pytest.raises(ValueError, match="NUMBANET_CONV_ALGORITHM must be one of"):
        importlib.reload(winograd)
    monkeypatch.delenv("NUMBANET_CONV_ALGORITHM")
    importlib.reload(winograd)


GEMM_CONFIGURATIONS = [
    ((2, 3, 5, 7), (4, 3, 3, 2), dict(stride=2, padding=(1, 0))),                 # stride 2, a (3, 2) kernel
    ((2, 2, 5, 6), (3, 2, 2, 2), dict(padding="same")),                           # even kernel: (0, 1, 0, 1) padding
    ((1, 2, 7, 9), (2, 2, 3, 2), dict(dilation=2, padding="same")),               # dilation 2, 'same': (2, 2, 1, 1)
    ((1, 2, 7, 6), (3, 2, 3, 2), dict(stride=(2, 3), dilation=(2, 1), padding=1)),  # taps missing some pixels
    ((1, 3, 3, 8), (5, 3, 3, 2), dict()),                                         # the CRNN's last layer, batch 1
    ((1, 3, 5, 6), (4, 3, 3, 3), dict(padding=1)),                                # a layer Winograd could take
]


@pytest.mark.parametrize("input_shape,weight_shape,kwargs", GEMM_CONFIGURATIONS,
                         ids=[str(c[2]) for c in GEMM_CONFIGURATIONS])
def test_explicit_gemm_forward_and_gradients_match_cpu(input_shape, weight_shape, kwargs, monkeypatch):
    """'gemm' forced: im2col for the forward and the weight gradient, col2im for the input gradient."""
    monkeypatch.setattr(winograd, "force_algorithm", "gemm")
    launched = []
    original_launch_1d = conv_gemm.launch_1d
    monkeypatch.setattr(conv_gemm, "launch_1d",
                        lambda kernel, *args, **kw: launched.append(kernel) or original_launch_1d(kernel, *args, **kw))
    test_conv2d_kernels_match_cpu(input_shape, weight_shape, kwargs)
    assert launched == [conv_gemm.im2col, conv_gemm.col2im, conv_gemm.im2col]


def test_explicit_gemm_is_forced_only_where_it_can_run(monkeypatch):
    """Grouped layers keep the implicit kernels under 'gemm'; 'implicit' keeps them for every layer."""
    launched = []
    monkeypatch.setattr(conv_gemm, "launch_1d", lambda kernel, *args, **kw: launched.append(kernel))
    x, weight = random_array((1, 4, 5, 7), seed=21), random_array((4, 2, 3, 3), seed=22)
    monkeypatch.setattr(winograd, "force_algorithm", "gemm")
    assert_close(kernels.conv2d(x, weight, groups=2, padding=1),
                 cpu.conv2d(x, weight, None, (1, 1), (1, 1, 1, 1), (1, 1), 2), np.float32)
    monkeypatch.setattr(winograd, "force_algorithm", "implicit")
    weight = random_array((4, 4, 3, 2), seed=23)
    assert_close(kernels.conv2d(x, weight), cpu.conv2d(x, weight, None, (1, 1), (0, 0, 0, 0), (1, 1), 1), np.float32)
    assert launched == []


def _algorithms(input_shape, weight_shape, **kwargs):
    """The algorithm each pass would run: (forward, input gradient, weight gradient)."""
    geometry = public._geometry("test", input_shape, weight_shape, kwargs.get("stride", 1), kwargs.get("padding", 0),
                                kwargs.get("dilation", 1), kwargs.get("groups", 1))
    arguments = (input_shape, weight_shape, geometry.out_hw, geometry.stride, geometry.dilation, geometry.groups)
    return (gpu.forward_algorithm(*arguments), gpu.backward_input_algorithm(*arguments),
            gpu.backward_weight_algorithm(*arguments))


def test_explicit_gemm_takes_long_reductions_the_implicit_kernels_spread_over_few_blocks(monkeypatch):
    monkeypatch.setattr(winograd, "force_algorithm", None)
    # the benchmark CRNN's last layer: 184 forward blocks (23 x 8), 138 backward-data (69 x 2); columns 2880 x 1536.
    # The weight gradient stays implicit unless forced (it won on an H200)
    assert gpu._forward_launch(256, 64 * 45, 1)[1] == (23, 8, 1)
    assert _algorithms((64, 256, 3, 46), (256, 256, 3, 2)) == ("gemm", "gemm", "implicit")
    # 32 -> 64 channels on 6x45 maps: 135 blocks forward and backward-data, but the forward's reduction (288) is
    # under 512
    assert _algorithms((64, 32, 6, 45), (64, 32, 3, 3), padding=1) == ("implicit", "gemm", "implicit")
    assert _algorithms((64, 1, 12, 90), (32, 1, 3, 3), padding=1) == ("implicit",) * 3   # C*R*S = 9
    for channels in [(128, 64), (256, 128), (256, 256)]:                               # Winograd's layers
        assert _algorithms((64, channels[1], 6, 45), channels + (3, 3), padding=1) == ("winograd",) * 3
    assert _algorithms((64, 256, 3, 46), (256, 128, 3, 2), groups=2) == ("implicit",) * 3
    # 6x45 outputs: 270 forward blocks and 368 backward-data ones
    assert _algorithms((64, 256, 8, 46), (256, 256, 3, 2)) == ("implicit",) * 3
    monkeypatch.setattr(winograd, "force_algorithm", "gemm")
    assert _algorithms((64, 1, 12, 90), (32, 1, 3, 3), padding=1) == ("gemm",) * 3
    assert _algorithms((64, 128, 6, 45), (256, 128, 3, 3), padding=1) == ("gemm",) * 3      # 17 280 x 1152 columns
    assert _algorithms((64, 256, 6, 45), (256, 256, 3, 3), padding=1) == ("implicit",) * 3  # 17 280 x 2304: over 2**25
    monkeypatch.setattr(winograd, "force_algorithm", "implicit")
    assert _algorithms((64, 256, 3, 46), (256, 256, 3, 2)) == ("implicit",) * 3


@pytest.mark.parametrize("shape", [(3, 5, 7, 11), (4, 3, 9, 10), (2, 2, 1, 1)])
def test_bias_gradient_kernel_sums_every_image_in_one_block(shape):
    """A block per channel over all images and pixels (fewer and more values than its threads): no zero fill,
    no atomics, so two runs give the same bits."""
    grad_out = random_array(shape, seed=9)
    first = kernels.conv2d_backward_bias(grad_out)
    assert_close(first, cpu.conv2d_backward_bias(grad_out.astype(np.float64)), np.float32, scale=4)
    np.testing.assert_array_equal(kernels.conv2d_backward_bias(grad_out), first)


@pytest.mark.parametrize("kwargs", [dict(padding=1), dict(stride=2, groups=2)])
def test_weight_and_bias_gradients_written_into_given_arrays(kwargs):
    """conv2d_backward(grad_weight_out=, grad_bias_out=): the kernels write the given arrays (nn's flat
    optimizer buffers), which start as NaN here."""
    x, weight, bias = random_array((2, 4, 5, 6), seed=11), random_array((6, 2 if "groups" in kwargs else 4, 3, 3),
                                                                         seed=12), random_array((6,), seed=13)
    grad_out = random_array(kernels.conv2d(x, weight, bias, **kwargs).shape, seed=14)
    expected = _reference(x, weight, bias, grad_out, kwargs)
    outs = np.full(weight.shape, np.nan, np.float32), np.full(bias.shape, np.nan, np.float32)
    given = kernels.conv2d_backward(grad_out, x, weight, **kwargs, need_input=False, grad_weight_out=outs[0],
                                    grad_bias_out=outs[1])
    assert given[1] is outs[0] and given[2] is outs[1]
    assert_close(outs[0], expected[2], np.float32, name="grad_weight_out")
    assert_close(outs[1], expected[3], np.float32, name="grad_bias_out")


@pytest.mark.parametrize("shape", [(9, 3, 11, 13), (2, 5, 3, 4)])
def test_bias_gradient_split_over_the_batch(shape):
    # (9, 3, 11, 13): two slices of 8 and 1 images a channel, the last block adding both partials; (2, 5, 3, 4): one
    from kernels.cuda.conv_weight import BIAS_THREADS
    from kernels.cuda.launch import batch_slices
    grad_out = random_array(shape, seed=21)
    slices = batch_slices(shape[0], shape[1], shape[2] * shape[3], BIAS_THREADS)[1]
    assert slices == (2 if shape[0] == 9 else 1)
    first = kernels.conv2d_backward_bias(grad_out)
    assert_close(first, grad_out.sum(axis=(0, 2, 3)), np.float32, scale=np.sqrt(grad_out[:, 0].size))
    assert np.array_equal(kernels.conv2d_backward_bias(grad_out), first)   # the same sum again
    for buffers in gpu._bias_buffers.values():
        assert not buffers["counters"].any()   # reset by the last block of each channel


def test_forced_gemm_leaves_a_layer_its_grid_cannot_reach_to_the_implicit_kernels(monkeypatch):
    # 64 x 398 x 400 output pixels: GEMM rows beyond 65535 tiles of 64 (a review found it raising when forced)
    monkeypatch.setattr(winograd, "force_algorithm", "gemm")
    assert _algorithms((64, 1, 400, 400), (8, 1, 3, 1))[:2] == ("implicit", "implicit")
    assert _algorithms((4, 1, 40, 40), (8, 1, 3, 1))[:2] == ("gemm", "gemm")


def test_bias_gradient_without_slices_gets_the_fixed_stand_ins():
    gpu._bias_scratch(40)   # a split call grew the buffers
    partials, counters = gpu._bias_scratch(0)
    assert partials.size == 1 and counters.size == 1   # one argument layout for one-slice launches
    assert gpu._bias_scratch(40)[0].size >= 40
