"""Files of the plug-in: a converted model is saved as its *recipe* (how to build the host model
and convert it) plus its state dict; loading rebuilds and reconverts, then loads the weights.
Nothing in a file is ever run: it is read with ``torch.load(weights_only=True)``, and the only
code executed is the model factory that the recipe names, which must be importable and is the
one the user named on the command line when the file was written.

A host model comes from either a project checkpoint (``python -m sw train``; an MS-ResNet whose
dense 3x3 convs are plain ``nn.Conv2d`` on folded ``[T*B, ...]`` inputs) or a factory
``module:function`` with JSON keyword arguments and an optional state dict.
"""

from __future__ import annotations

import importlib
import io
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ttsnn.sw.fileio import atomic_write_bytes
from ttsnn.sw.cli_util import MissingFileError, UserError

__all__ = ["FORMAT", "build_host", "load_state_dict_file", "save_converted", "load_converted"]

FORMAT = "ttsnn-plugin-converted"
VERSION = 1


def _factory(spec: str):
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise UserError(f"--model {spec!r}: expected MODULE:FUNCTION, e.g. ttsnn.sw.plugin.examples:spikingjelly_net")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise UserError(f"--model {spec!r}: cannot import {module_name!r} ({exc}); is it installed / "
                        "on PYTHONPATH?") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise UserError(f"--model {spec!r}: {module_name} has no callable {attr!r}")
    return fn


def _load_tensors_only(path: Path, what: str, unreadable: str) -> Any:
    """``torch.load`` of ``path`` allowing only tensors and plain containers (nothing in the
    file can run code); one clear line when it is missing or unreadable."""
    if not path.is_file():
        raise MissingFileError(f"{what} not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"{path}: {unreadable} ({type(exc).__name__}); it was not unpickled beyond tensors "
                        "and plain containers, since that could run code") from None


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict saved with ``torch.save`` (raw, or under a 'state_dict' key), read safely."""
    path = Path(path)
    data = _load_tensors_only(path, "weights file", "cannot be read as a torch state dict")
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise UserError(f"{path}: expected a state dict (names -> tensors), got {type(data).__name__}")
    return data


def build_host(recipe: dict[str, Any]) -> nn.Module:
    """The unconverted host model of ``recipe``: ``{'checkpoint_hparams': ...}`` (an MS-ResNet of
    this kit) or ``{'model': 'module:function', 'model_kwargs': {...}}``."""
    if "checkpoint_hparams" in recipe:
        from ttsnn.sw.checkpoint import build_model

        return build_model(recipe["checkpoint_hparams"])
    kwargs = recipe.get("model_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise UserError(f"model keyword arguments must be a JSON object, got {kwargs!r}")
    try:
        model = _factory(recipe["model"])(**kwargs)
    except TypeError as exc:
        raise UserError(f"--model {recipe['model']}: bad keyword arguments {kwargs}: {exc}") from None
    if not isinstance(model, nn.Module):
        raise UserError(f"--model {recipe['model']} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def save_converted(path: str | Path, model: nn.Module, recipe: dict[str, Any],
                   conversion: dict[str, Any], report: list[dict]) -> Path:
    """Write the converted ``model`` with the recipe and conversion that rebuild it."""
    payload = {"format": FORMAT, "version": VERSION, "recipe": recipe, "conversion": conversion,
               "report": report, "state_dict": model.state_dict()}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return atomic_write_bytes(path, buffer.getbuffer())


def load_converted(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model written by :func:`save_converted`; returns ``(model, payload without weights)``."""
    from ttsnn.sw.plugin.convert import convert

    path = Path(path)
    data = _load_tensors_only(path, "converted model", "cannot be read: truncated, corrupt or not a torch file")
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != VERSION:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise UserError(f"{path}: not a converted model of `python -m sw convert` (format {found!r})")
    conv = data["conversion"]
    host = build_host(data["recipe"])
    model, _ = convert(host, conv["mode"], dict(conv["ranks"]), include=list(conv["ranks"]), layout=conv["layout"],
                       timesteps=conv["timesteps"], schedule=conv["schedule"], init="random", inplace=True)
    try:
        model.load_state_dict(data["state_dict"])
    except RuntimeError as exc:
        raise UserError(f"{path}: weights do not fit the rebuilt model: {str(exc).splitlines()[0]}") from None
    meta = {k: v for k, v in data.items() if k != "state_dict"}
    return model, meta
