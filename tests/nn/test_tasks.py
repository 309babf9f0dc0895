"""The training tasks' data paths that the end-to-end training tests do not pin down."""
import threading

import numpy as np
import pytest

from nn import data, tasks


def test_crnn_strips_drawn_in_the_background_are_those_drawn_in_place(monkeypatch):
    """Each epoch's strips come from the seed and the epoch alone: the next epoch's, drawn in a thread
    while this one trains, equal a draw in place; nothing is drawn past the last epoch."""
    fixed = data.digit_strips(train=48, validation=8, test=8)["train"]
    monkeypatch.setattr(tasks, "STRIP_FRESH_FROM", 0)
    background = tasks.StripTask({"seed": 5, "epochs": 3})
    drawn_by = {}
    original_draw = background._draw

    def recording_draw(count, epoch):
        drawn_by[epoch] = threading.current_thread().name
        return original_draw(count, epoch)

    background._draw = recording_draw
    drawn = [background.training_split(fixed, 0)]
    assert background._next[0] == 1                          # epoch 1's strips are on their way
    drawn += [background.training_split(fixed, epoch) for epoch in (1, 2)]
    assert background._next is None                          # epoch 3 does not exist: not drawn
    assert drawn_by == {0: threading.current_thread().name, 1: "strips-epoch-1", 2: "strips-epoch-2"}
    for epoch, split in enumerate(drawn):
        in_place = tasks.StripTask({"seed": 5, "epochs": 3})._draw(len(fixed), epoch)
        np.testing.assert_array_equal(split.inputs, in_place.inputs)
        np.testing.assert_array_equal(split.labels, in_place.labels)
    assert not np.array_equal(drawn[0].inputs, drawn[1].inputs)
    resumed = tasks.StripTask({"seed": 5, "epochs": 3})       # --resume starts at a later epoch
    np.testing.assert_array_equal(resumed.training_split(fixed, 2).inputs, drawn[2].inputs)


def test_a_failed_background_draw_raises_in_the_training_thread(monkeypatch):
    fixed = data.digit_strips(train=16, validation=8, test=8)["train"]
    monkeypatch.setattr(tasks, "STRIP_FRESH_FROM", 0)
    task = tasks.StripTask({"seed": 5, "epochs": 2})
    original_draw = task._draw

    def failing_draw(count, epoch):
        if epoch == 1:
            raise MemoryError("strips: out of memory")
        return original_draw(count, epoch)

    task._draw = failing_draw
    task.training_split(fixed, 0)                              # starts epoch 1's draw, which fails
    with pytest.raises(MemoryError, match="strips: out of memory"):
        task.training_split(fixed, 1)


@pytest.mark.parametrize("model_name", ["cnn", "rnn", "adding", "crnn"])
def test_evaluation_in_padded_training_size_batches_equals_one_batch(model_name, monkeypatch):
    """Evaluation runs batches of the training batch size, the last padded with zeros (on the GPU: only
    shapes training compiled kernels for); the padding changes no prediction."""
    from nn import init
    settings = {"batch_size": 8, "seed": 0, "epochs": 1, "hidden_size": 16, "cell": "lstm",
                "model": "rnn" if model_name == "adding" else model_name}
    task_type = {"crnn": tasks.StripTask, "adding": tasks.AddingTask}.get(model_name, tasks.ClassificationTask)
    task = task_type(settings)
    init.manual_seed(0)
    model = task.build_model()
    model.eval()
    if model_name == "adding":
        inputs = np.random.default_rng(0).random((21, 12, 2), dtype=np.float32)
    else:
        inputs = task.load()["test"].inputs[:21]   # 8 + 8 + 5: the last batch padded with 3 zero rows
    batch_sizes = []
    original_forward = type(model).forward
    monkeypatch.setattr(type(model), "forward",
                        lambda self, x: (batch_sizes.append(x.shape[0]), original_forward(self, x))[1])
    evaluate = task.decode if model_name == "crnn" else task.predict_arrays
    padded = evaluate(model, inputs, "cpu")
    assert batch_sizes == [8, 8, 8] and len(padded) == 21
    whole = getattr(task_type(dict(settings, batch_size=64)), evaluate.__name__)(model, inputs, "cpu")
    assert batch_sizes[3:] == [21]   # a batch size above the inputs' count: one batch of them all
    if model_name == "crnn":
        assert padded == whole
    elif model_name == "adding":   # regression outputs: the BLAS may round a batch of 8 and of 21 apart
        np.testing.assert_allclose(padded, whole, rtol=1e-6, atol=1e-8)
    else:
        np.testing.assert_array_equal(padded, whole)


def test_crnn_training_split_is_epoch_zeros_draw_and_follows_a_cut_down_split(monkeypatch):
    """Without fixed training strips (every epoch draws its own), load() gives epoch 0's draw as the
    training split; a split cut down after loading (as tests do) trains on a draw of its own size."""
    monkeypatch.setattr(tasks, "STRIP_FRESH_FROM", 0)
    monkeypatch.setattr(data, "STRIP_COUNTS", {"train": 40, "validation": 8, "test": 8})
    settings = {"seed": 2, "epochs": 1}
    task = tasks.StripTask(settings)
    train = task.load()["train"]
    np.testing.assert_array_equal(train.inputs, tasks.StripTask(settings)._draw(40, 0).inputs)
    assert task.training_split(train, 0) is train
    cut = data.Split(**{key: value[:13] for key, value in vars(train).items()})
    drawn = task.training_split(cut, 0)
    assert len(drawn.inputs) == 13
    np.testing.assert_array_equal(drawn.inputs, tasks.StripTask(settings)._draw(13, 0).inputs)


def test_evaluation_forward_captures_once_per_model_arrays_and_falls_back_to_eager(monkeypatch):
    """EvaluationForward's bookkeeping, with nn.capture replaced by a recorder that runs eagerly (the real
    graphs: tests/gpu/test_train_gpu.py): one capture per model and batch shape, a new one when the
    model's arrays move, eager for good (with a warning) once a capture fails."""
    import nn
    from nn import models
    made = []

    class RecordingCapture:
        """Runs eagerly, as nn.capture does on the CPU; counts the captures made."""
        warmup, graph, calls = 1, None, 0

        def __init__(self, step_fn):
            made.append(step_fn)
            self.step_fn = step_fn

        def __call__(self, *inputs):
            return self.step_fn(*inputs)
    recording_capture = RecordingCapture
    monkeypatch.setattr(tasks, "capture", recording_capture)
    forward = tasks.EvaluationForward()
    monkeypatch.setattr(forward, "replays", lambda batch: True)   # as on a GPU
    nn.manual_seed(0)
    model = models.CNN(channels=(4,), hidden=8).eval()
    batch = nn.Tensor(np.random.default_rng(0).random((3, 1, 8, 8), dtype=np.float32))
    expected = model(batch).numpy()
    for _ in range(3):
        np.testing.assert_array_equal(forward(model, batch).numpy(), expected)
    assert len(made) == 1
    forward(model, nn.Tensor(batch.numpy()[:2]))                 # another batch shape: its own graph
    assert len(made) == 2
    model.load_state_dict({k: v.copy() for k, v in model.state_dict().items()})   # copied in place: no move
    forward(model, batch)
    assert len(made) == 2
    model.double().float()                                        # arrays moved
    np.testing.assert_array_equal(forward(model, batch).numpy(), expected)
    assert len(made) == 3
    forward(model, batch)
    assert len(made) == 3

    model.train()                                                 # another mode: its own graph
    forward(model, batch)
    assert len(made) == 4
    model.eval()
    expected = model(batch).numpy()       # the training-mode forward moved batch norm's running statistics

    class FailingCapture:
        """A captured step whose eager warm-up works and whose capture fails (e.g. in end_capture)."""
        warmup, graph = 1, None

        def __init__(self, step_fn):
            self.step_fn, self.calls = step_fn, 0

        def __call__(self, *inputs):
            self.calls += 1
            if self.calls > self.warmup:
                raise ValueError("cudaErrorStreamCaptureInvalidated (a test)")
            return self.step_fn(*inputs)
    monkeypatch.setattr(tasks, "capture", FailingCapture)
    model.double().float()                                        # arrays moved: a new capture
    np.testing.assert_array_equal(forward(model, batch).numpy(), expected)   # the eager warm-up
    with pytest.warns(RuntimeWarning, match="evaluation: the forward could not be captured"):
        np.testing.assert_array_equal(forward(model, batch).numpy(), expected)
    assert forward.eager
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(forward(model, batch).numpy(), expected)   # eager, no new warning
