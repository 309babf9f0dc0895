"""nn.capture(step_fn): replay a whole fixed-shape step (forward, backward, optimizer) as one CUDA graph.

On a GPU (inputs are CuPy arrays or CUDA Tensors) the first `warmup` calls run step_fn eagerly on
static copies of the inputs (kernels compile, optimizer state and gradients get allocated); the next call
records step_fn into a CUDA graph on a private CuPy stream (cupy Stream.begin_capture/end_capture:
Numba kernels join the capture because the launcher launches on cuda.external_stream(current CuPy
stream)), and every later call copies its inputs into the static arrays and launches the graph on the
current stream. Each call therefore performs exactly one step, as the eager function would, and a
replay costs one graph launch instead of one Python launch per kernel.

On the CPU and in the simulator (NumPy inputs) the returned callable simply runs step_fn eagerly.

What a captured step must respect (the graph replays fixed kernels on fixed addresses):
- no host synchronisation inside step_fn (.item(), .numpy(), float(loss), NumPy conversion, host-to-
  device copies): the capture fails with an error rather than recording something wrong. Kernels
  that check their arguments on the host skip those checks when kernels.backend.is_capturing();
- shapes and dtypes of the inputs never change (a call with other shapes raises ValueError);
- parameters, buffers and optimizer state are updated in place (the optimizers here do); replacing
  their arrays afterwards (.to(device), .double()) needs a new capture (a module's load_state_dict, and
  an optimizer's, copy into them in place: a captured step sees the loaded values);
- Python-side values are frozen at capture time: a number computed in step_fn and passed to a kernel is
  replayed as captured, and dropout masks are replayed as captured. The optimizers of nn.optim keep what
  changes between steps on the device instead: Adam's step counts are advanced by an in-place add inside
  the graph and the update kernel derives the bias corrections from them, and each param group's lr is
  read from a device array, so replays agree with eager steps;
- lr changes (scheduler.step(), group["lr"] = ...) take effect at the next replay when made between
  calls, outside step_fn: setting a param group's lr writes it into that device array at once, on the
  current stream, ordered between the replays. No Python runs during a replay, so a scheduler stepped
  inside step_fn would be frozen: setting a different lr while capturing raises;
- optimizer state (moments, momentum buffers, step counts, the lr arrays) is created by the eager
  warm-up; a step that would create state while capturing raises, as a replay would re-initialise it;
- the outputs are the same static Tensors/arrays after every replay: copy them to keep a value;
- hooks (Tensor.register_hook, Module forward hooks) are Python: they run in the warm-up and at capture,
  never at a replay; their device work is replayed, their host effects are not (nn/hooks.py).
Allocations made while capturing come from a private CuPy memory pool kept with the graph, so no
array created outside the graph can be handed memory that a replay writes. While capturing, CuPy's
pinned-memory allocator is swapped for one that raises (and afterwards set back to CuPy's default
pinned pool), so NumPy -> GPU copies inside the step fail loudly instead of being replayed from a
recycled staging buffer.
"""
from kernels import backend

from .tensor import Tensor

__all__ = ["capture", "CapturedStep"]


def capture(step_fn, warmup=1):
    """Wrap `step_fn(*inputs)` so that on a GPU it is replayed from a CUDA graph (see module docs)."""
    if not callable(step_fn):
        raise TypeError(f"capture: step_fn must be callable, got {type(step_fn).__name__}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 1:
        raise ValueError(f"capture: warmup must be a positive integer (eager steps before capture), got {warmup!r}")
    return CapturedStep(step_fn, warmup)


def _on_gpu(value):
    return backend.is_gpu_array(value.data if isinstance(value, Tensor) else value)


class CapturedStep:
    def __init__(self, step_fn, warmup=1):
        self.step_fn = step_fn
        self.warmup = warmup
        self.calls = 0            # steps run so far through the GPU path (eager warm-ups + replays)
        self.graph = None
        self.static_inputs = None
        self.static_outputs = None
        self._pool = None         # the private memory pool of the graph's allocations

    @property
    def captured(self):
        return self.graph is not None

    def __call__(self, *inputs):
        if self.static_inputs is None and not any(_on_gpu(value) for value in inputs):
            return self.step_fn(*inputs)  # CPU or simulator: eager
        if self.static_inputs is None:
            self.static_inputs = [_static_copy(value) for value in inputs]
        else:
            self._copy_in(inputs)
        if self.calls < self.warmup:
            self.calls += 1
            return self.step_fn(*self.static_inputs)
        if self.graph is None:
            self._capture()
        self.graph.launch(stream=backend.cupy_module().cuda.get_current_stream())
        self.calls += 1
        return self.static_outputs

    def _copy_in(self, inputs):
        if len(inputs) != len(self.static_inputs):
            raise ValueError(f"capture: the step was captured with {len(self.static_inputs)} inputs, "
                             f"got {len(inputs)}")
        for index, (value, static) in enumerate(zip(inputs, self.static_inputs)):
            if not (isinstance(static, Tensor) or backend.is_array(static)):
                if value is not static and not _equal(value, static):
                    raise ValueError(f"capture: input {index} is a Python value frozen at capture "
                                     f"({static!r}), got {value!r}")
                continue
            source = value.data if isinstance(value, Tensor) else value
            target = static.data if isinstance(static, Tensor) else static
            if not backend.is_array(source):
                raise TypeError(f"capture: input {index} must be an array or Tensor like at capture, "
                                f"got {type(value).__name__}")
            if tuple(source.shape) != tuple(target.shape) or source.dtype != target.dtype:
                raise ValueError(f"capture: input {index} must keep the captured shape {tuple(target.shape)} "
                                 f"{target.dtype}, got {tuple(source.shape)} {source.dtype}")
            if source is target:
                continue
            if backend.is_gpu_array(source):
                target[...] = source          # device copy, ordered on the current stream
            else:
                target.set(source)            # host -> device, before the replay on the same stream

    def _capture(self):
        cupy = backend.cupy_module()
        caller = cupy.cuda.get_current_stream()
        stream = cupy.cuda.Stream(non_blocking=True)
        stream.wait_event(caller.record())   # the static inputs were written on the caller's stream
        pool = cupy.cuda.MemoryPool()
        # CuPy stages NumPy -> GPU copies through pinned buffers that it recycles: a captured copy would
        # replay whatever a later transfer left there. Refuse them while capturing.
        cupy.cuda.set_pinned_memory_allocator(_refuse_host_copy)
        try:
            with cupy.cuda.using_allocator(pool.malloc), stream:
                stream.begin_capture()
                try:
                    outputs = self.step_fn(*self.static_inputs)
                except Exception as error:
                    try:
                        stream.end_capture()
                    except Exception:  # the capture is already invalidated by the failing call
                        pass
                    raise RuntimeError(f"capture: step_fn could not be captured into a CUDA graph ({error}); a "
                                       f"captured step must not synchronise with the host (.item(), .numpy(), "
                                       f"float(), CuPy-to-NumPy copies) nor copy NumPy arrays to the GPU "
                                       f"(targets, lengths: pass them as CuPy inputs)") from error
                graph = stream.end_capture()
        finally:
            cupy.cuda.set_pinned_memory_allocator(cupy.get_default_pinned_memory_pool().malloc)
        graph.upload(caller)  # instantiate on the device now rather than at the first replay
        self.graph, self.static_outputs, self._pool, self._stream = graph, outputs, pool, stream


def _equal(a, b):
    try:
        return bool(a == b)
    except Exception:  # e.g. containers of arrays, whose == is elementwise
        return False


def _refuse_host_copy(size):
    raise RuntimeError(f"a NumPy -> GPU copy ({size} bytes) inside a captured step")


def _static_copy(value):
    """The array (or Tensor) that the graph reads: a copy on the GPU, owned by the capture."""
    if isinstance(value, Tensor):
        if backend.is_gpu_array(value.data):
            return Tensor(value.data.copy(), requires_grad=value.requires_grad)
        raise ValueError("capture: a CPU Tensor input to a step on the GPU; move it with .to('cuda') first")
    if backend.is_gpu_array(value):
        return value.copy()
    if backend.is_array(value):
        raise ValueError("capture: a NumPy input to a step on the GPU at the first call; pass CuPy arrays "
                         "(later calls may pass NumPy arrays of the same shape)")
    return value
