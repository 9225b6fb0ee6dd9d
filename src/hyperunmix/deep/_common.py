"""Pieces every deep method shares: device choice and weights-only checkpoint files."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from .._atomic import atomic_path
from ..errors import FileFormatError, InputError

#: The ``device`` value that picks CUDA when it is present, else the CPU.
AUTO_DEVICE = "auto"


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"`` -> the first CUDA device when one is present, else the CPU; ``None`` or
    ``"cpu"`` -> the CPU; ``"cuda"`` only when CUDA is really present."""
    if device is None:
        return torch.device("cpu")
    if isinstance(device, str) and device.lower() == AUTO_DEVICE:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("device='cuda' was asked for but no CUDA device is available")
    return device


def save_checkpoint(
    path: str | os.PathLike, state: dict[str, torch.Tensor], config: dict[str, Any]
) -> Path:
    """Write model ``state`` (tensors only) and a JSON-able ``config`` atomically.

    The file loads with ``torch.load(weights_only=True)``: no pickled Python objects.
    """
    path = Path(path)
    payload = {
        "state": {k: v.detach().cpu() for k, v in state.items()},
        "config": json.dumps(config),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint(
    path: str | os.PathLike, method: str
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint of ``method`` written by :func:`save_checkpoint`: ``(state, config)``.

    ``config["method"]`` must name ``method``: a model of another method is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        state, config = payload["state"], json.loads(payload["config"])
    except pickle.UnpicklingError as exc:
        # A pickle of Python objects (a whole model saved by torch.save, another program's
        # checkpoint). torch's message is no use here: several lines of advice to load it
        # with weights_only=False, i.e. to run its code, with terminal escape codes for bold.
        found = re.search(r"GLOBAL (\S+) was not an allowed global", str(exc))
        objects = f" ({found.group(1)})" if found else ""
        raise FileFormatError(
            f"{path} is not a hyperunmix checkpoint: it holds pickled "
            f"Python objects{objects}, which a weights-only load refuses "
            "to run"
        ) from exc
    except Exception as exc:  # corrupt file, missing keys
        raise FileFormatError(f"{path} is not a hyperunmix checkpoint: {exc}") from exc
    found = config.get("method") if isinstance(config, dict) else None
    if found != method:
        raise FileFormatError(f"{path} holds a {found!r} model, not {method}")
    return state, config


@contextlib.contextmanager
def rebuilding(path: str | os.PathLike, method: str) -> Iterator[None]:
    """Report an entry missing from, or not fitting, a checkpoint while a model is rebuilt
    from it as a :class:`FileFormatError` naming the file."""
    try:
        yield
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise FileFormatError(f"{path} is not a complete {method} checkpoint: {exc}") from exc
