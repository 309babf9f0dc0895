"""Offline, seeded data sets for the training scripts (nothing is downloaded at run time).

- digits: scikit-learn's bundled 8x8 digit images (1797), fixed train / validation / test splits.
- digit rows: the same images read row by row, as 8-step sequences of 8 features.
- adding problem: long sequences where only two marked values matter (needs long memory).
- digit strips: 3-8 digits side by side with random gaps, vertical jitter and noise, for the CRNN;
  the strips of each split are built only from that split's digit images, so test strips never
  reuse a training image.
"""
import functools
from dataclasses import dataclass

import numpy as np

SPLIT_SEED = 20261126        # fixed: the splits do not change with the training seed
TEST_FRACTION, VALIDATION_FRACTION = 0.2, 0.1
STRIP_HEIGHT = 12            # 8-pixel digits with +-2 pixels of vertical jitter
STRIP_MIN_DIGITS, STRIP_MAX_DIGITS = 3, 8
STRIP_MAX_GAP = 3
STRIP_WIDTH = 2 + STRIP_MAX_DIGITS * (8 + STRIP_MAX_GAP)   # room for the longest strip


@dataclass
class Split:
    """Inputs and labels of one split. For strips, `labels` is (n, STRIP_MAX_DIGITS) padded with -1
    and `label_lengths` holds the real lengths."""
    inputs: np.ndarray
    labels: np.ndarray
    label_lengths: np.ndarray = None

    def __len__(self):
        return len(self.inputs)


@functools.lru_cache(maxsize=1)
def load_digits_images():
    """(images (1797, 8, 8) float32 in [0, 1], labels (1797,) int64), read-only (cached)."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    images, labels = (digits.images / 16.0).astype(np.float32), digits.target.astype(np.int64)
    images.flags.writeable = labels.flags.writeable = False
    return images, labels


def split_indices(count, seed=SPLIT_SEED):
    order = np.random.default_rng(seed).permutation(count)
    n_test = int(round(count * TEST_FRACTION))
    n_validation = int(round(count * VALIDATION_FRACTION))
    return {"test": order[:n_test], "validation": order[n_test:n_test + n_validation],
            "train": order[n_test + n_validation:]}


def digits(layout="image"):
    """Train / validation / test splits of the digits: images (n, 1, 8, 8) or rows (n, 8, 8)."""
    images, labels = load_digits_images()
    splits = {}
    for name, index in split_indices(len(images)).items():
        inputs = images[index][:, None] if layout == "image" else images[index]
        splits[name] = Split(np.ascontiguousarray(inputs), labels[index])
    return splits


def adding_problem(count, length, seed):
    """(inputs (count, length, 2), targets (count, 1)): channel 0 holds U(0, 1) values, channel 1
    marks two positions (one in each half); the target is the sum of the two marked values."""
    rng = np.random.default_rng(seed)
    values = rng.uniform(0, 1, size=(count, length)).astype(np.float32)
    markers = np.zeros((count, length), np.float32)
    half = length // 2
    first = rng.integers(0, half, size=count)
    second = rng.integers(half, length, size=count)
    rows = np.arange(count)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    targets = (values[rows, first] + values[rows, second]).astype(np.float32)[:, None]
    return np.stack([values, markers], axis=2), targets


def adding_splits(length=50, train=20000, validation=2000, test=2000, seed=SPLIT_SEED):
    splits = {}
    for offset, (name, count) in enumerate((("train", train), ("validation", validation), ("test", test))):
        inputs, targets = adding_problem(count, length, seed + offset)
        splits[name] = Split(inputs, targets)
    return splits


def make_strips(images, labels, count, seed, noise=0.05):
    """`count` strips (count, 1, STRIP_HEIGHT, STRIP_WIDTH) drawn from the given digit images."""
    rng = np.random.default_rng(seed)
    strips = np.zeros((count, 1, STRIP_HEIGHT, STRIP_WIDTH), np.float32)
    targets = np.full((count, STRIP_MAX_DIGITS), -1, np.int64)
    lengths = rng.integers(STRIP_MIN_DIGITS, STRIP_MAX_DIGITS + 1, size=count)
    for i in range(count):
        column = int(rng.integers(0, 3))
        chosen = rng.integers(0, len(images), size=lengths[i])
        for position, image_index in enumerate(chosen):
            top = int(rng.integers(0, STRIP_HEIGHT - 8 + 1))
            region = strips[i, 0, top:top + 8, column:column + 8]
            np.maximum(region, images[image_index], out=region)  # touching digits overlap, not add
            targets[i, position] = labels[image_index]
            column += 8 + int(rng.integers(0, STRIP_MAX_GAP + 1))
    strips += rng.normal(0, noise, size=strips.shape).astype(np.float32)
    np.clip(strips, 0.0, 1.0, out=strips)
    return strips, targets, lengths.astype(np.int64)


def digit_strips(train=12000, validation=1000, test=2000):
    """Strips for the CRNN; each split uses only the digit images of the same split."""
    images, labels = load_digits_images()
    splits = {}
    sizes = {"train": train, "validation": validation, "test": test}
    for offset, (name, index) in enumerate(split_indices(len(images)).items()):
        strips, targets, lengths = make_strips(images[index], labels[index], sizes[name], SPLIT_SEED + 10 + offset)
        splits[name] = Split(strips, targets, lengths)
    return splits


def batches(count, batch_size, rng=None):
    """Index arrays of consecutive minibatches; shuffled when a numpy Generator is given."""
    order = rng.permutation(count) if rng is not None else np.arange(count)
    for start in range(0, count, batch_size):
        yield order[start:start + batch_size]
