"""Offline data sets and checkpoint files."""
import os

import numpy as np
import pytest

from nn import checkpoint, data


def test_digit_splits_are_fixed_disjoint_and_complete():
    first, second = data.split_indices(1797), data.split_indices(1797)
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])
    everything = np.concatenate(list(first.values()))
    assert len(everything) == 1797 and len(np.unique(everything)) == 1797
    splits = data.digits("image")
    assert splits["train"].inputs.shape[1:] == (1, 8, 8)
    assert 0.0 <= splits["test"].inputs.min() and splits["test"].inputs.max() <= 1.0
    assert data.digits("rows")["validation"].inputs.shape[1:] == (8, 8)


def test_adding_problem_targets_are_the_marked_sums():
    inputs, targets = data.adding_problem(50, 30, seed=1)
    assert inputs.shape == (50, 30, 2)
    assert np.all(inputs[:, :, 1].sum(1) == 2)
    np.testing.assert_allclose((inputs[:, :, 0] * inputs[:, :, 1]).sum(1), targets[:, 0], rtol=1e-6)


def test_strips_hold_their_labels_and_use_only_their_split():
    images, labels = data.load_digits_images()
    strips, targets, lengths = data.make_strips(images[:10], labels[:10], 40, seed=3, noise=0.0)
    assert strips.shape == (40, 1, data.STRIP_HEIGHT, data.STRIP_WIDTH)
    assert lengths.min() >= data.STRIP_MIN_DIGITS and lengths.max() <= data.STRIP_MAX_DIGITS
    for row, length in zip(targets, lengths):
        assert np.all(row[:length] >= 0) and np.all(row[length:] == -1)
        assert set(row[:length]) <= set(labels[:10])


def test_checkpoint_round_trip_and_atomic_replace(tmp_path):
    state = {"model_name": "cnn", "model": {"w": np.arange(6, dtype=np.float32).reshape(2, 3)},
             "optimizer": {"state": {0: {"step": 3, "exp_avg": np.ones(2)}}, "param_groups": [{"lr": 0.1, "params": [0]}]},
             "rng": {"state": {"state": 2**70, "inc": 5}}, "pair": (1, 2.5), "none": None}
    path = tmp_path / "run" / "checkpoint.npz"
    checkpoint.save(str(path), state)
    loaded = checkpoint.load(str(path), expected_model="cnn")
    np.testing.assert_array_equal(loaded["model"]["w"], state["model"]["w"])
    assert loaded["optimizer"]["state"][0]["step"] == 3
    assert loaded["rng"]["state"]["state"] == 2**70 and loaded["pair"] == (1, 2.5) and loaded["none"] is None
    assert os.listdir(path.parent) == ["checkpoint.npz"]  # no temporary file left behind


def test_bad_checkpoints_give_one_clear_error(tmp_path):
    with pytest.raises(checkpoint.CheckpointError, match="does not exist"):
        checkpoint.load(str(tmp_path / "missing.npz"))
    good = tmp_path / "good.npz"
    checkpoint.save(str(good), {"model_name": "rnn", "w": np.ones(100)})
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(checkpoint.CheckpointError, match="corrupt or truncated"):
        checkpoint.load(str(truncated))
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(checkpoint.CheckpointError, match="corrupt or truncated"):
        checkpoint.load(str(garbage))
    with pytest.raises(checkpoint.CheckpointError, match="is for model 'rnn', not 'cnn'"):
        checkpoint.load(str(good), expected_model="cnn")
