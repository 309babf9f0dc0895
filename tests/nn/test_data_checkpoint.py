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
    again, _, _, sources = data.make_strips(images[:10], labels[:10], 40, seed=3, noise=0.0, with_sources=True)
    np.testing.assert_array_equal(again, strips)      # the same strips
    assert np.all((sources == -1) == (targets == -1))
    np.testing.assert_array_equal(labels[:10][sources[sources >= 0]], targets[targets >= 0])


def test_each_strip_split_says_which_of_its_digit_images_it_shows():
    images, labels = data.load_digits_images()
    index = data.split_indices(len(images))
    splits = data.digit_strips(train=30, validation=20, test=25)
    splits["fresh"] = data.training_strips(15, [1, 2])
    for name, split in splits.items():
        split_labels = labels[index["train" if name == "fresh" else name]]
        shown = split.sources >= 0
        assert np.array_equal(shown, split.labels >= 0) and split.sources.max() < len(split_labels)
        np.testing.assert_array_equal(split_labels[split.sources[shown]], split.labels[shown])


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


def test_digit_augment_is_seeded_keeps_shape_and_range_and_is_the_identity_at_zero():
    images, _ = data.load_digits_images()
    augment = data.DigitAugment(rotation=6.0, shear=0.1, scale=0.1, shift=0.5, gamma=0.3)
    first = augment.apply(images[:50], np.random.default_rng(7))
    np.testing.assert_array_equal(first, augment.apply(images[:50], np.random.default_rng(7)))
    assert first.shape == (50, 10, 10) and first.dtype == np.float32
    assert 0.0 <= first.min() and first.max() <= 1.0
    assert not np.allclose(first, augment.apply(images[:50], np.random.default_rng(8)))
    same = data.DigitAugment().apply(images[:50], np.random.default_rng(7))
    np.testing.assert_array_equal(same[:, 1:9, 1:9], images[:50])
    assert np.all(same[:, 0] == 0) and np.all(same[:, :, 9] == 0)
    # a pure shift of one pixel moves the digit by one pixel
    shifted = data.DigitAugment(shift=1.0).apply(images[:1], _FixedDraws())
    np.testing.assert_allclose(shifted[0, 2:10, 2:10], images[0], atol=1e-6)


def test_elastic_distortion_is_smooth_seeded_and_in_range():
    images, _ = data.load_digits_images()
    augment = data.DigitAugment(elastic=0.4)
    first = augment.apply(images[:20], np.random.default_rng(3))
    np.testing.assert_array_equal(first, augment.apply(images[:20], np.random.default_rng(3)))
    assert 0.0 <= first.min() and first.max() <= 1.0 and not np.allclose(first[:, 1:9, 1:9], images[:20])
    field = data._smooth_field(np.random.default_rng(0).normal(size=(500, 10, 10)))
    np.testing.assert_allclose(np.sqrt((field ** 2).mean(axis=(1, 2))), 1.0, rtol=1e-9)
    # smooth: neighbouring displacements are strongly correlated (white noise: about 0)
    assert np.corrcoef(field[:, :, :-1].ravel(), field[:, :, 1:].ravel())[0, 1] > 0.7


class _FixedDraws:
    """A generator stand-in whose uniform draws all sit at the top of their range."""
    def uniform(self, low, high, size):
        return np.full(size, high, np.float64)


def test_augmented_strips_keep_the_layout_and_labels_of_the_plain_ones():
    images, labels = data.load_digits_images()
    augment = data.DigitAugment(rotation=6.0, shear=0.1, scale=0.1, shift=0.5, gamma=0.3)
    plain = data.make_strips(images[:30], labels[:30], 20, seed=5)
    warped = data.make_strips(images[:30], labels[:30], 20, seed=5, augment=augment)
    np.testing.assert_array_equal(plain[1], warped[1])
    np.testing.assert_array_equal(plain[2], warped[2])
    assert warped[0].shape == plain[0].shape and warped[0].dtype == np.float32
    assert 0.0 <= warped[0].min() and warped[0].max() <= 1.0 and not np.allclose(plain[0], warped[0])
    again = data.training_strips(16, [1, 2, 3], augment)
    np.testing.assert_array_equal(again.inputs, data.training_strips(16, [1, 2, 3], augment).inputs)
    assert not np.array_equal(again.inputs, data.training_strips(16, [1, 2, 4], augment).inputs)


def test_validation_and_test_strips_do_not_change():
    """The CRNN's evaluation strips as they were before training strips could be re-composed: changes
    to the composition code must not change what the model is measured on."""
    splits = data.digit_strips()
    sums = [float(splits[name].inputs.astype(np.float64).sum()) for name in ("validation", "test")]
    np.testing.assert_allclose(sums, [125737.18998868909, 248127.68740991285], rtol=1e-9)
    assert splits["test"].labels[:2].tolist() == [[1, 8, 8, 8, 5, 6, 8, 7], [3, 5, 5, -1, -1, -1, -1, -1]]
    assert splits["validation"].label_lengths[:10].tolist() == [5, 8, 7, 6, 7, 4, 8, 7, 8, 5]


def test_digit_augment_gives_the_same_digits_whatever_its_chunk_size(monkeypatch):
    images, _ = data.load_digits_images()
    augment = data.DigitAugment(rotation=6.0, shear=0.1, scale=0.1, shift=0.5, gamma=0.3, elastic=0.4)
    whole = augment.apply(images[:50], np.random.default_rng(4))
    monkeypatch.setattr(data.DigitAugment, "CHUNK", 7)    # 50 = 7 chunks of 7 and one of 1
    np.testing.assert_array_equal(augment.apply(images[:50], np.random.default_rng(4)), whole)


def test_augmented_strips_match_a_digit_by_digit_composition():
    """The vectorised composition against a plain loop over the same draws: warped digits (whose margins
    hold ink) that touch keep the brighter pixel."""
    images, labels = data.load_digits_images()
    images, labels = images[:40], labels[:40]
    augment = data.DigitAugment(rotation=6.0, shear=0.1, scale=0.2, shift=0.5, elastic=0.4)
    strips, targets, lengths = data.make_strips(images, labels, 60, seed=9, noise=0.0, augment=augment)

    rng = np.random.default_rng(9)
    canvas = np.zeros((60, data.STRIP_HEIGHT + 2, data.STRIP_WIDTH + 2), np.float32)
    expected_lengths = rng.integers(data.STRIP_MIN_DIGITS, data.STRIP_MAX_DIGITS + 1, size=60)
    placements = []
    for i in range(60):
        column = int(rng.integers(0, 3))
        for image_index in rng.integers(0, len(images), size=expected_lengths[i]):
            placements.append((i, image_index, int(rng.integers(0, data.STRIP_HEIGHT - 7)), column))
            column += 8 + int(rng.integers(0, data.STRIP_MAX_GAP + 1))
    patches = augment.apply(images[[p[1] for p in placements]],
                            np.random.default_rng(np.random.SeedSequence(9).spawn(1)[0]))
    touching = 0
    for (i, image_index, top, column), patch in zip(placements, patches):
        region = canvas[i, top:top + 10, column:column + 10]
        touching += bool(np.any((region > 0) & (patch > 0)))
        np.maximum(region, patch, out=region)
    assert touching >= 3     # the case that matters does occur
    np.testing.assert_array_equal(strips[:, 0], canvas[:, 1:-1, 1:-1])
    np.testing.assert_array_equal(lengths, expected_lengths)
    np.testing.assert_array_equal(targets[targets >= 0], labels[[p[1] for p in placements]])
