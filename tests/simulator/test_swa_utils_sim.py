"""nn.swa_utils' averages in the simulator (the update runs kernels.sgd_update's CUDA kernel, the SWA mean
with its weight read from a device array) against torch."""
import numpy as np
import pytest

from kernels import backend
from nn import swa_utils
from tests.nn.test_swa_utils import _models, _perturb
from tests.oracle import assert_close


@pytest.mark.parametrize("average", ["ema", "swa"])
def test_kernel_path_matches_torch_averaged_model(average):
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
    ours, theirs = _models(np.float32)
    assert backend.device_of("test", next(iter(ours.parameters())).data) == "cuda"
    if average == "ema":
        averaged = swa_utils.AveragedModel(ours, multi_avg_fn=swa_utils.get_ema_multi_avg_fn(0.75))
        reference = AveragedModel(theirs, multi_avg_fn=get_ema_multi_avg_fn(0.75))
    else:
        averaged, reference = swa_utils.AveragedModel(ours), AveragedModel(theirs)
    for step in range(3):
        _perturb(ours, theirs, step, np.float32)
        averaged.update_parameters(ours)
        reference.update_parameters(theirs)
    state = averaged.state_dict()
    for key, value in reference.state_dict().items():
        assert_close(state[key], value.numpy(), np.float32, name=key)
