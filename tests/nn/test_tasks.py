"""The training tasks' data paths that the end-to-end training tests do not pin down."""
import numpy as np

from nn import data, tasks


def test_crnn_strips_drawn_in_the_background_are_those_drawn_in_place(monkeypatch):
    """Each epoch's strips come from the seed and the epoch alone: the next epoch's, drawn in a thread
    while this one trains, equal a draw in place; nothing is drawn past the last epoch."""
    fixed = data.digit_strips(train=48, validation=8, test=8)["train"]
    monkeypatch.setattr(tasks, "STRIP_FRESH_FROM", 0)
    background = tasks.StripTask({"seed": 5, "epochs": 3})
    drawn = [background.training_split(fixed, epoch) for epoch in range(3)]
    assert background._next is None                          # epoch 3 does not exist: not drawn
    for epoch, split in enumerate(drawn):
        in_place = tasks.StripTask({"seed": 5, "epochs": 3})._draw(len(fixed), epoch)
        np.testing.assert_array_equal(split.inputs, in_place.inputs)
        np.testing.assert_array_equal(split.labels, in_place.labels)
    assert not np.array_equal(drawn[0].inputs, drawn[1].inputs)
    resumed = tasks.StripTask({"seed": 5, "epochs": 3})       # --resume starts at a later epoch
    np.testing.assert_array_equal(resumed.training_split(fixed, 2).inputs, drawn[2].inputs)
