"""One validated, immutable configuration of a Diehl & Cook / tinySNN network.

Defaults are the constants commonly used by the Diehl & Cook (2015) reproductions (BindsNET's
``DiehlAndCook2015``, Brian): potentials in mV, times in ms. Internally every potential is
stored relative to its layer's rest potential (``v - v_rest``), so the
stored state is what a fixed-point implementation would hold; derived quantities live in the
properties at the end (one place).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any
from ttsnn.sw.cli_util import UserError

__all__ = ["SNNConfig", "VARIANTS"]

VARIANTS = ("baseline", "tinysnn")


@dataclass(frozen=True)
class SNNConfig:
    """Network, neuron, input-coding and learning constants.

    ``variant``: ``'baseline'`` (Diehl & Cook: excitatory + inhibitory layer, pair-wise STDP at
    every spike) or ``'tinysnn'`` (no inhibitory layer, lateral inhibition ``-w_lateral`` between
    excitatory neurons, updates once per ``update_window`` steps, adaptive potentiation).
    """

    variant: str = "tinysnn"
    n_inputs: int = 64
    n_neurons: int = 100  # Diehl & Cook used 400 on MNIST; 100 suits the 1,437 embedded digits
    # time
    dt: float = 1.0
    t_present: float = 350.0
    # excitatory neurons
    v_rest: float = -65.0
    v_reset: float = -60.0
    v_thresh: float = -52.0
    refractory: float = 5.0
    tau_mem: float = 100.0
    theta_plus: float = 0.05
    tau_theta: float = 1e7
    # lower bound of the excitatory potential (mV); None: unbounded, as BindsNET's current-based
    # reproduction. Diehl & Cook's conductance-based model is bounded by its inhibitory reversal
    # potential (-100 mV); a floor shrinks the range a fixed-point membrane has to hold.
    v_floor: float | None = None
    # inhibitory layer (baseline only)
    inh_v_rest: float = -60.0
    inh_v_reset: float = -45.0
    inh_v_thresh: float = -40.0
    inh_refractory: float = 2.0
    inh_tau_mem: float = 10.0
    w_exc_inh: float = 22.5
    w_inh_exc: float = 17.5
    # lateral inhibition (tinySNN only)
    w_lateral: float = 17.5
    # input coding: Poisson rate = pixel in [0, 1] x input_rate (Hz); Diehl & Cook: 63.75 Hz,
    # raised by rate_step while the excitatory layer fires fewer than min_spikes times
    input_rate: float = 63.75
    rate_step: float = 32.0
    min_spikes: int = 5
    max_retries: int = 3
    # STDP
    tau_pre: float = 20.0
    tau_post: float = 20.0
    nu_pre: float = 1e-4   # depression at a pre-synaptic spike (x post trace)
    nu_post: float = 1e-2  # potentiation at a post-synaptic spike (x pre trace)
    w_max: float = 1.0
    w_init_max: float = 0.3
    norm_fraction: float = 0.1  # each neuron's input weights sum to norm_fraction * n_inputs (78.4 for 784)
    # tinySNN learning
    update_window: int = 10         # timesteps per weight update
    spike_count_threshold: float = 5.0  # k = max post spike count so far / this
    seed: int = 0

    def validate(self) -> "SNNConfig":
        """Return self, or raise ``ValueError`` naming the first invalid field."""
        if self.variant not in VARIANTS:
            raise UserError(f"variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
        for name in ("n_inputs", "n_neurons", "update_window"):
            if int(getattr(self, name)) < 1:
                raise UserError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("dt", "t_present", "tau_mem", "tau_theta", "inh_tau_mem", "tau_pre", "tau_post",
                     "w_max", "spike_count_threshold"):
            if not float(getattr(self, name)) > 0:
                raise UserError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("refractory", "inh_refractory", "theta_plus", "w_exc_inh", "w_inh_exc", "w_lateral",
                     "input_rate", "rate_step", "nu_pre", "nu_post", "w_init_max", "norm_fraction"):
            if float(getattr(self, name)) < 0 or not math.isfinite(float(getattr(self, name))):
                raise UserError(f"{name} must be a finite value >= 0, got {getattr(self, name)}")
        if self.min_spikes < 0 or self.max_retries < 0:
            raise UserError("min_spikes and max_retries must be >= 0")
        if not self.v_thresh > self.v_reset or not self.inh_v_thresh > self.inh_v_reset:
            raise UserError("the threshold must lie above the reset potential "
                            f"(v_thresh {self.v_thresh}, v_reset {self.v_reset})")
        if self.v_floor is not None and not (math.isfinite(self.v_floor) and self.v_floor < self.v_reset):
            raise UserError(f"v_floor must be a finite potential below v_reset ({self.v_reset}), got {self.v_floor}")
        if self.w_init_max > self.w_max:
            raise UserError(f"w_init_max ({self.w_init_max}) must not exceed w_max ({self.w_max})")
        if self.input_rate * self.dt / 1000.0 > 1.0:
            raise UserError(f"input_rate {self.input_rate} Hz at dt {self.dt} ms gives a spike "
                            f"probability above 1 per step; lower input_rate or dt")
        return self

    # ---- (de)serialisation ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SNNConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserError(f"unknown SNNConfig field(s) {unknown}; known: {sorted(known)}")
        return cls(**d).validate()

    def with_(self, **kw: Any) -> "SNNConfig":
        return replace(self, **kw).validate()

    # ---- derived sizes and constants (one place) ---------------------------------------
    @property
    def steps(self) -> int:
        """Timesteps per image presentation."""
        return max(1, int(round(self.t_present / self.dt)))

    @property
    def decay(self) -> float:
        return math.exp(-self.dt / self.tau_mem)

    @property
    def inh_decay(self) -> float:
        return math.exp(-self.dt / self.inh_tau_mem)

    @property
    def theta_decay(self) -> float:
        return math.exp(-self.dt / self.tau_theta)

    @property
    def pre_decay(self) -> float:
        return math.exp(-self.dt / self.tau_pre)

    @property
    def post_decay(self) -> float:
        return math.exp(-self.dt / self.tau_post)

    @property
    def refractory_steps(self) -> int:
        return int(round(self.refractory / self.dt))

    @property
    def inh_refractory_steps(self) -> int:
        return int(round(self.inh_refractory / self.dt))

    @property
    def reset_rel(self) -> float:
        """Reset potential relative to rest (what the membrane register holds after a spike)."""
        return self.v_reset - self.v_rest

    @property
    def floor_rel(self) -> float | None:
        return None if self.v_floor is None else self.v_floor - self.v_rest

    @property
    def thresh_rel(self) -> float:
        return self.v_thresh - self.v_rest

    @property
    def inh_reset_rel(self) -> float:
        return self.inh_v_reset - self.inh_v_rest

    @property
    def inh_thresh_rel(self) -> float:
        return self.inh_v_thresh - self.inh_v_rest

    @property
    def norm_total(self) -> float:
        return self.norm_fraction * self.n_inputs
