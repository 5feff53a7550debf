"""Speed benchmark against an established simulator: the same Diehl & Cook network on the same
images, in ``sw.tinysnn`` and in Brian2 (``peer_brian2.py``, run by the benchmark-only virtual
environment's Python). A benchmark command (``python -m sw tinysnn bench-peer``), not a test.

Both simulators get the same constants, the same initial weights and the same training images
in the same order; each image is labelled and predicted with the same code
(:mod:`sw.tinysnn.labels`) from each simulator's own spike counts. Time per training image is
the CPU time of the training presentations alone (the single-threaded process's
``time.process_time``: the fair figure on a shared machine) and the wall time beside it; the
peer's first image (Brian2 generates its code then) is reported apart from the mean of the others.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import tempfile
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ttsnn.sw.tinysnn import labels, network
from ttsnn.sw.tinysnn.config import SNNConfig
from ttsnn.sw.tinysnn.data import ImageSet
from ttsnn.sw.cli_util import MissingFileError, UserError

__all__ = ["PEER_SCRIPT", "DEFAULT_PEER_PYTHON", "bench_peer"]

PEER_SCRIPT = Path(__file__).with_name("peer_brian2.py")
DEFAULT_PEER_PYTHON = "build/brian2-venv/bin/python"
PEER_TARGETS = ("numpy", "cython")


def _accuracy(label_counts: torch.Tensor, train: ImageSet, test_counts: torch.Tensor, test: ImageSet) -> float:
    assignments = labels.assign_labels(label_counts, train.labels, train.num_classes)
    return labels.accuracy(labels.predict(test_counts, assignments, test.num_classes), test.labels)


def _ours(cfg: SNNConfig, train: ImageSet, test: ImageSet, progress: bool) -> dict[str, Any]:
    from ttsnn.sw.tinysnn.experiment import evaluate, train_model

    model = train_model(cfg, train, progress=progress, desc="sw.tinysnn baseline")
    res = evaluate(model, train, test)
    n = max(model.train_ops.images, 1)
    return {"simulator": "sw.tinysnn (PyTorch, this project)", "accuracy": res["accuracy"],
            "train_cpu_s_per_image": model.train_cpu_seconds / n, "train_wall_s_per_image": model.train_seconds / n,
            "torch": torch.__version__, "threads": torch.get_num_threads()}


def _peer(cfg: SNNConfig, train: ImageSet, test: ImageSet, peer_python: str, target: str,
          timeout_s: float) -> dict[str, Any]:
    if not Path(peer_python).is_file():
        raise MissingFileError(f"the peer's Python {peer_python!r} is missing; build the benchmark-only "
                               f"environment with `make brian2-venv` (Brian2 2.9.0, numpy < 2)")
    if target not in PEER_TARGETS:
        raise UserError(f"peer code-generation target must be one of {', '.join(PEER_TARGETS)}, got {target!r}")
    gen = torch.Generator().manual_seed(cfg.seed)
    w0 = network.initial_weights(cfg, gen).double().numpy()   # what train_model starts from
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(cfg.seed + 1))  # its order
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.npz", Path(tmp) / "out.json"
        np.savez(src, config=json.dumps(asdict(cfg)), target=target, w0=w0,
                 train_pixels=train.pixels[order].double().numpy(), test_pixels=test.pixels.double().numpy())
        proc = subprocess.run([peer_python, str(PEER_SCRIPT), str(src), str(dst)], capture_output=True,
                              text=True, timeout=timeout_s)
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
            raise RuntimeError(f"the Brian2 peer failed (exit {proc.returncode}):\n{tail}")
        out = json.loads(dst.read_text())
    label_counts = torch.zeros(len(train), cfg.n_neurons)
    label_counts[order] = torch.tensor(out["label_counts"], dtype=torch.float32)   # back to train's order
    acc = _accuracy(label_counts, train, torch.tensor(out["test_counts"], dtype=torch.float32), test)
    cpu, wall = out["train_cpu_seconds"], out["train_wall_seconds"]
    rest_cpu, rest_wall = (cpu[1:], wall[1:]) if len(cpu) > 1 else (cpu, wall)
    return {"simulator": f"Brian2 {out['brian2']} (runtime, {out['target']} code generation; numpy {out['numpy']})",
            "accuracy": acc, "train_cpu_s_per_image": statistics.fmean(rest_cpu),
            "train_wall_s_per_image": statistics.fmean(rest_wall), "first_image_cpu_s": cpu[0],
            "first_image_wall_s": wall[0], "build_seconds": out["build_seconds"]}


def bench_peer(cfg: SNNConfig, train: ImageSet, test: ImageSet, *, peer_python: str = DEFAULT_PEER_PYTHON,
               target: str = "numpy", timeout_s: float = 7200.0, progress: bool = False) -> dict[str, Any]:
    """Train the baseline on ``train`` in both simulators, label on ``train``, test on ``test``."""
    cfg = replace(cfg, variant="baseline").validate()
    ours = _ours(cfg, train, test, progress)
    peer = _peer(cfg, train, test, peer_python, target, timeout_s)
    return {"network": "Diehl & Cook baseline", "dataset": train.name, "train_images": len(train),
            "test_images": len(test), "neurons": cfg.n_neurons, "inputs": cfg.n_inputs, "t_present_ms": cfg.t_present,
            "ours": ours, "peer": peer,
            "speedup_cpu": peer["train_cpu_s_per_image"] / ours["train_cpu_s_per_image"],
            "speedup_wall": peer["train_wall_s_per_image"] / ours["train_wall_s_per_image"]}
