"""CTC loss forward+backward against torch.nn.functional.ctc_loss (cuDNN or native on the GPU, CPU
otherwise), and the fused Adam, RMSprop and Adagrad updates against torch.optim's (fused, else foreach) in the
same suite.

CTC inputs use full-length inputs and int32 targets, all on the device of the log-probabilities.
"""
import numpy as np

import kernels
from .harness import Case, as_torch, vendor_torch

MEASURE_HOST_COST = True
CTC_SHAPES = [(26, 64, 37, 10), (40, 64, 11, 8)]   # (T, N, C, S): CRNN text lines; a digit-string model




def _ctc_case(device, steps, batch, classes, width):
    torch = vendor_torch()

    def make(xp, seed):
        rng = np.random.default_rng(seed)
        logits = rng.standard_normal((steps, batch, classes)).astype(np.float32)
        log_probs = logits - np.log(np.exp(logits).sum(axis=2, keepdims=True))
        target_lengths = rng.integers(width // 2, width + 1, size=batch).astype(np.int32)
        targets = rng.integers(1, classes, size=(batch, width)).astype(np.int32)
        input_lengths = np.full(batch, steps, dtype=np.int32)
        concatenated = np.concatenate([targets[n, :target_lengths[n]] for n in range(batch)])
        # everything on the device of the log-probabilities, for both sides (torch >= 2.11 requires it)
        log_probs, targets, input_lengths, target_lengths = (
            xp.asarray(a) for a in (log_probs, targets, input_lengths, target_lengths))
        vendor_inputs = (as_torch(torch, log_probs).requires_grad_(), as_torch(torch, xp.asarray(concatenated)),
                         as_torch(torch, input_lengths), as_torch(torch, target_lengths))
        return log_probs, targets, input_lengths, target_lengths, vendor_inputs

    def ours(log_probs, targets, input_lengths, target_lengths, _):
        loss = kernels.ctc_loss(log_probs, targets, input_lengths, target_lengths)
        grad = kernels.ctc_loss_backward(1.0, log_probs, targets, input_lengths, target_lengths)
        return loss, grad

    def vendor(*arguments):
        log_probs, targets, input_lengths, target_lengths = arguments[-1]
        loss = torch.nn.functional.ctc_loss(log_probs, targets, input_lengths, target_lengths)
        return torch.autograd.grad(loss, log_probs)

    return Case(label=f"ctc fwd+bwd T{steps} N{batch} C{classes} S{width}", make_inputs=make, ours=ours,
                vendor=vendor, vendor_name="torch ctc_loss (cuDNN/native)" if device == "cuda" else "torch CPU",
                note="forward + backward, mean reduction")


def _adam_case(device, count):
    torch = vendor_torch()

    def make(xp, seed):
        rng = np.random.default_rng(seed)
        param, grad, exp_avg = (xp.asarray(rng.standard_normal(count, dtype=np.float32)) for _ in range(3))
        exp_avg_sq = xp.asarray(rng.random(count, dtype=np.float32))
        torch_param = as_torch(torch, param).requires_grad_()
        torch_param.grad = as_torch(torch, grad)
        try:
            optimizer = torch.optim.Adam([torch_param], lr=1e-3, fused=True)
            optimizer.step()
        except (RuntimeError, ValueError):   # no fused kernel for this device
            optimizer = torch.optim.Adam([torch_param], lr=1e-3, foreach=True)
        return param, grad, exp_avg, exp_avg_sq, optimizer

    def ours(param, grad, exp_avg, exp_avg_sq, _):
        kernels.adam_update(param, grad, exp_avg, exp_avg_sq, step=10, lr=1e-3)

    def vendor(*arguments):
        arguments[-1].step()

    return Case(label=f"adam update {count / 1e6:g}M params", make_inputs=make, ours=ours, vendor=vendor,
                vendor_name="torch.optim.Adam (fused, else foreach)", bytes=7 * 4 * count,
                note="reads param, grad, exp_avg, exp_avg_sq; writes three")


def _adaptive_case(device, count, name):
    """RMSprop (default options: square_avg) or Adagrad: reads param, grad and one state array, writes two."""
    torch = vendor_torch()
    vendor_class = getattr(torch.optim, name)

    def make(xp, seed):
        rng = np.random.default_rng(seed)
        param, grad = (xp.asarray(rng.standard_normal(count, dtype=np.float32)) for _ in range(2))
        state = xp.asarray(rng.random(count, dtype=np.float32))   # square_avg or sum, as after some steps
        torch_param = as_torch(torch, param).requires_grad_()
        torch_param.grad = as_torch(torch, grad)
        try:
            optimizer = vendor_class([torch_param], lr=1e-3, fused=True)   # RMSprop has no fused kernel
            optimizer.step()
        except (RuntimeError, ValueError, TypeError):
            optimizer = vendor_class([torch_param], lr=1e-3, foreach=True)
        return param, grad, state, optimizer

    def ours(param, grad, state, _):
        if name == "RMSprop":
            kernels.rmsprop_update(param, grad, state, lr=1e-3)
        else:
            kernels.adagrad_update(param, grad, state, step=10, lr=1e-3)

    def vendor(*arguments):
        arguments[-1].step()

    return Case(label=f"{name.lower()} update {count / 1e6:g}M params", make_inputs=make, ours=ours, vendor=vendor,
                vendor_name=f"torch.optim.{name} (fused, else foreach)", bytes=5 * 4 * count,
                note="reads param, grad, " + ("square_avg" if name == "RMSprop" else "sum") + "; writes two")


def cases(device, quick=False):
    rows = [_ctc_case(device, *shape) for shape in CTC_SHAPES]
    count = 1_000_000 if quick else 10_000_000
    rows.append(_adam_case(device, count))
    rows += [_adaptive_case(device, count, name) for name in ("RMSprop", "Adagrad")]
    return rows
