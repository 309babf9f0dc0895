"""Offline, seeded data sets for the training scripts (nothing is downloaded at run time).

- digits: scikit-learn's bundled 8x8 digit images (1797), fixed train / validation / test splits.
- digit rows: the same images read row by row, as 8-step sequences of 8 features.
- adding problem: long sequences where only two marked values matter (needs long memory).
- digit strips: 3-8 digits side by side with random gaps, vertical jitter and noise, for the CRNN;
  the strips of each split are built only from that split's digit images, so test strips never
  reuse a training image. Training strips can be re-composed with per-digit distortions
  (DigitAugment); the validation and test strips are fixed and undistorted.
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
    """Inputs and labels of one split. For strips, `labels` is (n, STRIP_MAX_DIGITS) padded with -1,
    `label_lengths` holds the real lengths and `sources` (the same shape as labels, -1 padded) which of the
    split's digit images each position shows (benchmarks/crnn_errors.py: which images the errors come from)."""
    inputs: np.ndarray
    labels: np.ndarray
    label_lengths: np.ndarray = None
    sources: np.ndarray = None

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


@dataclass(frozen=True)
class DigitAugment:
    """Random per-digit distortions for training strips: a small affine warp (rotation, shear and
    scale about the digit's centre, sub-pixel shift), bilinear, and a gamma on the ink (stroke weight)."""
    rotation: float = 0.0      # +- degrees
    shear: float = 0.0         # +- horizontal shear factor
    scale: float = 0.0         # +- relative scale, drawn per axis
    shift: float = 0.0         # +- pixels
    gamma: float = 0.0         # ink ** exp(U(-gamma, gamma)): < 1 thickens strokes, > 1 thins them
    elastic: float = 0.0       # rms pixels of a smooth random displacement field (Simard et al. 2003)

    CHUNK = 2048   # digits warped at a time: the float64 temporaries stay in cache (3-4x faster than all at once)

    def apply(self, images, rng):
        """images (n, 8, 8) in [0, 1] -> (n, 10, 10): each warped into an 8x8 box with a 1-pixel margin
        (room for a slightly larger or rotated digit), zeros outside the source image."""
        n = len(images)
        # every draw first, in a fixed order, so the chunking below cannot change the result
        angle = np.radians(rng.uniform(-self.rotation, self.rotation, n))
        shear = rng.uniform(-self.shear, self.shear, n)
        scale_y, scale_x = (1.0 + rng.uniform(-self.scale, self.scale, (2, n)))
        shift_y, shift_x = rng.uniform(-self.shift, self.shift, (2, n))
        noise = rng.normal(size=(2, n, 10, 10)) if self.elastic > 0 else None
        exponent = np.exp(rng.uniform(-self.gamma, self.gamma, n)).astype(np.float32) if self.gamma > 0 else None
        cos, sin = np.cos(angle), np.sin(angle)
        # forward map F = rotation @ shear @ diag(scale_y, scale_x) on (y, x); sample with its inverse
        f00, f01 = cos * scale_y, (cos * shear - sin) * scale_x
        f10, f11 = sin * scale_y, (sin * shear + cos) * scale_x
        det = f00 * f11 - f01 * f10
        inverse = np.stack([f11 / det, -f01 / det, -f10 / det, f00 / det, shift_y, shift_x], axis=1)
        out = np.empty((n, 10, 10), np.float32)
        for start in range(0, n, self.CHUNK):
            part = slice(start, start + self.CHUNK)
            field = None if noise is None else _smooth_field(noise[:, part])
            out[part] = self._warp(images[part], inverse[part], field,
                                   None if exponent is None else exponent[part])
        return out

    def _warp(self, images, inverse, field, exponent):
        """Bilinear sampling of images (m, 8, 8) through the inverse maps (m, 6: matrix, shift), plus the
        displacement field (2, m, 10, 10) and the ink exponents (m), when given."""
        i00, i01, i10, i11, shift_y, shift_x = (column[:, None, None] for column in inverse.T)
        grid = np.arange(10, dtype=np.float64) - 4.5
        dy, dx = grid[None, :, None] - shift_y, grid[None, None, :] - shift_x
        source_y = i00 * dy + i01 * dx + 3.5
        source_x = i10 * dy + i11 * dx + 3.5
        if field is not None:
            source_y, source_x = source_y + self.elastic * field[0], source_x + self.elastic * field[1]
        source_y, source_x = np.clip(source_y, -1.0, 8.0), np.clip(source_x, -1.0, 8.0)
        m = len(images)
        padded = np.zeros((m, 11, 11), np.float32)      # one zero row/column before, two after
        padded[:, 1:9, 1:9] = images
        y0, x0 = np.floor(source_y), np.floor(source_x)
        wy, wx = (source_y - y0).astype(np.float32), (source_x - x0).astype(np.float32)
        # flat offsets of the top-left neighbours: one 1-D gather per corner, not 3-D fancy indexing
        row, image = padded.shape[2], padded.shape[1] * padded.shape[2]
        corner = np.arange(m)[:, None, None] * image + (y0.astype(np.int64) + 1) * row + x0.astype(np.int64) + 1
        flat = padded.ravel()
        out = ((1 - wy) * ((1 - wx) * flat[corner] + wx * flat[corner + 1])
               + wy * ((1 - wx) * flat[corner + row] + wx * flat[corner + row + 1]))
        if exponent is not None:
            out = out ** exponent[:, None, None]
        return np.clip(out, 0.0, 1.0).astype(np.float32)


def _smooth_field(noise, sigma=1.5):
    """White noise (..., 10, 10) blurred by a Gaussian along its last two axes (edges clamped), scaled
    to unit rms per field: smooth displacements that bend strokes rather than scatter pixels."""
    offsets = np.arange(-3, 4)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    for axis in (-2, -1):
        size = noise.shape[axis]
        noise = sum(weight * np.take(noise, np.clip(np.arange(size) + offset, 0, size - 1), axis=axis)
                    for offset, weight in zip(offsets, kernel))
    return noise / np.sqrt((noise ** 2).mean(axis=(-2, -1), keepdims=True))


def _padded_digits(images):
    """(n, 8, 8) -> (n, 10, 10) with a zero margin: the un-augmented form of DigitAugment.apply."""
    out = np.zeros((len(images), 10, 10), np.float32)
    out[:, 1:9, 1:9] = images
    return out


def make_strips(images, labels, count, seed, noise=0.05, augment=None, with_sources=False):
    """`count` strips (count, 1, STRIP_HEIGHT, STRIP_WIDTH) drawn from the given digit images, their targets
    and lengths (and, with_sources, the index into `images` of each position's digit, -1 padded); with a
    DigitAugment, each digit instance is distorted (its random draws come from a second generator, so
    the layout of the strips is the same with and without it)."""
    rng = np.random.default_rng(seed)
    # composed on a canvas with a 1-pixel margin all round, which warped digits may reach into
    canvas = np.zeros((count, STRIP_HEIGHT + 2, STRIP_WIDTH + 2), np.float32)
    targets = np.full((count, STRIP_MAX_DIGITS), -1, np.int64)
    lengths = rng.integers(STRIP_MIN_DIGITS, STRIP_MAX_DIGITS + 1, size=count)
    placements = []                                       # (strip, position, image index, top, column)
    for i in range(count):
        column = int(rng.integers(0, 3))
        chosen = rng.integers(0, len(images), size=lengths[i])
        for position, image_index in enumerate(chosen):
            top = int(rng.integers(0, STRIP_HEIGHT - 8 + 1))
            placements.append((i, position, image_index, top, column))
            column += 8 + int(rng.integers(0, STRIP_MAX_GAP + 1))
    strip, position, image_index, top, column = np.array(placements, np.int64).reshape(-1, 5).T
    targets[strip, position] = labels[image_index]
    sources = np.full_like(targets, -1)
    sources[strip, position] = image_index
    digits = images[image_index]
    if augment is None:
        patches = _padded_digits(digits)
    else:
        patches = augment.apply(digits, np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0]))
    # Touching digits overlap, not add: each pixel keeps the brightest ink. Digits two positions apart
    # start at least 16 columns apart and are 10 wide, so within one parity no two patches share a pixel
    # and a plain gather-max-scatter is exact.
    offsets = np.arange(10)
    for parity in (0, 1):
        chosen = position % 2 == parity
        where = (strip[chosen, None, None], top[chosen, None, None] + offsets[None, :, None],
                 column[chosen, None, None] + offsets[None, None, :])
        canvas[where] = np.maximum(canvas[where], patches[chosen])
    strips = np.ascontiguousarray(canvas[:, None, 1:-1, 1:-1])
    strips += rng.normal(0, noise, size=strips.shape).astype(np.float32)
    np.clip(strips, 0.0, 1.0, out=strips)
    if with_sources:
        return strips, targets, lengths.astype(np.int64), sources
    return strips, targets, lengths.astype(np.int64)


STRIP_COUNTS = {"train": 12000, "validation": 1000, "test": 2000}   # strips of each CRNN split


def digit_strips(train=None, validation=None, test=None):
    """Strips for the CRNN (STRIP_COUNTS of each split unless given); each split uses only the digit images
    of the same split, and its own seed, so one split's count does not change another's strips."""
    images, labels = load_digits_images()
    splits = {}
    given = {"train": train, "validation": validation, "test": test}
    sizes = {name: STRIP_COUNTS[name] if count is None else count for name, count in given.items()}
    for offset, (name, index) in enumerate(split_indices(len(images)).items()):
        splits[name] = Split(*make_strips(images[index], labels[index], sizes[name], SPLIT_SEED + 10 + offset,
                                          with_sources=True))
    return splits


def training_strips(count, seed, augment=None):
    """`count` fresh strips of the training digit images (the training split's strips re-composed, e.g.
    once per epoch), a Split; the same `seed` gives the same strips."""
    images, labels = load_digits_images()
    index = split_indices(len(images))["train"]
    return Split(*make_strips(images[index], labels[index], count, seed, augment=augment, with_sources=True))


def batches(count, batch_size, rng=None):
    """Index arrays of consecutive minibatches; shuffled when a numpy Generator is given."""
    order = rng.permutation(count) if rng is not None else np.arange(count)
    for start in range(0, count, batch_size):
        yield order[start:start + batch_size]
