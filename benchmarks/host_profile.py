"""`python -m benchmarks.host_profile`: where the host time of one GPU op call goes (needs a GPU).

Small ops and time-stepped loops are bound by the host, not the GPU: this times the pieces of one
launch (allocation, views, configuration, Numba's dispatch) and whole op calls on inputs small enough
that the GPU is never the bottleneck, and a whole eager CNN training step, split into the step with its
launches skipped and its launches alone (the same for the train suite's CRNN 12x90 step, where "launches alone"
is bound by the GPU), then prints cProfile's heaviest functions for a few ops and for those steps. Each launch
probe, op call and the CNN step is timed through both launchers (direct, the
default, and Numba's dispatch), and the direct launcher's replay summary is printed last.
"""
import cProfile
import io
import pstats
import time

import numpy as np


def per_call_us(fn, calls=2000):
    import cupy
    for _ in range(20):
        fn()
    cupy.cuda.get_current_stream().synchronize()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    cupy.cuda.get_current_stream().synchronize()
    return (time.perf_counter() - start) / calls * 1e6


def _dispatch_probes(kernel, configured, stream, views):
    """Where a configured launch's ~21 us go: Numba's per-argument preparation alone (what the direct
    launcher replays instead). It uses numba-cuda's internals (0.30): a failure is reported as a failed
    row, nothing else."""
    configured(*views)   # compiled for these argument types
    compiled = next(iter(kernel.overloads.values()))

    def prepare():
        arguments, keep = [], []
        for numba_type, value in zip(compiled.argument_types, views):
            compiled._prepare_args(numba_type, value, stream, keep, arguments)
        return arguments

    return {"compiled._prepare_args (2 arrays)": prepare}


def _with_launcher(cuda_launch, name, fn):
    """`fn` launched through `name` ('direct', the default, or 'numba': Numba's dispatch)."""
    def run():
        with cuda_launch.using_launcher(name):
            return fn()
    return run


def _launcher_probes(cuda_launch, relu_kernel, x, y):
    """Our launch() and a whole op call through each launcher; each probe sets the launcher for its call."""
    import kernels

    probes = {}
    for name in cuda_launch.LAUNCHERS:
        probes[f"launch(relu_kernel, ...), {name}"] = _with_launcher(
            cuda_launch, name, lambda: cuda_launch.launch(relu_kernel, 256, 256, x, y))
        probes[f"kernels.relu(x), {name}"] = _with_launcher(cuda_launch, name, lambda: kernels.relu(x))
    return probes


def _cnn_training_step():
    """One eager training step of the train suite's CNN (batch 64, Adam): host-bound on the GPU (6.7 ms
    eager against 0.48 ms replayed from a graph, H200), so its profile shows where eager steps spend."""
    import cupy

    import nn
    from nn import models
    nn.manual_seed(0)
    model = models.CNN().to("cuda")
    optimizer = nn.optim.Adam(model.parameters(), lr=1e-3, flat=True)   # as `numbanet train` and the train suite
    rng = np.random.default_rng(0)
    x = nn.Tensor(cupy.asarray(rng.random((64, 1, 8, 8), dtype=np.float32)))
    y = cupy.asarray(rng.integers(0, 10, 64))

    def step():
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
    return step


def _crnn_training_step():
    """One eager training step of the train suite's CRNN 12x90 (channels up to 256, batch 64, CTC, Adam): 17 ms
    eager against 11.3 ms replayed from a graph on an H100 (sixteenth session), so bound by its host work."""
    import cupy

    import nn
    from benchmarks.train import _specs
    nn.manual_seed(0)
    _, make_model, shape, _, classes = [spec for spec in _specs("cuda", quick=False)
                                        if spec[0].startswith("crnn 12x90")][0]
    model = make_model().to("cuda")
    optimizer = nn.optim.Adam(model.parameters(), lr=1e-3, flat=True)
    rng = np.random.default_rng(0)
    x = nn.Tensor(cupy.asarray(rng.random((64,) + shape, dtype=np.float32)))
    targets = cupy.asarray(rng.integers(1, classes + 1, size=(64, 8)))
    target_lengths = cupy.asarray(rng.integers(3, 9, size=64))
    input_lengths = cupy.full(64, model.output_length(shape[-1]), dtype=np.int64)
    ctc = nn.CTCLoss()

    def step():
        optimizer.zero_grad()
        loss = ctc(model(x), targets, input_lengths, target_lengths)
        loss.backward()
        optimizer.step()
    return step


def _eager_step_split(step, calls=300, name="CNN"):
    """Where an eager step's host time goes, in two rows that add up to about the whole step: the step with
    its kernel launches skipped (nn, autograd, our wrappers and CuPy's own work: what launching is not), and
    the same launches alone, replayed through launch() with the arguments one step passed."""
    from benchmarks.harness import launches_replaced
    from kernels.cuda import launch as cuda_launch
    launch, recorded = cuda_launch.launch, []

    def record(kernel, grid, block, *args, shared_bytes=0):
        recorded.append((kernel, grid, block, args, shared_bytes))
        launch(kernel, grid, block, *args, shared_bytes=shared_bytes)

    def launches_alone():
        for kernel, grid, block, args, shared_bytes in recorded:
            launch(kernel, grid, block, *args, shared_bytes=shared_bytes)

    with launches_replaced(record):
        step()
    with launches_replaced(lambda *args, **options: None):   # (the skipped kernels leave garbage: no matter)
        skipped = per_call_us(step, calls)
    return [(f"{name} step, launches skipped", skipped),
            (f"{name} step's {len(recorded)} launches alone", per_call_us(launches_alone, calls))]


def main():
    import cupy
    from numba import cuda

    import kernels
    from kernels.cuda import launch as cuda_launch
    from kernels.cuda.pointwise import relu_kernel

    x = cupy.random.random(1 << 16, dtype=cupy.float32)
    y = cupy.empty_like(x)
    stream = cuda_launch.current_stream()
    vx, vy = cuda_launch.device_view(x), cuda_launch.device_view(y)
    configured = relu_kernel[256, 256, stream, 0]
    interface = x.__cuda_array_interface__
    a = cupy.random.random((64, 64), dtype=cupy.float32)
    images = cupy.random.random((16, 32, 12, 120), dtype=cupy.float32)
    weight = cupy.random.random((64, 32, 3, 3), dtype=cupy.float32)
    probe = {
        "cupy.empty(65536)": lambda: cupy.empty(1 << 16, dtype=cupy.float32),
        "x.reshape(-1)": lambda: x.reshape(-1),
        "current_stream()": cuda_launch.current_stream,
        "device_view, cached": lambda: cuda_launch.device_view(x),
        "from_cuda_array_interface": lambda: cuda.from_cuda_array_interface(interface, owner=None, sync=False),
        "kernel[grid, block, stream, 0]": lambda: relu_kernel[256, 256, stream, 0],
        "configured(view, view)": lambda: configured(vx, vy),
        "configured(cupy, cupy)": lambda: configured(x, y),
        "cupy x * 2 (reference)": lambda: x * 2,
        "kernels.matmul 64^3": lambda: kernels.matmul(a, a),
        "kernels.conv2d 16x32x12x120 k64": lambda: kernels.conv2d(images, weight, None, padding=1),
    }
    probe.update(_dispatch_probes(relu_kernel, configured, stream, (vx, vy)))
    probe.update(_launcher_probes(cuda_launch, relu_kernel, x, y))
    cnn_step = _cnn_training_step()
    for name in cuda_launch.LAUNCHERS:
        probe[f"CNN training step b64, eager, {name}"] = _with_launcher(cuda_launch, name, cnn_step)
    rows = []
    for name, fn in probe.items():
        try:
            rows.append((name, per_call_us(fn, 300 if "conv" in name or "step" in name else 2000)))
        except Exception as error:  # a probe of Numba internals that this version lacks: say so, go on
            rows.append((f"{name} [failed: {type(error).__name__}: {error}]"[:90], float("nan")))
        print(f"measured: {rows[-1][0]:40s} {rows[-1][1]:8.1f} us", flush=True)   # kept if the run is cut
    try:   # after the whole step's rows, so that a failure here costs none of them
        with cuda_launch.using_launcher("direct"):   # (as the "eager, direct" row it splits)
            split = _eager_step_split(cnn_step)
    except Exception as error:
        split = [(f"CNN step split [failed: {type(error).__name__}: {error}]"[:90], float("nan"))]
    try:   # the CRNN 12x90 of the train suite: its eager step (issue 5: 0.52 of PyTorch) is bound by host work
        crnn_step = _crnn_training_step()
        with cuda_launch.using_launcher("direct"):
            crnn_step()   # (compiles, allocates the optimizer state)
            split.append(("CRNN 12x90 step b64, eager, direct", per_call_us(crnn_step, 30)))
            split += _eager_step_split(crnn_step, calls=30, name="CRNN")
    except Exception as error:
        crnn_step = None
        split.append((f"CRNN step [failed: {type(error).__name__}: {error}]"[:90], float("nan")))
    rows += split
    for name, us in split:
        print(f"measured: {name:40s} {us:8.1f} us", flush=True)
    for name, fn, calls in (("kernels.relu, numba launcher", probe["kernels.relu(x), numba"], 500),
                            ("kernels.relu, direct launcher", probe["kernels.relu(x), direct"], 500),
                            ("kernels.conv2d", probe["kernels.conv2d 16x32x12x120 k64"], 100),
                            ("an eager CNN training step", probe["CNN training step b64, eager, direct"], 50),
                            ("an eager CRNN 12x90 training step", crnn_step, 10)):
        if fn is None:
            continue
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(calls):
            fn()
        profiler.disable()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(30 if "step" in name else 14)
        print(f"--- cProfile of {calls} calls of {name}, by own time ---")
        print("\n".join(line for line in text.getvalue().splitlines()[6:] if line.strip()))
    print(f"{'host cost of one call':40s} {'us':>8s}")
    for name, us in rows:
        print(f"{name:40s} {us:8.1f}")
    print(f"direct launcher: {cuda_launch.replay_summary()}")


if __name__ == "__main__":
    np.random.seed(0)
    main()
