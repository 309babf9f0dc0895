"""`python -m benchmarks.barrier_check`: the persistent recurrent kernels' atomic grid barrier (the default since
2026-11-27, written without a GPU) against the CUDA device runtime's, on the GPU, before anything else
relies on it: benchmarks/gpu_check.sh runs this first and falls back to NUMBANET_GRID_BARRIER=runtime for
the rest of its stages if it fails or hangs.

The default CRNN's first bidirectional LSTM layer (T45 B32 I64 H64: both directions in one launch of 128
one-unit blocks, a grid barrier a step) runs forward and backward with each barrier. The kernels differ only
in how their blocks wait, so every result must be bit-identical; the median time of each is printed. Exit
status 1 when they differ.
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


def main():
    import cupy
    line, same = check(cupy.asarray, cupy.asnumpy, lambda run: _median_ms(cupy, run))
    print(line)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
