"""torch.nn.functional.layer_norm as an autograd Function over the layer_norm kernels (re-exported by
functional; the nn.LayerNorm layer is in layer_norm.py): each position normalised over its trailing
normalized_shape dims, with an elementwise weight and bias of that shape."""
import kernels
from kernels.layer_norm import normalized_shape_tuple

from .functional import _Op, _tensor


class _LayerNorm(_Op):
    def forward(self, x, weight, bias, normalized_shape, eps):
        self._mark_present(x, weight, bias)
        self.normalized_shape = normalized_shape
        y, mean, rstd = kernels.layer_norm(x, normalized_shape, weight, bias, eps)
        # (the backward reads only the bias's presence; saved all the same, as torch saves it: writing it in place
        # between the forward and the backward raises, as in torch)
        self.save_for_backward(x, weight, bias, mean, rstd)
        return y

    def backward(self, grad):
        x, weight, bias, mean, rstd = self.saved
        need_x, need_w, need_b = self.needs()
        grads = kernels.layer_norm_backward(grad, x, self.normalized_shape, mean, rstd, weight, bias,
                                            need_input=need_x, need_weight=need_w, need_bias=need_b,
                                            grad_weight_out=self.out_for(1, need_w),
                                            grad_bias_out=self.out_for(2, need_b))
        return self.grads(*grads)


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalise `input` over its trailing normalized_shape dims (an int or a tuple), biased variance; then
    multiply by weight and add bias (each of shape normalized_shape, optional)."""
    return _LayerNorm.apply(_tensor(input), _tensor(weight, "weight"), _tensor(bias, "bias"),
                            normalized_shape=normalized_shape_tuple("layer_norm", normalized_shape), eps=eps)
