"""Cycle model of the backward datapath: one table per engine, beside the forward engines'
tables (gen/cyclemodel.py). The backward stages run one after the other, each a loop nest
issuing one step per cycle without stalls (the gradient buffer is private to the running
stage), so a stage's cycles follow from its descriptor: its steps plus its pipeline's drain.
``tests/gen/test_top_backward.py`` checks the model against the RTL's counters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from .stage_layout import StageKind, Taps

__all__ = ["StageCycles", "stage_cycles", "backward_cycles", "DRAIN", "CONTROL_CYCLES"]

#: Cycles after a stage's last issue until its engine is idle: mat-vec issue -> a -> b (the
#: write), outer product issue -> a (the accumulator's write follows in the idle time; none
#: when the last timestep is a skipped one), LIF issue -> a.
DRAIN = {StageKind.MATVEC: 2, StageKind.OUTER: 1, StageKind.LIF: 1}
#: Cycles of the top level's control per stage (``busy`` falls the cycle after the engines).
CONTROL_CYCLES = 1
_TAPS = {Taps.POINT: 1, Taps.ROWS: 3, Taps.COLS: 3, Taps.ROWS_COLS: 6}


@dataclass(frozen=True)
class StageCycles:
    name: str
    kind: StageKind
    steps: int           # issue cycles (the engine's busy counter)
    macs: int            # PE-array multiply-accumulates (mat-vec) or accumulator updates (outer), active lanes
    cycles: int          # steps + drain + control


def stage_cycles(name: str, f: Mapping[str, int], lanes: int) -> StageCycles:
    """The cycles of one stage descriptor ``f`` (``gen.backward.stage_layout`` fields)."""
    kind = StageKind(f["kind"])
    T, rows, cols = f["timesteps"], f["rows"], f["cols"]
    out, inner = f["out_channels"], f["in_channels"]
    groups = -(-out // lanes)
    full = [not f["use_schedule"] or bool((f["schedule"] >> t) & 1) for t in range(T)]
    if kind == StageKind.LIF:
        steps = rows * cols * groups * T * (4 if f["pool"] else 1)
        macs = rows * cols * out * T
    else:
        taps = [1 if (kind == StageKind.MATVEC and not full[t]) else _TAPS[Taps(f["taps"])] for t in range(T)]
        steps = sum(rows * cols * groups * taps[t] * inner for t in range(T))
        counted = [t for t in range(T) if kind == StageKind.MATVEC or full[t]]
        macs = sum(rows * cols * out * taps[t] * inner for t in counted)
    drain = DRAIN[kind]
    if kind == StageKind.OUTER and not full[-1] and any(full):
        drain = 0       # the last timestep is skipped: nothing follows its last issue
    return StageCycles(name, kind, steps, macs, steps + drain + CONTROL_CYCLES)


def backward_cycles(stages: Sequence[tuple[str, Mapping[str, int]]], lanes: int) -> list[StageCycles]:
    """Every stage of a backward tile (``BackwardTileProgram.stages``)."""
    return [stage_cycles(n, f, lanes) for n, f in stages]
