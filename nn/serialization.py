"""nn.save and nn.load: what users save with torch.save (state dicts, optimizer state dicts, Tensors, nested
dicts/lists/tuples of them with numbers and strings) in one file, in nn/checkpoint.py's format: arrays as
NumPy .npz entries, the structure as JSON. Loading never unpickles, so no file can run code (torch 2.6+'s
weights_only=True, by construction). Writes to a path are atomic (checkpoint.save); file objects (io.BytesIO)
go through a temporary file. Arrays on the GPU (CuPy, Tensors on 'cuda') are copied to the host. Not kept, unlike torch: one object saved twice comes back as two copies,
and Modules, optimizers and other objects are refused (save their state_dict()).
"""
import os
import struct
import tempfile
from collections import OrderedDict

import numpy as np

from kernels import backend

from . import checkpoint
from .module import Parameter
from .tensor import Tensor

FORMAT = "nn.save/1"   # marks the files nn.save writes among nn/checkpoint.py's


def _encode(value):
    """value as checkpoint.save stores it: arrays and JSON values in lists and str-keyed dicts. Every dict of
    the result is one of these markers, so a user's dict never reads as one."""
    if isinstance(value, Tensor):
        return {"kind": "tensor", "array": _host_array(value.data), "requires_grad": bool(value.requires_grad),
                "parameter": isinstance(value, Parameter)}
    if backend.is_array(value):
        return {"kind": "array", "array": _host_array(value)}
    if isinstance(value, np.generic):   # keeps its dtype: a 0-d array, read back as a NumPy scalar
        return {"kind": "numpy_scalar", "array": _host_array(np.asarray(value))}
    if isinstance(value, dict):
        return {"kind": "dict", "ordered": isinstance(value, OrderedDict),
                "items": [[_encode(key), _encode(item)] for key, item in value.items()]}
    if isinstance(value, (list, tuple)):   # (a list subclass comes back a list; a namedtuple a plain tuple)
        return [_encode(item) for item in value] if isinstance(value, list) else \
            {"kind": "tuple", "items": [_encode(item) for item in value]}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"nn.save: cannot save a {type(value).__name__} (Tensors, arrays, numbers, strings, None "
                    f"and dicts/lists/tuples of them can be saved; for a Module or optimizer save its state_dict())")


def _host_array(array):
    array = backend.to_numpy(array)
    if array.dtype.hasobject:   # np.savez would pickle it
        raise TypeError("nn.save: cannot save an array of Python objects")
    return array


def _decode(value, device):
    if isinstance(value, list):
        return [_decode(item, device) for item in value]
    if not isinstance(value, dict):
        return value
    kind = value["kind"]
    if kind == "tensor":
        array = backend.to_device(value["array"], device)
        made = Parameter if value["parameter"] else Tensor
        return made(array, requires_grad=value["requires_grad"])
    if kind == "array":
        return backend.to_device(value["array"], device)
    if kind == "numpy_scalar":
        return value["array"][()]
    if kind == "tuple":
        return tuple(_decode(item, device) for item in value["items"])
    if kind == "dict":
        items = [(_decode(key, device), _decode(item, device)) for key, item in value["items"]]
        return OrderedDict(items) if value["ordered"] else dict(items)
    raise KeyError(kind)


def _is_path(f):
    return isinstance(f, (str, os.PathLike))


def _check_stream(op, f, method):
    if not callable(getattr(f, method, None)):
        raise TypeError(f"{op}: f must be a path (str or os.PathLike) or a binary file object with "
                        f"{method}(), got {type(f).__name__}")


def save(obj, f):
    """Write obj to f: a path, atomically (a failed save leaves the file that was there), or a binary file
    object (io.BytesIO, an open file), at its position."""
    state = {"format": FORMAT, "object": _encode(obj)}
    if _is_path(f):
        folder = os.path.dirname(os.path.abspath(os.fspath(f)))
        if not os.path.isdir(folder):   # (as torch.save: no folders made)
            raise FileNotFoundError(f"nn.save: the folder {folder!r} does not exist")
        checkpoint.save(os.fspath(f), state)
        return
    _check_stream("nn.save", f, "write")
    with tempfile.TemporaryDirectory() as folder:   # checkpoint.save writes to paths only
        path = os.path.join(folder, "object.npz")
        checkpoint.save(path, state)
        with open(path, "rb") as stream:
            f.write(stream.read())


def load(f, map_location=None, weights_only=True):
    """Read what nn.save wrote to f (a path or a binary file object, read from its position to its end).
    Arrays come back as NumPy arrays and Tensors on the CPU; map_location='cuda' puts them all on the GPU
    (CuPy arrays, Tensors on 'cuda'). weights_only is taken for torch's signature: this format holds no
    code, so True and False read the same. FileNotFoundError for a missing file, RuntimeError for one that
    nn.save did not write or that is corrupt or truncated."""
    location = None if map_location is None else str(map_location)   # (torch.device('cuda') too)
    if location not in (None, "cpu", "cuda", "cuda:0"):
        raise ValueError(f"nn.load: map_location must be None, 'cpu' or 'cuda', got {map_location!r}")
    device = "cpu" if location is None else location[:4]
    if _is_path(f):
        path = os.fspath(f)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"nn.load: no such file {path!r}")
        return _load_path(path, repr(path), device)
    _check_stream("nn.load", f, "read")
    start = f.tell() if callable(getattr(f, "seekable", None)) and f.seekable() else None
    data = f.read()
    end = _first_archive_end(data)   # one object: a stream may hold several, saved one after another
    if start is not None:
        f.seek(start + end)
    with tempfile.TemporaryDirectory() as folder:   # checkpoint.load reads paths only
        path = os.path.join(folder, "object.npz")
        with open(path, "wb") as stream:
            stream.write(data[:end])
        return _load_path(path, f"<{type(f).__name__}>", device)


def _first_archive_end(data):
    """Where the first zip archive in data (an npz nn.save wrote) ends: after the first end record whose central
    directory lies right before it, or before its zip64 record (so that bytes inside the arrays that look like
    one are passed over); the whole of data where none does (garbage, which checkpoint.load then reports)."""
    position = data.find(b"PK\x05\x06")
    while position != -1 and position + 22 <= len(data):
        size, offset, comment = struct.unpack_from("<IIH", data, position + 12)
        directory_end = position
        locator = position - 20   # zip64 (np.savez past 65535 arrays or 4 GiB): a locator, then the 64-bit record
        if locator >= 0 and data[locator:locator + 4] == b"PK\x06\x07":
            record = struct.unpack_from("<Q", data, locator + 8)[0]
            if data[record:record + 4] == b"PK\x06\x06":
                size, offset = struct.unpack_from("<QQ", data, record + 40)
                directory_end = record
        if offset + size == directory_end and data[offset:offset + 4] == b"PK\x01\x02":
            return min(len(data), position + 22 + comment)
        position = data.find(b"PK\x05\x06", position + 1)
    return len(data)


def _load_path(path, name, device):
    try:
        state = checkpoint.load(path)
    except checkpoint.CheckpointError as error:
        raise RuntimeError(f"nn.load: {str(error).replace(repr(path), name)}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or "object" not in state:
        raise RuntimeError(f"nn.load: {name} was not written by nn.save")
    try:
        return _decode(state["object"], device)
    except (KeyError, TypeError, IndexError) as error:
        raise RuntimeError(f"nn.load: {name} is inconsistent ({type(error).__name__}: {error})") from None
