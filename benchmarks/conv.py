"""conv2d forward and backward (data + weight) against PyTorch: cuDNN on the GPU (TF32 off, cudnn.benchmark
on), PyTorch's own CPU convolution on the CPU. Both sides read the same memory. The "transpose" rows time
conv_transpose2d (DCGAN's 4x4 stride-2 and U-Net's 2x2 stride-2 up-sampling) against torch's."""
import contextlib

import numpy as np

import kernels
from kernels.cuda import conv as cuda_conv
from kernels.cuda import conv_gemm, conv_winograd

from .harness import Case, as_torch, vendor_torch

# (label, N, C, H, W, K, kernel (a size, or (height, width)), stride, padding)
ANCHORS = [
    ("resnet 64x64x56x56 k64 3x3", 64, 64, 56, 56, 64, 3, 1, 1),
    ("resnet 64x128x28x28 k128 3x3", 64, 128, 28, 28, 128, 3, 1, 1),
    ("resnet 64x256x14x14 k256 3x3", 64, 256, 14, 14, 256, 3, 1, 1),
    ("stem 32x3x224x224 k64 7x7/2", 32, 3, 224, 224, 64, 7, 2, 3),
    ("crnn 16x64x32x128 k64 3x3", 16, 64, 32, 128, 64, 3, 1, 1),
]
OCR = [  # DeepBench's OCR rows, batch 16, 3x3 pad 1
    ("ocr 16x1x48x480 k16", 16, 1, 48, 480, 16, 3, 1, 1),
    ("ocr 16x16x24x240 k32", 16, 16, 24, 240, 32, 3, 1, 1),
    ("ocr 16x32x12x120 k64", 16, 32, 12, 120, 64, 3, 1, 1),
    ("ocr 16x64x6x60 k128", 16, 64, 6, 60, 128, 3, 1, 1),
]
SMALL_CNN = [  # the 8x8 digits model's two convolutions at batch 16
    ("digits 16x1x8x8 k16", 16, 1, 8, 8, 16, 3, 1, 1),
    ("digits 16x16x8x8 k32", 16, 16, 8, 8, 32, 3, 1, 1),
]
TRAIN_CRNN = [  # the train suite's CRNN (12x90 strips, batch 64): its layers on 6x45 maps, heaviest first;
    # and the default training CRNN's 64-channel layer (batch 32)
    ("crnn-train 64x256x6x45 k256", 64, 256, 6, 45, 256, 3, 1, 1),
    ("crnn-train 64x128x6x45 k256", 64, 128, 6, 45, 256, 3, 1, 1),
    ("crnn-train 64x128x6x45 k128", 64, 128, 6, 45, 128, 3, 1, 1),
    ("crnn-train 64x64x6x45 k128", 64, 64, 6, 45, 128, 3, 1, 1),
    ("crnn-default 32x64x6x45 k64", 32, 64, 6, 45, 64, 3, 1, 1),
    # the paper CRNN's (32x100 images, batch 64) 64- and 128-channel layers, on 16x50 and 8x25 maps
    ("crnn-paper 64x64x16x50 k128", 64, 64, 16, 50, 128, 3, 1, 1),
    ("crnn-paper 64x128x8x25 k256", 64, 128, 8, 25, 256, 3, 1, 1),
    # the train suite CRNN's last layer, a 3x2 kernel spanning its 3-high maps: 1x45 outputs
    ("crnn-train 64x256x3x46 k256 3x2", 64, 256, 3, 46, 256, (3, 2), 1, 0),
]
# timed with each gradient alone as well: the paper CRNN's layers, and the 6x45 layer with the channels of the
# 8x25 one (Winograd's backward took 4.24 ms on the 8x25 layer, 1.08 on the 6x45 one, on an H100)
SPLIT_GRADIENTS = ("crnn-paper 64x64x16x50 k128", "crnn-paper 64x128x8x25 k256", "crnn-train 64x128x6x45 k256",
                   "crnn-train 64x256x3x46 k256 3x2")
CRNN_CPU = [  # CRNN layer shapes at batch 16 (gray 32x100 input)
    ("crnn 16x1x32x100 k64", 16, 1, 32, 100, 64, 3, 1, 1),
    ("crnn 16x64x16x50 k128", 16, 64, 16, 50, 128, 3, 1, 1),
    ("crnn 16x128x8x25 k256", 16, 128, 8, 25, 256, 3, 1, 1),
    ("crnn 16x256x4x26 k512", 16, 256, 4, 26, 512, 3, 1, 1),
]


@contextlib.contextmanager
def _algorithm(name):
    """Force the GPU's algorithm: 'winograd', 'implicit' or 'gemm' (im2col + matmul), 'auto' for the automatic
    choice whatever NUMBANET_CONV_ALGORITHM says, None to leave the choice in force."""
    if name is None:
        yield
        return
    saved = conv_winograd.force_algorithm
    conv_winograd.force_algorithm = None if name == "auto" else name
    try:
        yield
    finally:
        conv_winograd.force_algorithm = saved


COMPARED_FROM = 64   # channels from which the GPU rows run both algorithms (fewer: the implicit GEMM, clearly)


def _layer(shape):
    """(input shape, weight shape, output height and width) of a row's layer."""
    _, n, c, h, w, k, size, stride, padding = shape
    r, s = size if isinstance(size, tuple) else (size, size)
    return (n, c, h, w), (k, c, r, s), ((h + 2 * padding - r) // stride + 1, (w + 2 * padding - s) // stride + 1)


def _winograd_layer(shape):
    """Whether both Winograd and the implicit GEMM are timed for the layer."""
    _, weight_shape, out_hw = _layer(shape)
    stride = shape[7]
    return conv_winograd.eligible(weight_shape, (stride, stride), (1, 1), 1, out_hw) and min(weight_shape[:2]) >= \
        COMPARED_FROM


def _gemm_layer(shape):
    """Whether the explicit GEMM can take the layer (its column matrix fits)."""
    x_shape, weight_shape, out_hw = _layer(shape)
    rows = x_shape[0] * out_hw[0] * out_hw[1]
    return conv_gemm.eligible(1, rows * x_shape[1] * weight_shape[2] * weight_shape[3], rows)


def _chosen(shape):
    """The algorithms the forward, data- and weight-gradient passes take when nothing is forced."""
    x_shape, weight_shape, out_hw = _layer(shape)
    arguments = (x_shape, weight_shape, out_hw, (shape[7],) * 2, (1, 1), 1)
    with _algorithm("auto"):
        return (cuda_conv.forward_algorithm(*arguments), cuda_conv.backward_input_algorithm(*arguments),
                cuda_conv.backward_weight_algorithm(*arguments))


def _cases_for(shape, device, algorithm=None, split=False):
    """fwd and bwd rows; split: also the data and the weight gradient alone (which of the two an algorithm
    loses on: Winograd's backward of the paper CRNN's 8x25 layer took 3.1x the implicit GEMM's on an H100)."""
    label, stride, padding = shape[0], shape[7], shape[8]
    (n, c, h, w), weight_shape, (out_h, out_w) = _layer(shape)
    k = weight_shape[0]
    torch = vendor_torch()
    flops = 2.0 * n * k * out_h * out_w * c * weight_shape[2] * weight_shape[3]
    arguments = dict(stride=stride, padding=padding)

    def make(xp, seed):
        rng = np.random.default_rng(seed)
        x = xp.asarray(rng.standard_normal((n, c, h, w), dtype=np.float32))
        weight = xp.asarray(rng.standard_normal(weight_shape, dtype=np.float32) * 0.1)
        grad_out = xp.asarray(rng.standard_normal((n, k, out_h, out_w), dtype=np.float32))
        return (x, weight, grad_out) + tuple(as_torch(torch, a) for a in (x, weight, grad_out))

    def forward(x, weight, grad_out, *tensors):
        with _algorithm(algorithm):
            return kernels.conv2d(x, weight, **arguments)

    def forward_vendor(x, weight, grad_out, x_t, weight_t, grad_out_t):
        return torch.nn.functional.conv2d(x_t, weight_t, **arguments)

    def backward(x, weight, grad_out, *tensors):
        with _algorithm(algorithm):
            return kernels.conv2d_backward(grad_out, x, weight, need_bias=False, **arguments)

    def backward_vendor(x, weight, grad_out, x_t, weight_t, grad_out_t):
        return torch.ops.aten.convolution_backward(grad_out_t, x_t, weight_t, None, [stride] * 2, [padding] * 2,
                                                   [1, 1], False, [0, 0], 1, [True, True, False])

    vendor = "cuDNN (torch)" if device == "cuda" else "torch CPU"
    notes = {"fwd": "", "data": "", "weight": ""}
    both = ""
    if algorithm is not None:  # say which algorithm each row ran, and whether it is the one chosen unforced
        label = f"{label} [{algorithm}]"
        chosen = _chosen(shape)
        notes = {part: "; the automatic choice" if choice == algorithm else "" for part, choice in zip(notes, chosen)}
        both = notes["data"] if chosen[1] == chosen[2] else f"; unforced, data by {chosen[1]}, weight by {chosen[2]}"
    rows = [Case(label=f"fwd {label}", make_inputs=make, ours=forward, vendor=forward_vendor,
                 vendor_name=vendor, flops=flops, note=notes["fwd"][2:]),
            Case(label=f"bwd {label}", make_inputs=make, ours=backward, vendor=backward_vendor,
                 vendor_name=vendor, flops=2 * flops, note="data + weight gradients" + both)]
    for part, mask in (("data", [True, False, False]), ("weight", [False, True, False])) if split else ():
        def one_gradient(x, weight, grad_out, *tensors, part=part):
            with _algorithm(algorithm):
                return kernels.conv2d_backward(grad_out, x, weight, need_input=part == "data",
                                               need_weight=part == "weight", need_bias=False, **arguments)

        def one_gradient_vendor(x, weight, grad_out, x_t, weight_t, grad_out_t, mask=mask):
            return torch.ops.aten.convolution_backward(grad_out_t, x_t, weight_t, None, [stride] * 2,
                                                       [padding] * 2, [1, 1], False, [0, 0], 1, mask)
        rows.append(Case(label=f"bwd-{part} {label}", make_inputs=make, ours=one_gradient,
                         vendor=one_gradient_vendor, vendor_name=vendor, flops=flops,
                         note=f"the {part} gradient alone" + notes[part]))
    return rows


# transposed convolutions: (label, N, C_in, H, W, C_out, kernel, stride, padding)
TRANSPOSED = [
    ("transpose dcgan 64x512x4x4 k256 4x4/2", 64, 512, 4, 4, 256, 4, 2, 1),
    ("transpose dcgan 64x256x8x8 k128 4x4/2", 64, 256, 8, 8, 128, 4, 2, 1),
    ("transpose unet 8x256x32x32 k128 2x2/2", 8, 256, 32, 32, 128, 2, 2, 0),
    ("transpose unet 8x128x64x64 k64 2x2/2", 8, 128, 64, 64, 64, 2, 2, 0),
]
TRANSPOSED_CPU = [
    ("transpose dcgan 16x256x8x8 k128 4x4/2", 16, 256, 8, 8, 128, 4, 2, 1),
    ("transpose unet 4x128x32x32 k64 2x2/2", 4, 128, 32, 32, 64, 2, 2, 0),
]


def _transposed_cases_for(shape, device):
    """conv_transpose2d forward, and forward + backward (data and weight gradients), against torch's."""
    label, n, c, h, w, k, size, stride, padding = shape
    torch = vendor_torch()
    out_h, out_w = (h - 1) * stride - 2 * padding + size, (w - 1) * stride - 2 * padding + size
    flops = 2.0 * n * c * h * w * k * size * size
    arguments = dict(stride=stride, padding=padding)

    def make(xp, seed):
        rng = np.random.default_rng(seed)
        x = xp.asarray(rng.standard_normal((n, c, h, w), dtype=np.float32))
        weight = xp.asarray(rng.standard_normal((c, k, size, size), dtype=np.float32) * 0.1)
        grad_out = xp.asarray(rng.standard_normal((n, k, out_h, out_w), dtype=np.float32))
        return (x, weight, grad_out) + tuple(as_torch(torch, a) for a in (x, weight, grad_out))

    def forward(x, weight, grad_out, *tensors):
        return kernels.conv_transpose2d(x, weight, **arguments)

    def forward_vendor(x, weight, grad_out, x_t, weight_t, grad_out_t):
        return torch.nn.functional.conv_transpose2d(x_t, weight_t, **arguments)

    def both(x, weight, grad_out, *tensors):
        return (kernels.conv_transpose2d(x, weight, **arguments),
                kernels.conv_transpose2d_backward(grad_out, x, weight, need_bias=False, **arguments))

    def both_vendor(x, weight, grad_out, x_t, weight_t, grad_out_t):
        return (torch.nn.functional.conv_transpose2d(x_t, weight_t, **arguments),
                torch.ops.aten.convolution_backward(grad_out_t, x_t, weight_t, None, [stride] * 2, [padding] * 2,
                                                    [1, 1], True, [0, 0], 1, [True, True, False]))

    vendor = "cuDNN (torch)" if device == "cuda" else "torch CPU"
    return [Case(label=f"fwd {label}", make_inputs=make, ours=forward, vendor=forward_vendor, vendor_name=vendor,
                 flops=flops),
            Case(label=f"fwd+bwd {label}", make_inputs=make, ours=both, vendor=both_vendor, vendor_name=vendor,
                 flops=3 * flops, note="output, data + weight gradients")]


def cases(device, quick=False):
    if device == "cuda":
        shapes = ANCHORS[-1:] + OCR[:1] if quick else TRAIN_CRNN + ANCHORS + OCR
    else:
        shapes = OCR + SMALL_CNN if quick else OCR + SMALL_CNN + ANCHORS[-1:] + CRNN_CPU
    rows = []
    for shape in shapes:
        split = shape[0] in SPLIT_GRADIENTS   # (each gradient alone too)
        if device == "cuda" and _winograd_layer(shape):  # both algorithms, to keep MIN_CHANNELS measured
            rows.extend(_cases_for(shape, device, "winograd", split) + _cases_for(shape, device, "implicit", split))
            if shape in TRAIN_CRNN and _gemm_layer(shape):   # and the explicit GEMM (fwd, bwd: the suite is capped)
                rows.extend(_cases_for(shape, device, "gemm"))
        elif device == "cuda" and shape in TRAIN_CRNN:   # the implicit kernels against the explicit GEMM
            rows.extend(_cases_for(shape, device, "implicit", split) + _cases_for(shape, device, "gemm", split))
        else:
            rows.extend(_cases_for(shape, device))
    if device == "cuda":
        transposed = TRANSPOSED[::2] if quick else TRANSPOSED
    else:
        transposed = TRANSPOSED_CPU
    for shape in transposed:
        rows.extend(_transposed_cases_for(shape, device))
    return rows
