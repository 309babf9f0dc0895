"""CTC kernels on a real GPU against torch's CPU ctc_loss (float64) at CRNN-like sizes."""
import numpy as np
import pytest

import kernels
from tests.oracle import assert_close, torch_module


def _case(steps, batch, classes, width, seed):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((steps, batch, classes)) * 2.0
    log_probs = logits - np.log(np.exp(logits).sum(axis=2, keepdims=True))
    targets = rng.integers(1, classes, size=(batch, width))
    targets[:, 1] = targets[:, 0]   # repeated labels in every sample
    target_lengths = rng.integers(0, width + 1, size=batch)
    input_lengths = rng.integers(steps // 2, steps + 1, size=batch)
    input_lengths[0] = steps
    return log_probs, targets, input_lengths, target_lengths


@pytest.mark.parametrize("steps,batch,classes,width", [(26, 64, 37, 10), (40, 64, 11, 8), (100, 8, 80, 40),
                                                       (1300, 2, 50, 600)])
@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_ctc_on_gpu_matches_torch(steps, batch, classes, width, reduction):
    import cupy
    torch = torch_module()
    log_probs, targets, input_lengths, target_lengths = _case(steps, batch, classes, width, seed=steps)
    grad_loss = np.linspace(0.5, 1.5, batch) if reduction == "none" else np.array(1.0)
    tensor = torch.tensor(log_probs, requires_grad=True)
    expected = torch.nn.functional.ctc_loss(tensor, torch.tensor(targets), torch.tensor(input_lengths),
                                            torch.tensor(target_lengths), reduction=reduction, zero_infinity=True)
    (expected_grad,) = torch.autograd.grad(expected, tensor, torch.tensor(grad_loss))
    log_probs_gpu = cupy.asarray(log_probs, dtype=cupy.float32)
    targets_gpu = cupy.asarray(targets)
    loss = kernels.ctc_loss(log_probs_gpu, targets_gpu, input_lengths, target_lengths, reduction=reduction,
                            zero_infinity=True)
    grad = kernels.ctc_loss_backward(cupy.asarray(grad_loss, dtype=cupy.float32) if reduction == "none" else 1.0,
                                     log_probs_gpu, targets_gpu, input_lengths, target_lengths,
                                     reduction=reduction, zero_infinity=True)
    # fp32 log-space sums over T steps: alpha + beta reach ~T*log(C), whose rounding sets the error.
    scale = 20 * max(1.0, np.sqrt(steps / 26))
    assert_close(loss, expected.detach().numpy(), np.float32, scale=scale, name="loss")
    assert_close(grad, expected_grad.numpy(), np.float32, scale=scale, name="grad")


def test_ctc_on_gpu_impossible_alignment_and_concatenated_targets():
    import cupy
    log_probs, _, _, _ = _case(10, 3, 6, 4, seed=1)
    targets = np.array([2, 2, 2, 2, 2, 3, 1, 4])     # 5 repeats cannot fit in 8 steps
    target_lengths, input_lengths = np.array([5, 0, 3]), np.array([8, 10, 0])
    loss_cpu = kernels.ctc_loss(log_probs, targets, input_lengths, target_lengths, reduction="none")
    grad_cpu = kernels.ctc_loss_backward(np.ones(3), log_probs, targets, input_lengths, target_lengths,
                                         reduction="none")
    lp = cupy.asarray(log_probs, dtype=cupy.float32)
    loss = kernels.ctc_loss(lp, cupy.asarray(targets), input_lengths, target_lengths, reduction="none")
    grad = kernels.ctc_loss_backward(cupy.ones(3, cupy.float32), lp, cupy.asarray(targets), input_lengths,
                                     target_lengths, reduction="none")
    loss, grad = cupy.asnumpy(loss), cupy.asnumpy(grad)
    np.testing.assert_array_equal(np.isinf(loss), np.isinf(loss_cpu))
    np.testing.assert_array_equal(np.isnan(grad), np.isnan(grad_cpu))
    assert_close(np.nan_to_num(grad), np.nan_to_num(grad_cpu), np.float32, scale=10)


@pytest.mark.parametrize("padded", [True, False])
def test_ctc_captured_in_a_cuda_graph_matches_eager(padded):
    """Forward + backward recorded into a CUDA graph (as nn.capture does) and replayed."""
    import cupy
    log_probs, targets, input_lengths, target_lengths = _case(26, 64, 37, 10, seed=3)
    if not padded:
        targets = np.concatenate([targets[n, :target_lengths[n]] for n in range(64)])
    lp = cupy.asarray(log_probs, dtype=cupy.float32)
    tg, il, tl = cupy.asarray(targets), cupy.asarray(input_lengths), cupy.asarray(target_lengths)
    eager_loss = kernels.ctc_loss(lp, tg, il, tl, zero_infinity=True)
    eager_grad = kernels.ctc_loss_backward(1.0, lp, tg, il, tl, zero_infinity=True)
    stream = cupy.cuda.Stream(non_blocking=True)
    stream.wait_event(cupy.cuda.get_current_stream().record())
    pool = cupy.cuda.MemoryPool()
    with cupy.cuda.using_allocator(pool.malloc), stream:
        stream.begin_capture()
        loss = kernels.ctc_loss(lp, tg, il, tl, zero_infinity=True)
        grad = kernels.ctc_loss_backward(1.0, lp, tg, il, tl, zero_infinity=True)
        graph = stream.end_capture()
    loss.fill(0)
    grad.fill(0)
    stream.wait_event(cupy.cuda.get_current_stream().record())   # the fills ran on the caller's stream
    graph.launch(stream)
    stream.synchronize()
    assert_close(loss, eager_loss, np.float32, rtol=1e-6, atol=1e-6)
    assert_close(grad, eager_grad, np.float32, rtol=1e-6, atol=1e-7)
