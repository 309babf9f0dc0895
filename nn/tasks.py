"""What each `numbanet train` model learns: its data, model, loss, metrics and prediction.

cnn   digits images (8x8) -> class, cross-entropy, metric: accuracy
rnn   digits read row by row (8 steps of 8) -> class; or, with --task adding, the adding problem
      (regression, MSE) on which an LSTM succeeds where a vanilla RNN does not
crnn  digit strips -> digit string with CTC, metrics: whole-string accuracy, character error rate
"""
import threading
import warnings

import numpy as np

from kernels import backend

from . import data, functional as F, models
from .autograd import no_grad
from .capture import capture
from .tensor import Tensor

STRIP_CRNN_CHANNELS = (16, 32, 48, 48, 64, 64, 64)   # the paper's layout, narrowed for 12-pixel strips
# The CRNN overfits the 1258 training digit images when it sees the same strips every epoch: from
# epoch STRIP_FRESH_FROM (0-based) on, each epoch composes new training strips with distorted digits.
STRIP_AUGMENT = data.DigitAugment(rotation=6.0, shear=0.1, scale=0.1, shift=0.5, gamma=0.3, elastic=0.4)
STRIP_FRESH_FROM = 0


def _to(device, array):
    return Tensor(backend.to_device(np.ascontiguousarray(array), device))


def _evaluation_batches(inputs, batch_size, device):
    """(input Tensor, number of real rows) in batches of the training batch size (or of all the inputs,
    when fewer), the last one padded with zeros: evaluation then runs the shapes training ran, so on the
    GPU it launches kernels and tile configurations already compiled. Counted under the simulator, a
    default CRNN validation at batch 256 launched seven kernel specialisations that its training step
    had not (compiles of about 0.5-1 s each on the GPU machine); at the training batch size it launches
    one, batch norm's eval kernel. Every model here treats the rows of a batch independently in eval mode."""
    batch_size = max(1, min(batch_size, len(inputs)))
    for start in range(0, len(inputs), batch_size):
        chunk = inputs[start:start + batch_size]
        count = len(chunk)
        if count < batch_size:
            chunk = np.concatenate([chunk, np.zeros((batch_size - count,) + chunk.shape[1:], chunk.dtype)])
        yield _to(device, chunk), count


def _array_addresses(model):
    """Where each parameter and buffer of `model` lives (address, shape): what a captured forward reads."""
    arrays = [p.data for p in model.parameters()] + [b for _, b in model.named_buffers()]
    return tuple((backend.data_address(a), a.shape) for a in arrays)


class EvaluationForward:
    """model(batch) without gradients, for evaluation. On the GPU each model and batch shape gets a CUDA
    graph (nn.capture: the first batch runs eagerly, the second is captured): every later batch is one
    graph launch instead of the forward's Python launches (about fifty for the CRNN, ~5 ms of host work
    a batch on the H100 machine, 32 batches a validation). The graph reads the model's arrays where they
    were when it was captured, so a model whose parameters or buffers have moved since (.to(), .double(),
    a repacked optimizer) is captured again; their values may change (training steps and load_state_dict
    write them in place). A forward that cannot be captured runs eagerly from then on, with a warning."""

    def __init__(self):
        self.graphs = {}        # (id(model), batch shape, dtype, modes) -> (array addresses, captured forward)
        self.eager = False

    def __call__(self, model, batch):
        if self.eager or not self.replays(batch):
            return self._forward(model, batch)
        # A graph replays the mode it was captured in (batch norm's statistics, dropout): modes are in the key.
        key = (id(model), batch.shape, batch.dtype, tuple(module.training for module in model.modules()))
        addresses = _array_addresses(model)
        entry = self.graphs.get(key)
        if entry is None or entry[0] != addresses:
            entry = self.graphs[key] = (addresses, capture(lambda x: self._forward(model, x)))
        step = entry[1]
        capturing = step.graph is None and step.calls >= step.warmup   # this call records the graph
        try:
            return step(batch)
        except Exception as error:   # also a failure of end_capture or of the graph's upload
            if not capturing:
                raise
            warnings.warn(f"evaluation: the forward could not be captured into a CUDA graph, running it eagerly "
                          f"({error})", RuntimeWarning, stacklevel=2)
            self.eager, self.graphs = True, {}
            return self._forward(model, batch)

    @staticmethod
    def replays(batch):
        """Whether this batch's forward is replayed from a graph: on the GPU (nn.capture's condition)."""
        return backend.is_gpu_array(batch.data)

    @staticmethod
    def _forward(model, batch):
        with no_grad():
            return model(batch)


class _Task:
    """What every task shares. Each task splits a minibatch into batch_arrays (NumPy, fixed shapes) and
    step_loss (device arrays in, loss and correct count out, nothing read back on the host)."""

    def training_split(self, split, epoch):
        """The training data of `epoch` (0-based); the same every epoch unless a task re-draws it."""
        return split

    _evaluation_forward = None   # an EvaluationForward, made at the first evaluation

    def forward(self, model, batch):
        """model(batch) for evaluation (EvaluationForward: replayed from a CUDA graph on the GPU)."""
        if self._evaluation_forward is None:
            self._evaluation_forward = EvaluationForward()
        return self._evaluation_forward(model, batch)


class ClassificationTask(_Task):
    """Digits as images (cnn) or as row sequences (rnn --task digits)."""
    metric = "accuracy"
    higher_is_better = True

    def __init__(self, settings):
        self.settings = settings
        self.layout = "image" if settings["model"] == "cnn" else "rows"

    def load(self, train=True):
        return data.digits(self.layout)   # small: built whole whatever `train` says

    def build_model(self):
        if self.layout == "image":
            return models.CNN(in_channels=1, num_classes=10)
        return models.RNNClassifier(input_size=8, hidden_size=self.settings["hidden_size"], num_classes=10,
                                    cell=self.settings["cell"])

    def batch_arrays(self, split, index):
        return np.ascontiguousarray(split.inputs[index]), split.labels[index]

    def step_loss(self, model, inputs, labels):
        """(loss, number of correct predictions as a 0-d array on the inputs' device: no host sync)."""
        logits = model(Tensor(inputs))
        return F.cross_entropy(logits, labels), (logits.data.argmax(1) == labels).sum()

    def evaluate(self, model, split, device):
        predictions = self.predict_arrays(model, split.inputs, device)
        return {"accuracy": float((predictions == split.labels).mean())}

    def predict_arrays(self, model, inputs, device):
        outputs = []
        for batch, count in _evaluation_batches(inputs, self.settings["batch_size"], device):
            outputs.append(backend.to_numpy(self.forward(model, batch).data[:count]).argmax(1))
        return np.concatenate(outputs)

    def prepare_input(self, image):
        """A 2-D grey image of any size -> one model input (8x8, values in [0, 1], ink bright)."""
        image = resize(image, (8, 8))
        return image[None] if self.layout == "image" else image

    def describe_prediction(self, model, array, device):
        return f"digit {int(self.predict_arrays(model, array[None], device)[0])}"


class AddingTask(_Task):
    """The adding problem: regression from the last state, MSE."""
    metric = "mse"
    higher_is_better = False

    def __init__(self, settings):
        self.settings = settings

    def load(self, train=True):
        return data.adding_splits(length=self.settings["sequence_length"])   # small: built whole

    def build_model(self):
        return models.RNNClassifier(input_size=2, hidden_size=self.settings["hidden_size"], num_classes=1,
                                    cell=self.settings["cell"])

    def batch_arrays(self, split, index):
        return np.ascontiguousarray(split.inputs[index]), np.ascontiguousarray(split.labels[index])

    def step_loss(self, model, inputs, targets):
        return F.mse_loss(model(Tensor(inputs)), Tensor(targets)), None

    def evaluate(self, model, split, device):
        predictions = self.predict_arrays(model, split.inputs, device)
        return {"mse": float(((predictions - split.labels) ** 2).mean())}

    def predict_arrays(self, model, inputs, device):
        outputs = []
        for batch, count in _evaluation_batches(inputs, self.settings["batch_size"], device):
            outputs.append(backend.to_numpy(self.forward(model, batch).data[:count]))
        return np.concatenate(outputs)

    def prepare_input(self, array):
        if array.ndim != 2 or array.shape[1] != 2:
            raise ValueError(f"the adding task reads a (T, 2) array, got shape {array.shape}")
        return array.astype(np.float32)

    def describe_prediction(self, model, array, device):
        return f"sum {float(self.predict_arrays(model, array[None], device)[0, 0]):.4f}"


class StripTask(_Task):
    """Digit strips read by the CRNN, trained with CTC and decoded greedily (or, with beam_width above 1, by
    CTC prefix beam search: `numbanet evaluate/predict --beam-width N`)."""
    metric = "sequence_accuracy"
    higher_is_better = True

    def __init__(self, settings):
        self.settings = settings
        self.beam_width = 1
        self._epoch_strips = (None, None)
        self._next = None     # (epoch, thread, one-item result list): the next epoch's strips, being drawn

    def load(self, train=True):
        """The splits; with train=False (`numbanet evaluate`) the training split is left empty."""
        if not train:
            return data.digit_strips(train=0)
        if STRIP_FRESH_FROM > 0:
            return data.digit_strips()
        # Every epoch trains on newly drawn strips, so fixed training strips would never be trained on
        # (composing them took 2.1 s of each run's start on the 2-core VM): the training split is epoch 0's.
        splits = data.digit_strips(train=0)
        splits["train"] = self._draw(data.STRIP_COUNTS["train"], 0)
        self._epoch_strips = (0, splits["train"])
        return splits

    def training_split(self, split, epoch):
        """The fixed training strips before epoch STRIP_FRESH_FROM, then as many new strips of distorted
        training digits each epoch, drawn from the run's seed and the epoch (so --resume redraws them).

        The next epoch's strips are drawn in a background thread meanwhile (about 1 s a time on a 2-core VM,
        about 0.25 s of it in the Python layout loop, which holds the GIL): the same strips, mostly off the
        training loop's path."""
        if epoch < STRIP_FRESH_FROM:
            return split
        cached_epoch, cached = self._epoch_strips
        if cached_epoch != epoch or len(cached) != len(split):   # a split cut down after load (tests)
            strips = self._take_prefetched(epoch)
            if strips is not None and len(strips) != len(split):
                strips = None                                      # drawn for another count
            self._epoch_strips = (epoch, self._draw(len(split), epoch) if strips is None else strips)
        last = self.settings.get("epochs")
        if (last is None or epoch + 1 < last) and (self._next is None or self._next[0] != epoch + 1):
            self._prefetch(len(split), epoch + 1)
        return self._epoch_strips[1]

    def _draw(self, count, epoch):
        seed = [data.SPLIT_SEED, self.settings["seed"], epoch]
        return data.training_strips(count, seed, STRIP_AUGMENT)

    def _prefetch(self, count, epoch):
        outcome = {}

        def draw():
            try:
                outcome["strips"] = self._draw(count, epoch)
            except BaseException as error:  # handed to the training thread, which raises it
                outcome["error"] = error

        thread = threading.Thread(target=draw, daemon=True, name=f"strips-epoch-{epoch}")
        thread.start()
        self._next = (epoch, thread, outcome)

    def _take_prefetched(self, epoch):
        """The strips drawn in the background for `epoch` (the draw's error is raised here), or None when
        none were asked for."""
        if self._next is None or self._next[0] != epoch:
            return None
        _, thread, outcome = self._next
        self._next = None
        thread.join()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["strips"]

    def build_model(self):
        return models.CRNN(image_height=data.STRIP_HEIGHT, in_channels=1, num_classes=10,
                           channels=STRIP_CRNN_CHANNELS, hidden_size=self.settings["hidden_size"])

    def batch_arrays(self, split, index):
        # targets keep their full padded width, so every batch has one shape (a captured step needs that)
        targets = split.labels[index]
        targets = np.where(targets < 0, 0, targets) + 1   # models.CRNN: class 0 is the blank, digit d is d + 1
        return np.ascontiguousarray(split.inputs[index]), targets, split.label_lengths[index]

    def step_loss(self, model, inputs, targets, target_lengths):
        log_probs = model(Tensor(inputs))          # (T, B, classes + blank)
        xp = backend.array_module(inputs)
        input_lengths = xp.full(log_probs.shape[1], log_probs.shape[0], dtype=np.int64)
        return F.ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=model.blank), None

    def decode(self, model, inputs, device):
        strings = []
        for batch, count in _evaluation_batches(inputs, self.settings["batch_size"], device):
            strings.extend(model.decode(self.forward(model, batch), beam_width=self.beam_width)[:count])
        return [[label - 1 if model.blank == 0 else label for label in labels] for labels in strings]

    def evaluate(self, model, split, device):
        decoded = self.decode(model, split.inputs, device)
        errors = exact = total = 0
        for labels, truth, length in zip(decoded, split.labels, split.label_lengths):
            truth = list(truth[:length])
            errors += edit_distance(labels, truth)
            exact += labels == truth
            total += length
        return {"sequence_accuracy": exact / len(decoded), "char_error_rate": errors / total}

    def prepare_input(self, image):
        height, width = image.shape
        if height != data.STRIP_HEIGHT:
            image = resize(image, (data.STRIP_HEIGHT, max(1, round(width * data.STRIP_HEIGHT / height))))
        # at least the training strips' width (padded on the right, as they are); a wider strip is read whole,
        # since the CRNN reads any width (it was cut to 90 columns, losing its last digits, before)
        strip = np.zeros((1, data.STRIP_HEIGHT, max(image.shape[1], data.STRIP_WIDTH)), np.float32)
        strip[0, :, :image.shape[1]] = image
        return strip

    def describe_prediction(self, model, array, device):
        return "digits " + "".join(str(d) for d in self.decode(model, array[None], device)[0])


def make_task(settings):
    if settings["model"] == "cnn":
        return ClassificationTask(settings)
    if settings["model"] == "rnn":
        return AddingTask(settings) if settings["task"] == "adding" else ClassificationTask(settings)
    return StripTask(settings)


def edit_distance(a, b):
    """Levenshtein distance between two label sequences."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def resize(image, shape):
    """Area-average (or repeat) a 2-D image to `shape`; no imaging library needed."""
    image = np.asarray(image, np.float32)
    rows = np.linspace(0, image.shape[0], shape[0] + 1)
    cols = np.linspace(0, image.shape[1], shape[1] + 1)
    out = np.empty(shape, np.float32)
    for i in range(shape[0]):
        r0, r1 = int(rows[i]), max(int(np.ceil(rows[i + 1])), int(rows[i]) + 1)
        for j in range(shape[1]):
            c0, c1 = int(cols[j]), max(int(np.ceil(cols[j + 1])), int(cols[j]) + 1)
            out[i, j] = image[r0:r1, c0:c1].mean()
    return out
