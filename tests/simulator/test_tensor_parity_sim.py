"""nn.Tensor's torch parity fixes where the CUDA kernels run (here in the simulator): the 1-D dot product through
the GEMM, and a float32 layer whose loss went through a 0-d float64 tensor keeping float32 gradients that the
optimizer kernels step (tests/nn/test_tensor_torch_parity.py checks the rest on the CPU)."""
import numpy as np

import nn
from tests.oracle import assert_close, random_array, torch_module


def test_one_dim_matmul_through_the_gemm_matches_torch():
    torch = torch_module()
    a, b = random_array((7,), seed=1), random_array((7,), seed=2)
    ours = [nn.Tensor(a, requires_grad=True), nn.Tensor(b, requires_grad=True)]
    theirs = [torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)]
    out, expected = ours[0] @ ours[1], theirs[0] @ theirs[1]
    assert out.shape == () and out.dtype == np.float32
    assert_close(out.data, expected.detach().numpy(), name="dot")
    out.backward()
    expected.backward()
    for mine, reference in zip(ours, theirs):
        assert_close(mine.grad.data, reference.grad.numpy(), name="gradient")


def test_a_float32_layer_scaled_by_a_0d_float64_tensor_keeps_float32_gradients_and_steps():
    torch = torch_module()
    torch.manual_seed(0)
    theirs = torch.nn.Linear(4, 3)
    ours = nn.Linear(4, 3)
    ours.load_state_dict(theirs.state_dict())
    x, scale = random_array((2, 4), seed=3), np.array(0.5)
    for model, lib, make in ((ours, nn, nn.Tensor), (theirs, torch, torch.tensor)):
        loss = (model(make(x)) ** 2 * make(scale)).sum()   # float32[2, 3] times 0-d float64: float32
        assert str(loss.dtype).endswith("float32")
        loss.backward()
        lib.optim.SGD(model.parameters(), lr=0.1).step()
    for (name, mine), reference in zip(ours.named_parameters(), theirs.parameters()):
        assert mine.grad.dtype == np.float32, name
        assert_close(mine.grad.data, reference.grad.numpy(), name=f"grad of {name}")
        assert_close(mine.data, reference.detach().numpy(), name=name)
