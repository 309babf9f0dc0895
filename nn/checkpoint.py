"""Checkpoints: nested state (model, optimizer, scheduler, random generators, progress) in one .npz.

Arrays are stored as NumPy entries and everything else as JSON, so loading never unpickles code.
Writes are atomic (a temporary file in the same folder, fsync, then a rename): an interrupted
save never leaves a half-written checkpoint in place of a good one.
"""
import json
import os
import stat
import tempfile
import zipfile

import numpy as np

from kernels import backend

FORMAT_VERSION = 1


class CheckpointError(Exception):
    """A checkpoint that cannot be used: missing, corrupt, truncated, or for another model."""


def _flatten(value, arrays):
    if backend.is_array(value):
        key = f"array{len(arrays)}"
        arrays[key] = backend.to_numpy(value)
        return {"__array__": key}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        if not all(isinstance(k, (str, int)) for k in value):
            raise TypeError("checkpoint: dictionary keys must be strings or integers")
        return {"__dict__": [[k, _flatten(v, arrays)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return {"__list__": [_flatten(v, arrays) for v in value], "tuple": isinstance(value, tuple)}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"checkpoint: cannot store a {type(value).__name__}")


def _unflatten(value, arrays):
    if isinstance(value, dict):
        if "__array__" in value:
            return arrays[value["__array__"]]
        if "__dict__" in value:
            return {k: _unflatten(v, arrays) for k, v in value["__dict__"]}
        if "__list__" in value:
            items = [_unflatten(v, arrays) for v in value["__list__"]]
            return tuple(items) if value.get("tuple") else items
    return value


def save(path, state):
    """Write `state` (nested dicts/lists of arrays and JSON values) to `path` atomically."""
    arrays = {}
    meta = {"format": FORMAT_VERSION, "state": _flatten(state, arrays)}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    path = os.path.realpath(path)   # through a symlink to its target (the link stays a link, as with open())
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".checkpoint-", suffix=".npz", dir=folder)
    try:
        with os.fdopen(handle, "wb") as stream:
            np.savez(stream, **arrays)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, _file_mode(path))   # (mkstemp makes it 0600: readable by its owner only)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _file_mode(path):
    """The mode the file at path has, or a new file's (0666 less the umask), as open() would give."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def load(path, expected_model=None):
    """Read a checkpoint written by `save`; CheckpointError with a one-line reason otherwise."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path!r} does not exist")
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):   # a .npy file: one array, no structure
            raise CheckpointError(f"checkpoint {path!r} is a single array (.npy), not a checkpoint (.npz)")
        with archive:
            arrays = {name: archive[name] for name in archive.files}
        meta = json.loads(arrays.pop("meta").tobytes().decode())
        if not isinstance(meta, dict):
            raise ValueError(f"its description is a {type(meta).__name__}, not a dict")
    except (zipfile.BadZipFile, ValueError, KeyError, OSError, EOFError, UnicodeDecodeError, AttributeError,
            TypeError, RecursionError) as error:
        raise CheckpointError(f"checkpoint {path!r} is corrupt or truncated ({type(error).__name__}: {error})") from None
    if meta.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path!r} has format {meta.get('format')!r}, expected {FORMAT_VERSION}")
    try:
        state = _unflatten(meta["state"], arrays)
    except (KeyError, TypeError) as error:
        raise CheckpointError(f"checkpoint {path!r} is inconsistent (missing entry {error})") from None
    if expected_model is not None and not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path!r} holds a {type(state).__name__}, not a training run's state")
    if expected_model is not None and state.get("model_name") != expected_model:
        raise CheckpointError(f"checkpoint {path!r} is for model {state.get('model_name')!r}, not {expected_model!r}")
    return state
