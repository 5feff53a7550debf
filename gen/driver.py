"""The software driver of the accelerator: tiling, host-interface encoding and decoding.

Pure Python + numpy (no Amaranth), shared by the amaranth.sim tests, the cocotb
co-simulation (cosim/) and the energy model (model/). It

* plans a layer as tiles (:func:`plan_layer`): spatial tiles whose input windows carry a
  one-pixel halo (zero outside the layer), and output-channel groups when Cout or the
  output buffers demand it;
* turns one tile into host-interface traffic (:meth:`Driver.program`): a list of
  ``(address, word)`` writes (descriptor, weights when they change, spikes, residual),
  the ``start`` write, and the addresses to read back (spikes, membranes, counters);
* decodes what was read (:meth:`TileProgram.decode`) and stitches tiles back into the
  layer's outputs (:class:`LayerOutputs`).

Every host word is counted (``TileProgram.words_in/words_out``): it is the DRAM traffic.
Addresses come from :func:`gen.hostmap.host_map` (the same map ``python -m gen`` writes to
the manifest), never from constants here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .config import HardwareConfig, ceil_div, config_from_dict, load_config
from .hostmap import HostMap, host_map

__all__ = ["Tile", "TilePlan", "TileProgram", "TileResult", "LayerOutputs", "Driver",
           "plan_layer", "load_manifest_config"]

MODE_CODES = {"stt": 0, "ptt": 1, "htt": 2}


@dataclass(frozen=True)
class Tile:
    """One pass of the datapath.

    ``row0, col0, height, width`` select output pixels of the layer at input resolution
    (before pooling); the input window is rows ``row0-1 .. row0+height`` and columns
    ``col0-1 .. col0+width`` of the layer (zero outside). ``out0, out_channels`` select the
    output-channel group. ``weights_change`` is True when the tile must (re)load the cores.
    """
    index: int
    row0: int
    col0: int
    height: int
    width: int
    out0: int
    out_channels: int
    in_channels: int
    rank: int
    timesteps: int
    pool: bool
    weights_change: bool
    zero_halo: tuple[bool, bool, bool, bool] = (False, False, False, False)

    @property
    def zero_halo_bits(self) -> int:
        """Descriptor field ``zero_halo``: bit 0 top, 1 bottom, 2 left, 3 right edge of the
        window lies outside the layer."""
        return sum(1 << i for i, z in enumerate(self.zero_halo) if z)

    @property
    def window_shape(self) -> tuple[int, int]:
        return self.height + 2, self.width + 2

    @property
    def out_shape(self) -> tuple[int, int]:
        """(Ho, Wo): output pixels after pooling."""
        return (self.height // 2, self.width // 2) if self.pool else (self.height, self.width)


@dataclass(frozen=True)
class TilePlan:
    """All tiles of one layer, in execution order (output-channel group outer, rows, columns)."""
    tiles: tuple[Tile, ...]
    timesteps: int
    in_channels: int
    out_channels: int
    rank: int
    height: int
    width: int
    pool: bool
    tile_height: int
    tile_width: int
    tile_out_channels: int

    def __len__(self) -> int:
        return len(self.tiles)

    def __iter__(self):
        return iter(self.tiles)


#: Candidates (best estimates) timed exactly by the planner.
EXACT_CANDIDATES = 8


def _fits(cfg: HardwareConfig, t: int, cin: int, cout_tile: int, h: int, w: int, pool: bool,
          residual: bool) -> bool:
    reg = cfg.regions
    cw = ceil_div(cin, cfg.spike_word_bits)
    if t * (h + 2) * (w + 2) * cw > reg["spike_in"].depth:
        return False
    ho, wo = (h // 2, w // 2) if pool else (h, w)
    out_words = t * ho * wo * ceil_div(cout_tile, cfg.lanes)
    if out_words > reg["membrane"].depth:
        return False
    if residual and out_words > reg["residual"].depth:
        return False
    return True


def _tile_grid(out_channels: int, hh: int, ww: int, cout_tile: int, th: int, tw: int):
    """The tiles of an ``out_channels x hh x ww`` output cut into ``cout_tile``-channel groups
    of ``th x tw`` pixels (edge tiles clipped), group by group, then row-major:
    ``(o0, r0, c0, cout, h, w, zero_halo)`` with ``zero_halo`` = (top, bottom, left, right)
    edges of the layer."""
    for o0 in range(0, out_channels, cout_tile):
        for r0 in range(0, hh, th):
            for c0 in range(0, ww, tw):
                h, w = min(th, hh - r0), min(tw, ww - c0)
                yield (o0, r0, c0, min(cout_tile, out_channels - o0), h, w,
                       (r0 == 0, r0 + h == hh, c0 == 0, c0 + w == ww))


def plan_layer(cfg: HardwareConfig, in_shape: Sequence[int], rank: int, out_channels: int,
               pool: bool = False, residual: bool = False,
               tile_hw: tuple[int, int] | None = None, mode: str = "ptt",
               schedule: Sequence[bool] | None = None) -> TilePlan:
    """Split a layer with input ``[T, Cin, H, W]`` into tiles that fit ``cfg``.

    Among the tile sizes and output-channel group sizes that fit the buffers and
    ``cfg.limits``, the one with the fewest estimated cycles (sum over tiles of the busiest
    engine's issue cycles plus the pipeline fill of 3 input rows and drain of 1 output row)
    ranks them and the exact cycle model (:func:`gen.cyclemodel.tile_timing`) picks the best
    of the first few (``schedule``: HTT's full timesteps, default all full); ``tile_hw`` forces the
    spatial size (the largest output-channel group that fits it is used).
    Raises ValueError naming the limit when the layer cannot run on ``cfg`` at all.
    """
    if len(in_shape) != 4:
        raise ValueError(f"in_shape: expected (T, Cin, H, W), got {tuple(in_shape)}")
    t, cin, hh, ww = (int(v) for v in in_shape)
    lim = cfg.limits
    for what, val, top in (("timesteps T", t, lim.max_timesteps), ("input channels", cin, lim.max_in_channels),
                           ("rank", rank, lim.max_rank)):
        if val < 1:
            raise ValueError(f"layer {what} must be >= 1, got {val}")
        if val > top:
            hint = ("; ranks above limits.max_rank would need weight streaming, which this "
                    "accelerator version does not have" if what == "rank" else "")
            raise ValueError(f"layer {what} = {val} exceeds the configuration's limit {top} "
                             f"({cfg.name}, limits section){hint}")
    if hh < 1 or ww < 1 or out_channels < 1:
        raise ValueError(f"layer shape must be positive, got H={hh}, W={ww}, Cout={out_channels}")
    if pool and (hh % 2 or ww % 2):
        raise ValueError(f"a pooling layer needs an even height and width, got {hh}x{ww}")
    step = 2 if pool else 1
    p = cfg.lanes
    ng = ceil_div(rank, p)
    sub = 4 if pool else 1
    extra_cols = 3 if mode == "stt" else 0

    def plan_cost(cout_tile: int, th: int, tw: int) -> int:
        """Estimated cycles: per tile, the busiest engine's issue cycles (gen.cyclemodel)."""
        total = 0
        for o0 in range(0, out_channels, cout_tile):
            ngo = ceil_div(min(cout_tile, out_channels - o0), p)
            for r0 in range(0, hh, th):
                h_ = min(th, hh - r0)
                zr = int(r0 == 0) + int(r0 + h_ == hh)
                for c0 in range(0, ww, tw):
                    w_ = min(tw, ww - c0)
                    zc = int(c0 == 0) + int(c0 + w_ == ww)
                    n1 = (h_ + 2 - zr) * (w_ + 2 - zc)
                    busy1 = t * ng * (n1 * cin + (h_ + 2) * (w_ + 2) - n1)
                    busy23 = t * h_ * (w_ + extra_cols) * ng * 3 * rank
                    busy4 = t * (h_ * w_ // sub) * sub * ngo * rank
                    fill = 3 * (w_ + 2) * ng * cin + (w_ // step) * sub * ngo * rank
                    total += max(busy1, busy23, busy4) + fill
        return total

    candidates = []
    cout_tile = min(out_channels, lim.max_out_channels)
    while True:
        candidates.append(cout_tile)
        if cout_tile <= p:
            break
        cout_tile = max(p, ceil_div(cout_tile // 2, p) * p)
    feasible = []
    for cout_tile in candidates:
        if tile_hw is not None:
            th, tw = tile_hw
            if th < step or tw < step or th % step or tw % step:
                raise ValueError(f"tile_hw {tile_hw}: must be positive (and even when pooling)")
            if th > lim.max_tile_height or tw > lim.max_tile_width:
                raise ValueError(f"tile_hw {tile_hw} exceeds limits.max_tile_height/width "
                                 f"({lim.max_tile_height}x{lim.max_tile_width})")
            if _fits(cfg, t, cin, cout_tile, th, tw, pool, residual):
                feasible = [((0,), th, tw, cout_tile)]
                break
            continue
        for th in range(step, min(hh, lim.max_tile_height) + 1, step):
            for tw in range(step, min(ww, lim.max_tile_width) + 1, step):
                if _fits(cfg, t, cin, cout_tile, th, tw, pool, residual):
                    feasible.append(((plan_cost(cout_tile, th, tw), -th * tw, -cout_tile), th, tw, cout_tile))
    if not feasible:
        raise ValueError(
            f"layer T={t}, Cin={cin}, Cout={out_channels} does not fit configuration "
            f"{cfg.name!r} even as {step}x{step}-pixel tiles of {p} output channels: "
            f"spike_in holds {cfg.regions['spike_in'].depth} words, membrane "
            f"{cfg.regions['membrane'].depth}")
    feasible.sort()
    best = feasible[0]
    if len(feasible) > 1:
        # the estimate ranks the candidates; the exact cycle model picks among the best few
        from .cyclemodel import TileShape, tile_timing
        sched = tuple(schedule) if schedule is not None else (True,) * t
        exact_best = None
        for cand in feasible[:EXACT_CANDIDATES]:
            _, th_, tw_, ct_ = cand
            cache: dict = {}
            total = 0
            for _, _, _, cout_, h_, w_, halo in _tile_grid(out_channels, hh, ww, ct_, th_, tw_):
                shape = TileShape(cin, rank, cout_, h_, w_, t, mode, sched, pool, residual, halo)
                if shape not in cache:
                    cache[shape] = tile_timing(cfg, shape)["cycles"]
                total += cache[shape]
            if exact_best is None or total < exact_best[0]:
                exact_best = (total, cand)
        best = exact_best[1]
    _, th, tw, cout_tile = best
    tiles = []
    for o0, r0, c0, cout_, h_, w_, halo in _tile_grid(out_channels, hh, ww, cout_tile, th, tw):
        first = r0 == 0 and c0 == 0                 # first tile of its output-channel group
        tiles.append(Tile(len(tiles), r0, c0, h_, w_, o0, cout_, cin, rank, t, pool, first, halo))
    return TilePlan(tuple(tiles), t, cin, out_channels, rank, hh, ww, pool, th, tw, cout_tile)


@dataclass
class TileResult:
    """Decoded outputs of one tile: ``spikes, membrane [T, Cout_tile, Ho, Wo]`` and counters."""
    spikes: np.ndarray
    membrane: np.ndarray
    counters: dict[str, int]


@dataclass
class TileProgram:
    """Host traffic of one tile.

    Run it as: every ``writes`` entry (in order), then ``start``; wait for ``done``; read
    every address of ``reads`` (in order) and pass the values to :meth:`decode`.
    ``words_in``/``words_out`` count the buffer-region words (the DRAM traffic: the
    ``host_words_in``/``host_words_out`` counters see the same numbers); descriptor, control
    and counter accesses are not counted.
    """
    tile: Tile
    writes: list[tuple[int, int]]
    start: tuple[int, int]
    reads: list[int]
    words_in: int
    words_out: int
    _decode: Any = field(repr=False)

    def decode(self, values: Sequence[int]) -> TileResult:
        if len(values) != len(self.reads):
            raise ValueError(f"expected {len(self.reads)} read values, got {len(values)}")
        return self._decode([int(v) for v in values])


class LayerOutputs:
    """Collects tile results into the layer's ``spikes, membrane [T, Cout, Ho, Wo]`` and sums
    the counters over tiles."""

    def __init__(self, plan: TilePlan):
        self.plan = plan
        ho, wo = (plan.height // 2, plan.width // 2) if plan.pool else (plan.height, plan.width)
        self.spikes = np.zeros((plan.timesteps, plan.out_channels, ho, wo), dtype=np.uint8)
        self.membrane = np.zeros((plan.timesteps, plan.out_channels, ho, wo), dtype=np.int64)
        self.counters: dict[str, int] = {}
        self.done = 0

    def add(self, tile: Tile, result: TileResult) -> None:
        s = 2 if tile.pool else 1
        r0, c0 = tile.row0 // s, tile.col0 // s
        ho, wo = tile.out_shape
        sl = (slice(None), slice(tile.out0, tile.out0 + tile.out_channels), slice(r0, r0 + ho),
              slice(c0, c0 + wo))
        self.spikes[sl] = result.spikes
        self.membrane[sl] = result.membrane
        for k, v in result.counters.items():
            self.counters[k] = self.counters.get(k, 0) + v
        self.done += 1


def _to_unsigned(v: int, bits: int) -> int:
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if not lo <= v <= hi:
        raise ValueError(f"value {v} does not fit signed {bits} bits")
    return v & ((1 << bits) - 1)


def _to_signed(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def _pack(values: Iterable[int], bits: int) -> int:
    word = 0
    for i, v in enumerate(values):
        word |= _to_unsigned(int(v), bits) << (i * bits)
    return word


def load_manifest_config(path: str | Path) -> HardwareConfig:
    """The configuration recorded in a manifest written by ``python -m gen``."""
    p = Path(path)
    if p.is_dir():
        p = p / "manifest.json"
    if not p.is_file():
        raise FileNotFoundError(f"manifest {str(p)!r} not found; run `python -m gen --config ... --out DIR`")
    data = json.loads(p.read_text())
    if "config" not in data:
        raise ValueError(f"{p}: not a generator manifest (no 'config' entry)")
    return config_from_dict(data["config"], source=str(p))


class Driver:
    """Encodes tiles for one hardware configuration (a ``HardwareConfig``, a shipped name,
    a TOML path or a manifest path/dir)."""

    def __init__(self, config: HardwareConfig | str | Path):
        if isinstance(config, HardwareConfig):
            cfg = config
        elif str(config).endswith(".json") or (Path(config) / "manifest.json").is_file():
            cfg = load_manifest_config(config)
        else:
            cfg = load_config(config)
        self.config = cfg
        self.map: HostMap = host_map(cfg)

    # ---- planning --------------------------------------------------------------------------
    def plan(self, qlayer, in_shape: Sequence[int], tile_hw: tuple[int, int] | None = None) -> TilePlan:
        qlayer.check_fits(self.config.widths)
        if in_shape[1] != qlayer.in_channels:
            raise ValueError(f"input has {in_shape[1]} channels, the layer {qlayer.in_channels}")
        return plan_layer(self.config, in_shape, qlayer.rank, qlayer.out_channels, qlayer.pool,
                          qlayer.residual, tile_hw, qlayer.mode, qlayer.full_timesteps(in_shape[0]))

    @staticmethod
    def window(spikes: np.ndarray, tile: Tile) -> np.ndarray:
        """The tile's input window ``[T, Cin, H+2, W+2]`` cut from the layer's spikes (zero
        outside the layer)."""
        pad = np.pad(np.asarray(spikes), ((0, 0), (0, 0), (1, 1), (1, 1)))
        return pad[:, :, tile.row0:tile.row0 + tile.height + 2, tile.col0:tile.col0 + tile.width + 2]

    @staticmethod
    def residual_tile(residual: np.ndarray, tile: Tile) -> np.ndarray:
        s = 2 if tile.pool else 1
        ho, wo = tile.out_shape
        r0, c0 = tile.row0 // s, tile.col0 // s
        return np.asarray(residual)[:, tile.out0:tile.out0 + tile.out_channels, r0:r0 + ho, c0:c0 + wo]

    # ---- encoding --------------------------------------------------------------------------
    def _region_words(self, name: str, words: Sequence[int], offset: int = 0) -> list[tuple[int, int]]:
        reg = self.map.region(name)
        hb = self.config.widths.host_data
        if offset + len(words) > reg.depth:
            raise ValueError(f"{len(words)} words at offset {offset} overflow region {name!r} "
                             f"({reg.depth} words)")
        mask = (1 << hb) - 1
        out = []
        for i, word in enumerate(words):
            for k in range(reg.subwords):
                out.append((reg.address(offset + i, k), (word >> (k * hb)) & mask))
        return out

    def _region_reads(self, name: str, count: int, offset: int = 0) -> list[int]:
        reg = self.map.region(name)
        if offset + count > reg.depth:
            raise ValueError(f"{count} words at offset {offset} overflow region {name!r}")
        return [reg.address(offset + i, k) for i in range(count) for k in range(reg.subwords)]

    def descriptor(self, qlayer, tile: Tile, spike_base: int = 0, residual_base: int = 0,
                   state_base: int = 0) -> dict[str, int]:
        """Descriptor register values of ``tile`` (unsigned register contents)."""
        sched = qlayer.full_timesteps(tile.timesteps)
        mb = self.config.widths.membrane
        for name in ("shift1", "shift2", "shift3", "affine_shift", "leak_shift"):
            if getattr(qlayer, name) > 62:
                raise ValueError(f"QuantTTLayer.{name} = {getattr(qlayer, name)}: the descriptor "
                                 f"holds shifts up to 62 (PTT adds 1 to shift3 in 6 bits)")
        return {
            "in_channels": tile.in_channels, "rank": tile.rank, "out_channels": tile.out_channels,
            "height": tile.height, "width": tile.width, "timesteps": tile.timesteps,
            "mode": MODE_CODES[qlayer.mode],
            "schedule": sum(1 << t for t, full in enumerate(sched) if full),
            "shift1": qlayer.shift1, "shift2": qlayer.shift2, "shift3": qlayer.shift3,
            "affine_shift": qlayer.affine_shift, "leak_mul": qlayer.leak_mul,
            "leak_shift": qlayer.leak_shift,
            "threshold": _to_unsigned(qlayer.threshold, mb) if qlayer.threshold >= 0
            else qlayer.threshold & ((1 << self.config.widths.host_data) - 1),
            "round": qlayer.round, "pool": int(qlayer.pool), "residual": int(qlayer.residual),
            "zero_halo": tile.zero_halo_bits,
            "spike_base": spike_base, "residual_base": residual_base, "state_base": state_base,
        }

    def weight_words(self, qlayer, tile: Tile) -> dict[str, list[int]]:
        """Words of the regions w1, w2, w3, w4, affine for ``tile`` (its output-channel group)."""
        cfg, p = self.config, self.config.lanes
        wb, sb, mb = cfg.widths.weight, cfg.widths.affine_scale, cfg.widths.membrane
        r, cin = qlayer.rank, qlayer.in_channels
        ng = ceil_div(r, p)
        w1 = np.zeros((ng * p, cin), np.int64); w1[:r] = qlayer.w1
        w2 = np.zeros((ng * p, r, 3), np.int64); w2[:r] = qlayer.w2
        w3 = np.zeros((ng * p, r, 3), np.int64); w3[:r] = qlayer.w3
        co = slice(tile.out0, tile.out0 + tile.out_channels)
        ngo = ceil_div(tile.out_channels, p)
        w4 = np.zeros((ngo * p, r), np.int64); w4[:tile.out_channels] = qlayer.w4[co]
        sc = np.zeros((2, ngo * p), np.int64); sc[:, :tile.out_channels] = qlayer.scale[:, co]
        bi = np.zeros(ngo * p, np.int64); bi[:tile.out_channels] = qlayer.bias[co]
        out = {
            "w1": [_pack(w1[g * p:(g + 1) * p, c], wb) for g in range(ng) for c in range(cin)],
            "w2": [_pack(w2[g * p:(g + 1) * p, j, i], wb) for g in range(ng) for j in range(r) for i in range(3)],
            "w3": [_pack(w3[g * p:(g + 1) * p, j, i], wb) for g in range(ng) for j in range(r) for i in range(3)],
            "w4": [_pack(w4[g * p:(g + 1) * p, k], wb) for g in range(ngo) for k in range(r)],
        }
        lane_bits = 2 * sb + mb
        aff = []
        for g in range(ngo):
            word = 0
            for l in range(p):
                o = g * p + l
                lane = (_to_unsigned(int(sc[0, o]), sb) | _to_unsigned(int(sc[1, o]), sb) << sb
                        | _to_unsigned(int(bi[o]), mb) << (2 * sb))
                word |= lane << (l * lane_bits)
            aff.append(word)
        out["affine"] = aff
        return out

    def spike_words(self, window: np.ndarray) -> list[int]:
        """spike_in words of a window ``[T, Cin, H+2, W+2]`` (layout in docs/host_interface.md)."""
        x = np.asarray(window)
        if x.ndim != 4:
            raise ValueError(f"window: expected [T, Cin, H+2, W+2], got shape {x.shape}")
        if x.size and (x.min() < 0 or x.max() > 1):
            raise ValueError("window: spikes must be 0 or 1")
        t, cin, hw, ww = x.shape
        sw = self.config.spike_word_bits
        cw = ceil_div(cin, sw)
        bits = np.zeros((t, hw, ww, cw * sw), np.uint8)
        bits[..., :cin] = np.transpose(x, (0, 2, 3, 1))
        weights = np.array([1 << b for b in range(sw)], dtype=object)
        flat = bits.reshape(-1, sw).astype(object)
        return [int(v) for v in flat.dot(weights)]

    def lane_words(self, data: np.ndarray, bits: int) -> list[int]:
        """Words of a ``[T, C, Ho, Wo]`` array in the residual/membrane layout."""
        p = self.config.lanes
        t, c, ho, wo = data.shape
        go = ceil_div(c, p)
        padded = np.zeros((t, go * p, ho, wo), np.int64); padded[:, :c] = data
        return [_pack(padded[tt, g * p:(g + 1) * p, y, x], bits)
                for tt in range(t) for y in range(ho) for x in range(wo) for g in range(go)]

    def program(self, qlayer, tile: Tile, window: np.ndarray, residual: np.ndarray | None = None,
                load_weights: bool | None = None, read_counters: bool = True) -> TileProgram:
        """Host traffic of one tile. ``window [T, Cin, H+2, W+2]``; ``residual [T, Cout_tile,
        Ho, Wo]`` when the layer has one. ``load_weights`` defaults to ``tile.weights_change``."""
        cfg, m = self.config, self.map
        window = np.asarray(window)
        if window.shape != (tile.timesteps, tile.in_channels) + tile.window_shape:
            raise ValueError(f"window: expected shape {(tile.timesteps, tile.in_channels) + tile.window_shape}, "
                             f"got {window.shape}")
        ho, wo = tile.out_shape
        if qlayer.residual:
            if residual is None:
                raise ValueError("the layer has a residual input but none was given")
            residual = np.asarray(residual)
            if residual.shape != (tile.timesteps, tile.out_channels, ho, wo):
                raise ValueError(f"residual: expected shape {(tile.timesteps, tile.out_channels, ho, wo)}, "
                                 f"got {residual.shape}")
        writes: list[tuple[int, int]] = [(m.register("ctrl").address, 2)]  # clear counters
        for name, value in self.descriptor(qlayer, tile).items():
            writes.append((m.register(name).address, value))
        words_in = 0
        if load_weights is None:
            load_weights = tile.weights_change
        data: list[tuple[int, int]] = []
        if load_weights:
            for name, words in self.weight_words(qlayer, tile).items():
                data += self._region_words(name, words)
        data += self._region_words("spike_in", self.spike_words(window))
        if qlayer.residual:
            data += self._region_words("residual", self.lane_words(residual, cfg.widths.membrane))
        words_in = len(data)
        writes += data
        go = ceil_div(tile.out_channels, cfg.lanes)
        n_out = tile.timesteps * ho * wo * go
        reads = self._region_reads("membrane", n_out) + self._region_reads("spikes", n_out)
        words_out = len(reads)
        n_cnt = 0
        if read_counters:
            for c in m.counters:
                reads += [c.address, c.address + 1]
            n_cnt = len(m.counters)

        hb, p, mb = cfg.widths.host_data, cfg.lanes, cfg.widths.membrane
        msub = m.region("membrane").subwords
        ssub = m.region("spikes").subwords

        def decode(values: list[int]) -> TileResult:
            mem_words = [sum(values[i * msub + k] << (k * hb) for k in range(msub)) for i in range(n_out)]
            base = n_out * msub
            spk_words = [sum(values[base + i * ssub + k] << (k * hb) for k in range(ssub)) for i in range(n_out)]
            base += n_out * ssub
            mem = np.zeros((tile.timesteps, go * p, ho, wo), np.int64)
            spk = np.zeros((tile.timesteps, go * p, ho, wo), np.uint8)
            i = 0
            for tt in range(tile.timesteps):
                for y in range(ho):
                    for x in range(wo):
                        for g in range(go):
                            mw, sw_ = mem_words[i], spk_words[i]
                            for l in range(p):
                                mem[tt, g * p + l, y, x] = _to_signed(mw >> (l * mb), mb)
                                spk[tt, g * p + l, y, x] = (sw_ >> l) & 1
                            i += 1
            counters = {}
            for j, c in enumerate(m.counters[:n_cnt]):
                counters[c.name] = values[base + 2 * j] | (values[base + 2 * j + 1] << hb)
            return TileResult(spk[:, :tile.out_channels], mem[:, :tile.out_channels], counters)

        return TileProgram(tile, writes, (m.register("ctrl").address, 1), reads, words_in,
                           words_out, decode)
