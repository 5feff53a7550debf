"""From a trained dense MS-ResNet to a TT one: rank selection (EVBMF) and TT-SVD initialisation.

:func:`select_ranks` reads each trained dense 3x3 block conv and picks its TT rank (EVBMF rule
of :func:`sw.evbmf.conv_rank`, clamped to ``1..max_tt_rank``), or resolves a uniform/list spec.
:func:`decompose_model` builds the TT model with those ranks and *really* loads the weights:
every 3x3 block conv gets TT-SVD cores of its dense kernel (``TTConv2d.load_dense_weight``),
everything else (stem, BatchNorm, shortcuts, classifier) is copied; a parameter or buffer
that is neither copied nor decomposed is an error, so a model can never silently start from
random weights (the public reference code's bug).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, replace

import torch

from ttsnn.sw.arch import TT_MODES, max_tt_rank, network_specs, resolve_ranks, tt_layers
from ttsnn.sw.cli_util import UserError

__all__ = ["LayerDecomposition", "parse_evbmf_rule", "split_rank_cap", "select_ranks", "decompose_model",
           "dense_block_weights"]


@dataclass
class LayerDecomposition:
    """What happened to one 3x3 block conv."""

    name: str
    in_channels: int
    out_channels: int
    rank: int
    mode0_rank: int | None  # EVBMF ranks (None when ranks were given)
    mode1_rank: int | None
    dense_params: int
    tt_params: int
    tt_svd_error: float | None = None  # relative Frobenius error of the TT reconstruction
    merged_error: float | None = None  # relative error of the chosen mode's merged kernel
    note: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def _specs(hparams: dict) -> list:
    keys = ("arch", "in_channels", "input_size", "num_classes")
    missing = [k for k in keys if k not in hparams]
    if missing:
        raise UserError(f"model hparams lack {missing}; cannot list its layers")
    return network_specs(hparams["arch"], hparams["in_channels"], hparams["input_size"], hparams["num_classes"],
                         timesteps=hparams.get("timesteps", 4))


def dense_block_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The dense ``[Cout, Cin, 3, 3]`` weights of the residual blocks' 3x3 convs, by layer name."""
    hp = model.hparams
    if hp.get("mode", "dense") != "dense":
        raise UserError(f"decompose needs a trained dense model; this checkpoint's model is {hp.get('mode')!r}")
    out = {}
    for spec in tt_layers(_specs(hp)):
        module = model.get_submodule(spec.name)
        w = module.weight if hasattr(module, "weight") else None
        if not isinstance(w, torch.Tensor) or w.dim() != 4:
            raise UserError(f"layer {spec.name}: no dense 3x3 weight found on {type(module).__name__}")
        out[spec.name] = w.detach().clone()
    return out


_EVBMF_RULE = re.compile(r"^evbmf(-max)?(?:\*([0-9]*\.?[0-9]+))?$")


def parse_evbmf_rule(ranks) -> tuple[bool, float] | None:
    """``(use_max, scale)`` of an EVBMF rank rule (``evbmf``, ``evbmf-max``, ``evbmf*1.5``,
    ``evbmf-max*2``), None for other rank specs; a malformed ``evbmf...`` rule is an error."""
    if not isinstance(ranks, str) or not ranks.strip().lower().startswith("evbmf"):
        return None
    m = _EVBMF_RULE.match(ranks.strip().lower())
    scale = float(m.group(2)) if m and m.group(2) else 1.0
    if m is None or not scale > 0:
        raise UserError(f"rank rule {ranks!r}: expected evbmf, evbmf-max, evbmf*S or evbmf-max*S with a "
                        "positive scale S (e.g. evbmf*1.5)")
    return m.group(1) is not None, scale


def split_rank_cap(ranks):
    """``(rule, cap)`` of an EVBMF rule with an upper bound, ``evbmf<=8`` (the largest rank an
    accelerator's weight regions take, e.g. ``limits.max_rank``); ``cap`` None without one."""
    if isinstance(ranks, str) and "<=" in ranks and ranks.strip().lower().startswith("evbmf"):
        rule, _, cap = ranks.partition("<=")
        if not cap.strip().isdigit() or int(cap) < 1:
            raise UserError(f"rank rule {ranks!r}: the cap after '<=' must be a positive integer (e.g. evbmf<=8)")
        return rule.strip(), int(cap)
    return ranks, None


def select_ranks(model: torch.nn.Module, ranks: str | int | list = "evbmf",
                 progress: bool = False) -> tuple[list[int], list[LayerDecomposition]]:
    """Per-layer ranks for the 3x3 block convs of a trained dense model.

    ``'evbmf'``: EVBMF on the mode-0 unfolding, mode-1 if that gives 0 (the reference rule); a
    layer where both give 0 (an untrained or dead layer) gets rank 1 and a note. Variants (for
    the threshold study in docs/training.md): ``'evbmf-max'`` takes the larger of the two
    unfoldings' ranks; ``'evbmf*S'`` / ``'evbmf-max*S'`` multiply the rank by ``S`` (rounded
    up); a suffix ``<=R`` caps the ranks at ``R``. Every EVBMF rank is clamped to the layer's
    bound. Anything else is resolved by
    :func:`sw.arch.resolve_ranks` (``'uniform:R'``, an int, a list).
    """
    from ttsnn.sw.evbmf import conv_rank

    weights = dense_block_weights(model)
    specs = tt_layers(_specs(model.hparams))
    rows: list[LayerDecomposition] = []
    ranks, cap = split_rank_cap(ranks)
    evbmf_rule = parse_evbmf_rule(ranks)
    if evbmf_rule is not None:
        from ttsnn.sw.progress import tqdm  # a bar on a terminal, plain lines in a log

        use_max, scale = evbmf_rule
        chosen = []
        for spec in tqdm(specs, desc="EVBMF", leave=False, disable=not progress):
            bound = max_tt_rank(spec.in_channels, spec.out_channels)
            r, r0, r1 = conv_rank(weights[spec.name].numpy())
            if use_max:
                r = max(r0, r1)
            r = math.ceil(r * scale - 1e-9)
            note = ""
            if r == 0:
                r, note = 1, "EVBMF found no signal (untrained layer?); rank 1"
            elif r > bound:
                r, note = bound, f"EVBMF rank clamped to the layer bound {bound}"
            if cap is not None and r > cap:
                r, note = cap, f"EVBMF rank capped at {cap}"
            chosen.append(r)
            rows.append(LayerDecomposition(spec.name, spec.in_channels, spec.out_channels, r, r0, r1,
                                           spec.params(), 0, note=note))
    else:
        chosen = list(resolve_ranks(ranks, specs))
        rows = [LayerDecomposition(s.name, s.in_channels, s.out_channels, r, None, None, s.params(), 0)
                for s, r in zip(specs, chosen)]
    for spec, row in zip(specs, rows):
        # counted by sw.arch, the one place of the formula (the same for every TT mode)
        row.tt_params = replace(spec, mode=TT_MODES[0], rank=row.rank).params()
    return chosen, rows


def decompose_model(dense: torch.nn.Module, mode: str, ranks: str | int | list = "evbmf",
                    progress: bool = False) -> tuple[torch.nn.Module, list[LayerDecomposition]]:
    """A ``mode`` (stt/ptt/htt) TT model whose block convs are TT-SVD of ``dense``'s and whose
    other weights and BN statistics are ``dense``'s. Returns ``(tt_model, per_layer_report)``."""
    from ttsnn.sw.checkpoint import build_model
    from ttsnn.sw.tt import relative_error

    if mode not in TT_MODES:
        raise UserError(f"--mode must be one of {', '.join(TT_MODES)}, got {mode!r}")
    chosen, rows = select_ranks(dense, ranks, progress)
    hp = dict(dense.hparams)
    hp.update(mode=mode, ranks=list(chosen))
    tt_model = build_model(hp)
    tt_model.eval()
    dense_state = dense.state_dict()
    tt_state = tt_model.state_dict()
    weights = dense_block_weights(dense)
    loaded: set[str] = set()
    with torch.no_grad():
        for row in rows:
            module = tt_model.get_submodule(row.name)
            row.tt_svd_error = float(module.load_dense_weight(weights[row.name].to(torch.float32)))
            row.merged_error = float(relative_error(weights[row.name], module.merged_kernel("full")))
            loaded.update(f"{row.name}.{k}" for k in module.state_dict())
        for key, value in tt_state.items():
            if key in loaded:
                continue
            if key not in dense_state or dense_state[key].shape != value.shape:
                raise ValueError(f"decompose: TT model entry {key} {tuple(value.shape)} has no counterpart in "
                                 "the dense model; refusing to leave it randomly initialised")
            value.copy_(dense_state[key])
    return tt_model, rows
