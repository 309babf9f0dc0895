"""The three models of numbanet: a small CNN, a recurrent sequence classifier and the CRNN text reader.

Each is built from nn.layers / nn.recurrent with PyTorch's layout, so a torch model written the same
way (same attribute names, same Sequential positions) exchanges state dicts with it unchanged.
`dtype` (float32 by default; float64 for gradient checks on the CPU) sets every parameter's dtype.
"""
import numpy as np

from kernels._checks import positive_int

from . import functional as F
from .layers import BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, ReLU
from .containers import Sequential
from .module import Module
from .recurrent import GRU, LSTM, RNN
from .tensor import Tensor, cat

__all__ = ["CNN", "RNNClassifier", "CRNN", "ctc_greedy_decode", "ctc_beam_search"]


def _as_tensor(model, x):
    if isinstance(x, Tensor):
        return x
    if isinstance(x, np.ndarray) or type(x).__module__.split(".", 1)[0] == "cupy":
        return Tensor(x)
    raise TypeError(f"{model}: input must be a Tensor or an array, got {type(x).__name__}")


class CNN(Module):
    """Conv(3x3, pad 1)-BatchNorm-ReLU-MaxPool(2) blocks, one per entry of `channels`, then
    Flatten-Linear(hidden)-ReLU-Linear(num_classes). Defaults fit scikit-learn's 8x8 digits.

    State-dict keys: features.{4i}.* (conv i), features.{4i+1}.* (its batch norm), classifier.1.*,
    classifier.3.*."""

    def __init__(self, in_channels=1, num_classes=10, channels=(32, 64), image_size=8, hidden=128, dtype=None):
        super().__init__()
        self.in_channels = positive_int("CNN", "in_channels", in_channels)
        self.num_classes = positive_int("CNN", "num_classes", num_classes)
        self.image_size = positive_int("CNN", "image_size", image_size)
        hidden = positive_int("CNN", "hidden", hidden)
        channels = tuple(positive_int("CNN", "channels", c) for c in channels)
        if not channels:
            raise ValueError("CNN: channels must name at least one block")
        if self.image_size >> len(channels) < 1:
            raise ValueError(f"CNN: {len(channels)} pooling blocks need image_size >= {2 ** len(channels)}, "
                             f"got {image_size}")
        blocks, width = [], self.in_channels
        for out in channels:
            blocks += [Conv2d(width, out, 3, padding=1, dtype=dtype), BatchNorm2d(out, dtype=dtype), ReLU(),
                       MaxPool2d(2)]
            width = out
        side = self.image_size >> len(channels)
        self.features = Sequential(*blocks)
        self.classifier = Sequential(Flatten(), Linear(width * side * side, hidden, dtype=dtype), ReLU(),
                                     Linear(hidden, self.num_classes, dtype=dtype))

    def forward(self, images):
        """images (B, in_channels, image_size, image_size) -> logits (B, num_classes)."""
        x = _as_tensor("CNN", images)
        expected = (self.in_channels, self.image_size, self.image_size)
        if x.ndim != 4 or x.shape[1:] != expected:
            raise ValueError(f"CNN: expected images of shape (B, {', '.join(map(str, expected))}), got {x.shape}")
        return self.classifier(self.features(x))


CELLS = {"lstm": LSTM, "gru": GRU, "rnn": RNN}


class RNNClassifier(Module):
    """An LSTM, GRU or Elman RNN over batch-first sequences (B, T, input_size), then a Linear layer on
    the last hidden state (both directions' when bidirectional), or on every step with per_step=True.
    `lengths` (B,) gives each sample's valid steps: the last state is then the state at that step."""

    def __init__(self, input_size, hidden_size, num_classes, cell="lstm", num_layers=1, bidirectional=False,
                 per_step=False, dropout=0.0, dtype=None):
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"RNNClassifier: cell must be one of {tuple(CELLS)}, got {cell!r}")
        self.cell, self.per_step = cell, bool(per_step)
        self.num_classes = positive_int("RNNClassifier", "num_classes", num_classes)
        self.rnn = CELLS[cell](input_size, hidden_size, num_layers=num_layers, batch_first=True, dropout=dropout,
                               bidirectional=bidirectional, dtype=np.float32 if dtype is None else dtype)
        self.fc = Linear(hidden_size * self.rnn.num_directions, self.num_classes, dtype=dtype)

    def forward(self, sequences, lengths=None):
        """(B, T, input_size) -> (B, num_classes), or (B, T, num_classes) with per_step."""
        x = _as_tensor("RNNClassifier", sequences)
        if x.ndim != 3:
            raise ValueError(f"RNNClassifier: expected sequences of shape (B, T, {self.rnn.input_size}), "
                             f"got {x.shape}")
        output, state = self.rnn(x, lengths=lengths)
        if self.per_step:
            return self.fc(output)
        h_n = state[0] if self.cell == "lstm" else state
        last = h_n[-1] if self.rnn.num_directions == 1 else cat([h_n[-2], h_n[-1]], dim=1)
        return self.fc(last)


# (kernel, stride, padding) of the paper's four pools in order; the last two keep the width (+1).
PAPER_POOLS = [((2, 2), (2, 2), (0, 0)), ((2, 2), (2, 2), (0, 0)), ((2, 2), (2, 1), (0, 1)), ((2, 2), (2, 1), (0, 1))]
PAPER_POOL_AFTER = (0, 1, 3, 5)     # the conv layer each of those pools follows
PAPER_BATCH_NORM = (2, 4, 6)        # conv layers followed by batch norm
PAPER_CHANNELS = (64, 128, 256, 256, 512, 512, 512)


class CRNN(Module):
    """Shi, Bai and Yao's CRNN (arXiv 1507.05717): seven convolutions (3x3 pad 1, the last one valid)
    with ReLU, batch norm after the 3rd, 5th and 7th, max pooling after the 1st, 2nd, 4th and 6th; the
    feature map (B, C, 1, T) read as a sequence (T, B, C); two bidirectional LSTM layers; a Linear layer
    to num_classes + 1 outputs (index 0 is the CTC blank, labels are 1..num_classes); log-softmax.

    Scaled by the arguments: with image_height 32 it is the paper's network (4 pools, final 2x2 conv);
    smaller heights keep fewer pools (the first one and the last ones, which keep the width), e.g. 16 ->
    3 pools, 8 or 12 -> 2 pools, and the last convolution spans the remaining height (kernel (h, 2)).
    """

    def __init__(self, image_height=32, in_channels=1, num_classes=36, channels=PAPER_CHANNELS, hidden_size=256,
                 dtype=None):
        super().__init__()
        self.image_height = positive_int("CRNN", "image_height", image_height)
        self.in_channels = positive_int("CRNN", "in_channels", in_channels)
        self.num_classes = positive_int("CRNN", "num_classes", num_classes)
        self.hidden_size = positive_int("CRNN", "hidden_size", hidden_size)
        channels = tuple(positive_int("CRNN", "channels", c) for c in channels)
        if len(channels) != 7:
            raise ValueError(f"CRNN: channels must give the 7 convolutions' widths, got {channels}")
        if self.image_height < 4:
            raise ValueError(f"CRNN: image_height must be at least 4, got {image_height}")
        self.blank = 0
        pools, height = 0, self.image_height
        while pools < 4 and height // 2 >= 2:
            height //= 2
            pools += 1
        chosen = [0] + list(range(4 - (pools - 1), 4))          # indices into the paper's pools
        self.pools = [PAPER_POOLS[i] for i in chosen]
        pool_after = {PAPER_POOL_AFTER[i]: PAPER_POOLS[i] for i in chosen}
        layers, width = [], self.in_channels
        for index, out in enumerate(channels):
            last = index == len(channels) - 1
            kernel, padding = ((height, 2), 0) if last else (3, 1)
            layers.append(Conv2d(width, out, kernel, padding=padding, dtype=dtype))
            if index in PAPER_BATCH_NORM:
                layers.append(BatchNorm2d(out, dtype=dtype))
            layers.append(ReLU())
            if index in pool_after:
                kernel_size, stride, pool_padding = pool_after[index]
                layers.append(MaxPool2d(kernel_size, stride, pool_padding))
            width = out
        self.cnn = Sequential(*layers)
        self.rnn = LSTM(width, self.hidden_size, num_layers=2, bidirectional=True,
                        dtype=np.float32 if dtype is None else dtype)
        self.fc = Linear(2 * self.hidden_size, self.num_classes + 1, dtype=dtype)

    def output_length(self, width):
        """The number of time steps T for images `width` pixels wide."""
        for _, (_, stride_w), (_, pad_w) in self.pools:
            width = (width + 2 * pad_w - 2) // stride_w + 1
        return width - 1  # the final convolution is 2 wide, unpadded

    def forward(self, images):
        """images (B, in_channels, image_height, W) -> log-probabilities (T, B, num_classes + 1)."""
        x = _as_tensor("CRNN", images)
        if x.ndim != 4 or x.shape[1] != self.in_channels or x.shape[2] != self.image_height:
            raise ValueError(f"CRNN: expected images of shape (B, {self.in_channels}, {self.image_height}, W), "
                             f"got {x.shape}")
        if self.output_length(x.shape[3]) < 1:
            raise ValueError(f"CRNN: images {x.shape[3]} pixels wide are too narrow (no time step is left)")
        features = self.cnn(x)                                    # (B, C, 1, T)
        batch, width, _, steps = features.shape
        sequence = features.reshape(batch, width, steps).permute(2, 0, 1)  # (T, B, C)
        output, _ = self.rnn(sequence)
        return F.log_softmax(self.fc(output), dim=2)

    def decode(self, log_probs, beam_width=1):
        """Label sequences (lists of ints in 1..num_classes) from (T, B, num_classes + 1) log-probabilities:
        greedy (best path) with beam_width=1, else CTC prefix beam search."""
        if beam_width == 1:
            return ctc_greedy_decode(log_probs, blank=self.blank)
        return ctc_beam_search(log_probs, beam_width=beam_width, blank=self.blank)


def _host_log_probs(log_probs, op):
    data = log_probs.data if isinstance(log_probs, Tensor) else log_probs
    data = data.get() if type(data).__module__.split(".", 1)[0] == "cupy" else np.asarray(data)
    if data.ndim != 3:
        raise ValueError(f"{op}: log_probs must be (T, B, classes), got shape {data.shape}")
    return data


def ctc_greedy_decode(log_probs, blank=0, input_lengths=None):
    """Best-path decoding: the most likely class at each step, repeats merged, blanks removed."""
    data = _host_log_probs(log_probs, "ctc_greedy_decode")
    best = data.argmax(axis=2)                                     # (T, B)
    results = []
    for sample in range(best.shape[1]):
        path = best[:, sample] if input_lengths is None else best[:int(input_lengths[sample]), sample]
        labels, previous = [], blank
        for label in path.tolist():
            if label != previous and label != blank:
                labels.append(label)
            previous = label
        results.append(labels)
    return results


def ctc_beam_search(log_probs, beam_width=8, blank=0):
    """CTC prefix beam search (no language model): the most probable labelling summed over its paths,
    keeping the `beam_width` best prefixes at each step. Log space throughout."""
    data = _host_log_probs(log_probs, "ctc_beam_search").astype(np.float64)
    results = []
    for sample in range(data.shape[1]):
        # prefix -> (log P(prefix, path ends in blank), log P(prefix, path ends in its last label))
        beams = {(): (0.0, -np.inf)}
        for step in data[:, sample]:
            candidates = {}

            def add(prefix, blank_term, label_term):
                old_blank, old_label = candidates.get(prefix, (-np.inf, -np.inf))
                candidates[prefix] = (np.logaddexp(old_blank, blank_term), np.logaddexp(old_label, label_term))

            for prefix, (p_blank, p_label) in beams.items():
                total = np.logaddexp(p_blank, p_label)
                add(prefix, total + step[blank], -np.inf)
                for label in range(len(step)):
                    if label == blank:
                        continue
                    if prefix and prefix[-1] == label:
                        add(prefix, -np.inf, p_label + step[label])           # repeat merged
                        add(prefix + (label,), -np.inf, p_blank + step[label])  # repeat after a blank
                    else:
                        add(prefix + (label,), -np.inf, total + step[label])
            ranked = sorted(candidates.items(), key=lambda item: -np.logaddexp(*item[1]))
            beams = dict(ranked[:beam_width])
        best = max(beams.items(), key=lambda item: np.logaddexp(*item[1]))[0]
        results.append(list(best))
    return results
