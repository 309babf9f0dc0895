"""Packed sequences, as torch.nn.utils.rnn has them: PackedSequence, pack_padded_sequence, pad_packed_sequence,
pad_sequence, pack_sequence, unpad_sequence and unpack_sequence, with torch's layouts.

A PackedSequence holds the valid steps of a batch of sequences of different lengths, time-major: the samples
sorted by decreasing length, then step 0 of each sample, step 1 of those still running, and so on;
batch_sizes[t] counts the samples still running at step t. Packed row k is padded position (steps[k],
sorted_indices[slots[k]]) (see _positions), so packing is one gather from the padded tensor and padding is one
gather from the packed rows plus a row of padding_value: both nn.Tensor indexing, differentiable as torch's.
batch_sizes, sorted_indices and unsorted_indices are CPU int64 Tensors (torch keeps the two index tensors on
the data's device); the index arithmetic runs on the host, as it does in torch with its CPU `lengths`.
nn.LSTM / GRU / RNN take a PackedSequence and return one (they run the per-sample `lengths` path underneath).
"""
from collections import namedtuple

import numpy as np

from kernels import backend

from ..tensor import Tensor, cat

__all__ = ["PackedSequence", "pack_padded_sequence", "pack_sequence", "pad_packed_sequence", "pad_sequence",
           "unpack_sequence", "unpad_sequence"]


class PackedSequence(namedtuple("PackedSequence", ["data", "batch_sizes", "sorted_indices", "unsorted_indices"])):
    """torch's named tuple: data (sum of lengths, *), batch_sizes (max length,), and sorted_indices (sorted slot
    -> original sample) with its inverse unsorted_indices, both None when the batch was given sorted."""

    def __new__(cls, data, batch_sizes=None, sorted_indices=None, unsorted_indices=None):
        batch_sizes, sorted_indices, unsorted_indices = (None if a is None else _index_tensor(a) for a in
                                                         (batch_sizes, sorted_indices, unsorted_indices))
        if unsorted_indices is None and sorted_indices is not None:
            unsorted_indices = _index_tensor(_invert(sorted_indices.data))
        return super().__new__(cls, data, batch_sizes, sorted_indices, unsorted_indices)

    def to(self, *args, **kwargs):
        """The same sequence with its data moved or cast as Tensor.to(*args, **kwargs) does (differentiable);
        the indices stay on the host. Itself when nothing changes, as torch's."""
        data = self.data.to(*args, **kwargs)
        return self if data is self.data else self._replace(data=data)

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    def float(self):
        return self.to(np.float32)

    def double(self):
        return self.to(np.float64)

    @property
    def is_cuda(self):
        return self.data.device == "cuda"


def pack_padded_sequence(input, lengths, batch_first=False, enforce_sorted=True):
    """Pack `input` (T, B, *) (batch_first: (B, T, *)) whose sample b is lengths[b] steps long. With
    enforce_sorted=True the lengths must be decreasing; otherwise the samples are sorted here (stably, as
    torch) and sorted_indices records the order."""
    op = "pack_padded_sequence"
    input = _as_tensor(op, input)
    lengths = _host_integers(op, "lengths", lengths)
    if lengths.ndim != 1:
        raise ValueError(f"{op}: 'lengths' must be a 1-D list or CPU tensor of integers, got shape {lengths.shape}")
    if input.ndim < 2:
        raise ValueError(f"{op}: input must have a time and a batch dim, got shape {input.shape}")
    steps, batch = (input.shape[1], input.shape[0]) if batch_first else input.shape[:2]
    if len(lengths) != batch:
        raise ValueError(f"{op}: expected len(lengths) to be equal to batch_size, got {len(lengths)} "
                         f"(batch_size={batch})")
    if batch == 0:   # (torch: "Cannot pack empty tensors"; unpacking the result failed deep inside)
        raise ValueError(f"{op}: cannot pack an empty batch, got input of shape {input.shape}")
    if lengths.min() <= 0:
        raise ValueError(f"{op}: the length of every sample must be greater than 0, got lengths {lengths.tolist()}")
    if lengths.max() > steps:
        raise ValueError(f"{op}: no length may exceed the input's {steps} steps, got lengths {lengths.tolist()}")
    if enforce_sorted:
        if np.any(np.diff(lengths) > 0):
            raise ValueError(f"{op}: `lengths` must be sorted in decreasing order when enforce_sorted is True, got "
                             f"{lengths.tolist()}; pass enforce_sorted=False to have them sorted here")
        sorted_indices = None
    else:
        sorted_indices = np.argsort(-lengths, kind="stable")
    batch_sizes = np.count_nonzero(lengths[None, :] > np.arange(lengths.max(initial=0))[:, None], axis=1)
    return _pack(input, batch_sizes, sorted_indices, batch_first)


def pad_packed_sequence(sequence, batch_first=False, padding_value=0.0, total_length=None):
    """Undo pack_padded_sequence: returns (padded (T, B, *) (batch_first: (B, T, *)) in the original sample
    order with padding_value past each length, lengths as a CPU int64 Tensor). T is the longest length, or
    total_length when given (it may not be shorter)."""
    op = "pad_packed_sequence"
    if not isinstance(sequence, PackedSequence):
        raise TypeError(f"{op}: sequence must be a PackedSequence, got {type(sequence).__name__}")
    data = _as_tensor(op, sequence.data)
    batch_sizes = sequence.batch_sizes.data
    max_length, batch = len(batch_sizes), int(batch_sizes[0])
    if total_length is not None:
        if total_length < max_length:
            raise ValueError(f"{op}: expected total_length to be at least the length of the longest sequence in "
                             f"input, got total_length={total_length} and max sequence length being {max_length}")
        max_length = int(total_length)
    steps, slots = _positions(batch_sizes)
    samples = slots if sequence.sorted_indices is None else sequence.sorted_indices.data[slots]
    gather = np.full((max_length, batch), len(steps), np.int64)  # the padding row by default
    gather[steps, samples] = np.arange(len(steps))
    if batch_first:
        gather = gather.T
    padding = Tensor(data.xp.full((1,) + data.shape[1:], padding_value, dtype=data.dtype))
    padded = cat([data, padding])[data.xp.asarray(gather.reshape(-1))].reshape(gather.shape + data.shape[1:])
    lengths = np.count_nonzero(batch_sizes[:, None] > np.arange(batch)[None, :], axis=0)  # per sorted slot
    unsorted = np.arange(batch) if sequence.unsorted_indices is None else sequence.unsorted_indices.data
    return padded, _index_tensor(lengths[unsorted])


def pad_sequence(sequences, batch_first=False, padding_value=0.0, padding_side="right"):
    """Stack `sequences` (each (L_i, *), the same *) into (T, B, *) (batch_first: (B, T, *)), T = max L_i,
    padding_value filling each past its length (padding_side='right') or before it ('left')."""
    op = "pad_sequence"
    if isinstance(sequences, Tensor):
        sequences = [sequences[i] for i in range(len(sequences))]
    sequences = [_as_tensor(op, s) for s in sequences]
    if not sequences:
        raise ValueError(f"{op}: received an empty list of sequences")
    if padding_side not in ("left", "right"):
        raise ValueError(f"{op}: expected padding_side to be one of left or right, got {padding_side!r}")
    first = sequences[0]
    for s in sequences:
        if s.ndim < 1 or s.shape[1:] != first.shape[1:]:
            raise ValueError(f"{op}: every sequence must be (length, *) with the same trailing dims, got shapes "
                             f"{first.shape} and {s.shape}")
    lengths = np.array([s.shape[0] for s in sequences], np.int64)
    starts = np.cumsum(lengths) - lengths
    max_length = int(lengths.max())
    position = np.arange(max_length)[:, None]  # (T, 1): the output step
    if padding_side == "left":
        position = position - (max_length - lengths)[None, :]
    valid = (position >= 0) & (position < lengths[None, :])
    gather = np.where(valid, starts[None, :] + position, lengths.sum())  # (T, B); past the rows: padding
    if batch_first:
        gather = gather.T
    padding = Tensor(first.xp.full((1,) + first.shape[1:], padding_value, dtype=first.dtype))
    # torch's output takes the first sequence's dtype (cat would promote: int64 with float32 to float64)
    rows = cat([s if s.dtype == first.dtype else s.to(first.dtype) for s in sequences] + [padding])
    return rows[first.xp.asarray(gather.reshape(-1))].reshape(gather.shape + first.shape[1:])


def pack_sequence(sequences, enforce_sorted=True):
    """pack_padded_sequence(pad_sequence(sequences), their lengths, enforce_sorted=enforce_sorted)."""
    lengths = [len(_as_tensor("pack_sequence", s)) for s in sequences]
    return pack_padded_sequence(pad_sequence(sequences), lengths, enforce_sorted=enforce_sorted)


def unpad_sequence(padded_sequences, lengths, batch_first=False):
    """The list of sequences that pad_sequence padded: sample b's first lengths[b] steps of `padded_sequences`
    (T, B, *) (batch_first: (B, T, *)), each a differentiable slice, as torch's."""
    op = "unpad_sequence"
    padded = _as_tensor(op, padded_sequences)
    lengths = _host_integers(op, "lengths", lengths)
    if padded.ndim < 2:
        raise ValueError(f"{op}: padded_sequences must have a time and a batch dim, got shape {padded.shape}")
    steps, batch = (padded.shape[1], padded.shape[0]) if batch_first else padded.shape[:2]
    if lengths.shape != (batch,) or (batch and (lengths.min() < 0 or lengths.max() > steps)):
        raise ValueError(f"{op}: lengths must be {batch} integers in [0, {steps}], got {lengths.tolist()}")
    return [padded[b, :n] if batch_first else padded[:n, b] for b, n in enumerate(lengths.tolist())]


def unpack_sequence(packed_sequences):
    """The list of sequences that pack_sequence packed, in their original order, as torch's."""
    padded, lengths = pad_packed_sequence(packed_sequences, batch_first=True)
    return unpad_sequence(padded, lengths, batch_first=True)


# ---- helpers ---------------------------------------------------------------------------------------------
def _positions(batch_sizes):
    """(steps, slots) of every packed row, in packed order: step t holds slots 0 .. batch_sizes[t] - 1."""
    batch = int(batch_sizes[0]) if len(batch_sizes) else 0
    return np.nonzero(np.arange(batch)[None, :] < np.asarray(batch_sizes)[:, None])


def _pack(padded, batch_sizes, sorted_indices, batch_first):
    """The PackedSequence of `padded` for these batch_sizes and sorted_indices (the sample in each sorted slot;
    None: already sorted). The recurrent layers use it too, to pack their outputs like their input."""
    steps, slots = _positions(batch_sizes)
    samples = slots if sorted_indices is None else _host(sorted_indices)[slots]
    stride = padded.shape[1]  # T with batch_first, else B
    index = samples * stride + steps if batch_first else steps * stride + samples
    rows = padded.reshape((-1,) + padded.shape[2:])
    return PackedSequence(rows[padded.xp.asarray(index)], batch_sizes, sorted_indices)


def _invert(permutation):
    inverse = np.empty_like(permutation)
    inverse[permutation] = np.arange(len(permutation))
    return inverse


def _host(values):
    return np.asarray(values.data if isinstance(values, Tensor) else values, dtype=np.int64)


def _index_tensor(values):
    return Tensor(_host(values))


def _as_tensor(op, x):
    if isinstance(x, Tensor):
        return x
    if backend.is_array(x):
        return Tensor(x)
    raise TypeError(f"{op}: expected a Tensor, got {type(x).__name__}")


def _host_integers(op, name, values):
    """`values` (list, NumPy array or CPU Tensor of integers) as a host int64 array, as torch wants lengths."""
    values = values.data if isinstance(values, Tensor) else values
    if backend.is_gpu_array(values):
        raise ValueError(f"{op}: '{name}' must be a list or a CPU tensor (torch's rule: 1D CPU int64), "
                         f"got a GPU array")
    host = np.asarray(values)
    if host.dtype.kind not in "iuf" or (host.dtype.kind == "f" and np.any(host != np.trunc(host))):
        raise TypeError(f"{op}: '{name}' must hold integers, got {host.dtype} values {host.tolist()}")
    return host.astype(np.int64)
