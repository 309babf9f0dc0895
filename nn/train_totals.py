"""An epoch's running loss and accuracy for `numbanet train` (nn/train.py's Run): sums kept on the device and read
on the host only every few steps, so that the GPU is not made to wait at every step."""
import numpy as np


class RunningTotals:
    """Loss and correct-prediction sums of an epoch. On the GPU they stay on the device and are read
    every SYNC_EVERY steps (each read waits for the GPU, which would otherwise run ahead of Python);
    on the CPU every step. A non-finite loss stops the run at the next read."""
    SYNC_EVERY = 50

    def __init__(self, device, epoch, so_far=None):
        """so_far: the as_dict() of the same epoch's batches before an interruption (a resumed epoch's line in
        history.jsonl then covers all its batches)."""
        self.sync_every = self.SYNC_EVERY if device == "cuda" else 1
        self.epoch = epoch
        self.pending = []       # (loss array, correct or None, batch size) not yet read
        so_far = so_far or {}
        self.loss = so_far.get("loss", 0.0)
        self.count = so_far.get("count", 0)
        self.correct = so_far.get("correct")
        self.steps = 0

    def add(self, loss, correct, size):
        # copies: a captured step hands back the same arrays at every replay
        self.pending.append((loss * size, None if correct is None else correct.copy(), size))
        self.steps += 1

    def read(self):
        for weighted, correct, size in self.pending:
            value = float(weighted)
            if not np.isfinite(value):
                raise FloatingPointError(f"training loss became {value / size} at epoch {self.epoch + 1}; "
                                         f"try a smaller --lr")
            self.loss += value
            self.count += size
            if correct is not None:
                self.correct = (self.correct or 0) + int(correct)
        self.pending = []
        shown = {"loss": f"{self.loss / max(self.count, 1):.4f}"}
        if self.correct is not None:
            shown["acc"] = f"{self.correct / max(self.count, 1):.3f}"
        return shown

    def as_dict(self):
        """The sums read so far; correct is None for a task that counts no correct predictions."""
        return {"loss": self.loss, "count": self.count, "correct": self.correct}
