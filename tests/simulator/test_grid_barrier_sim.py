"""The atomic grid barrier's protocol (kernels/cuda/rnn_persistent.py arrive_and_wait) in the simulator.

The simulator runs a grid's blocks one after another, so no kernel there can have blocks wait for each
other; but it runs a block's threads at once, as OS threads. Here each thread of one block plays a whole
block of a persistent kernel: it writes its part of a round, arrives, waits, then reads everyone's part.
A barrier that let a thread through before the last arrival would let it read a part not yet written."""
import threading

import numpy as np
import pytest
from numba import cuda

from kernels.cuda.rnn_persistent import FLIP, arrive_and_wait

ROUNDS = 12


@cuda.jit
def _rounds(arrivals, board, sums, delays):
    me = cuda.threadIdx.x
    players = cuda.blockDim.x
    for r in range(board.shape[0]):
        for _ in range(delays[r, me]):   # arrive in a different order each round
            pass
        board[r, me] = r * players + me + 1
        arrive_and_wait(arrivals, me, players)
        total = 0
        for other in range(players):
            total += board[r, other]
        sums[r, me] = total


@pytest.mark.filterwarnings("ignore:overflow encountered")   # the word wraps past 2^32 in every second round
@pytest.mark.parametrize("players", [1, 2, 5, 8])
def test_no_player_passes_before_the_last_arrival(players):
    delays = np.random.default_rng(players).integers(0, 3000, size=(ROUNDS, players)).astype(np.int64)
    arrivals = np.zeros(1, np.uint32)
    board = np.zeros((ROUNDS, players), np.int64)
    sums = np.zeros((ROUNDS, players), np.int64)
    # in a thread of its own, so that a barrier that never opens fails the test instead of hanging the run
    runner = threading.Thread(target=_rounds[1, players], args=(arrivals, board, sums, delays), daemon=True)
    runner.start()
    runner.join(timeout=120)
    assert not runner.is_alive(), "the players are still waiting at a barrier after 120 s"
    expected = [sum(r * players + me + 1 for me in range(players)) for r in range(ROUNDS)]
    assert (sums == np.array(expected)[:, None]).all(), "a player read the board before everyone had written"
    # the word flips once a round and its low bits are back at zero after the last one
    assert arrivals[0] == (FLIP if ROUNDS % 2 else 0)


def test_gpu_checks_barrier_stage_runs_and_reports(monkeypatch):
    """benchmarks/barrier_check.py (gpu_check.sh's first stage: its "bit-identical" decides whether the later
    stages fall back to the runtime barrier) runs the layer with each barrier and reports; here on a tiny
    layer, where the simulator's one block meets at block barriers either way."""
    from benchmarks import barrier_check
    for name, value in (("T", 3), ("B", 2), ("I", 3), ("H", 4), ("REPEATS", 1)):
        monkeypatch.setattr(barrier_check, name, value)
    line, same = barrier_check.check(np.asarray, np.asarray, lambda run: (run(), 1.0)[1])
    assert same and line.endswith("(median of 1); results bit-identical")
    assert line.startswith("grid barriers, bilstm T3 B2 I3 H4 forward + backward: atomic 1.000 ms, runtime 1.000 ms")



def test_barriers_alone_runs_and_reports(monkeypatch):
    """barrier_check's barrier-alone timing (a GPU measurement): its kernels meet at grid barriers only (here
    the simulator's one block of 4 threads), and its line divides the difference of two launches' times by
    their difference in rounds (a fake timer: 1 us a round)."""
    from benchmarks import barrier_check
    real = barrier_check._rounds_kernels()
    for kind, kernel in real.items():
        arrivals = np.zeros(1, np.uint32)
        kernel[1, 4](arrivals, 3)
        assert arrivals[0] == (FLIP if kind == "atomic" else 0)   # three flips, the low bits back at zero
    rounds = []

    class Recording:   # records each launch's rounds, then launches
        def __init__(self, kernel):
            self.kernel = kernel

        def __getitem__(self, shape):
            def launch(arrivals, count):
                rounds.append(count)
                self.kernel[shape](arrivals, count)
            return launch

    monkeypatch.setattr(barrier_check, "_rounds_kernels", lambda: {k: Recording(v) for k, v in real.items()})
    line = barrier_check.barriers_alone(lambda n: np.zeros(n, np.uint32), lambda run: (run(), rounds[-1] / 1000)[1],
                                        blocks=1, threads=4, rounds=(2, 6))
    assert rounds == [2, 6, 2, 6]
    assert line == ("grid barriers alone, 1 blocks of 4 threads: atomic 1.00 us, runtime 1.00 us a barrier "
                    "(medians of 20 launches of 2 and 6 rounds)")
