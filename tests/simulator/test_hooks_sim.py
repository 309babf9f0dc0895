"""Tensor hooks and nn.autograd.grad with a flat optimizer's gradient buffer (flat=True packs only on the CUDA
path): a hooked parameter's gradient is seen by its hook before it lands and the hook's result is what lands in
the buffer and what the step uses; autograd.grad writes into no buffer and no .grad."""
import numpy as np
import pytest

from tests.oracle import assert_close, random_array, torch_module


def _layers(torch):
    import nn
    nn.manual_seed(4)
    ours = nn.Linear(4, 3)
    theirs = torch.nn.Linear(4, 3)
    theirs.load_state_dict({key: torch.from_numpy(value) for key, value in ours.state_dict().items()})
    return ours, theirs


@pytest.mark.parametrize("optimizer, options", [("SGD", dict(lr=0.1, momentum=0.9)),
                                                ("Adam", dict(lr=0.01, weight_decay=0.01))])
def test_hooked_gradients_land_in_the_flat_buffer_after_their_hooks(optimizer, options, monkeypatch):
    import nn
    from nn.tensor import Tensor
    torch = torch_module()
    ours, theirs = _layers(torch)
    landed = []   # (parameter name, whether a Function wrote the gradient straight into its slot)
    accumulate = Tensor._accumulate

    def spy(tensor, grad):
        slot = tensor._grad_slot
        landed.append(("weight" if tensor is ours.weight else "bias", slot is not None and grad is slot[1]))
        accumulate(tensor, grad)
    monkeypatch.setattr(Tensor, "_accumulate", spy)
    seen_in_buffer = []

    def halve(grad):   # the gradient must not be in the buffer yet
        slot = ours.weight._grad_slot
        seen_in_buffer.append(slot is not None and np.shares_memory(grad.data, slot[1]))
        return grad * 0.5
    ours.weight.register_hook(halve)
    theirs.weight.register_hook(lambda g: g * 0.5)
    ours_optimizer = getattr(nn.optim, optimizer)(ours.parameters(), flat=True, **options)
    theirs_optimizer = getattr(torch.optim, optimizer)(theirs.parameters(), **options)
    for step in range(3):
        x = random_array((2, 4), seed=10 + step)
        landed.clear()
        for model, opt, inputs in ((ours, ours_optimizer, nn.Tensor(x)), (theirs, theirs_optimizer, torch.from_numpy(x))):
            opt.zero_grad()
            (model(inputs) ** 2).sum().backward()
            opt.step()
        assert_close(ours.weight.grad.numpy(), theirs.weight.grad.numpy(), np.float32, name="hooked weight gradient")
        if step > 0:   # packed at the first step: the buffer exists from then on
            flat = ours_optimizer.param_groups[0].flat
            assert flat and flat.gradients_in_place(list(ours.parameters()))   # both gradients in the buffer
            assert dict(landed) == {"weight": False, "bias": True}   # only the unhooked bias took the shortcut
    assert seen_in_buffer == [False, False, False]
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters()):
        assert_close(p.numpy(), q.detach().numpy(), np.float32, name=name)


def test_autograd_grad_writes_into_no_flat_buffer():
    import nn
    torch = torch_module()
    ours, theirs = _layers(torch)
    optimizer = nn.optim.SGD(ours.parameters(), lr=0.1, flat=True)
    x = random_array((2, 4), seed=20)
    (ours(nn.Tensor(x)) ** 2).sum().backward()
    optimizer.step()   # packs the buffers
    flat = optimizer.param_groups[0].flat
    assert flat
    optimizer.zero_grad()
    theirs.load_state_dict({key: torch.from_numpy(value) for key, value in ours.state_dict().items()})
    buffer = flat.grad_buffer.copy()
    results = nn.autograd.grad((ours(nn.Tensor(x)) ** 2).sum(), [ours.weight, ours.bias])
    expected = torch.autograd.grad((theirs(torch.from_numpy(x)) ** 2).sum(), [theirs.weight, theirs.bias])
    np.testing.assert_array_equal(flat.grad_buffer, buffer)
    assert ours.weight.grad is None and ours.bias.grad is None
    for result, reference in zip(results, expected):
        assert not np.shares_memory(result.data, flat.grad_buffer)
        assert_close(result.numpy(), reference.numpy(), np.float32)
