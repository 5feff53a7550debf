"""The hardware configuration: one validated, immutable object for gen/, cosim/ and model/.

A configuration is a TOML file in ``configs/``. :func:`load_config` parses it into a
:class:`HardwareConfig`; every consumer (the Amaranth generator, the co-simulation, the
performance/energy model) reads sizes from that object and from the derived properties
defined here, never from its own copy of the numbers.

This module must stay importable without Amaranth: the energy model uses it too.
"""

from __future__ import annotations

import contextvars
import copy
import functools
import tomllib
from dataclasses import dataclass, field, fields, asdict
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from ttsnn.sw.cli_util import MissingFileError, UserError

__all__ = [
    "ConfigError", "ClusterShape", "Region", "Widths", "GradientFormats", "GRADIENT_ROUNDINGS",
    "Arrangement", "STT_CHAINS", "CLUSTER1_KINDS",
    "BufferSpec", "Limits", "HardwareConfig",
    "load_config", "config_from_dict", "CONFIG_DIR", "BUFFER_NAMES", "DATAFLOWS",
    "LINE1_SLOTS_PER_T", "LINE4_SLOTS_PER_T", "ROW2_SLOTS", "ROW2_ROWS", "ceil_div", "log2",
    "HOST_DATA_WIDTHS",
]

def _config_dir() -> Path:
    # a checkout (or an editable install) reads the top-level configs/; a built wheel ships them
    # as ttsnn/gen/configs (setup.py copies them), since configs/ is no package
    here = Path(__file__).resolve().parent
    return here / "configs" if (here / "configs").is_dir() else here.parent / "configs"


CONFIG_DIR = _config_dir()

#: The largest global buffer a configuration may declare.
MAX_BUFFER_BYTES = 1 << 24
# The buffer-size rule of _validate (a buffer at most its regions' need rounded up to a power of
# two) is off only while buffer_need_bytes() probes a configuration for that need.
_SIZE_RULE = contextvars.ContextVar("gen_config_size_rule", default=True)
#: Global buffers every configuration must define, and what they hold.
BUFFER_NAMES: Mapping[str, str] = MappingProxyType({
    "weight": "TT cores G1..G4, folded-BatchNorm scales and biases",
    "spike_in": "ring of input spike rows, written by the host while the tile runs",
    "interstage": "line buffers between cluster 1, clusters 2/3 and cluster 4",
    "residual": "ring of membrane-shortcut rows added before the LIF array",
    "state_out": "ring of output rows (spikes and membranes of every timestep, drained by the "
                 "host for BPTT; the LIF reads its previous membranes back from it)",
})

DATAFLOWS = ("output-stationary", "weight-stationary")

#: The q1 line buffer holds three window rows of every timestep: slot ``(w mod 3) * T + t`` for
#: window row ``w`` (docs/architecture.md), in either row order of a tile.
LINE1_SLOTS_PER_T = 3
#: The q23 line buffer holds three rows of every timestep (cluster 4 pools two; the third lets
#: clusters 2/3 start the next pair while cluster 4 finishes the current one).
LINE4_SLOTS_PER_T = 3
#: STT's q2 rows between cluster 2 and cluster 3: a double buffer, sized for rows up to twice
#: ``interstage_row_words`` (a tile with fewer timesteps may use longer rows).
ROW2_SLOTS = 2
ROW2_ROWS = 4


class ConfigError(UserError):
    """An invalid or inconsistent hardware configuration.

    The message names the offending field (dotted path, as in the TOML file) and the rule
    it breaks.
    """

    def __init__(self, field_name: str, rule: str, source: str | None = None):
        self.field_name = field_name
        self.rule = rule
        where = f" in {source}" if source else ""
        super().__init__(f"configuration field '{field_name}'{where}: {rule}")


def _require_int(section: str, name: str, value: Any, *, minimum: int = 1,
                 maximum: int | None = None, source: str | None = None) -> int:
    path = f"{section}.{name}" if section else name
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(path, f"must be an integer, got {value!r}", source)
    if value < minimum:
        raise ConfigError(path, f"must be >= {minimum}, got {value}", source)
    if maximum is not None and value > maximum:
        raise ConfigError(path, f"must be <= {maximum}, got {value}", source)
    return value


def ceil_div(n: int, d: int) -> int:
    """``ceil(n / d)`` for integers, e.g. the groups of ``d`` lanes that ``n`` channels fill."""
    return -(-n // d)


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def buffer_size_limit(need_bytes: int, word_bytes: int) -> int:
    """The largest size a global buffer may be configured with when its regions need
    ``need_bytes``: the need rounded up to a power of two (the SRAM macro a memory compiler
    would deliver for it), or to a whole word of every bank (``word_bytes``) if that is more.
    The RTL builds the regions; the energy model charges the configured size; this bound keeps
    the two within that rounding (docs/reliability.md, "Buffer sizes")."""
    pow2 = 1 << max(need_bytes - 1, 0).bit_length()
    return max(pow2, ceil_div(need_bytes, word_bytes) * word_bytes)


def region_bytes_by_buffer(cfg: "HardwareConfig") -> dict[str, int]:
    """Bytes of every global buffer that its regions (:attr:`HardwareConfig.regions`, what the
    RTL builds) occupy, rounded up to whole bytes."""
    bits: dict[str, int] = {}
    for r in _regions(cfg).values():
        bits[r.buffer] = bits.get(r.buffer, 0) + r.bits
    return {b: ceil_div(n, 8) for b, n in bits.items()}


def buffer_need_bytes(data: Mapping[str, Any], buffer: str) -> int:
    """What the regions of ``buffer`` need in the configuration ``data`` (a dict as
    :meth:`HardwareConfig.to_dict` gives) whatever size ``data`` gives that buffer; for sizing a
    buffer to new limits (gen.driver.large_weights_config). Only for buffers whose regions are
    sized by the limits (``weight``): the others' regions fill the buffer they are given."""
    probe = copy.deepcopy(dict(data))
    probe["buffers"][buffer]["bytes"] = MAX_BUFFER_BYTES
    token = _SIZE_RULE.set(False)
    try:
        cfg = config_from_dict(probe, source=f"{data.get('name')} (sizing buffers.{buffer})")
    finally:
        _SIZE_RULE.reset(token)
    return region_bytes_by_buffer(cfg)[buffer]


def log2(n: int) -> int:
    """``log2(n)`` of a power of two (bit position)."""
    return n.bit_length() - 1


def _pow2_floor(n: int) -> int:
    return 1 << (n.bit_length() - 1) if n >= 1 else 0


@dataclass(frozen=True)
class ClusterShape:
    """Processing elements of each unit of the datapath."""
    spike_pes: int          # cluster 1 (G1, accumulate-only spike PEs)
    g2_pes: int             # cluster 2 (G2, 3x1)
    g3_pes: int             # cluster 3 (G3, 1x3)
    g4_pes: int             # cluster 4 (G4, 1x1)
    adder_lanes: int        # adder array (merge of clusters 2 and 3)
    lif_lanes: int          # LIF array
    scratchpad_bytes: int   # per PE

    @property
    def total_pes(self) -> int:
        return self.spike_pes + self.g2_pes + self.g3_pes + self.g4_pes


@dataclass(frozen=True)
class Widths:
    """Bit widths of the numeric formats (see docs/numerics.md)."""
    weight: int
    activation: int
    accumulator: int
    membrane: int
    affine_scale: int
    leak_mul: int
    host_data: int          # host/DRAM port: bits per cycle (one beat: a region sub-word or register)


#: Widths of the host/DRAM port (``widths.host_data``): a beat carries one region sub-word of
#: that many bits (a whole region word when it is no wider), or one register, per cycle.
HOST_DATA_WIDTHS = (32, 64, 128, 256, 512)

#: Rounding of the backward pass's re-quantisations (docs/numerics.md, "Backward pass"):
#: round half up, floor (arithmetic shift), or stochastic (a hashed dither, unbiased).
GRADIENT_ROUNDINGS = ("nearest", "floor", "stochastic")

#: The gradient buffer's banks: the backward stages read two tensors and write two in one
#: cycle (the LIF-gradient stage), so two memories of one read and one write port each serve
#: them without a multi-ported memory (docs/architecture.md, "Backward datapath").
GBUF_BANKS = 2


@dataclass(frozen=True)
class GradientFormats:
    """Formats of the backward pass (docs/numerics.md, "Backward pass").

    ``width``: every stored gradient (spike, membrane and inter-stage gradients), signed;
    ``accumulator``: the transposed-core accumulators (G4^T, G3^T/G2^T, G1^T), sized so that
    they never wrap for the layer limits; ``wgrad_tile``: the weight-gradient accumulators of
    one tile (never wrap for the largest tile); ``wgrad_batch``: the weight-gradient sums over
    the tiles and samples of a batch (saturating, saturations counted); ``rounding``: one of
    :data:`GRADIENT_ROUNDINGS`. The memories of the backward datapath (docs/architecture.md,
    "Backward datapath"; :attr:`HardwareConfig.backward_regions`): ``buffer_bytes``, the
    gradient buffer holding a backward tile's tensors; ``stage_weight_bytes``, the stage
    weights (transposed, flipped cores); ``trace_bytes``, the forward trace (4 bits per neuron
    and timestep); ``wgrad_entries``, the weight-gradient accumulator's words (``P`` sums of
    ``wgrad_tile`` bits each). The section is optional in a TOML file: fields left out keep
    these defaults.
    """
    width: int = 16
    accumulator: int = 36
    wgrad_tile: int = 40
    wgrad_batch: int = 48
    rounding: str = "nearest"
    buffer_bytes: int = 32768
    stage_weight_bytes: int = 4096
    trace_bytes: int = 2048
    wgrad_entries: int = 512


#: STT's chaining of clusters 2 and 3 (:class:`Arrangement`).
STT_CHAINS = ("pipelined", "sequential")
#: Cluster 1's engines: ``"dense"`` (every input channel of a pixel costs a lane-step) or
#: ``"zero_skip"`` (only the 1-spikes cost a step; gen/engines/cluster1_zero_skip.py).
CLUSTER1_KINDS = ("dense", "zero_skip")


@dataclass(frozen=True)
class Arrangement:
    """Choices of the datapath's arrangement that leave the numbers it computes unchanged
    (docs/architecture.md, "The paper's arrangement").

    ``stt_chain``: how STT's cluster 3 follows cluster 2. ``"pipelined"``: STT's cluster-3
    engine runs G3 on cluster 2's q2 rows one row behind, both clusters busy at once (the
    generator's own arrangement); ``"sequential"``: the paper's, where clusters 2 and 3 both
    read cluster 1's output and have no G2 -> G3 path, so STT's G3 starts on a q2 row only
    when cluster 2 has finished it and cluster 2 starts its next row only when cluster 3 has
    finished the previous one (the two never run at once). Only STT tiles differ (PTT and
    HTT run clusters 2 and 3 in lock step on cluster 1's output in both); the values computed
    and every counter but the cycles and stalls are the same.

    ``cluster1``: ``"dense"`` (P input-channel lanes and an adder tree, one step per rank
    channel and chunk of P input channels: the generator's own) or ``"zero_skip"`` (the
    paper's: accumulators over the rank channels of a lane group, one step per 1-spike of a
    pixel, as sparsity-aware SNN accelerators such as SATA; its cycles depend on the spikes).
    Same values; the G1 core is stored transposed and cluster 1's cycles and counters differ.
    The section is optional in a TOML file: fields left out keep these defaults.
    """
    stt_chain: str = "pipelined"
    cluster1: str = "dense"


@dataclass(frozen=True)
class BufferSpec:
    """One global buffer: capacity, word width and number of banks."""
    name: str
    bytes: int
    width_bits: int
    banks: int

    @property
    def words(self) -> int:
        """Total words of ``width_bits`` over all banks."""
        return self.bytes * 8 // self.width_bits

    @property
    def words_per_bank(self) -> int:
        return self.words // self.banks

    @property
    def bits(self) -> int:
        return self.bytes * 8


@dataclass(frozen=True)
class Limits:
    """The largest layer tile one pass of the datapath may hold.

    ``max_rank`` sizes the G2/G3 weight regions (``3 r^2`` weights each);
    ``max_pointwise_weights`` sizes the G1 and G4 regions (``Cin x r`` and ``r x Cout``
    weights), so a layer with many channels and a small rank, or few channels and a large
    rank, fits the same buffer. The tiling driver checks every layer against the regions."""
    max_in_channels: int
    max_rank: int
    max_out_channels: int
    max_pointwise_weights: int
    max_tile_height: int
    max_tile_width: int
    max_timesteps: int


@dataclass(frozen=True)
class HardwareConfig:
    """A validated, immutable accelerator configuration.

    Build it with :func:`load_config` (from a TOML file) or :func:`config_from_dict`;
    the constructor validates every field and raises :class:`ConfigError` naming the
    field and the rule it breaks.
    """
    name: str
    clock_mhz: float
    technology_nm: int
    clusters: ClusterShape
    dataflow: Mapping[str, str]
    widths: Widths
    buffers: Mapping[str, BufferSpec]
    limits: Limits
    gradients: GradientFormats = GradientFormats()
    arrangement: Arrangement = Arrangement()
    source: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _validate(self)
        # freeze nested mappings
        object.__setattr__(self, "dataflow", MappingProxyType(dict(self.dataflow)))
        object.__setattr__(self, "buffers", MappingProxyType(dict(self.buffers)))

    # ---- derived sizes: computed here, once, for every consumer -------------------------
    @property
    def total_buffer_bytes(self) -> int:
        return sum(b.bytes for b in self.buffers.values())

    @property
    def total_pes(self) -> int:
        return self.clusters.total_pes

    @property
    def clock_period_ns(self) -> float:
        return 1e3 / self.clock_mhz

    @property
    def max_window_height(self) -> int:
        """Input rows of the largest tile: the output rows plus the 3x1 kernel's halo."""
        return self.limits.max_tile_height + 2

    @property
    def max_window_width(self) -> int:
        """Input columns of the largest tile: the output columns plus the 1x3 kernel's halo."""
        return self.limits.max_tile_width + 2

    # ---- the datapath's mapping (docs/architecture.md) -----------------------------------
    @property
    def lanes(self) -> int:
        """PEs per cluster = adder/LIF lanes (P)."""
        return self.clusters.spike_pes

    @property
    def max_rank_groups(self) -> int:
        """Groups of ``lanes`` rank channels in the largest rank."""
        return ceil_div(self.limits.max_rank, self.lanes)

    @property
    def max_out_groups(self) -> int:
        """Groups of ``lanes`` output channels in the widest layer."""
        return ceil_div(self.limits.max_out_channels, self.lanes)

    @property
    def spike_word_bits(self) -> int:
        """Input channels packed in one ``spike_in`` word (one bit each)."""
        return self.buffers["spike_in"].width_bits

    @property
    def gbuf_spikes_per_word(self) -> int:
        """Spikes (one bit per channel) packed in one gradient-buffer word: its ``P x Gb`` bits
        rounded down to a power of two (the backward tile's input spikes ``x``)."""
        return _pow2_floor(self.lanes * self.gradients.width)

    def is_weight_stationary(self, cluster: str) -> bool:
        """Whether ``cluster`` ('cluster2' or 'cluster3') keeps weight chunks in its PEs'
        scratchpads (``dataflow`` of the configuration)."""
        return self.dataflow[cluster] == "weight-stationary"

    @property
    def spad_weight_entries(self) -> int:
        """Weights each PE of a weight-stationary cluster holds: half its scratchpad, rounded
        down to a power of two (the chunk of the reduction replayed for several pixel blocks)."""
        return _pow2_floor(self.clusters.scratchpad_bytes * 8 // 2 // self.widths.weight)

    @property
    def spad_psum_entries(self) -> int:
        """Partial sums each PE of a weight-stationary cluster holds: the other half of its
        scratchpad, rounded down to a power of two (the pixel blocks sharing one weight chunk)."""
        return _pow2_floor(self.clusters.scratchpad_bytes * 8 // 2 // self.widths.accumulator)

    @property
    def interstage_row_words(self) -> int:
        """The unit the interstage buffer is split in: ``line1`` holds ``LINE1_SLOTS_PER_T * T``
        rows, ``line4`` ``LINE4_SLOTS_PER_T * T`` rows (3 T each) of this many words (``lanes``
        activations each) at ``T = limits.max_timesteps``, ``row2`` ``ROW2_ROWS``. A tile with
        fewer timesteps may use longer rows (the driver checks each tile against the region
        depths). tests/gen/test_config_regions.py checks docs/architecture.md and the comments
        of configs/*.toml against these numbers."""
        t = self.limits.max_timesteps
        word = self.lanes * self.widths.activation
        return self.buffers["interstage"].bits // word // (
            (LINE1_SLOTS_PER_T + LINE4_SLOTS_PER_T) * t + ROW2_ROWS)

    @functools.cached_property
    def regions(self) -> Mapping[str, "Region"]:
        """Every memory of the datapath: its global buffer, word width and depth
        (docs/host_interface.md has the word layouts)."""
        return _regions(self)

    @functools.cached_property
    def backward_regions(self) -> Mapping[str, "Region"]:
        """The memories of the backward datapath (``[gradients]`` sizes), beside
        :attr:`regions`; all host-visible."""
        p, g = self.lanes, self.gradients
        gword, wword, tword = p * g.width, p * self.widths.weight, p * 4
        regs = [
            Region("gbuf", "gradient", gword, g.buffer_bytes * 8 // gword // 2 * 2, True,
                   "backward tensors: word ((t*rows + y)*cols + x)*ceil(C/P) + c//P from the tensor's "
                   "base, lane c%P; two banks (the second from word depth/2)", banks=GBUF_BANKS),
            Region("gweights", "gradient", wword, g.stage_weight_bytes * 8 // wword, True,
                   "stage weights: word (tap*I + i)*ceil(O/P) + o//P, lane o%P"),
            Region("trace", "gradient", tword, g.trace_bytes * 8 // tword, True,
                   "forward trace: word as gbuf's, 4 bits per lane (spike, window, 2-bit arg-max)"),
            Region("wgrad", "gradient", p * g.wgrad_tile, g.wgrad_entries, True,
                   "weight-gradient sums: entry (tap*ceil(O/P) + o//P)*I + i, lane o%P (read only)"),
        ]
        return MappingProxyType({r.name: r for r in regs})

    @functools.cached_property
    def memo(self) -> dict:
        """A per-object cache for values its consumers derive from it (e.g. the planner's
        tile checks): not part of the configuration, never compared or written."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-serialisable dict that :func:`config_from_dict` accepts back."""
        return {
            "name": self.name,
            "clock_mhz": self.clock_mhz,
            "technology_nm": self.technology_nm,
            "clusters": asdict(self.clusters),
            "dataflow": dict(self.dataflow),
            "widths": asdict(self.widths),
            "buffers": {n: {k: v for k, v in asdict(b).items() if k != "name"}
                        for n, b in self.buffers.items()},
            "limits": asdict(self.limits),
            "gradients": asdict(self.gradients),
            "arrangement": asdict(self.arrangement),
        }


@dataclass(frozen=True)
class Region:
    """One memory of the datapath, carved out of a global buffer.

    ``lanes`` fields of ``lane_bits`` bits each make a word (lane 0 in the low bits), except
    ``spike_in`` (one bit per input channel) and ``affine`` (three fields per lane).

    ``banks``: the region is built as that many memories of ``bank_depth`` words, each with
    one read and one write port (a single-port-pair SRAM or block RAM); word ``a`` lives in
    bank ``a // bank_depth``. The driver places the tensors that two datapath ports use in
    the same cycle in different banks (gen/backward/tile_program.py)."""
    name: str
    buffer: str
    width_bits: int
    depth: int
    host_visible: bool
    description: str
    banks: int = 1

    @property
    def bits(self) -> int:
        return self.width_bits * self.depth

    @property
    def bank_depth(self) -> int:
        return self.depth // self.banks


def _regions(cfg: "HardwareConfig") -> Mapping[str, Region]:
    w, lim, p = cfg.widths, cfg.limits, cfg.lanes
    wword = p * w.weight
    qword = p * w.activation
    mword = p * w.membrane
    row = cfg.interstage_row_words
    t_max = lim.max_timesteps
    # the output ring (membranes and spikes) fills state_out; the LIF reads the membranes of the
    # previous timestep back from it
    ring_depth = cfg.buffers["state_out"].bits // (mword + p)
    pw = ceil_div(lim.max_pointwise_weights, p)
    g23 = ceil_div(3 * lim.max_rank ** 2, p)
    regs = [
        Region("w1", "weight", wword, pw, True,
               "G1: word k*NC + cc (NC = ceil(Cin/P)), lane l = w1[k, cc*P + l]"),
        Region("w2", "weight", wword, g23, True,
               "G2: word g*NS + s//Px, lane (s%Px)*Pk + c = weight of output g*Pk + c at step s"),
        Region("w3", "weight", wword, g23, True, "G3: as w2"),
        Region("w4", "weight", wword, pw, True,
               "G4: word go*r + k, lane l = w4[go*P + l, k]"),
        Region("affine", "weight", p * (2 * w.affine_scale + w.membrane), cfg.max_out_groups, True,
               "folded BN: word go, lane l = (scale[0], scale[1], bias) of channel go*P + l"),
        Region("spike_in", "spike_in", cfg.spike_word_bits, cfg.buffers["spike_in"].words, True,
               "ring of input rows: row slot n % ring_rows, word pixel*CW + c//SW, bit c%SW"),
        Region("line1", "interstage", qword, LINE1_SLOTS_PER_T * t_max * row, False,
               "q1 line buffer: slot (w%3)*T + t, word block*NG + jb, lane (x%Px)*Pk + k%Pk"),
        Region("row2", "interstage", qword, ROW2_ROWS * row, False,
               "STT: q2 rows (double buffer), layout of line1"),
        Region("line4", "interstage", qword, LINE4_SLOTS_PER_T * t_max * row, False,
               "q23 line buffer: slot (q%3)*T + t for q23 row q, layout of line1"),
        Region("residual", "residual", mword, cfg.buffers["residual"].bits // mword, True,
               "ring of residual rows: row slot n % ring_rows, word x*GO + go, lane l = channel go*P + l"),
        Region("membrane", "state_out", mword, ring_depth, True,
               "output ring: membrane potentials, row slot n % ring_rows, word x*GO + go"),
        Region("spikes", "state_out", p, ring_depth, True,
               "output ring: spikes, same layout as membrane, one bit per lane"),
    ]
    return MappingProxyType({r.name: r for r in regs})


def _validate(cfg: HardwareConfig) -> None:
    src = cfg.source
    if not isinstance(cfg.name, str) or not cfg.name.isidentifier():
        raise ConfigError("name", f"must be an identifier (letters, digits, _), got {cfg.name!r}", src)
    if not isinstance(cfg.clock_mhz, (int, float)) or cfg.clock_mhz <= 0:
        raise ConfigError("clock_mhz", f"must be a positive number, got {cfg.clock_mhz!r}", src)
    _require_int("", "technology_nm", cfg.technology_nm, source=src)

    for f in fields(ClusterShape):
        _require_int("clusters", f.name, getattr(cfg.clusters, f.name), source=src)

    for unit in ("cluster1", "cluster2", "cluster3", "cluster4"):
        if unit not in cfg.dataflow:
            raise ConfigError(f"dataflow.{unit}", f"missing; one of {DATAFLOWS}", src)
        if cfg.dataflow[unit] not in DATAFLOWS:
            raise ConfigError(f"dataflow.{unit}",
                              f"must be one of {DATAFLOWS}, got {cfg.dataflow[unit]!r}", src)
    extra = set(cfg.dataflow) - {"cluster1", "cluster2", "cluster3", "cluster4"}
    if extra:
        raise ConfigError(f"dataflow.{sorted(extra)[0]}", "unknown unit; allowed: cluster1..cluster4", src)

    w = cfg.widths
    for f in fields(Widths):
        _require_int("widths", f.name, getattr(w, f.name), minimum=2,
                     maximum=max(HOST_DATA_WIDTHS) if f.name == "host_data" else 64, source=src)
    if w.accumulator < w.weight + 1:
        raise ConfigError("widths.accumulator",
                          f"must exceed widths.weight ({w.weight}) so one product fits", src)
    if w.accumulator < w.weight + w.activation:
        raise ConfigError("widths.accumulator",
                          f"must be >= widths.weight + widths.activation "
                          f"({w.weight + w.activation}) so one product fits", src)
    if w.activation > w.accumulator:
        raise ConfigError("widths.activation", "must be <= widths.accumulator", src)
    if w.membrane < w.activation:
        raise ConfigError("widths.membrane", "must be >= widths.activation", src)
    if w.host_data not in HOST_DATA_WIDTHS:
        raise ConfigError("widths.host_data", f"must be one of {HOST_DATA_WIDTHS} (bits the host port "
                          f"carries per cycle), got {w.host_data}", src)

    missing = set(BUFFER_NAMES) - set(cfg.buffers)
    if missing:
        raise ConfigError(f"buffers.{sorted(missing)[0]}",
                          f"missing; every configuration defines {sorted(BUFFER_NAMES)}", src)
    unknown = set(cfg.buffers) - set(BUFFER_NAMES)
    if unknown:
        raise ConfigError(f"buffers.{sorted(unknown)[0]}",
                          f"unknown buffer; allowed: {sorted(BUFFER_NAMES)}", src)
    for name, b in cfg.buffers.items():
        _require_int(f"buffers.{name}", "bytes", b.bytes, source=src)
        if b.bytes > MAX_BUFFER_BYTES:
            raise ConfigError(f"buffers.{name}.bytes",
                              f"must be <= {MAX_BUFFER_BYTES} (16 MiB), got {b.bytes}: the RTL builds only the "
                              "regions the limits need, while the energy model charges the whole configured "
                              "size (CACTI figures fitted up to 256 KB), so a buffer this large would be costed "
                              "for memory the hardware does not have", src)
        _require_int(f"buffers.{name}", "width_bits", b.width_bits, minimum=8, source=src)
        _require_int(f"buffers.{name}", "banks", b.banks, source=src)
        if not _is_pow2(b.width_bits):
            raise ConfigError(f"buffers.{name}.width_bits", f"must be a power of two, got {b.width_bits}", src)
        if (b.bytes * 8) % (b.width_bits * b.banks):
            raise ConfigError(f"buffers.{name}.bytes",
                              f"must be a whole number of words per bank "
                              f"({b.width_bits} bits x {b.banks} banks)", src)

    lim = cfg.limits
    for f in fields(Limits):
        _require_int("limits", f.name, getattr(lim, f.name), source=src)
    if lim.max_rank > max(lim.max_in_channels, lim.max_out_channels) * 3:
        raise ConfigError("limits.max_rank", "must be <= 3 x max(max_in_channels, max_out_channels)"
                          " (TT-SVD ranks are bounded by the unfoldings)", src)
    if lim.max_timesteps > 32:
        raise ConfigError("limits.max_timesteps", "must be <= 32 (the HTT schedule is one 32-bit register)", src)
    if lim.max_tile_height >= 1 << 15 or lim.max_tile_width >= 1 << 15:
        raise ConfigError("limits.max_tile_width", "tile sides must be < 32768 (16-bit row counters)", src)

    # The generated datapath (docs/architecture.md): every cluster has the same number of PEs,
    # a power of two, and the adder/LIF arrays have one lane per PE.
    p = cfg.clusters.spike_pes
    for f in ("g2_pes", "g3_pes", "g4_pes", "adder_lanes", "lif_lanes"):
        if getattr(cfg.clusters, f) != p:
            raise ConfigError(f"clusters.{f}", f"must equal clusters.spike_pes ({p}): the generated "
                              "datapath has one lane per PE in every unit", src)
    if not _is_pow2(p):
        raise ConfigError("clusters.spike_pes", f"must be a power of two, got {p}", src)
    if cfg.dataflow["cluster1"] != "output-stationary" or cfg.dataflow["cluster4"] != "output-stationary":
        raise ConfigError("dataflow.cluster1", "the generated datapath implements output-stationary "
                          "clusters 1 and 4", src)
    if cfg.spike_word_bits < p:
        raise ConfigError("buffers.spike_in.width_bits",
                          f"must be >= clusters.spike_pes ({p}): cluster 1 reads the spikes of "
                          f"{p} input channels at once from one word", src)
    if cfg.dataflow["cluster2"] != cfg.dataflow["cluster3"]:
        raise ConfigError("dataflow.cluster3", "must equal dataflow.cluster2: clusters 2 and 3 run "
                          "in lock step for PTT", src)
    if any(cfg.is_weight_stationary(c) for c in ("cluster2", "cluster3")):
        if cfg.spad_weight_entries < 2 or cfg.spad_psum_entries < 2:
            raise ConfigError("clusters.scratchpad_bytes",
                              f"too small for weight-stationary clusters 2/3: half of it must hold "
                              f">= 2 weights and the other half >= 2 partial sums "
                              f"({2 * (w.weight + w.accumulator) // 8 * 2} bytes at these widths)", src)

    used: dict[str, int] = {}
    regions = _regions(cfg)
    for r in regions.values():
        if r.depth < 1:
            raise ConfigError(f"buffers.{r.buffer}.bytes", f"leaves no room for region {r.name!r}", src)
        used[r.buffer] = used.get(r.buffer, 0) + r.bits
    for bname, bits in used.items():
        if bits > cfg.buffers[bname].bits:
            raise ConfigError(f"buffers.{bname}.bytes",
                              f"too small: the regions of this buffer need {ceil_div(bits, 8)} bytes "
                              f"for the limits (max rank, pointwise weights, output channels), have "
                              f"{cfg.buffers[bname].bytes}", src)
        _check_not_oversized(cfg, bname, ceil_div(bits, 8), [r.name for r in regions.values() if r.buffer == bname])
    _validate_gradients(cfg)
    _validate_arrangement(cfg)
    # the widest tile of the limits must fit the line buffers at T = 1 with one full rank
    # group (one column per block); one input row of it must fit the spike ring
    need_row = cfg.max_window_width
    if regions["line1"].depth < LINE1_SLOTS_PER_T * need_row or regions["row2"].depth < ROW2_SLOTS * need_row:
        raise ConfigError("buffers.interstage.bytes",
                          f"too small for limits.max_tile_width = {lim.max_tile_width}: a q1 row of "
                          f"a tile that wide with {p} rank channels needs {need_row} words; the "
                          f"line buffers hold {regions['line1'].depth} (3 rows needed) and "
                          f"{regions['row2'].depth} (2 rows needed)", src)
    need_in = cfg.max_window_width * ceil_div(lim.max_in_channels, cfg.spike_word_bits)
    if need_in > regions["spike_in"].depth:
        raise ConfigError("buffers.spike_in.bytes",
                          f"too small for one input row of the widest tile: {need_in} words "
                          f"((max_tile_width + 2) x ceil(max_in_channels / width_bits)) > "
                          f"{regions['spike_in'].depth}", src)
    for name, buf in (("membrane", "state_out"), ("residual", "residual")):
        if regions[name].depth < 2 * cfg.max_out_groups:
            raise ConfigError(f"buffers.{buf}.bytes",
                              f"too small for two rows of one output pixel of the widest layer "
                              f"(2 x {cfg.max_out_groups} words of {p} channels)", src)


def _check_not_oversized(cfg: HardwareConfig, bname: str, need: int, names: list[str]) -> None:
    """The buffer-size rule: the RTL builds a buffer's regions, the energy model charges its
    configured size; the configured size may exceed the regions only by :func:`buffer_size_limit`'s
    rounding, or the model would cost memory the hardware does not have."""
    b = cfg.buffers[bname]
    limit = buffer_size_limit(need, b.width_bits * b.banks // 8)
    if b.bytes > limit and _SIZE_RULE.get():
        raise ConfigError(f"buffers.{bname}.bytes",
                          f"must be <= {limit}, got {b.bytes}: its regions ({', '.join(names)}) need {need} "
                          f"bytes at these limits and widths, and a buffer may exceed its regions only by "
                          f"rounding up to a power of two (or to a whole word per bank). The RTL builds the "
                          f"regions while the energy model charges the configured size, so the other "
                          f"{b.bytes - need} bytes would be costed for memory the hardware does not have; set "
                          f"bytes to at most {limit}, or raise the limits that size the regions", cfg.source)


def _bits_for_count(n: int) -> int:
    """``ceil(log2(n))``: the extra accumulator bits a sum of ``n`` terms may need."""
    return max(0, (n - 1).bit_length())


def _validate_gradients(cfg: HardwareConfig) -> None:
    """The backward formats: widths in range and accumulators that never wrap for the limits
    (docs/numerics.md, "Backward pass": a sum of ``n`` products of ``a``- and ``b``-bit
    signed values needs ``a + b + ceil(log2 n)`` bits)."""
    src, g, w, lim = cfg.source, cfg.gradients, cfg.widths, cfg.limits
    if g.rounding not in GRADIENT_ROUNDINGS:
        raise ConfigError("gradients.rounding", f"must be one of {GRADIENT_ROUNDINGS}, got {g.rounding!r}", src)
    for f in ("width", "accumulator", "wgrad_tile", "wgrad_batch"):
        _require_int("gradients", f, getattr(g, f), minimum=4, maximum=62, source=src)
    for f, word in (("buffer_bytes", cfg.lanes * g.width), ("stage_weight_bytes", cfg.lanes * w.weight),
                    ("trace_bytes", cfg.lanes * 4)):
        _require_int("gradients", f, getattr(g, f), minimum=1, source=src)
        if getattr(g, f) * 8 < 2 * word:
            raise ConfigError(f"gradients.{f}", f"must hold at least two {word}-bit words, got {getattr(g, f)} bytes", src)
    _require_int("gradients", "wgrad_entries", g.wgrad_entries, minimum=2, maximum=1 << 20, source=src)
    # the forward writes each output ring word's trace word at the same address of region trace
    ring, trace = cfg.regions["membrane"].depth, cfg.backward_regions["trace"].depth
    if trace < ring:
        raise ConfigError("gradients.trace_bytes",
                          f"must hold the output ring's {ring} trace words of {cfg.lanes * 4} bits "
                          f"(the forward writes one per output ring word): at least "
                          f"{ceil_div(ring * cfg.lanes * 4, 8)} bytes, got {g.trace_bytes}", src)
    terms = max(lim.max_out_channels, 6 * lim.max_rank, lim.max_rank)
    need = w.weight + g.width + _bits_for_count(terms)
    if g.accumulator < need:
        raise ConfigError("gradients.accumulator",
                          f"must be >= {need} (weight {w.weight} + gradient {g.width} bits + "
                          f"ceil(log2 {terms}) for the longest transposed-core sum of the limits), "
                          f"got {g.accumulator}", src)
    if g.accumulator < w.affine_scale + g.width:
        raise ConfigError("gradients.accumulator",
                          f"must be >= widths.affine_scale + gradients.width "
                          f"({w.affine_scale + g.width}): the affine gradient product", src)
    per_tile = lim.max_tile_height * lim.max_tile_width * lim.max_timesteps
    need = g.width + w.activation + _bits_for_count(per_tile)
    if g.wgrad_tile < need:
        raise ConfigError("gradients.wgrad_tile",
                          f"must be >= {need} (gradient {g.width} + activation {w.activation} bits "
                          f"+ ceil(log2 {per_tile}) for the pixel-timesteps of the largest tile), "
                          f"got {g.wgrad_tile}", src)
    if g.wgrad_batch < g.wgrad_tile:
        raise ConfigError("gradients.wgrad_batch",
                          f"must be >= gradients.wgrad_tile ({g.wgrad_tile}): it sums tile results", src)


def _validate_arrangement(cfg: HardwareConfig) -> None:
    """The arrangement's choices: one of the named chains."""
    a, src = cfg.arrangement, cfg.source
    if a.stt_chain not in STT_CHAINS:
        raise ConfigError("arrangement.stt_chain", f"must be one of {STT_CHAINS}, got {a.stt_chain!r}", src)
    if a.cluster1 not in CLUSTER1_KINDS:
        raise ConfigError("arrangement.cluster1", f"must be one of {CLUSTER1_KINDS}, got {a.cluster1!r}", src)


def config_from_dict(data: Mapping[str, Any], source: str | None = None) -> HardwareConfig:
    """Build and validate a configuration from a parsed TOML/JSON mapping."""
    def section(name: str) -> Mapping[str, Any]:
        if name not in data:
            raise ConfigError(name, "missing section", source)
        value = data[name]
        if not isinstance(value, Mapping):
            raise ConfigError(name, "must be a table", source)
        return value

    def build(cls, name: str, values: Mapping[str, Any]):
        names = [f.name for f in fields(cls)]
        unknown = set(values) - set(names)
        if unknown:
            raise ConfigError(f"{name}.{sorted(unknown)[0]}", f"unknown field; allowed: {names}", source)
        missing = [n for n in names if n not in values]
        if missing:
            raise ConfigError(f"{name}.{missing[0]}", "missing", source)
        return cls(**values)

    known_top = {"name", "clock_mhz", "technology_nm", "clusters", "dataflow", "widths",
                 "buffers", "limits", "gradients", "arrangement"}
    unknown = set(data) - known_top
    if unknown:
        raise ConfigError(sorted(unknown)[0], f"unknown field; allowed: {sorted(known_top)}", source)
    for top in ("name", "clock_mhz", "technology_nm"):
        if top not in data:
            raise ConfigError(top, "missing", source)
    buffers = {}
    for bname, spec in section("buffers").items():
        if not isinstance(spec, Mapping):
            raise ConfigError(f"buffers.{bname}", "must be a table", source)
        buffers[bname] = build(BufferSpec, f"buffers.{bname}", {"name": bname, **spec})
    return HardwareConfig(
        name=data["name"],
        clock_mhz=data["clock_mhz"],
        technology_nm=data["technology_nm"],
        clusters=build(ClusterShape, "clusters", section("clusters")),
        dataflow=dict(section("dataflow")),
        widths=build(Widths, "widths", section("widths")),
        buffers=buffers,
        limits=build(Limits, "limits", section("limits")),
        gradients=_gradient_section(data, source),
        arrangement=_optional_section(data, "arrangement", Arrangement, source),
        source=source,
    )


def _gradient_section(data: Mapping[str, Any], source: str | None) -> GradientFormats:
    """The optional ``[gradients]`` table: any field left out keeps its default."""
    values = data.get("gradients", {})
    if not isinstance(values, Mapping):
        raise ConfigError("gradients", "must be a table", source)
    names = [f.name for f in fields(GradientFormats)]
    unknown = set(values) - set(names)
    if unknown:
        raise ConfigError(f"gradients.{sorted(unknown)[0]}", f"unknown field; allowed: {names}", source)
    return GradientFormats(**values)


def _optional_section(data: Mapping[str, Any], name: str, cls, source: str | None):
    """An optional table built into ``cls``: any field left out keeps its default."""
    values = data.get(name, {})
    if not isinstance(values, Mapping):
        raise ConfigError(name, "must be a table", source)
    names = [f.name for f in fields(cls)]
    unknown = set(values) - set(names)
    if unknown:
        raise ConfigError(f"{name}.{sorted(unknown)[0]}", f"unknown field; allowed: {names}", source)
    return cls(**values)


def load_config(path: str | Path) -> HardwareConfig:
    """Load and validate a configuration file.

    ``path`` may also be the bare name of a shipped configuration (``"paper"``, ``"small"``).
    """
    p = Path(path)
    if not p.suffix and not p.exists():
        p = CONFIG_DIR / f"{p.name}.toml"
    elif not p.is_absolute() and p.parent == Path("configs") and not p.exists():
        p = CONFIG_DIR / p.name  # the CLIs' defaults (configs/paper.toml) from another folder
    if not p.is_file():
        shipped = sorted(q.stem for q in CONFIG_DIR.glob("*.toml"))
        raise MissingFileError(f"hardware configuration {str(path)!r} not found; "
                               f"give a TOML file path or one of the shipped names {shipped}")
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("<file>", f"not valid TOML: {exc}", str(p)) from None
    return config_from_dict(data, source=str(p))
