"""autograd's version check for flat=True optimizers, whose one-launch path runs only where the CUDA kernels do
(tests/nn/test_version_check.py compares the per-parameter path with torch on the CPU)."""
import numpy as np
import pytest

from tests.oracle import random_array


def _loss(params, seed):
    """sum(w * p * p): each Mul saves p, as torch's mul does (elementwise only: a GEMM is too slow here)."""
    import nn
    total = None
    for i, p in enumerate(params):
        term = (nn.Tensor(random_array(p.shape, seed=seed + i)) * p * p).sum()
        total = term if total is None else total + term
    return total


@pytest.mark.parametrize("name, options", [("Adam", dict(lr=0.05)), ("AdamW", dict(lr=0.05)),
                                           ("SGD", dict(lr=0.05, momentum=0.9))])
def test_a_flat_step_counts_as_a_write_of_every_parameter_of_the_group(name, options, monkeypatch):
    """The step that packs the group (Adam's first; SGD's first with momentum steps each parameter, then packs)
    and every one-launch step after it make a graph recorded before them raise at backward; a usual loop runs
    no check."""
    import nn
    from nn import autograd
    params = [nn.Parameter(random_array(shape, seed=i)) for i, shape in enumerate([(3,), (2, 5), (4,)])]
    optimizer = getattr(nn.optim, name)(params, flat=True, **options)
    loss = _loss(params, seed=10)
    loss.backward(retain_graph=True)
    optimizer.step()
    with pytest.raises(RuntimeError, match="Mul saved for its gradient was modified by an in-place operation"):
        loss.backward()

    checks = []
    check = autograd._check_saved_arrays_unwritten
    monkeypatch.setattr(autograd, "_check_saved_arrays_unwritten", lambda ctx: (checks.append(ctx), check(ctx)))
    for step in range(2):
        optimizer.zero_grad()
        _loss(params, seed=20 + step).backward()
        optimizer.step()
    assert checks == []
    packed = optimizer.param_groups[0].flat
    assert all(np.shares_memory(p.data, packed.param_buffer) for p in params)   # the one-launch path

    for i, saved in enumerate(params):   # whichever parameter a graph saved: one note covers the whole buffer
        optimizer.zero_grad()
        _loss(params, seed=40 + i).backward()
        graph = (saved * saved).sum()
        optimizer.step()
        assert optimizer.param_groups[0].flat is packed
        with pytest.raises(RuntimeError, match="Mul saved for its gradient was modified by an in-place operation"):
            graph.backward()
    optimizer.zero_grad()
    _loss(params, seed=30).backward()   # recorded after the step: fine
    assert all(p.grad is not None for p in params)
