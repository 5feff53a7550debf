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

__all__ = ["TileRun", "layer_runs", "run_stages", "flat_rows", "chunk_sizes", "ring_sides", "ring_skips",
           "skipped_ring_words", "RING_STAGES", "FLAT_ROW_PAIRS"]

#: The stages that compute a tensor over the tile's ring besides its own pixels (the recomputed
#: ``q1``, STT's ``q2`` over the ring columns, G4^T's ``g_q23``, STT's G3^T ``g_q2`` over the
#: ring rows): stage -> (input, output tensor (by name: overlaid tensors share bases), over the
#: ring rows, over the ring columns). Each stage's block is its output tensor.
RING_STAGES = {"q1": ("x", "q1", True, True), "q2": ("q1", "q2", False, True),
               "g_q23": ("g_a4", "g_q23", True, True), "g_q2": ("g_q23", "g_q2", True, False)}


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


def ring_sides(run: TileRun, layer: tuple[int, int] | None) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)``: 1 where the ring row above / below or the ring column
    left / right of the run's pixels lies outside the layer (``layer``: its pre-pool rows and
    columns; None: unknown, a tile alone whose ring may hold data)."""
    if layer is None:
        return 0, 0, 0, 0
    H, W = layer
    return (int(run.row0 == 0), int(run.row0 + run.height == H), int(run.col0 == 0),
            int(run.col0 + run.width == W))


def ring_skips(plan, run: TileRun, layer: tuple[int, int] | None) -> dict[str, tuple[int, int, int, int]]:
    """Per stage of :data:`RING_STAGES` the ring rows and columns ``(top, bottom, left, right)``
    it skips: those outside the layer (:func:`ring_sides`) on the sides it computes over. There
    its output is zero (the layer's zero padding: no spike, no gradient, and every
    re-quantisation maps a zero sum to zero), so the stage's block starts a row or column later
    or ends one earlier, its bases moved, its output tensor's strides unchanged (the stage
    fields ``out_rows``, ``out_cols``), and the host writes those words as zeros
    (:func:`skipped_ring_words`). A stage with two pixels per pass (``pack``) keeps an even
    number of columns: it skips a column only where both are outside."""
    top, bottom, left, right = ring_sides(run, layer)
    out = {}
    for name, f in plan.stages:
        if name not in RING_STAGES:
            continue
        _, _, rows, cols = RING_STAGES[name]
        l, r = (left, right) if cols else (0, 0)
        if f.get("pack") and (l + r) % 2:
            l = r = 0
        skip = (top, bottom, l, r) if rows else (0, 0, l, r)
        if any(skip):
            out[name] = skip
    return out


def skipped_ring_words(plan, run: TileRun, layer: tuple[int, int] | None) -> dict[str, list[tuple[int, int]]]:
    """Per stage of :data:`RING_STAGES` the ``(first word, words)`` runs of its output that
    ``run`` skips (:func:`ring_skips`): the host writes them as zeros before the stage."""
    out: dict[str, list[tuple[int, int]]] = {}
    for name, (top, bottom, left, right) in ring_skips(plan, run, layer).items():
        t = plan.tensors[RING_STAGES[name][1]]
        runs: list[tuple[int, int]] = []
        for ts in range(run.timesteps):
            for y in range(t.rows):
                inside = top <= y < t.rows - bottom
                for x in range(t.cols):
                    if inside and left <= x < t.cols - right:
                        continue
                    word = ((ts * t.rows + y) * t.cols + x) * t.groups + t.base
                    if runs and runs[-1][0] + runs[-1][1] == word:
                        runs[-1] = (runs[-1][0], runs[-1][1] + t.groups)
                    else:
                        runs.append((word, t.groups))
        out[name] = runs
    return out


def run_stages(plan, run: TileRun, layer: tuple[int, int] | None = None) -> list[tuple[str, dict]]:
    """The stages ``run`` executes from those its plan (``BackwardTileProgram``) made (planned
    with ``carry`` when the tile is chunked): a program after the layer's first adds to the
    weight-gradient sums (``acc_clear = 0``) but for the streamed stages, whose sums the host
    reads in every program (``plan.streamed_sums``); the LIF stage loads / stores the carry only
    where a chunk follows or precedes; on the layer's border the ring stages skip the ring rows
    and columns outside it (:func:`ring_skips`; ``layer``: the layer's pre-pool rows and
    columns)."""
    skips = ring_skips(plan, run, layer)
    out = []
    for name, f in plan.stages:
        if f["kind"] == StageKind.OUTER and not run.first and name not in plan.streamed_sums:
            f = {**f, "acc_clear": 0}
        elif f["kind"] == StageKind.LIF and run.chunked:
            f = {**f, "carry_in": int(run.carry_in), "carry_out": int(run.carry_out)}
        elif name in skips:
            top, bottom, left, right = skips[name]
            src, dst = (plan.tensors[n] for n in RING_STAGES[name][:2])
            assert (f["in_base"], f["out_base"]) == (src.base, dst.base), name
            assert (f["out_rows"], f["out_cols"]) == (dst.rows, dst.cols), name
            f = {**f, "rows": f["rows"] - top - bottom, "cols": f["cols"] - left - right,
                 "in_base": f["in_base"] + (top * src.cols + left) * src.groups,
                 "out_base": f["out_base"] + (top * dst.cols + left) * dst.groups}
        out.append((name, flat_rows(f)))
    return out


#: a block runs as one row only below this many (pixel, channel) pairs (of all its ``O``
#: channels: at least the pairs of the engine's straddled or packed lane channels)
FLAT_ROW_PAIRS = 1 << 16


def flat_rows(f: dict) -> dict:
    """A packed or straddled core stage whose block spans whole rows of its tensors (its
    columns those of its input tensor and of its output or gradient tensor) run as one row of
    ``rows x cols`` pixels: the block's pixels are consecutive words of each tensor (the
    addresses are linear in the row and column, ``y * cols + x`` the same word), so its passes
    of pixels span the block's rows (a row's last pass shares its lanes with the next row's
    first pixels). Other stages unchanged, and a block whose one row would hold
    :data:`FLAT_ROW_PAIRS` or more (pixel, channel) pairs (the core-stage engine counts a
    row's pairs in 16 bits: ``row_pairs``, ``pass_rem``)."""
    if f["kind"] not in (StageKind.MATVEC, StageKind.OUTER) or f["rows"] < 2:
        return f
    if not (f.get("pack") or f.get("straddle")):
        return f
    other = f["out_cols"] if f["kind"] == StageKind.MATVEC else f["g_cols"]
    if not f["cols"] == f["in_cols"] == other or f["rows"] * f["cols"] * f["out_channels"] >= FLAT_ROW_PAIRS:
        return f
    return {**f, "rows": 1, "cols": f["rows"] * f["cols"]}
