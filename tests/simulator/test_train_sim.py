"""Recording the kernels a training run will launch (nn.train.record_kernels, which `numbanet train` hands
to kernels/cuda/compile_ahead.py's processes on a GPU), on the CUDA code path in the simulator: every
launch of a CRNN training step and validation batch is recorded and none runs, and the run's model and
random generators are left as they were."""
import numpy as np
import pytest

from kernels import backend
from nn import init, train

if not backend.SIMULATOR:
    pytest.skip("the CUDA code path of nn.train, in the simulator", allow_module_level=True)


def _kernel_name(kernel):
    function = getattr(kernel, "py_func", None) or kernel.fn
    return function.__qualname__.rpartition(".")[2]


def test_a_crnn_step_and_validation_are_recorded_and_nothing_is_touched(monkeypatch):
    from numba.cuda.simulator.kernel import FakeCUDAKernel
    launched = []
    original = FakeCUDAKernel.__getitem__
    monkeypatch.setattr(FakeCUDAKernel, "__getitem__",
                        lambda self, config: launched.append(self) or original(self, config))
    from kernels.cuda import compile_ahead
    from nn import tasks
    validation_launches, evaluate = [], tasks.StripTask.evaluate

    def counted_evaluate(self, model, split, device):   # how many launches the validation recorded
        before = len(compile_ahead._recording)
        result = evaluate(self, model, split, device)
        validation_launches.append(len(compile_ahead._recording) - before)
        return result
    monkeypatch.setattr(tasks.StripTask, "evaluate", counted_evaluate)
    step_loss = tasks.StripTask.step_loss

    def step_loss_with_dropout(self, model, *arrays):   # as a model with dropout would: draw from the generator
        init.default_generator().random(3)
        return step_loss(self, model, *arrays)
    monkeypatch.setattr(tasks.StripTask, "step_loss", step_loss_with_dropout)
    args = train.build_parser().parse_args(["crnn", "--device", "cpu", "--seed", "3"])
    settings = train.settings_from_args(args)
    task, model, _, _ = train.build(settings)
    split = task.load(train=False)["validation"]
    weights = {key: np.array(value) for key, value in model.state_dict().items()}
    rng = init.rng_state()
    from kernels.cuda import rnn
    plans = dict(rnn._plans)
    records = train.record_kernels(model, task, settings, split, "cpu")
    assert rnn._plans == plans, "the recording kept a plan of the persistent recurrent kernels"
    assert launched == [], "a recorded launch ran"
    assert init.rng_state() == rng
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, weights[key], err_msg=key)
    names = {_kernel_name(kernel) for kernel, _ in records}
    # the step's convolutions (three directions), batch norm, pooling, the bidirectional LSTM, GEMMs, CTC and
    # the one flat Adam launch
    for expected in ("conv2d_forward", "conv2d_backward_data", "conv2d_weight_gradient", "batch_statistics_kernel",
                     "backward_input_kernel", "with_indices", "persistent_forward", "persistent_backward", "kernel",
                     "ctc_loss_kernel", "ctc_gradient_kernel", "adam_kernel_device_step"):
        assert expected in names, (expected, sorted(names))
    assert len(validation_launches) == 1 and validation_launches[0] > 10, validation_launches
    # the persistent recurrent kernels with the types the real plan's occupancy query compiles them for (one
    # cache entry for the compiling processes and that query), one combined launch per bidirectional layer
    from nn import recurrent
    layers = sum(m.num_layers for m in model.modules() if isinstance(m, recurrent._RecurrentBase) and m.bidirectional)
    backward = [types for kernel, types in records if _kernel_name(kernel) == "persistent_backward"]
    assert layers > 0 and backward == [rnn.persistent_signature("backward")] * layers
    forward = {types for kernel, types in records if _kernel_name(kernel) == "persistent_forward"}
    assert forward == {rnn.persistent_signature("forward")}
    assert all(isinstance(types, tuple) and types for _, types in records)


def test_with_ema_the_averaging_of_the_weights_is_recorded_too():
    args = train.build_parser().parse_args(["cnn", "--device", "cpu", "--seed", "3", "--ema", "0.99"])
    settings = train.settings_from_args(args)
    task, model, _, _ = train.build(settings)
    split = task.load(train=False)["validation"]
    names = [_kernel_name(kernel) for kernel, _ in train.record_kernels(model, task, settings, split, "cpu")]
    parameters = len(list(model.parameters()))
    assert names.count("sgd_kernel") == parameters, (parameters, names)   # one lerp a weight (the EMA's update)
    settings["ema"] = 0.0
    assert "sgd_kernel" not in [_kernel_name(k) for k, _ in train.record_kernels(model, task, settings, split, "cpu")]
