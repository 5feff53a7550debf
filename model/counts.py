"""Action counts, the workload of a layer, and sparsity: what both accelerator models share.

A :class:`Counts` maps ``(component, action, bits)`` to how many times the action happens
(fractional counts are expected values under the sparsity model). Components:

- compute: ``spike_pe``, ``mult_pe``, ``adder``, ``lif``, ``affine``, ``optimizer``
- ``scratchpad`` (per-PE register files: accumulators, and the weight-chunk / partial-sum
  scratchpads of clusters 2/3; a count is one register access of ``bits``)
- ``glb.<buffer>`` (a global buffer; ``bits`` is its port width, a count is one access; a
  smaller ``bits``: a lane-enabled access of that many bits, e.g. one 8-bit lane)
- ``dram`` (``bits`` = 1: the count is bits moved)

Counts are never negative: :meth:`Counts.add` rejects negative, NaN or infinite values.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from ttsnn.sw.arch import ConvSpec, validate_schedule
from ttsnn.sw.cli_util import MissingFileError, UserError

__all__ = ["Counts", "PASSES", "CATEGORIES", "category", "PassResult", "LayerResult",
           "Sparsity", "Core", "layer_cores", "has_residual", "full_timesteps"]

PASSES = ("forward", "backward", "weight_update")
CATEGORIES = ("compute", "scratchpad", "global_buffers", "dram", "leakage")
_COMPUTE = {"spike_pe", "mult_pe", "adder", "lif", "affine", "optimizer"}

Key = tuple[str, str, int]


def category(component: str) -> str:
    """The report category of a component (compute, scratchpad, global_buffers, dram)."""
    if component in _COMPUTE:
        return "compute"
    if component == "scratchpad":
        return "scratchpad"
    if component.startswith("glb."):
        return "global_buffers"
    if component == "dram":
        return "dram"
    raise ValueError(f"unknown component {component!r}: not one of {sorted(_COMPUTE)}, "
                     f"'scratchpad', 'glb.<buffer>', 'dram'")


class Counts:
    """Non-negative action counts keyed by ``(component, action, bits)``."""

    def __init__(self, items: Mapping[Key, float] | None = None):
        self._d: dict[Key, float] = {}
        for k, v in (items or {}).items():
            self.add(*k, v)

    def add(self, component: str, action: str, bits: int, n: float) -> None:
        n = float(n)
        if not math.isfinite(n) or n < 0:
            raise ValueError(f"count of {component}.{action}/{bits} must be finite and >= 0, "
                             f"got {n}")
        category(component)  # validates the component name
        if n:
            key = (component, action, int(bits))
            self._d[key] = self._d.get(key, 0.0) + n

    def update(self, other: "Counts", factor: float = 1.0) -> None:
        if factor < 0:
            raise ValueError(f"factor must be >= 0, got {factor}")
        for k, v in other.items():
            self.add(*k, v * factor)

    def __add__(self, other: "Counts") -> "Counts":
        out = Counts(self._d)
        out.update(other)
        return out

    def scaled(self, factor: float) -> "Counts":
        out = Counts()
        out.update(self, factor)
        return out

    def items(self) -> Iterator[tuple[Key, float]]:
        return iter(sorted(self._d.items()))

    def get(self, component: str, action: str, bits: int) -> float:
        return self._d.get((component, action, int(bits)), 0.0)

    def total(self, component: str | None = None, action: str | None = None) -> float:
        return sum(v for (c, a, _), v in self._d.items()
                   if (component is None or c == component) and (action is None or a == action))

    def bits(self, component: str) -> float:
        """Bits moved through a storage component (count x width)."""
        return sum(v * b for (c, _, b), v in self._d.items() if c == component)

    def __len__(self) -> int:
        return len(self._d)

    def to_list(self) -> list[dict]:
        return [{"component": c, "action": a, "bits": b, "count": v,
                 "bits_moved": v * b if c == "dram" or c.startswith("glb.") or c == "scratchpad" else None}
                for (c, a, b), v in self.items()]


@dataclass
class PassResult:
    """Counts and cycles of one pass of one layer."""
    counts: Counts = field(default_factory=Counts)
    cycles: float = 0.0
    busy: dict[str, float] = field(default_factory=dict)  # unit -> busy cycles

    def __post_init__(self) -> None:
        if self.cycles < 0:
            raise ValueError(f"cycles must be >= 0, got {self.cycles}")


@dataclass
class LayerResult:
    """All passes of one layer on one accelerator."""
    name: str
    kind: str
    mode: str
    passes: dict[str, PassResult]
    info: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Sparsity:
    """Spike sparsity (fraction of zero spikes) and membrane-gradient sparsity.

    ``spike``: default input-spike sparsity of every spiking layer (SATA's default 0.9).
    ``grad``: fraction of zero membrane gradients at a LIF (SATA's default du = 0.7).
    ``per_layer``: measured input-spike sparsity per layer name (overrides ``spike``).
    """
    spike: float = 0.9
    grad: float = 0.7
    per_layer: Mapping[str, float] = field(default_factory=dict)
    source: str = "defaults (SATA BPTT model: s = 0.9, du = 0.7)"

    def __post_init__(self) -> None:
        for what, v in (("spike", self.spike), ("grad", self.grad), *self.per_layer.items()):
            if not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 1.0:
                raise UserError(f"sparsity {what!r} must be a fraction in [0, 1], got {v!r}")

    def input_density(self, layer: str) -> float:
        """Fraction of input spikes that are 1 for ``layer``."""
        return 1.0 - float(self.per_layer.get(layer, self.spike))

    @property
    def grad_density(self) -> float:
        return 1.0 - self.grad

    @classmethod
    def from_json(cls, path: str | Path) -> "Sparsity":
        """Load a sparsity file written by ``python -m model sparsity`` (or by hand):
        ``{"spike": 0.9, "grad": 0.7, "per_layer": {"layers.0.0.conv1": 0.87, ...}}``."""
        p = Path(path)
        if not p.is_file():
            raise MissingFileError(f"sparsity file {str(p)!r} not found; write one with "
                                   f"`python -m model sparsity --checkpoint CKPT --out {p}`")
        try:
            d = json.loads(p.read_text())
        except json.JSONDecodeError as exc:
            raise UserError(f"sparsity file {p}: not valid JSON ({exc})") from None
        if not isinstance(d, dict):
            raise UserError(f"sparsity file {p}: expected a JSON object")
        unknown = set(d) - {"spike", "grad", "per_layer", "source", "note"}
        if unknown:
            raise UserError(f"sparsity file {p}: unknown keys {sorted(unknown)}; allowed: "
                            f"spike, grad, per_layer, source")
        return cls(spike=float(d.get("spike", 0.9)), grad=float(d.get("grad", 0.7)),
                   per_layer={str(k): float(v) for k, v in d.get("per_layer", {}).items()},
                   source=str(d.get("source", str(p))))


@dataclass(frozen=True)
class Core:
    """One sub-convolution of a layer at layer level (no tiling).

    ``positions``: output positions per timestep; ``steps``: timesteps it runs;
    ``operand``: 'spike' (binary input), 'act' (multi-bit), 'image' (multi-bit first layer).
    """
    name: str
    cin: int
    cout: int
    kh: int
    kw: int
    positions: int
    steps: int
    operand: str

    @property
    def macs(self) -> int:
        """Multiply-accumulates (dense, no sparsity) over all its timesteps."""
        return self.cin * self.cout * self.kh * self.kw * self.positions * self.steps

    @property
    def weights(self) -> int:
        return self.cin * self.cout * self.kh * self.kw


def full_timesteps(spec: ConvSpec, timesteps: int) -> int:
    """Timesteps on which G2/G3 run: all of them except HTT's reduced ones."""
    if spec.mode == "htt":
        return sum(validate_schedule(spec.schedule, timesteps))
    return timesteps


def has_residual(spec: ConvSpec) -> bool:
    """MS-ResNet adds the shortcut to the membrane input after each block's second conv."""
    return spec.membrane_shortcut


def layer_cores(spec: ConvSpec, timesteps: int) -> list[Core]:
    """The sub-convolutions of a layer (dense layers: one core; TT: G1..G4)."""
    if timesteps < 1:
        raise UserError(f"timesteps must be >= 1, got {timesteps}")
    ho, wo = spec.out_hw
    if spec.kind == "fc":
        return [Core("fc", spec.in_channels, spec.out_channels, 1, 1, 1, timesteps, "act")]
    if not spec.is_tt:
        k = spec.kernel
        operand = "image" if spec.kind == "conv1" else "spike"
        return [Core("conv", spec.in_channels, spec.out_channels, k, k, ho * wo, timesteps, operand)]
    if spec.stride != 1 and not spec.downsample:
        raise UserError(f"layer {spec.name}: the energy model supports the reference "
                        f"downsampling (chain at stride 1, then 2x2 max-pool, "
                        f"downsample='maxpool'), not strided G2/G3")
    r = spec.rank
    hi, wi = spec.in_hw
    area = hi * wi
    nf = full_timesteps(spec, timesteps)
    return [Core("G1", spec.in_channels, r, 1, 1, area, timesteps, "spike"),
            Core("G2", r, r, 3, 1, area, nf, "act"),
            Core("G3", r, r, 1, 3, area, nf, "act"),
            Core("G4", r, spec.out_channels, 1, 1, area, timesteps, "act")]


def network_cores(specs: Sequence[ConvSpec], timesteps: int) -> list[tuple[ConvSpec, list[Core]]]:
    return [(s, layer_cores(s, timesteps)) for s in specs]
