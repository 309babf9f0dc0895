"""Batch normalisation: per-channel reductions, then elementwise normalise / gradient kernels.

Reductions: blocks of REDUCE_THREADS threads over (channel, slice of images) of x viewed as (N, C, L)
(consecutive threads read consecutive l: coalesced; launch.batch_slices splits a channel's batch until the GPU
has enough blocks), float32 two-pass mean and centred sum of squares a slice with a shared-memory tree; the last
block of a channel to finish combines the slices in order (Chan et al.'s pairwise update for the variance), so
every run gives the same result. Elementwise kernels: `launch_1d`, one thread per value of the flat array. A ReLU
after the normalisation can run inside these kernels (the forward's output clamped, the gradient masked by
it as it is read): one pass over the activations and two launches fewer than a separate ReLU.
"""
import math

import numpy as np
from numba import cuda, float32, int32, int64

from .device import block_sum, device_function, last_block_to_arrive
from .jit import cached_jit
from .launch import batch_slices, launch, launch_1d, stream_scratch

REDUCE_THREADS = 512   # a power of two (tree reduction); 16 warps per block to keep loads in flight
THREADS = 256


@device_function
def publish_pair(partials, counters, channel, part, slices, first, second, is_last):
    """Block `part` of a channel split over `slices` blocks stores its two partials; True in thread 0 of the last
    of the channel's blocks to arrive, which then merges every slice's pair (launch order aside, the same sum)."""
    if cuda.threadIdx.x == 0:
        partials[2 * (channel * slices + part)] = first
        partials[2 * (channel * slices + part) + 1] = second
    return last_block_to_arrive(counters, channel, slices, is_last) and cuda.threadIdx.x == 0


@cached_jit(fastmath=False)
def batch_statistics_kernel(x, mean_out, invstd_out, running_mean, running_var, momentum, eps,
                            unbias_factor, update_running, partials, counters, images_per_slice):
    # Block (c, s): mean and centred sum of squares of channel c over images s*images_per_slice onwards.
    c, part, slices = cuda.blockIdx.x, cuda.blockIdx.y, cuda.gridDim.y
    tid = cuda.threadIdx.x
    length = x.shape[2]
    first = part * images_per_slice
    count = min(images_per_slice, x.shape[0] - first) * length
    partial = cuda.shared.array(REDUCE_THREADS, float32)
    is_last = cuda.shared.array(1, int32)
    total = float32(0.0)
    for i in range(tid, count, REDUCE_THREADS):
        n = i // length
        total += x[first + n, c, i - n * length]
    partial[tid] = total
    mean = block_sum(partial, tid, REDUCE_THREADS) / float32(count)
    # Second pass over centred values: no cancellation when |mean| >> std.
    total = float32(0.0)
    for i in range(tid, count, REDUCE_THREADS):
        n = i // length
        d = x[first + n, c, i - n * length] - mean
        total += d * d
    partial[tid] = total
    squares = block_sum(partial, tid, REDUCE_THREADS)
    if slices > 1:
        if not publish_pair(partials, counters, c, part, slices, mean, squares, is_last):
            return
        # The slices in order, each (count, mean, squares) merged into the running one as Chan et al. do: the
        # difference of the means carries the between-slice part, so no large sum of squares is subtracted.
        seen = float32(0.0)
        mean = float32(0.0)
        squares = float32(0.0)
        for other in range(slices):
            added = float32(min(images_per_slice, x.shape[0] - other * images_per_slice) * length)
            delta = partials[2 * (c * slices + other)] - mean
            seen += added
            mean += delta * (added / seen)
            squares += partials[2 * (c * slices + other) + 1] + delta * delta * ((seen - added) * added / seen)
    if tid == 0:
        var = squares / float32(x.shape[0] * length)
        mean_out[c] = mean
        invstd_out[c] = float32(1.0) / math.sqrt(var + eps)
        if update_running != 0:
            running_mean[c] = (float32(1.0) - momentum) * running_mean[c] + momentum * mean
            running_var[c] = (float32(1.0) - momentum) * running_var[c] + momentum * var * unbias_factor


@cached_jit(fastmath=False)
def running_statistics_kernel(running_mean, running_var, mean_out, invstd_out, eps):
    c = cuda.grid(1)
    if c < mean_out.shape[0]:
        mean_out[c] = running_mean[c]
        invstd_out[c] = float32(1.0) / math.sqrt(running_var[c] + eps)


# The normalise and backward kernels run without fastmath, as the ReLU kernels do (pointwise.py): a fused
# ReLU keeps a NaN and passes its gradient on, as torch's does, which fastmath's no-NaN assumption would let
# the compiler fold away, and its flush-to-zero let a negative denormal escape the clamp. They only multiply
# and add (FMAs are contracted either way): denormals are the only numerical difference.
@cached_jit
def normalise_kernel(x, mean, invstd, weight, bias, y, channels, length, affine, relu):
    i = cuda.grid(1)
    if i >= x.shape[0]:
        return
    c = (i // length) % channels
    value = (x[i] - mean[c]) * invstd[c]
    if affine != 0:
        value = value * weight[c] + bias[c]
    if relu != 0 and value < float32(0.0):   # as pointwise.relu_kernel (a NaN is not < 0: kept)
        value = float32(0.0)
    y[i] = value


@cached_jit
def backward_sums_kernel(grad_out, x, output, mean, invstd, sum_grad_xhat, sum_grad, relu, partials, counters,
                         images_per_slice):
    # Block (c, s): sums of g and g * (x - mean) of channel c over its slice of images; with several slices the
    # last block of the channel adds the slices' sums in order.
    c, part, slices = cuda.blockIdx.x, cuda.blockIdx.y, cuda.gridDim.y
    tid = cuda.threadIdx.x
    length = x.shape[2]
    first = part * images_per_slice
    count = min(images_per_slice, x.shape[0] - first) * length
    partial_grad = cuda.shared.array(REDUCE_THREADS, float32)
    partial_grad_xhat = cuda.shared.array(REDUCE_THREADS, float32)
    is_last = cuda.shared.array(1, int32)
    mu = mean[c]
    total_grad = float32(0.0)
    total_grad_centred = float32(0.0)
    for i in range(tid, count, REDUCE_THREADS):
        n = first + i // length
        l = i - (i // length) * length
        g = grad_out[n, c, l]
        if relu != 0 and output[n, c, l] <= float32(0.0):   # the fused ReLU's gradient (a NaN passes it on)
            g = float32(0.0)
        total_grad += g
        total_grad_centred += g * (x[n, c, l] - mu)
    partial_grad[tid] = total_grad
    partial_grad_xhat[tid] = total_grad_centred
    stride = REDUCE_THREADS // 2
    while stride > 0:
        cuda.syncthreads()
        if tid < stride:
            partial_grad[tid] += partial_grad[tid + stride]
            partial_grad_xhat[tid] += partial_grad_xhat[tid + stride]
        stride //= 2
    total_grad = partial_grad[0]
    total_grad_centred = partial_grad_xhat[0]
    if slices > 1:
        if not publish_pair(partials, counters, c, part, slices, total_grad, total_grad_centred, is_last):
            return
        total_grad = float32(0.0)
        total_grad_centred = float32(0.0)
        for other in range(slices):
            total_grad += partials[2 * (c * slices + other)]
            total_grad_centred += partials[2 * (c * slices + other) + 1]
    if tid == 0:
        sum_grad[c] = total_grad
        sum_grad_xhat[c] = total_grad_centred * invstd[c]


@cached_jit
def backward_input_kernel(grad_out, x, output, mean, invstd, weight, sum_grad_xhat, sum_grad, grad_x, channels,
                          length, inverse_count, has_weight, training, relu):
    i = cuda.grid(1)
    if i >= x.shape[0]:
        return
    c = (i // length) % channels
    scale = invstd[c]
    if has_weight != 0:
        scale *= weight[c]
    g = grad_out[i]
    if relu != 0 and output[i] <= float32(0.0):
        g = float32(0.0)
    if training != 0:
        xhat = (x[i] - mean[c]) * invstd[c]
        g = g - sum_grad[c] * inverse_count - xhat * (sum_grad_xhat[c] * inverse_count)
    grad_x[i] = scale * g


def _dense_copy(vector):
    return vector if vector.flags.c_contiguous else vector.copy()


def batch_norm_statistics(x3, mean, invstd, running_mean, running_var, momentum, eps):
    """Batch mean and invstd into mean/invstd; running stats (when given) updated in place."""
    channels = x3.shape[1]
    count = x3.shape[0] * x3.shape[2]
    # Scratch stand-ins when a running stat is absent: never aliases an array the kernel writes.
    used = [mean.copy() if r is None else _dense_copy(r) for r in (running_mean, running_var)]
    update = running_mean is not None or running_var is not None
    images_per_slice, slices = batch_slices(x3.shape[0], channels, x3.shape[2], REDUCE_THREADS)
    partials, counters = _scratch(channels, slices)
    launch(batch_statistics_kernel, (channels, slices), REDUCE_THREADS, x3, mean, invstd, used[0], used[1],
           np.float32(momentum), np.float32(eps), np.float32(count / (count - 1)), np.int32(update), partials,
           counters, images_per_slice)
    for original, copy in zip((running_mean, running_var), used):
        if original is not None and copy is not original:
            original[...] = copy


def running_statistics(running_mean, running_var, mean, invstd, eps):
    launch_1d(running_statistics_kernel, mean.shape[0], running_mean, running_var, mean, invstd,
              np.float32(eps), threads=THREADS)


def batch_norm_forward(x3, mean, invstd, weight, bias, y3, relu=False):
    """relu: ReLU applied to the output in the same pass."""
    batch, channels, length = x3.shape
    affine = weight is not None or bias is not None
    if affine:
        weight = weight if weight is not None else _ones_like(mean)
        bias = bias if bias is not None else _zeros_like(mean)
    else:
        weight, bias = mean, mean   # read-only stand-ins, never read without affine
    launch_1d(normalise_kernel, x3.size, x3.reshape(-1), mean, invstd, weight, bias, y3.reshape(-1),
              channels, length, np.int32(affine), np.int32(relu), threads=THREADS)


def batch_norm_backward(grad3, x3, weight, mean, invstd, training, grad_x3, sum_grad_xhat, sum_grad, output3=None):
    """output3: the forward's output when it applied ReLU; grad3 is then masked by output3 > 0 as it is read."""
    batch, channels, length = x3.shape
    relu = output3 is not None
    output3 = output3 if relu else x3   # (a read-only stand-in, never read without relu)
    images_per_slice, slices = batch_slices(batch, channels, length, REDUCE_THREADS)
    partials, counters = _scratch(channels, slices)
    launch(backward_sums_kernel, (channels, slices), REDUCE_THREADS, grad3, x3, output3, mean, invstd, sum_grad_xhat,
           sum_grad, np.int32(relu), partials, counters, images_per_slice)
    launch_1d(backward_input_kernel, x3.size, grad3.reshape(-1), x3.reshape(-1), output3.reshape(-1), mean, invstd,
              mean if weight is None else weight, sum_grad_xhat, sum_grad, grad_x3.reshape(-1), channels, length,
              np.float32(1.0 / (batch * length)), np.int32(weight is not None), np.int32(training), np.int32(relu),
              threads=THREADS)


_buffers = {}   # (array module, stream pointer) -> the reductions' per-slice partials and channel counters


def _scratch(channels, slices):
    """Two partials a (channel, slice) and zeroed channel counters (the last block resets its channel's), for a
    split reduction; one-element stand-ins for one slice (launch.stream_scratch)."""
    size = channels * slices if slices > 1 else 0
    return stream_scratch(_buffers, 2 * size, size)


def _ones_like(v):
    out = v.copy()
    out[...] = 1
    return out


def _zeros_like(v):
    out = v.copy()
    out[...] = 0
    return out


_vector = float32[::1]
_ncl = float32[:, :, ::1]
_counters = int32[::1]
PTX_SIGNATURES = [
    ("batch_statistics", batch_statistics_kernel, (_ncl, _vector, _vector, _vector, _vector,
                                                   float32, float32, float32, int32, _vector, _counters, int64)),
    ("running_statistics", running_statistics_kernel, (_vector, _vector, _vector, _vector, float32)),
    ("normalise", normalise_kernel, (_vector,) * 6 + (int64, int64, int32, int32)),
    ("backward_sums", backward_sums_kernel, (_ncl, _ncl, _ncl, _vector, _vector, _vector, _vector, int32, _vector,
                                             _counters, int64)),
    ("backward_input", backward_input_kernel, (_vector,) * 9 + (int64, int64, float32, int32, int32, int32)),
]
