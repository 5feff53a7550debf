"""Mismatch reports: where the RTL and the golden model disagree.

Coordinates are those of the layer: ``channel`` is the output channel of the layer (the tile's
output-channel group offset added), ``row``/``col`` the output pixel of the layer (after
pooling), ``t`` the timestep; ``tile`` is the index in the driver's tile plan. A membrane
mismatch at the first timestep with a spike mismatch later usually means the datapath is
wrong; a spike-only mismatch with equal membranes would point at the threshold compare.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Mismatch", "MismatchReport"]


@dataclass(frozen=True)
class Mismatch:
    case: str
    tile: int
    what: str          # 'membrane' or 'spike'
    t: int
    channel: int
    row: int
    col: int
    expected: int
    got: int

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass
class MismatchReport:
    """Running comparison of RTL outputs with golden ones, tile by tile."""
    case: str
    max_listed: int = 10
    compared: int = 0              # neuron-timesteps compared (each has a spike and a membrane)
    mismatches: int = 0            # neuron-timesteps where the spike or the membrane differs
    spike_mismatches: int = 0
    membrane_mismatches: int = 0
    tiles: int = 0
    failing_tiles: list[int] = field(default_factory=list)
    first: list[Mismatch] = field(default_factory=list)

    @property
    def match(self) -> bool:
        return self.compared > 0 and self.mismatches == 0

    def add_tile(self, tile: int, out0: int, row0: int, col0: int, expected_spikes: np.ndarray,
                 expected_membrane: np.ndarray, got_spikes: np.ndarray,
                 got_membrane: np.ndarray) -> int:
        """Compare one tile's ``[T, C, Ho, Wo]`` outputs; ``out0, row0, col0`` place it in the
        layer (output coordinates). Returns the number of differing neuron-timesteps."""
        es, em = np.asarray(expected_spikes), np.asarray(expected_membrane)
        gs, gm = np.asarray(got_spikes), np.asarray(got_membrane)
        if es.shape != gs.shape or em.shape != gm.shape:
            raise ValueError(f"tile {tile}: RTL output shape {gs.shape}/{gm.shape} differs from "
                             f"golden {es.shape}/{em.shape}")
        self.tiles += 1
        self.compared += es.size
        ds = es.astype(np.int64) != gs.astype(np.int64)
        dm = em.astype(np.int64) != gm.astype(np.int64)
        self.spike_mismatches += int(ds.sum())
        self.membrane_mismatches += int(dm.sum())
        either = ds | dm
        n = int(either.sum())
        self.mismatches += n
        if n:
            self.failing_tiles.append(tile)
            for t, c, y, x in np.argwhere(either):
                if len(self.first) >= self.max_listed:
                    break
                what = "membrane" if dm[t, c, y, x] else "spike"
                exp = em[t, c, y, x] if what == "membrane" else es[t, c, y, x]
                got = gm[t, c, y, x] if what == "membrane" else gs[t, c, y, x]
                self.first.append(Mismatch(self.case, tile, what, int(t), int(out0 + c),
                                           int(row0 + y), int(col0 + x), int(exp), int(got)))
        return n

    def to_dict(self) -> dict[str, Any]:
        return {"case": self.case, "match": self.match, "mismatches": self.mismatches,
                "spike_mismatches": self.spike_mismatches,
                "membrane_mismatches": self.membrane_mismatches, "compared": self.compared,
                "tiles": self.tiles, "failing_tiles": list(self.failing_tiles),
                "first": [m.to_dict() for m in self.first]}

    def format(self) -> str:
        if self.match:
            return (f"{self.case}: bit-exact ({self.compared} neuron-timesteps in "
                    f"{self.tiles} tiles)")
        lines = [f"{self.case}: {self.mismatches} of {self.compared} neuron-timesteps differ "
                 f"({self.membrane_mismatches} membrane, {self.spike_mismatches} spike) in "
                 f"{len(self.failing_tiles)} of {self.tiles} tiles "
                 f"(failing tiles: {self.failing_tiles[:12]}{' ...' if len(self.failing_tiles) > 12 else ''})",
                 f"  first {len(self.first)} (tile, timestep, channel, row, column; expected = golden model):",
                 f"  {'tile':>4} {'t':>2} {'ch':>4} {'row':>4} {'col':>4} {'what':<8} {'expected':>9} {'got':>9}"]
        for m in self.first:
            lines.append(f"  {m.tile:>4} {m.t:>2} {m.channel:>4} {m.row:>4} {m.col:>4} {m.what:<8} "
                         f"{m.expected:>9} {m.got:>9}")
        return "\n".join(lines)
