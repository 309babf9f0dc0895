"""`numbanet evaluate CHECKPOINT` and `numbanet predict CHECKPOINT INPUT`: use a trained run."""
import json
import os

import numpy as np

from . import checkpoint
from .train import build
from .train_cli import MODELS, UsageError, _cli, _Parser, resolve_device


def _load_for_inference(path, device):
    state = checkpoint.load(path)
    if not isinstance(state, dict) or state.get("model_name") not in MODELS:
        raise checkpoint.CheckpointError(f"{path!r} is not a numbanet training checkpoint")
    try:   # contents that do not fit their settings (edited, or another version's): one line, not a traceback
        task, model, _, _ = build(state["settings"])
        averaged = state.get("averaged_model")
        if averaged:  # trained with --ema: the averaged weights (AveragedModel's keys: module.*, n_averaged)
            model.load_state_dict({k[len("module."):]: v for k, v in averaged.items() if k.startswith("module.")})
        else:
            model.load_state_dict(state["model"])
    except (KeyError, ValueError, TypeError, AttributeError) as error:
        raise checkpoint.CheckpointError(f"checkpoint {path!r} does not fit a {state.get('model_name')} model "
                                         f"({type(error).__name__}: {error})") from None
    model.to(device).eval()
    return state, task, model


def _add_beam_width(parser):
    parser.add_argument("--beam-width", type=int, default=1, metavar="N",
                        help="crnn: decode by CTC prefix beam search keeping N prefixes (default 1: greedy)")


def _set_beam_width(task, state, beam_width):
    if beam_width < 1:
        raise UsageError(f"--beam-width must be at least 1, got {beam_width}")
    if beam_width != 1 and not hasattr(task, "beam_width"):
        raise UsageError(f"--beam-width applies to crnn checkpoints only, got a {state['model_name']} checkpoint")
    if hasattr(task, "beam_width"):
        task.beam_width = beam_width


def _evaluate(argv):
    parser = _Parser(prog="numbanet evaluate", description="Recompute the test metrics of a checkpoint.")
    parser.add_argument("checkpoint")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    _add_beam_width(parser)
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    state, task, model = _load_for_inference(args.checkpoint, device)
    _set_beam_width(task, state, args.beam_width)
    metrics = task.evaluate(model, task.load(train=False)["test"], device)
    print(json.dumps({f"test_{k}": v for k, v in metrics.items()}))
    return 0


def evaluate_main(argv):
    return _cli(_evaluate, argv)


def read_input(path):
    """A PNG (grey or colour, averaged to grey) or a .npy array of real numbers, as ink intensities in [0, 1] as
    the training data has them: values beyond 1 (8-bit 0-255, the digits' raw 0-16, any scale) are divided by
    their maximum, the same way for both formats."""
    if not os.path.exists(path):
        raise UsageError(f"input {path!r} does not exist")
    if not os.path.isfile(path):
        raise UsageError(f"input {path!r} is not a file")
    try:
        if path.lower().endswith(".npy"):
            image = np.load(path, allow_pickle=False)
            if image.dtype.kind not in "biuf":   # (complex values would lose their imaginary part silently)
                raise UsageError(f"{path}: expected an array of real numbers, got dtype {image.dtype}")
            image = image.astype(np.float32)
        else:
            import matplotlib.image
            image = matplotlib.image.imread(path).astype(np.float32)
            if image.ndim == 3:
                image = image[..., :3].mean(axis=2)
    except UsageError:
        raise
    except Exception as error:  # unreadable files of any kind
        raise UsageError(f"cannot read {path!r}: {type(error).__name__}: {error}") from None
    if image.size and np.all(np.isfinite(image)):   # (non-finite values are refused by the caller)
        if image.min() < 0.0:
            raise UsageError(f"{path}: expected non-negative ink intensities, got values from {image.min()}")
        if image.max() > 1.0:
            image = image / image.max()
    return image


def _predict(argv):
    parser = _Parser(prog="numbanet predict", description="Classify an image or read a digit strip.")
    parser.add_argument("checkpoint")
    parser.add_argument("input", help="a PNG or .npy file")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--invert", action="store_true", help="dark ink on a light background")
    _add_beam_width(parser)
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    state, task, model = _load_for_inference(args.checkpoint, device)
    _set_beam_width(task, state, args.beam_width)
    array = read_input(args.input)
    if args.invert:
        array = 1.0 - array
    array = np.squeeze(array)
    if array.ndim != 2 or min(array.shape) < 1 or not np.all(np.isfinite(array)):
        raise UsageError(f"{args.input}: expected a 2-D grey image (or a (T, 2) sequence for the adding task) "
                         f"of finite values, got shape {array.shape}")
    try:
        prepared = task.prepare_input(array)
    except (ValueError, IndexError) as error:
        raise UsageError(f"{args.input}: {error}") from None
    print(task.describe_prediction(model, prepared, device))
    return 0


def predict_main(argv):
    return _cli(_predict, argv)
