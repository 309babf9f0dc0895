"""Hooks on the GPU: tensor and module hooks in a step captured by nn.capture (their device work is replayed,
their host work happens at the warm-up and the capture only), hooked gradients in a flat optimizer's buffer,
and nn.autograd.grad against the CPU path. Needs a GPU (skipped elsewhere)."""
import numpy as np

import nn
from tests.oracle import assert_close, random_array

REPLAYS = 6


def _hooked_training(flat, calls):
    """An MLP whose first weight's gradient is halved by a hook and whose first layer's output is doubled by a
    forward hook (device constants: a Python number would be a host-to-device copy inside the capture), each hook
    counting its calls on the host; SGD with momentum."""
    import cupy
    nn.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 10)).to("cuda")
    half = nn.Tensor(cupy.asarray(0.5, dtype=np.float32))
    two = nn.Tensor(cupy.asarray(2.0, dtype=np.float32))

    def halve(grad):
        calls.append("tensor hook")
        return grad * half

    def double(module, args, output):
        calls.append("forward hook")
        return output * two
    model[0].weight.register_hook(halve)
    model[0].register_forward_hook(double)
    optimizer = nn.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, flat=flat)

    def step(inputs, targets):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(inputs), targets)
        loss.backward()
        optimizer.step()
        return loss
    return model, optimizer, step


def test_a_captured_step_replays_the_hooks_device_work_and_not_their_host_work():
    import cupy
    eager_calls, captured_calls = [], []
    eager_model, _, eager_step = _hooked_training(False, eager_calls)
    model, optimizer, step = _hooked_training(True, captured_calls)
    captured = nn.capture(step)
    rng = np.random.default_rng(1)
    for index in range(2 + REPLAYS):   # an eager warm-up, the capture (and its replay), then replays
        inputs = nn.Tensor(cupy.asarray(rng.random((16, 12), dtype=np.float32)))
        targets = cupy.asarray(rng.integers(0, 10, size=16))
        eager_loss = float(eager_step(inputs, targets).numpy())
        captured_loss = float(captured(inputs, targets).numpy())
        assert_close(np.float32(captured_loss), np.float32(eager_loss), np.float32, rtol=1e-5, atol=1e-6,
                     name=f"loss at step {index}")
    assert captured.captured
    assert eager_calls == ["forward hook", "tensor hook"] * (2 + REPLAYS)
    assert captured_calls == ["forward hook", "tensor hook"] * 2   # the warm-up and the capture only
    packed = optimizer.param_groups[0].flat
    assert packed and packed.gradients_in_place(list(model.parameters()))
    for (key, p), (_, q) in zip(eager_model.named_parameters(), model.named_parameters()):
        assert_close(q.data, p.data, np.float32, rtol=1e-4, atol=1e-6, name=key)


def _gradients(device):
    """A hooked backward and an autograd.grad of the same small model on `device`, as NumPy arrays."""
    nn.manual_seed(2)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).to(device)
    optimizer = nn.optim.SGD(model.parameters(), lr=0.0, flat=True)
    model[2].weight.register_hook(lambda g: g.clamp(-0.02, 0.02))
    x = nn.tensor(random_array((5, 6), seed=3), device=device)
    results = []
    for _ in range(2):   # the first step packs the flat buffer; the second backward lands in it
        optimizer.zero_grad()
        (model(x) ** 2).sum().backward()
        optimizer.step()
    results += [p.grad.numpy() for p in model.parameters()]
    if device == "cuda":
        packed = optimizer.param_groups[0].flat
        assert packed and packed.gradients_in_place(list(model.parameters()))
    optimizer.zero_grad()
    if device == "cuda":
        buffer = packed.grad_buffer.copy()
    results += [g.numpy() for g in nn.autograd.grad((model(x) ** 2).sum(), list(model.parameters()))]
    assert all(p.grad is None for p in model.parameters())
    if device == "cuda":
        import cupy
        assert bool(cupy.all(packed.grad_buffer == buffer))
    return results


def test_hooked_gradients_and_autograd_grad_match_the_cpu_path():
    for index, (got, want) in enumerate(zip(_gradients("cuda"), _gradients("cpu"), strict=True)):
        assert_close(got, want, np.float32, scale=4, name=f"gradient {index}")
