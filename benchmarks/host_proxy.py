"""`python -m benchmarks.host_proxy [cnn|lstm|crnn] [--profile] [--array-ops]`: the host work of one eager
training step on the CUDA path, measured without a GPU.

It runs the simulator's code path (NUMBA_ENABLE_CUDASIM=1: NumPy arrays go through kernels/cuda's
wrappers, nn, autograd and the optimizers as CuPy arrays do on a GPU) with every kernel launch replaced by a
no-op, so what is timed is mostly our Python: what an eager GPU step pays besides CuPy's own work and the
launches themselves (see benchmarks/host_profile.py for those, on a GPU). Also timed, as NumPy work: the
array operations nn does outside kernels (copies of permuted activations and of first gradients, about
0.02 ms a step for the CNN and LSTM, up to a third of the CRNN's figure), and clip_grad_norm_'s NumPy
branch (on a GPU it runs CuPy ops instead). The arrays hold whatever the skipped kernels left, so no value
is meaningful, only the time. Batch 64 for the CNN and LSTM (the train suite's), 32 for the default CRNN
(with gradient clipping, as `numbanet train crnn`). It checks that no kernel reached the simulator.
`--array-ops` also counts the array operations of a step that would each be a CuPy kernel or a read-back on
a GPU, by the line of ours that asks for them (benchmarks/array_ops.py).
"""
import os
import sys
import time

os.environ["NUMBA_ENABLE_CUDASIM"] = "1"   # before numba is imported
os.environ.pop("NUMBANET_BACKEND", None)   # =cpu would take the CPU path instead

import numpy as np  # noqa: E402


def _skip_launches():
    """Replace the launcher in every kernels.cuda module by a counter for good; returns the count (a list)."""
    launches = [0]

    def count_only(kernel, grid, block, *args, shared_bytes=0):
        launches[0] += 1

    from benchmarks.harness import ReplacedLaunches
    ReplacedLaunches(count_only)
    return launches


def _count_simulated_launches():
    """Count the kernels configured for the simulator (a launch the patch above missed); a list."""
    from numba.cuda.simulator.kernel import FakeCUDAKernel
    reached, original = [0], FakeCUDAKernel.__getitem__

    def configure(self, config):
        reached[0] += 1
        return original(self, config)
    FakeCUDAKernel.__getitem__ = configure
    return reached


def _training_step(model_name, count_array_ops=False):
    import nn
    from nn import models
    nn.manual_seed(0)
    rng = np.random.default_rng(0)
    clip = None
    if model_name == "cnn":
        model, x = models.CNN(), rng.random((64, 1, 8, 8), dtype=np.float32)
    elif model_name == "lstm":
        model = models.RNNClassifier(input_size=8, hidden_size=128, num_classes=10, cell="lstm")
        x = rng.random((64, 8, 8), dtype=np.float32)
    elif model_name == "crnn":
        from nn.tasks import STRIP_CRNN_CHANNELS
        model = models.CRNN(image_height=12, num_classes=10, hidden_size=64, channels=STRIP_CRNN_CHANNELS)
        x, clip = rng.random((32, 1, 12, 90), dtype=np.float32), 5.0
    else:
        raise SystemExit(f"host_proxy: expected cnn, lstm or crnn, got {model_name!r}")
    labels = rng.integers(0, 10, len(x))
    if count_array_ops:   # the model's arrays and the inputs (device arrays on a GPU) become CountedArrays
        from benchmarks import array_ops
        x, labels = array_ops.install(model, x, labels)
    inputs = nn.Tensor(x)
    if model_name == "crnn":
        steps = model.output_length(x.shape[3])
        targets, lengths = rng.integers(1, 11, (len(x), 8)), np.full(len(x), 8)   # host arrays, as in training
        input_lengths = np.full(len(x), steps)

        def loss_of(output):
            return nn.functional.ctc_loss(output, targets, input_lengths, lengths)
    else:
        def loss_of(output):
            return nn.functional.cross_entropy(output, labels)
    optimizer = nn.optim.Adam(model.parameters(), lr=1e-3, flat=True)   # as `numbanet train` runs it

    def step():
        optimizer.zero_grad()
        loss = loss_of(model(inputs))
        loss.backward()
        if clip:
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
    return step


def main(argv):
    import warnings
    warnings.simplefilter("ignore", RuntimeWarning)   # the skipped kernels leave garbage: overflows
    model_name = argv[0] if argv and not argv[0].startswith("-") else "cnn"
    launches, simulated = _skip_launches(), _count_simulated_launches()
    step = _training_step(model_name, "--array-ops" in argv)
    for _ in range(5):
        step()
    launches[0], count = 0, 200
    start = time.perf_counter()
    for _ in range(count):
        step()
    seconds = (time.perf_counter() - start) / count
    # (under --array-ops the steps run on counting arrays, slower than the host work alone: not a figure)
    timed = "not timed (--array-ops)" if "--array-ops" in argv else f"{seconds * 1e6:.0f} us of host work a step"
    print(f"{model_name}: {timed}, {launches[0] / count:.0f} launches skipped, {simulated[0]} simulated")
    if simulated[0]:
        raise SystemExit(f"host_proxy: {simulated[0]} kernel launches reached the simulator (not skipped)")
    if "--array-ops" in argv:
        from benchmarks import array_ops
        array_ops.counting(True)
        for _ in range(10):
            step()
        array_ops.counting(False)
        array_ops.report(10, top=40)
    if "--profile" in argv:
        import cProfile
        import io
        import pstats
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(50):
            step()
        profiler.disable()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(30)
        print(text.getvalue())


if __name__ == "__main__":
    main(sys.argv[1:])
