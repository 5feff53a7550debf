"""How a layer's backward pass is cut into tile runs: spatial tiles, and each tile's timesteps
in chunks (docs/architecture.md, "Backward datapath").

Every stage but the LIF gradient treats the timesteps independently (the weight-gradient
sums add over them like over pixels), and the LIF gradient runs backward in time. So a tile
may run as several programs of ``k`` timesteps each, the latest chunk first: the LIF-gradient
engine stores each neuron's ``d`` after a chunk's first timestep (``carry_out``) and the next
chunk's program loads it (``carry_in``) from a tensor that every chunk's program places at
the same words. A chunk's tensors hold ``k`` timesteps instead of ``T``, so the same gradient
buffer takes a larger tile, whose halo ring is a smaller share of its work.

One function lists the runs (:func:`layer_runs`) and one turns a run's planned stages into the
stages it runs (:func:`run_stages`): the host driver, the cycle model's layer tables and the
energy model's counters all use these two.
"""

from __future__ import annotations

from dataclasses import dataclass

from ttsnn.sw.cli_util import UserError

from .stage_layout import StageKind

__all__ = ["TileRun", "layer_runs", "run_stages", "chunk_sizes", "border_rows", "skipped_ring_rows",
           "RING_ROW_STAGES"]

#: The stages that compute a tensor over the tile's ring rows besides its own rows (the
#: recomputed ``q1``, G4^T's ``g_q23``, STT's G3^T ``g_q2``): stage -> (input, output) tensor
#: (by name: overlaid tensors share bases)
RING_ROW_STAGES = {"q1": ("x", "q1"), "g_q23": ("g_a4", "g_q23"), "g_q2": ("g_q23", "g_q2")}


@dataclass(frozen=True)
class TileRun:
    """One program of a layer's backward pass: pre-pool rows ``row0 .. row0 + height - 1``,
    columns ``col0 .. col0 + width - 1``, timesteps ``t0 .. t0 + timesteps - 1``. ``first``:
    the layer's first program (writes the stage weights, starts the weight-gradient sums);
    ``last``: its last (reads the sums); ``carry_in``/``carry_out``: the tile has a later /
    an earlier chunk (:data:`gen.backward.stage_layout.STAGE_FIELDS`)."""
    row0: int
    col0: int
    height: int
    width: int
    t0: int
    timesteps: int
    first: bool
    last: bool
    carry_in: bool
    carry_out: bool

    @property
    def chunked(self) -> bool:
        return self.carry_in or self.carry_out


def chunk_sizes(T: int) -> list[int]:
    """The chunk lengths a tile of ``T`` timesteps may use: the divisors of ``T`` (every chunk
    of a tile has the same tensors, so its programs place them alike), longest first."""
    return [k for k in range(T, 0, -1) if T % k == 0]


def layer_runs(H: int, W: int, T: int, h: int, w: int, k: int) -> list[TileRun]:
    """The runs of a ``H x W`` layer of ``T`` timesteps in tiles of ``h x w`` (edge tiles
    smaller) and chunks of ``k`` timesteps (``k`` divides ``T``): tiles row by row, each
    tile's chunks from the latest timesteps to the earliest."""
    if k < 1 or T % k:
        raise UserError(f"a chunk of {k} timesteps does not divide T = {T}")
    origins = [(r0, c0) for r0 in range(0, H, h) for c0 in range(0, W, w)]
    starts = list(range(T - k, -1, -k))
    n = len(origins) * len(starts)
    runs = []
    for i, (r0, c0) in enumerate(origins):
        for j, t0 in enumerate(starts):
            index = i * len(starts) + j
            runs.append(TileRun(r0, c0, min(h, H - r0), min(w, W - c0), t0, k, index == 0, index == n - 1,
                                carry_in=j > 0, carry_out=j < len(starts) - 1))
    return runs


def border_rows(run: TileRun, layer_rows: int | None) -> tuple[int, int]:
    """``(top, bottom)``: 1 where the ring row above / below the run's rows lies outside the
    layer (``layer_rows`` pre-pool rows; None: unknown) and the run holds one timestep. There
    the tensors of :data:`RING_ROW_STAGES` are zero (the layer's zero padding: no spike, no
    gradient, and every re-quantisation maps a zero sum to zero), so the run's stages skip that
    row and the host writes its words as zeros (:func:`skipped_ring_rows`). With one timestep a
    tensor's rows are its only stride above the columns, so a stage's block can start a row
    later by moving its bases alone; with more, the timestep stride would change too."""
    if layer_rows is None or run.timesteps != 1:
        return 0, 0
    return int(run.row0 == 0), int(run.row0 + run.height == layer_rows)


def _row_words(tensor) -> int:
    return tensor.cols * tensor.groups


def skipped_ring_rows(plan, run: TileRun, layer_rows: int | None) -> dict[str, list[tuple[int, int]]]:
    """Per stage of :data:`RING_ROW_STAGES` the ``(first word, words)`` of its output's ring
    rows that ``run`` skips (:func:`border_rows`): the host writes them as zeros before it."""
    top, bottom = border_rows(run, layer_rows)
    out: dict[str, list[tuple[int, int]]] = {}
    for name, _ in plan.stages:
        if name in RING_ROW_STAGES and (top or bottom):
            t = plan.tensors[RING_ROW_STAGES[name][1]]
            n = _row_words(t)
            out[name] = [(t.base, n)] * top + [(t.base + (t.rows - 1) * n, n)] * bottom
    return out


def run_stages(plan, run: TileRun, layer_rows: int | None = None) -> list[tuple[str, dict]]:
    """The stages ``run`` executes from those its plan (``BackwardTileProgram``) made (planned
    with ``carry`` when the tile is chunked): a program after the layer's first adds to the
    weight-gradient sums (``acc_clear = 0``) but for the streamed stages, whose sums the host
    reads in every program (``plan.streamed_sums``); the LIF stage loads / stores the carry only
    where a chunk follows or precedes; on the layer's border a one-timestep run skips the
    ring rows outside it (:func:`border_rows`; ``layer_rows``: the layer's pre-pool rows)."""
    top, bottom = border_rows(run, layer_rows)
    out = []
    for name, f in plan.stages:
        if f["kind"] == StageKind.OUTER and not run.first and name not in plan.streamed_sums:
            f = {**f, "acc_clear": 0}
        elif f["kind"] == StageKind.LIF and run.chunked:
            f = {**f, "carry_in": int(run.carry_in), "carry_out": int(run.carry_out)}
        elif name in RING_ROW_STAGES and (top or bottom):
            src, dst = (plan.tensors[n] for n in RING_ROW_STAGES[name])
            assert (f["in_base"], f["out_base"]) == (src.base, dst.base), name
            f = {**f, "rows": f["rows"] - top - bottom, "in_base": f["in_base"] + top * _row_words(src),
                 "out_base": f["out_base"] + top * _row_words(dst)}
        out.append((name, f))
    return out
