"""The integer form of one TT-conv layer: what the accelerator, the golden model and the
tiling driver all consume.

Produced by the quantiser (``sw/quantize.py``) from a trained float layer, or built directly
by tests. Its arithmetic meaning is defined in docs/numerics.md and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ttsnn.sw.arch import TT_MODES as MODES
from ttsnn.sw.cli_util import UserError

__all__ = ["QuantTTLayer", "MODES", "MODE_CODES"]

#: Encoding of the mode in the hardware descriptor.
MODE_CODES = {"stt": 0, "ptt": 1, "htt": 2}


def _as_int_array(name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    arr = np.asarray(value)
    if arr.shape != shape:
        raise UserError(f"QuantTTLayer.{name}: expected shape {shape}, got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.equal(np.mod(arr, 1), 0)):
            raise UserError(f"QuantTTLayer.{name}: values must be integers")
    out = arr.astype(np.int64)
    out.setflags(write=False)
    return out


@dataclass(frozen=True, eq=False)
class QuantTTLayer:
    """Integer parameters of one TT-conv layer (+ folded BatchNorm + LIF).

    Shapes: ``w1 [r, Cin]``, ``w2 [r, r, 3]`` (out, in, tap along rows),
    ``w3 [r, r, 3]`` (out, in, tap along columns), ``w4 [Cout, r]``,
    ``scale [2, Cout]`` (row 0: full timesteps, row 1: HTT's reduced timesteps),
    ``bias [Cout]``. ``schedule[t]`` is True where timestep ``t`` is full (all True for STT
    and PTT). Float scales (optional, informational) map integers back to float values.
    """
    mode: str
    w1: np.ndarray
    w2: np.ndarray
    w3: np.ndarray
    w4: np.ndarray
    shift1: int
    shift2: int
    shift3: int
    scale: np.ndarray
    affine_shift: int
    bias: np.ndarray
    threshold: int
    leak_mul: int = 1
    leak_shift: int = 2
    round: int = 1
    pool: bool = False
    residual: bool = False
    schedule: tuple[bool, ...] = ()
    frac_bits: int = 8
    float_scales: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UserError(f"QuantTTLayer.mode: must be one of {MODES}, got {self.mode!r}")
        w1 = np.asarray(self.w1)
        if w1.ndim != 2:
            raise UserError(f"QuantTTLayer.w1: expected [rank, in_channels], got shape {w1.shape}")
        r, cin = w1.shape
        w4 = np.asarray(self.w4)
        if w4.ndim != 2 or w4.shape[1] != r:
            raise UserError(f"QuantTTLayer.w4: expected [out_channels, {r}], got shape {w4.shape}")
        cout = w4.shape[0]
        object.__setattr__(self, "w1", _as_int_array("w1", w1, (r, cin)))
        object.__setattr__(self, "w2", _as_int_array("w2", self.w2, (r, r, 3)))
        object.__setattr__(self, "w3", _as_int_array("w3", self.w3, (r, r, 3)))
        object.__setattr__(self, "w4", _as_int_array("w4", w4, (cout, r)))
        object.__setattr__(self, "scale", _as_int_array("scale", self.scale, (2, cout)))
        object.__setattr__(self, "bias", _as_int_array("bias", self.bias, (cout,)))
        for name in ("shift1", "shift2", "shift3", "affine_shift", "leak_shift"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < 0:
                raise UserError(f"QuantTTLayer.{name}: must be an integer >= 0, got {v!r}")
            object.__setattr__(self, name, int(v))
        if self.round not in (0, 1):
            raise UserError(f"QuantTTLayer.round: must be 0 (floor) or 1 (round half up), got {self.round!r}")
        if int(self.leak_mul) < 0:
            raise UserError(f"QuantTTLayer.leak_mul: must be >= 0, got {self.leak_mul}")
        sched = tuple(bool(b) for b in self.schedule)
        if self.mode != "htt" and sched and not all(sched):
            raise UserError(f"QuantTTLayer.schedule: only HTT has reduced timesteps (mode {self.mode!r})")
        object.__setattr__(self, "schedule", sched)
        object.__setattr__(self, "threshold", int(self.threshold))
        object.__setattr__(self, "leak_mul", int(self.leak_mul))
        object.__setattr__(self, "pool", bool(self.pool))
        object.__setattr__(self, "residual", bool(self.residual))

    # ---- shape ---------------------------------------------------------------------------
    @property
    def rank(self) -> int:
        return self.w1.shape[0]

    @property
    def in_channels(self) -> int:
        return self.w1.shape[1]

    @property
    def out_channels(self) -> int:
        return self.w4.shape[0]

    def full_timesteps(self, timesteps: int) -> tuple[bool, ...]:
        """The schedule for ``timesteps`` steps: all full for STT/PTT; HTT's own schedule
        (default: the first half full) otherwise."""
        if self.mode != "htt":
            return (True,) * timesteps
        if not self.schedule:
            return tuple(t < (timesteps + 1) // 2 for t in range(timesteps))
        if len(self.schedule) != timesteps:
            raise UserError(f"HTT schedule has {len(self.schedule)} entries but the input has "
                            f"T={timesteps} timesteps")
        return self.schedule

    def check_fits(self, widths) -> None:
        """Raise ValueError if any parameter lies outside the formats of ``widths``
        (a ``gen.config.Widths``)."""
        def check(name: str, arr: np.ndarray, bits: int, signed: bool = True) -> None:
            lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
            a = np.asarray(arr)
            if a.size and (a.min() < lo or a.max() > hi):
                raise UserError(f"QuantTTLayer.{name}: values in [{a.min()}, {a.max()}] do not fit "
                                f"{'signed' if signed else 'unsigned'} {bits} bits [{lo}, {hi}]")
        for n in ("w1", "w2", "w3", "w4"):
            check(n, getattr(self, n), widths.weight)
        check("scale", self.scale, widths.affine_scale)
        check("bias", self.bias, widths.membrane)
        check("threshold", np.array([self.threshold]), widths.membrane)
        check("leak_mul", np.array([self.leak_mul]), widths.leak_mul, signed=False)

    def to_npz_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in ("w1", "w2", "w3", "w4", "scale", "bias")}
        d.update({k: np.array(getattr(self, k)) for k in (
            "shift1", "shift2", "shift3", "affine_shift", "threshold", "leak_mul", "leak_shift",
            "round", "pool", "residual", "frac_bits")})
        d["mode"] = np.array(self.mode)
        d["schedule"] = np.array(self.schedule, dtype=bool)
        return d

    @classmethod
    def from_npz_dict(cls, d: dict[str, Any]) -> "QuantTTLayer":
        kw = {k: d[k] for k in ("w1", "w2", "w3", "w4", "scale", "bias")}
        for k in ("shift1", "shift2", "shift3", "affine_shift", "threshold", "leak_mul",
                  "leak_shift", "round", "frac_bits"):
            kw[k] = int(d[k])
        kw["pool"] = bool(d["pool"])
        kw["residual"] = bool(d["residual"])
        kw["mode"] = str(d["mode"])
        kw["schedule"] = tuple(bool(b) for b in np.asarray(d["schedule"]).tolist())
        return cls(**kw)

    def __repr__(self) -> str:
        return (f"QuantTTLayer(mode={self.mode!r}, Cin={self.in_channels}, r={self.rank}, "
                f"Cout={self.out_channels}, shifts=({self.shift1},{self.shift2},{self.shift3}), "
                f"affine_shift={self.affine_shift}, pool={self.pool}, residual={self.residual})")
