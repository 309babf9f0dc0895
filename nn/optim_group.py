"""nn.optim's param group: a dict of torch.optim's keys that also holds the device arrays its update kernels read
(the lr, Adam's step counts, the flat=True packing) and writes a newly set lr through to the device (nn/optim.py)."""
from kernels import backend


class _ParamGroup(dict):
    """One entry of param_groups: a dict of torch's keys to its users, which also holds the device arrays
    read by the update kernels and writes a newly set lr through to its device copy."""

    captured_unpacked = False   # (also for a group unpickled from before this attribute)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.lr_array = None        # 1-element array on the parameters' device holding lr (GPU, simulator)
        self.lr_array_value = None  # the lr last written into it
        self.step_counts = None     # Adam, RMSprop, Adagrad: one step count per parameter, on the device
        self.flat = None            # flat=True: the _FlatGroup; False where it cannot be used
        self.captured_unpacked = False   # a captured graph updates its arrays one by one: never packed again

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        if key == "lr" and getattr(self, "lr_array", None) is not None:   # (unpickling sets items first)
            self.write_lr()

    def update(self, *args, **kwargs):
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def setdefault(self, key, default=None):
        if key not in self:
            self[key] = default
        return self[key]

    def write_lr(self):
        """Copy the host lr into lr_array if it changed: a fill kernel on the current stream, ordered after
        the graph replays launched before it and before those launched after it."""
        value = self["lr"]
        if value == self.lr_array_value:
            return
        if backend.is_capturing():
            raise RuntimeError(f"optimizer: lr set to {value!r} while a CUDA graph is being captured: the graph "
                               f"would reset it at every replay; set it (step the scheduler) outside the "
                               f"captured step")
        self.lr_array.fill(value)
        self.lr_array_value = value
