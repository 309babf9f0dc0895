"""`python -m benchmarks.barrier_check`: the persistent recurrent kernels' atomic grid barrier (the default since
2026-11-27, written without a GPU) against the CUDA device runtime's, on the GPU, before anything else
relies on it: benchmarks/gpu_check.sh runs this first and falls back to NUMBANET_GRID_BARRIER=runtime for
the rest of its stages if it fails or hangs.

The default CRNN's first bidirectional LSTM layer (T45 B32 I64 H64: both directions in one launch of 128
one-unit blocks, a grid barrier a step) runs forward and backward with each barrier. The kernels differ only
in how their blocks wait, so every result must be bit-identical; the median time of each is printed. Exit
status 1 when they differ.

Then each barrier alone, in the layer's launch shape (128 blocks of 512 threads) with no work between the
barriers: microseconds a barrier, from the medians of two launches differing only in their number of rounds.
(How much of a step is the barrier: on an H100, 2026-11-27, 1.35 us of the CRNN layer's 6.5 us forward step.)
"""
import sys

import numpy as np

T, B, I, H = 45, 32, 64, 64
REPEATS = 20


def _layer_inputs(asarray):
    rng = np.random.default_rng(0)

    def uniform(*shape, bound=1.0):
        return asarray(rng.uniform(-bound, bound, shape).astype(np.float32))

    scale = H ** -0.5
    weights = [(uniform(4 * H, I, bound=scale), uniform(4 * H, H, bound=scale), uniform(4 * H, bound=scale),
                uniform(4 * H, bound=scale)) for _ in range(2)]
    return uniform(T, B, I), uniform(2, B, H), uniform(2, B, H), weights, uniform(T, B, 2 * H)


def _forward_backward(inputs):
    import kernels
    x, h0, c0, weights, grad_y = inputs
    *outputs, saved = kernels.lstm_bidirectional(x, h0, c0, weights, training=True)
    gradients = kernels.lstm_bidirectional_backward(saved, grad_y)
    return [array for array in list(outputs) + list(gradients) if array is not None]


def _median_ms(cupy, run):
    start, stop = cupy.cuda.Event(), cupy.cuda.Event()
    times = []
    for _ in range(REPEATS):
        start.record()
        run()
        stop.record()
        stop.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, stop))
    return float(np.median(times))


def check(asarray, to_numpy, median_ms):
    """(the report line, whether the two barriers' results are bit-identical); the array functions and the timer
    (median_ms(run) -> milliseconds) are CuPy's on a GPU (main), NumPy's in the simulator's test."""
    from .rnn import forced
    inputs = _layer_inputs(asarray)
    results, times = {}, {}
    for barrier in ("runtime", "atomic"):
        with forced(grid_barrier=barrier):
            results[barrier] = [to_numpy(a) for a in _forward_backward(inputs)]
            times[barrier] = median_ms(lambda: _forward_backward(inputs))
    differing = [index for index, (a, b) in enumerate(zip(results["atomic"], results["runtime"]))
                 if not np.array_equal(a, b)]
    verdict = "bit-identical" if not differing else f"DIFFERENT in results {differing}"
    line = (f"grid barriers, bilstm T{T} B{B} I{I} H{H} forward + backward: atomic {times['atomic']:.3f} ms, "
            f"runtime {times['runtime']:.3f} ms (median of {REPEATS}); results {verdict}")
    return line, not differing


ALONE_BLOCKS, ALONE_THREADS = 128, 512   # the layer's launch: 2 directions x 64 one-unit blocks, PERSISTENT_THREADS
ALONE_ROUNDS = (100, 1100)


def _rounds_kernels():
    """Kernels that only meet at `rounds` grid barriers of each kind (launched cooperatively, as the layer's)."""
    from numba import cuda

    from kernels.cuda.rnn_persistent import atomic_grid_barrier, launched_cooperatively, runtime_grid_barrier

    @cuda.jit
    def atomic_rounds(arrivals, rounds):
        launched_cooperatively()
        for _ in range(rounds):
            atomic_grid_barrier(arrivals)

    @cuda.jit
    def runtime_rounds(arrivals, rounds):
        for _ in range(rounds):
            runtime_grid_barrier()

    return {"atomic": atomic_rounds, "runtime": runtime_rounds}


def barriers_alone(zeros, median_ms, blocks=ALONE_BLOCKS, threads=ALONE_THREADS, rounds=ALONE_ROUNDS):
    """The report line: microseconds a barrier of each kind costs with no work between barriers, (median of
    rounds[1] rounds - median of rounds[0]) / their difference, so that the launch cancels. zeros(n) makes the
    atomic barrier's zeroed word (uint32)."""
    costs = {}
    for kind, kernel in _rounds_kernels().items():
        def run(count, kernel=kernel):
            kernel[blocks, threads](zeros(1), count)
        few, many = (median_ms(lambda count=count: run(count)) for count in rounds)
        costs[kind] = (many - few) * 1000.0 / (rounds[1] - rounds[0])
    return (f"grid barriers alone, {blocks} blocks of {threads} threads: atomic {costs['atomic']:.2f} us, runtime "
            f"{costs['runtime']:.2f} us a barrier (medians of {REPEATS} launches of {rounds[0]} and {rounds[1]} "
            f"rounds)")


def main():
    import cupy
    line, same = check(cupy.asarray, cupy.asnumpy, lambda run: _median_ms(cupy, run))
    print(line, flush=True)
    try:
        print(barriers_alone(lambda n: cupy.zeros(n, np.uint32), lambda run: _median_ms(cupy, run)))
    except Exception as error:   # a measurement only: the check's verdict above stands
        print(f"grid barriers alone: not measured ({type(error).__name__}: {error})")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
