"""Parameter and FLOP counts of MS-ResNets, per layer and in total, dense and TT.

Counted from the layer list (:func:`sw.arch.network_specs`), no torch needed:

- parameters: conv weights (TT: ``r*(Cin + Cout) + 6*r^2`` per conv) + classifier weight and
  bias; BatchNorm excluded, as the paper counts.
- FLOPs: multiply-accumulates of every conv and of the classifier, per timestep, times T.
  TT convs: ``G1 + G2 + G3 + G4`` MACs (STT and PTT alike; PTT's sum and ``/2`` are not
  counted); HTT reduced timesteps count G1 + G4 only. With the reference downsampling
  ('maxpool') a stride-2 TT conv runs its chain at the input resolution; with 'stride' G2/G3/G4
  run at the output resolution (details in :mod:`sw.arch` and docs/counting.md).

These reproduce the paper's dense figures exactly: MS-ResNet18 CIFAR10 (3x32x32, T=4):
11,164,362 params, 2,221,690,880 FLOPs; MS-ResNet34 N-Caltech101 (2x48x48, 101 classes, T=6):
21,311,205 params, 15,644,212,224 FLOPs; with the published ranks 2,671,817 params (2.67 M).
The paper's TT FLOPs (1.69 G) lie between this convention with 'maxpool' (1.966 G) and with
'stride' (1.742 G); see docs/counting.md.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from ttsnn.sw.arch import ConvSpec, network_specs, parse_input_size
from ttsnn.sw.cli_util import UserError

__all__ = ["layer_table", "totals", "network_stats", "parse_input_shape", "torch_param_count"]


def layer_table(specs: Sequence[ConvSpec], timesteps: int) -> list[dict[str, Any]]:
    """One row per layer: its shape, mode, rank, params and FLOPs, next to its dense version."""
    rows = []
    for s in specs:
        dense = s.dense()
        rows.append({
            "name": s.name, "kind": s.kind, "mode": s.mode, "rank": s.rank,
            "in_channels": s.in_channels, "out_channels": s.out_channels, "kernel": s.kernel,
            "stride": s.stride, "in_hw": list(s.in_hw), "out_hw": list(s.out_hw),
            "downsample": s.downsample,
            "params": s.params(), "flops": s.macs(timesteps),
            "dense_params": dense.params(), "dense_flops": dense.macs(timesteps),
        })
    return rows


def totals(specs: Sequence[ConvSpec], timesteps: int) -> dict[str, int]:
    """``{'params', 'flops'}`` of a layer list over ``timesteps``."""
    return {"params": sum(s.params() for s in specs),
            "flops": sum(s.macs(timesteps) for s in specs)}


def network_stats(arch: str, in_channels: int = 3, input_size: int | Sequence[int] | str = 32,
                  num_classes: int = 10, timesteps: int = 4, mode: str = "dense", ranks=None,
                  schedule: Iterable | None = None, downsample: str = "maxpool") -> dict[str, Any]:
    """Counts of a network and of its dense counterpart.

    Returns ``{'arch', 'mode', 'timesteps', 'input', 'num_classes', 'params', 'flops',
    'dense_params', 'dense_flops', 'param_ratio', 'flop_ratio', 'layers': [...]}``.
    """
    specs = network_specs(arch, in_channels, input_size, num_classes, mode, ranks, timesteps,
                          schedule, downsample)
    tot = totals(specs, timesteps)
    dense_tot = totals([s.dense() for s in specs], timesteps)
    h, w = parse_input_size(input_size)
    return {
        "arch": arch, "mode": mode, "timesteps": timesteps, "input": [in_channels, h, w],
        "num_classes": num_classes, "downsample": downsample,
        "ranks": [s.rank for s in specs if s.kind == "conv3x3"] if mode != "dense" else None,
        "schedule": (list(specs[1].schedule) if mode == "htt" else None),
        "params": tot["params"], "flops": tot["flops"],
        "dense_params": dense_tot["params"], "dense_flops": dense_tot["flops"],
        "param_ratio": tot["params"] / dense_tot["params"],
        "flop_ratio": tot["flops"] / dense_tot["flops"],
        "layers": layer_table(specs, timesteps),
    }


def parse_input_shape(text: str) -> tuple[int, int, int]:
    """``'2x48x48'`` -> (2, 48, 48) (C x H x W); ``'3x32'`` -> (3, 32, 32)."""
    parts = str(text).lower().strip().split("x")
    try:
        vals = [int(p) for p in parts]
    except ValueError:
        vals = []
    if len(vals) not in (2, 3) or min(vals, default=0) < 1:
        raise UserError(f"--input {text!r}: expected CxHxW (e.g. 2x48x48) or CxS (e.g. 3x32), "
                        f"positive integers")
    return (vals[0], vals[1], vals[1]) if len(vals) == 2 else (vals[0], vals[1], vals[2])


def torch_param_count(model) -> int:
    """Parameters of a torch model excluding BatchNorm (the counting convention above)."""
    import torch.nn as nn

    bn_params = {id(p) for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                 for p in m.parameters(recurse=False)}
    return sum(p.numel() for p in model.parameters() if id(p) not in bn_params)
