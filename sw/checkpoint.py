"""Checkpoints: one file per training state, written atomically, validated on load.

A checkpoint is a dict saved with ``torch.save``::

    {"format": "ttsnn-kit/checkpoint", "version": 1,
     "model": {"hparams": {...}, "state_dict": {...}},   # ms_resnet(**hparams) rebuilds it
     "optimizer": ..., "scheduler": ..., "epoch": int (epochs completed),
     "rng": {"torch": ByteTensor, "numpy": {...}, "python": tuple},
     "config": {...} (the training configuration), "metrics": [per-epoch dicts],
     "extra": {...} (e.g. what decompose or export reports),
     "env": {"threads", "torch", "numpy", "python", "machine"} (what decides bit-exact resumption),
     "sha256": hex digest of everything above (see :func:`payload_digest`)}

Everything in it is a tensor or plain Python data, so it loads with ``weights_only=True``
(no code runs on load). Writes go to a temporary file in the same directory and are renamed
over the target (``os.replace``), so an interrupted write never leaves a half file under the
real name. A truncated file, a file that is not a checkpoint, or a checkpoint of another
format version gives a ``ValueError`` that says so; so does a file whose content no longer
matches its ``sha256`` (bytes overwritten after it was written: torch's zip container does
not notice). A checkpoint written before checksums existed loads with a warning.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import platform
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ttsnn.sw.fileio import atomic_write_bytes, atomic_write_text  # atomic_write_text re-exported: model/ imports it from here
from ttsnn.sw.cli_util import MissingFileError, UserError

__all__ = ["FORMAT", "VERSION", "save_checkpoint", "load_checkpoint", "load_model", "build_model",
           "rng_state", "set_rng_state", "atomic_write_text", "payload_digest", "run_environment",
           "CheckpointWarning"]

FORMAT = "ttsnn-kit/checkpoint"
VERSION = 1


class CheckpointWarning(UserWarning):
    """A checkpoint loads, but something about it deserves attention (e.g. no checksum)."""


def run_environment() -> dict[str, Any]:
    """What decides whether a resumed run repeats an uninterrupted one bit for bit: the
    intra-op thread count (float sums are split differently), and the library versions."""
    return {"threads": torch.get_num_threads(), "torch": str(torch.__version__), "numpy": str(np.__version__),
            "python": platform.python_version(), "machine": platform.machine()}


def _feed(h, obj: Any) -> None:
    """Hash ``obj`` canonically: the same content gives the same bytes, whatever the dict
    order or list/tuple spelling after a save/load round trip."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, dict):
        h.update(b"D%d" % len(obj))
        for key in sorted(obj, key=lambda k: (type(k).__name__, repr(k))):
            _feed(h, key)
            _feed(h, obj[key])
    elif isinstance(obj, (list, tuple)):
        h.update(b"L%d" % len(obj))
        for item in obj:
            _feed(h, item)
    elif obj is None or isinstance(obj, (bool, int, float, str, bytes)):
        h.update(f"P{type(obj).__name__}:{obj!r}\0".encode())
    else:  # save_checkpoint only stores the types above; anything else is a bug here
        raise TypeError(f"payload_digest: unexpected {type(obj).__name__} in a checkpoint")


def payload_digest(payload: dict[str, Any]) -> str:
    """SHA-256 over every field of a checkpoint but ``sha256`` itself, tensors by their bytes."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in payload.items() if k != "sha256"})
    return h.hexdigest()


def rng_state() -> dict[str, Any]:
    """The torch, numpy and python global RNG states as checkpoint-safe data."""
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                      "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
            "python": random.getstate()}


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, *, optimizer=None, scheduler=None,
                    epoch: int = 0, config: dict | None = None, metrics: list | None = None,
                    extra: dict | None = None, with_rng: bool = True) -> Path:
    """Save ``model`` (which must carry ``.hparams``) and the training state atomically."""
    hparams = getattr(model, "hparams", None)
    if not isinstance(hparams, dict):
        raise ValueError("save_checkpoint: the model has no .hparams dict (build it with sw.resnet.ms_resnet)")
    payload = {
        "format": FORMAT, "version": VERSION,
        "model": {"hparams": dict(hparams), "state_dict": model.state_dict()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "epoch": int(epoch),
        "rng": rng_state() if with_rng else None,
        "config": config or {}, "metrics": list(metrics or []), "extra": extra or {},
        "env": run_environment(),
    }
    payload["sha256"] = payload_digest(payload)
    # serialised in memory, then written by Python: a full disk is an OSError naming the file
    # (torch writing to a path reports it as a C++ "unexpected pos" trace)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return atomic_write_bytes(path, buffer.getbuffer())


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load and validate a checkpoint written by :func:`save_checkpoint`."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError/UnpicklingError/EOFError on damage
        # torch's own text is not repeated: it advises weights_only=False, i.e. running
        # whatever code the file holds; a checkpoint of this kit never needs that
        if isinstance(exc, pickle.UnpicklingError):
            what = ("it is not a ttsnn-kit checkpoint (it holds Python objects other than "
                    "tensors and plain containers, or is in another pickle format) or it is "
                    "corrupt; it was not unpickled, since that could run code from the file")
        else:
            what = "the file is truncated, corrupt or not a torch file"
        raise UserError(f"{path}: cannot be read as a checkpoint ({type(exc).__name__}): {what}. "
                        "Use an intact checkpoint written by `python -m sw train/decompose/"
                        "export` (copy or re-create it); nothing was changed.") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise UserError(f"{path}: not a {FORMAT} checkpoint (format tag {found!r}); "
                        "it was not written by `python -m sw train/decompose/export`")
    if ckpt.get("version") != VERSION:
        raise UserError(f"{path}: checkpoint format version {ckpt.get('version')!r}, "
                        f"this code reads version {VERSION}")
    _verify_digest(path, ckpt)
    model = ckpt.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("hparams"), dict) or "state_dict" not in model:
        raise UserError(f"{path}: checkpoint has no model hparams/state_dict")
    return ckpt


def _verify_digest(path: Path, ckpt: dict[str, Any]) -> None:
    recorded = ckpt.get("sha256")
    if recorded is None:
        warnings.warn(f"{path}: checkpoint has no checksum (written before checksums existed); "
                      "its content cannot be verified", CheckpointWarning, stacklevel=3)
        return
    try:
        actual = payload_digest(ckpt)
    except TypeError:
        actual = None
    if actual != recorded:
        raise UserError(f"{path}: checkpoint is damaged: its content does not match the sha256 recorded "
                        "when it was written (bytes were changed on disk or in a copy). Use an intact "
                        "copy or re-create it; nothing was changed.")


def build_model(hparams: dict) -> torch.nn.Module:
    """Rebuild an MS-ResNet from its ``hparams`` (``ms_resnet(**hparams)``; a merged export,
    marked by ``merged_from``, is rebuilt as ``merge_to_dense`` of that TT model, with the
    weights still to be loaded)."""
    from ttsnn.sw.resnet import merge_to_dense, ms_resnet

    kwargs = {k: v for k, v in hparams.items() if k != "merged_from"}
    try:
        model = ms_resnet(**kwargs)
    except TypeError as exc:
        raise UserError(f"checkpoint hparams {sorted(hparams)} do not match sw.resnet.ms_resnet: {exc}") from None
    return merge_to_dense(model) if "merged_from" in hparams else model


def load_model(path: str | os.PathLike) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the model of a checkpoint with its weights loaded (eval mode).

    Returns ``(model, meta)``; ``meta`` is the checkpoint without the state dicts
    (hparams, epoch, config, metrics, extra).
    """
    ckpt = load_checkpoint(path)
    model = build_model(ckpt["model"]["hparams"])
    try:
        model.load_state_dict(ckpt["model"]["state_dict"])
    except RuntimeError as exc:
        raise UserError(f"{path}: weights do not fit the model its hparams describe: "
                        f"{str(exc).splitlines()[0]}") from None
    model.eval()
    meta = {k: v for k, v in ckpt.items() if k not in ("optimizer", "scheduler", "rng")}
    meta["model"] = {"hparams": ckpt["model"]["hparams"]}
    return model, meta
