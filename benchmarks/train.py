"""One training step (forward, backward, Adam) of each model against the identical PyTorch model.

The PyTorch twin has the same layers and receives our initial weights (state dict copied); both run on
the same device in the same process, on the same input batch. Rates are samples per second. On the
GPU (batch 64) the step is timed with the default direct launcher and Adam(flat=True) as `numbanet
train` runs it, again with Adam(flat=False) (the ", adam per parameter" rows: an update launch per
parameter) and replayed from a CUDA graph (nn.capture), and the peak memory of one step
is recorded in each row's JSON (ours: peak of the CuPy pool's used bytes; PyTorch:
torch.cuda.max_memory_allocated), both counted from before the model was built, after the libraries'
one-time workspaces (a warm-up before the first model). A step that cannot be captured gives a failed graph
row. On the CPU the batch
is 16. --quick narrows the 12x90 strip CRNN (channels up to 64, not 256) and leaves out the paper CRNN
(GPU only).
"""
import gc
import traceback

import numpy as np

import kernels
import nn
from kernels import backend
from nn import layers, models, recurrent

from . import _raising
from .harness import Case, vendor_torch

MEASURE_HOST_COST = False



def torch_layer(module):
    """The torch.nn layer with the same hyper-parameters as one of ours (also used by tests/nn)."""
    torch = vendor_torch()
    if isinstance(module, nn.Sequential):
        return torch.nn.Sequential(*[torch_layer(child) for child in module])
    if isinstance(module, layers.Conv2d):
        return torch.nn.Conv2d(module.in_channels, module.out_channels, module.kernel_size, module.stride,
                               module.padding, module.dilation, module.groups, module.bias is not None)
    if isinstance(module, layers.BatchNorm2d):
        return torch.nn.BatchNorm2d(module.num_features, module.eps, module.momentum)
    if isinstance(module, layers.MaxPool2d):
        return torch.nn.MaxPool2d(module.kernel_size, module.stride, module.padding)
    if isinstance(module, layers.Linear):
        return torch.nn.Linear(module.in_features, module.out_features, module.bias is not None)
    if isinstance(module, layers.ReLU):
        return torch.nn.ReLU()
    if isinstance(module, layers.Dropout):
        return torch.nn.Dropout(module.p)
    if isinstance(module, layers.Flatten):
        return torch.nn.Flatten(module.start_dim, module.end_dim)
    if isinstance(module, recurrent._RecurrentBase):
        extra = {"nonlinearity": module.nonlinearity} if module.cell == "RNN" else {}
        return getattr(torch.nn, module.cell)(module.input_size, module.hidden_size, module.num_layers,
                                              bias=module.bias, batch_first=module.batch_first,
                                              dropout=module.dropout, bidirectional=module.bidirectional, **extra)
    raise TypeError(f"train bench: no torch layer for {type(module).__name__}")


def torch_twin(model):
    """A torch.nn.Module with our model's children under the same names and the same forward."""
    torch = vendor_torch()

    class Twin(torch.nn.Module):
        def __init__(self):
            super().__init__()
            for name, child in model._modules.items():
                setattr(self, name, torch_layer(child))

        def forward(self, x):
            if isinstance(model, models.CNN):
                return self.classifier(self.features(x))
            if isinstance(model, models.RNNClassifier):
                output, state = self.rnn(x)
                if model.per_step:
                    return self.fc(output)
                h_n = state[0] if model.cell == "lstm" else state
                last = h_n[-1] if model.rnn.num_directions == 1 else torch.cat([h_n[-2], h_n[-1]], dim=1)
                return self.fc(last)
            features = self.cnn(x)                                        # CRNN
            batch, channels, _, steps = features.shape
            output, _ = self.rnn(features.reshape(batch, channels, steps).permute(2, 0, 1))
            if hasattr(self, "dropout"):
                output = self.dropout(output)
            return torch.nn.functional.log_softmax(self.fc(output), dim=2)

    return Twin()


def _specs(device, quick):
    # quick: a narrower CRNN (the CPU convolutions dominate its step) so that the suite stays short
    strip_channels = (16, 32, 32, 64, 64, 64, 64) if quick else (32, 64, 128, 128, 256, 256, 256)
    specs = [("cnn 8x8 digits", lambda: models.CNN(), (1, 8, 8), "classes", 10),
             ("lstm 128 digit rows 8x8", lambda: models.RNNClassifier(8, 128, 10, cell="lstm"), (8, 8), "classes", 10),
             (f"crnn 12x90 digit strips, channels up to {strip_channels[-1]}",
              lambda: models.CRNN(image_height=12, num_classes=10, hidden_size=64, channels=strip_channels),
              (1, 12, 90), "ctc", 10)]
    if not quick and device == "cuda":
        specs.append(("crnn paper 32x100, 37 classes", lambda: models.CRNN(), (1, 32, 100), "ctc", 36))
    return specs


def _make_inputs(shape, kind, classes, batch, device):
    """Inputs of one step: ours (on `device`'s array module) then the same values for PyTorch."""
    torch = vendor_torch()

    def make(xp, seed):
        rng = np.random.default_rng(seed)
        ours = [rng.random((batch,) + shape, dtype=np.float32)]
        if kind == "classes":
            ours.append(rng.integers(0, classes, size=batch))
        else:
            ours.append(rng.integers(1, classes + 1, size=(batch, 8)))      # padded targets
            ours.append(rng.integers(3, 9, size=batch))                       # target lengths
        ours = [xp.asarray(a) for a in ours]
        theirs = [torch.as_tensor(a, device="cuda") if device == "cuda" else torch.from_numpy(a) for a in ours]
        return tuple(ours) + tuple(theirs)
    return make


def _steps(model, twin, kind, shape, batch, xp, flat=True):
    """(ours, vendor) step functions; ours reads the first half of the inputs, vendor the second.
    flat: Adam(flat=True), as `numbanet train` runs it (one update launch)."""
    torch = vendor_torch()
    optimizer = nn.optim.Adam(model.parameters(), lr=1e-3, flat=flat)
    optimizer_t = torch.optim.Adam(twin.parameters(), lr=1e-3)
    count = 2 if kind == "classes" else 3
    if kind == "ctc":
        steps = model.output_length(shape[-1])
        input_lengths = xp.full(batch, steps, dtype=np.int64)   # on the device: a captured step reads no host data
        input_lengths_t = torch.full((batch,), steps, dtype=torch.long)
        ctc, ctc_t = nn.CTCLoss(), torch.nn.CTCLoss()

    def ours_step(x, y, target_lengths=None):
        optimizer.zero_grad()
        out = model(nn.Tensor(x))
        if kind == "classes":
            loss = nn.functional.cross_entropy(out, y)
        else:
            loss = ctc(out, y, input_lengths, target_lengths)
        loss.backward()
        optimizer.step()
        return loss

    def vendor(*inputs):
        x, y = inputs[count], inputs[count + 1]
        optimizer_t.zero_grad(set_to_none=True)
        out = twin(x)
        if kind == "classes":
            loss = torch.nn.functional.cross_entropy(out, y)
        else:
            loss = ctc_t(out, y, input_lengths_t, inputs[count + 2])
        loss.backward()
        optimizer_t.step()
        return loss

    return ours_step, vendor, count


def _peak_cupy_bytes(step, inputs, base):
    """Peak of the default CuPy pool's used bytes during one step, above `base`."""
    cupy = backend.cupy_module()
    pool = cupy.get_default_memory_pool()
    peak = [pool.used_bytes()]

    def malloc(size):
        memory = pool.malloc(size)
        peak[0] = max(peak[0], pool.used_bytes())
        return memory

    # (using_allocator puts back whatever allocator was in force, rather than the default pool's)
    with cupy.cuda.using_allocator(malloc):
        step(*inputs)
        cupy.cuda.get_current_stream().synchronize()
    return peak[0] - base


def _under_launcher(step, name, extra):
    """`step` launched through `name` ('direct' or 'numba', kernels/cuda/launch.py); `extra` (the row's)
    records the launcher really in force, which says so if replaying fell back to Numba."""
    from kernels.cuda import launch

    def run(*inputs):
        with launch.using_launcher(name):
            result = step(*inputs)
        extra["launcher"] = launch.launcher_in_force()
        return result
    return run


ROW_SUFFIXES = ("", ", adam per parameter", ", graph")   # the rows of one model on a GPU (only the first on the CPU)


def cases(device, quick=False, only=None):
    """The rows, yielded one at a time: each model is built when the suite reaches it, and its per-parameter
    optimizer and captured step only after the rows before them were timed, so that no row is timed beside
    what later rows need; a model's rows come from a generator of their own, so that the model, its
    optimizers and its graph are freed before the next model is built. (Built all at once before any
    timing, the first row, the CNN's eager step, took 8.3 ms on an H100 where the same step alone took 2.9
    ms; 2026-11-27, benchmarks/RESULTS.md.)
    `only`: build and run only the models with a row whose label contains that text (each model's warm-up,
    peak-memory step and capture cost device time)."""
    batch = 64 if device == "cuda" else 16
    xp = np if device == "cpu" else backend.cupy_module()
    libraries_cold = device == "cuda"
    for label, build, shape, kind, classes in _specs(device, quick):
        if only and not any(only in f"{label}, b{batch}{suffix}" for suffix in ROW_SUFFIXES):
            continue
        if libraries_cold:   # before the first model's memory baseline
            _warm_up_libraries(xp)
            libraries_cold = False
        gc.collect()   # the previous model's reference cycles, before this one's memory is measured
        yield from _model_cases(label, build, shape, kind, classes, device, batch, xp)


def _warm_up_libraries(xp):
    """The libraries' one-time allocations, before the first model's memory baseline: torch's cuBLAS workspace
    and cuDNN handle (a tiny matmul and convolution, forward and backward) and our GEMM's per-stream scratch,
    so that the first model's peak, as the later models', is the model's own."""
    torch = vendor_torch()
    image = torch.ones((1, 1, 8, 8), device="cuda", requires_grad=True)
    filters = torch.ones((1, 1, 3, 3), device="cuda", requires_grad=True)
    features = torch.nn.functional.conv2d(image, filters).reshape(6, 6)
    (features @ features).sum().backward()
    torch.cuda.synchronize()
    kernels.matmul(xp.ones((8, 8), xp.float32), xp.ones((8, 8), xp.float32))
    xp.cuda.get_current_stream().synchronize()


def _model_cases(label, build, shape, kind, classes, device, batch, xp):
    """One model's rows (see cases): eager, and on a GPU per-parameter Adam and the graph replay."""
    torch = vendor_torch()
    base = xp.get_default_memory_pool().used_bytes() if device == "cuda" else 0
    torch_base = torch.cuda.memory_allocated() if device == "cuda" else 0
    nn.manual_seed(0)
    model = build()
    twin = torch_twin(model)
    model.load_state_dict(twin.state_dict())
    model.to(device)
    twin.to(device)
    make = _make_inputs(shape, kind, classes, batch, device)
    ours_step, vendor, count = _steps(model, twin, kind, shape, batch, xp)
    extra = {"batch": batch}
    if device == "cuda":
        first = make(xp, 0)
        ours_step(*first[:count])
        vendor(*first)
        extra["ours_peak_MiB"] = _peak_cupy_bytes(ours_step, first[:count], base) / 2**20
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        vendor(*first)
        torch.cuda.synchronize()
        extra["vendor_peak_MiB"] = (torch.cuda.max_memory_allocated() - torch_base) / 2**20
        print(f"  train: {label}: peak memory of a step, ours {extra['ours_peak_MiB']:.0f} MiB, "
              f"PyTorch {extra['vendor_peak_MiB']:.0f} MiB", flush=True)
    eager = ours_step
    if device == "cuda":   # the default launcher (direct), recorded in the row
        from kernels.cuda import launch
        eager = _under_launcher(ours_step, launch.launcher, extra)
    yield Case(label=f"{label}, b{batch}", make_inputs=make,
               ours=lambda *inputs, step=eager, count=count: step(*inputs[:count]), vendor=vendor,
               vendor_name="torch (same model)", samples=batch, extra=extra,
               note="Adam step; PyTorch twin with our initial weights")
    if device == "cuda":
        # the same eager step with Adam(flat=False): an update launch per parameter, clipping's ops
        # per parameter (the CRNNs do not clip here), to keep flat=True's gain measured
        per_parameter_step = _steps(model, twin, kind, shape, batch, xp, flat=False)[0]
        yield Case(label=f"{label}, b{batch}, adam per parameter", make_inputs=make,
                   ours=lambda *inputs, step=per_parameter_step, count=count: step(*inputs[:count]),
                   vendor=vendor, vendor_name="torch (same model)", samples=batch,
                   extra={"batch": batch}, note="the Adam step with flat=False")
        yield _graph_case(f"{label}, b{batch}, graph", ours_step, vendor, make, count, batch, xp)


def _graph_case(label, ours_step, vendor, make, count, batch, xp):
    """The row of `ours_step` replayed from a CUDA graph; if capturing fails (e.g. a kernel that reads targets
    on the host), a row that fails with the capture's error."""
    captured = nn.capture(ours_step)
    try:
        captured(*make(xp, 0)[:count])   # eager warm-up
        captured(*make(xp, 1)[:count])   # capture, then the first replay
        xp.cuda.get_current_stream().synchronize()
    except Exception as error:
        traceback.print_exc()
        failure = error.with_traceback(None)   # (its frames would keep the model and the graph alive)
        return Case(label=label, make_inputs=lambda xp, seed: next(_raising(failure)), ours=None, vendor=None,
                    vendor_name="torch eager (same model)", note="the step could not be captured")
    return Case(label=label, make_inputs=make, ours=lambda *inputs: captured(*inputs[:count]),
                vendor=vendor, vendor_name="torch eager (same model)", samples=batch,
                note="nn.capture replay of the same Adam step")
