"""Convolution (also transposed), pooling and batch normalisation as autograd Functions over the kernels of the
conv, pool and norm families (torch.nn.functional's names and defaults; re-exported by functional)."""
import kernels

from .autograd import Function
from .functional import _Op, _tensor
from .tensor import Tensor


class _Conv2d(_Op):
    def forward(self, x, weight, bias, stride, padding, dilation, groups):
        self._mark_present(x, weight, bias)
        self.geometry = (stride, padding, dilation, groups)
        self.save_for_backward(x, weight)
        return kernels.conv2d(x, weight, bias, stride, padding, dilation, groups)

    def backward(self, grad):
        x, weight = self.saved
        need_x, need_w, need_b = self.needs()
        grads = kernels.conv2d_backward(grad, x, weight, *self.geometry, need_input=need_x, need_weight=need_w,
                                        need_bias=need_b, grad_weight_out=self.out_for(1, need_w),
                                        grad_bias_out=self.out_for(2, need_b))
        return self.grads(*grads)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D cross-correlation of input (N, C, H, W), or unbatched (C, H, W) as torch, with weight (K, C/groups, R,
    S); padding may be 'same'."""
    input = _tensor(input)
    unbatched = input.ndim == 3
    y = _Conv2d.apply(input.reshape((1,) + input.shape) if unbatched else input, _tensor(weight, "weight"),
                      _tensor(bias, "bias"), stride=stride, padding=padding, dilation=dilation, groups=groups)
    return y.reshape(y.shape[1:]) if unbatched else y


class _ConvTranspose2d(_Op):
    def forward(self, x, weight, bias, stride, padding, output_padding, groups, dilation):
        self._mark_present(x, weight, bias)
        self.geometry = (stride, padding, output_padding, groups, dilation)
        self.save_for_backward(x, weight)
        return kernels.conv_transpose2d(x, weight, bias, *self.geometry)

    def backward(self, grad):
        x, weight = self.saved
        need_x, need_w, need_b = self.needs()
        grads = kernels.conv_transpose2d_backward(grad, x, weight, *self.geometry, need_input=need_x,
                                                  need_weight=need_w, need_bias=need_b,
                                                  grad_weight_out=self.out_for(1, need_w),
                                                  grad_bias_out=self.out_for(2, need_b))
        return self.grads(*grads)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Transposed convolution of input (N, C_in, H, W) or unbatched (C_in, H, W) with weight
    (C_in, C_out/groups, kH, kW): torch's conv_transpose2d, the gradient of conv2d with respect to its input."""
    input = _tensor(input, "conv_transpose2d: input", optional=False)
    if input.ndim not in (3, 4):
        raise ValueError(f"conv_transpose2d: input must be 3-D (C, H, W) or 4-D (N, C, H, W), got shape "
                         f"{input.shape}")
    batched = input if input.ndim == 4 else input.reshape((1,) + input.shape)
    y = _ConvTranspose2d.apply(batched, _tensor(weight, "conv_transpose2d: weight"),
                               _tensor(bias, "conv_transpose2d: bias"), stride=stride, padding=padding,
                               output_padding=output_padding, groups=groups, dilation=dilation)
    return y if input.ndim == 4 else y.reshape(y.shape[1:])


class _MaxPool2d(Function):
    def forward(self, x, kernel_size, stride, padding, dilation, ceil_mode, return_indices):
        y, indices = kernels.max_pool2d(x, kernel_size, stride, padding, dilation, ceil_mode, return_indices=True)
        self.input_shape = x.shape
        # with the window geometry the backward gathers on the GPU (one launch, no atomics) instead of zero-filling
        # and scattering, and stores directly on the CPU where windows do not overlap (lists frozen: the caller's)
        self.geometry = tuple(tuple(v) if isinstance(v, list) else v
                              for v in (kernel_size, stride, padding, dilation)) + (ceil_mode,)
        self.save_for_backward(indices)
        return (y, indices) if return_indices else y

    def backward(self, grad, grad_indices=None):
        return kernels.max_pool2d_backward(grad, self.saved[0], self.input_shape, *self.geometry)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Window maxima (padding counts as -inf); with return_indices also their flat h*W+w positions."""
    result = _MaxPool2d.apply(_tensor(input), kernel_size=kernel_size, stride=stride, padding=padding,
                              dilation=dilation, ceil_mode=ceil_mode, return_indices=return_indices)
    if not return_indices:
        return result
    values, indices = result
    return values, Tensor(indices.data)  # integer positions: not part of the graph


class _AvgPool2d(Function):
    def forward(self, x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
        self.input_shape = x.shape
        self.options = (kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
        return kernels.avg_pool2d(x, *self.options)

    def backward(self, grad):
        return kernels.avg_pool2d_backward(grad, self.input_shape, *self.options)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    return _AvgPool2d.apply(_tensor(input), kernel_size=kernel_size, stride=stride, padding=padding,
                            ceil_mode=ceil_mode, count_include_pad=count_include_pad,
                            divisor_override=divisor_override)


class _AdaptiveAvgPool2d(Function):
    def forward(self, x, output_size):
        self.input_shape = x.shape
        return kernels.adaptive_avg_pool2d(x, output_size)

    def backward(self, grad):
        return kernels.adaptive_avg_pool2d_backward(grad, self.input_shape)


def adaptive_avg_pool2d(input, output_size):
    """Mean over PyTorch's adaptive windows; output_size an int, a pair, or a pair with None (keep that size)."""
    input = _tensor(input)
    if isinstance(output_size, (tuple, list)) and len(output_size) == 2 and input.ndim >= 2:
        output_size = tuple(input.shape[-2 + i] if size is None else size for i, size in enumerate(output_size))
    return _AdaptiveAvgPool2d.apply(input, output_size=output_size)


class _BatchNorm(_Op):
    def forward(self, x, weight, bias, running_mean, running_var, training, momentum, eps, relu=False):
        self._mark_present(x, weight, bias)
        y, mean, invstd = kernels.batch_norm(x, weight, bias, running_mean, running_var, training, momentum, eps,
                                             activation="relu" if relu else None)
        self.training = training
        self.save_for_backward(x, weight, mean, invstd, y if relu else None)
        return y

    def backward(self, grad):
        x, weight, mean, invstd, relu_output = self.saved
        _, need_w, need_b = self.needs()
        grad_x, grad_w, grad_b = kernels.batch_norm_backward(
            grad, x, weight, mean, invstd, self.training, output=relu_output,
            grad_weight_out=self.out_for(1, need_w), grad_bias_out=self.out_for(2, need_b and weight is not None))
        if weight is None and self.present[2]:  # a bias without a weight: its gradient is the sum
            if relu_output is not None:
                grad = kernels.relu_backward(grad, relu_output)
            grad_b = kernels.reduce_sum(grad, axis=(0,) + tuple(range(2, grad.ndim)), out=self.out_for(2, need_b))
        return self.grads(grad_x, grad_w, grad_b)


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """torch.nn.functional.batch_norm: the running statistics (arrays) are updated in place in training."""
    return _batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps)


def batch_norm_relu(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
                    eps=1e-5):
    """relu(batch_norm(...)) in the batch norm's own passes, forward and backward (no torch name: nn.Sequential
    runs a BatchNorm followed by a ReLU this way). The backward reads the returned output for ReLU's mask: do
    not change its data in place before backward."""
    return _batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps, relu=True)


def _batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps, relu=False):
    running_mean = running_mean.data if isinstance(running_mean, Tensor) else running_mean
    running_var = running_var.data if isinstance(running_var, Tensor) else running_var
    return _BatchNorm.apply(_tensor(input), _tensor(weight, "weight"), _tensor(bias, "bias"),
                            running_mean=running_mean, running_var=running_var, training=bool(training),
                            momentum=momentum, eps=eps, relu=relu)
