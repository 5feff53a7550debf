"""TT-SNN as a plug-in: replace the 3x3 convolutions of any PyTorch module tree by STT/PTT/HTT.

:func:`convert` finds every ``nn.Conv2d`` with a 3x3 kernel (spikingjelly's ``layer.Conv2d`` is
one), keeps those whose qualified name matches ``include`` and no ``exclude`` glob pattern, and
replaces each by a :class:`sw.plugin.layers.PluginTTConv`. Its rank is given (an int, a
``'uniform:R'``/comma-list spec resolved by :func:`sw.arch.resolve_ranks`, a ``{pattern: rank}``
dict), ``'full'`` (``sw.arch.max_tt_rank``: TT-SVD exact) or ``'evbmf'`` (the reference rule
:func:`sw.evbmf.conv_rank` on the layer's trained weight, as ``python -m sw decompose``); its
cores are TT-SVD of the conv's weight (:meth:`sw.tt.TTConv2d.load_dense_weight`) or left at
their random initialisation (``init='random'``, training from scratch).

Supported geometry: stride 1 or 2, padding 1 (or ``'same'`` at stride 1), dilation 1, groups 1,
zero padding; a bias is kept and added after the cores. Anything else is refused with one line
naming the layer (``on_unsupported='skip'`` leaves such layers dense instead).

What a TT layer computes: at full rank an STT layer equals the dense conv it came from; PTT and
HTT compute a different function of the same cores (their merged kernels are cross-shaped,
paper Eq. 6), so converting a trained network to PTT changes its outputs and is followed by
fine-tuning, as in the paper. :func:`merge` turns every TT layer back into a plain 3x3 conv of
the replaced class (HTT: a full and a reduced conv) computing the same outputs.
"""

from __future__ import annotations

import copy
import fnmatch
import numbers
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Mapping

import torch
from torch import Tensor, nn

from ttsnn.sw.arch import TT_MODES, ConvSpec, max_tt_rank, resolve_ranks, validate_schedule
from ttsnn.sw.plugin.layers import LAYOUTS, PluginTTConv
from ttsnn.sw.tt import TTConv2d, relative_error
from ttsnn.sw.cli_util import UserError

__all__ = ["ConvertedLayer", "convert", "merge", "find_convs", "unsupported_reason", "count_macs",
           "tt_layers_of"]

INITS = ("tt-svd", "random")


@dataclass
class ConvertedLayer:
    """What :func:`convert` did to one 3x3 conv."""

    name: str
    in_channels: int
    out_channels: int
    stride: int
    rank: int
    mode: str
    layout: str
    dense_params: int           # 9 Cin Cout (+ bias)
    tt_params: int              # r (Cin + Cout) + 6 r^2 (+ bias)
    evbmf_ranks: tuple[int, int] | None = None  # EVBMF mode-0/mode-1 ranks (ranks='evbmf')
    tt_svd_error: float | None = None   # relative error of the TT reconstruction (= STT kernel)
    merged_error: float | None = None   # relative error of this mode's merged kernel
    note: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def _pair(v) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def unsupported_reason(conv: nn.Conv2d) -> str | None:
    """Why this 3x3 conv cannot become a TT conv (None: it can)."""
    stride = _pair(conv.stride)
    if _pair(conv.kernel_size) != (3, 3):
        return f"kernel {tuple(_pair(conv.kernel_size))} is not 3x3"
    if conv.groups != 1:
        return f"groups={conv.groups}: grouped/depthwise convs have no TT form here (only groups=1)"
    if _pair(conv.dilation) != (1, 1):
        return f"dilation {tuple(_pair(conv.dilation))}: only dilation 1 is supported"
    if conv.padding_mode != "zeros":
        return f"padding_mode {conv.padding_mode!r}: only zero padding is supported"
    if stride not in ((1, 1), (2, 2)):
        return f"stride {stride}: only stride 1 or 2 (both dimensions alike) is supported"
    if conv.padding == "same" and stride == (1, 1):
        return None
    if conv.padding == "valid" or _pair(conv.padding) != (1, 1):
        return f"padding {conv.padding!r}: only padding 1 (or 'same' at stride 1) is supported"
    return None


def find_convs(model: nn.Module, include: Iterable[str] | None = None,
               exclude: Iterable[str] | None = None) -> list[tuple[str, nn.Conv2d]]:
    """The 3x3 ``nn.Conv2d`` layers of ``model`` (qualified names, forward-definition order) whose
    name matches an ``include`` glob (default: all) and no ``exclude`` glob. A pattern that
    matches no 3x3 conv is an error (a typo would otherwise convert nothing)."""
    if not isinstance(model, nn.Module):
        raise UserError(f"convert: expected a torch.nn.Module, got {type(model).__name__}")
    include = ["*"] if include is None else ([include] if isinstance(include, str) else list(include))
    exclude = [] if exclude is None else ([exclude] if isinstance(exclude, str) else list(exclude))
    convs = [(n, m) for n, m in model.named_modules()
             if isinstance(m, nn.Conv2d) and _pair(m.kernel_size) == (3, 3)]
    names = [n for n, _ in convs]
    for pattern in include + exclude:
        if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
            listed = ", ".join(names) if names else "none"
            raise UserError(f"convert: pattern {pattern!r} matches no 3x3 conv; the model's 3x3 convs "
                            f"are: {listed}")
    return [(n, m) for n, m in convs
            if any(fnmatch.fnmatchcase(n, p) for p in include)
            and not any(fnmatch.fnmatchcase(n, p) for p in exclude)]


def _layer_spec(name: str, conv: nn.Conv2d, mode: str = "dense", rank: int | None = None) -> ConvSpec:
    stride = _pair(conv.stride)[0]
    return ConvSpec(name, "conv3x3", conv.in_channels, conv.out_channels, 3, stride, (0, 0), (0, 0),
                    mode, rank)


def _evbmf_rank(weight: Tensor, bound: int) -> tuple[int, tuple[int, int], str]:
    """The rank ``python -m sw decompose`` picks (:func:`sw.evbmf.conv_rank`), clamped alike."""
    from ttsnn.sw.evbmf import conv_rank

    r, r0, r1 = conv_rank(weight.detach().to("cpu", torch.float64).numpy())
    if r == 0:
        return 1, (r0, r1), "EVBMF found no signal (untrained layer?); rank 1"
    if r > bound:
        return bound, (r0, r1), f"EVBMF rank clamped to the layer bound {bound}"
    return r, (r0, r1), ""


def _resolve_ranks(ranks, layers: list[tuple[str, nn.Conv2d]]) -> list[tuple[int, tuple | None, str]]:
    """One ``(rank, evbmf_ranks, note)`` per layer."""
    bounds = [max_tt_rank(c.in_channels, c.out_channels) for _, c in layers]
    if isinstance(ranks, str) and ranks.strip().lower() == "evbmf":
        return [_evbmf_rank(c.weight, b) for (_, c), b in zip(layers, bounds)]
    if isinstance(ranks, str) and ranks.strip().lower() == "full":
        return [(b, None, "") for b in bounds]
    if isinstance(ranks, Mapping):
        out = []
        for (name, conv), bound in zip(layers, bounds):
            hit = [v for p, v in ranks.items() if fnmatch.fnmatchcase(name, p)]
            if not hit:
                raise UserError(f"convert: no rank given for layer {name!r} (the ranks dict's patterns "
                                f"are {list(ranks)}); add one or exclude the layer")
            value = bound if hit[0] == "full" else hit[0]
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 1 <= value <= bound:
                raise UserError(f"convert: rank {value!r} for layer {name!r} ({conv.in_channels}->"
                                f"{conv.out_channels}) is out of range: allowed 1..{bound}")
            out.append((int(value), None, ""))
        return out
    # ints, 'uniform:R', comma lists, lists: the project's one rank parser
    specs = [_layer_spec(n, c) for n, c in layers]
    return [(r, None, "") for r in resolve_ranks(ranks, specs)]


def _check_options(mode: str, layout: str, timesteps, schedule, init: str, on_unsupported: str):
    if mode not in TT_MODES:
        raise UserError(f"convert: mode must be one of {', '.join(TT_MODES)}, got {mode!r}")
    if layout not in LAYOUTS:
        raise UserError(f"convert: layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if init not in INITS:
        raise UserError(f"convert: init must be one of {', '.join(INITS)}, got {init!r}")
    if on_unsupported not in ("error", "skip"):
        raise UserError(f"convert: on_unsupported must be 'error' or 'skip', got {on_unsupported!r}")
    if timesteps is not None and (isinstance(timesteps, bool) or not isinstance(timesteps, int)
                                  or timesteps < 1):
        raise UserError(f"convert: timesteps must be a positive integer, got {timesteps!r}")
    if mode != "htt":
        if schedule is not None:
            raise UserError(f"convert: schedule is only used by mode 'htt', not {mode!r}")
        return None
    if schedule is not None:
        entries = schedule.replace(",", "") if isinstance(schedule, str) else list(schedule)
        sched = validate_schedule(entries, len(entries))
        if timesteps is not None and len(sched) != timesteps:
            raise UserError(f"convert: schedule has {len(sched)} entries but timesteps={timesteps}")
        return sched
    return None if timesteps is None else validate_schedule(None, timesteps)


def _layout_of(conv: nn.Conv2d, layout: str, mode: str, name: str, schedule) -> str:
    if hasattr(conv, "step_mode"):
        if layout not in ("auto",):
            raise UserError(f"convert: layer {name!r} is a spikingjelly step module; its layout follows "
                            f"its step_mode (leave layout='auto')")
        if mode == "htt" and schedule is None:
            raise UserError(f"convert: HTT on {name!r} needs timesteps (or schedule): in single-step "
                            "mode it is called once per timestep")
        return "step-mode"
    if mode == "htt" and layout in ("folded", "per-step") and schedule is None:
        raise UserError(f"convert: layout {layout!r} with HTT needs timesteps (or schedule)")
    if mode == "htt" and layout == "auto":
        raise UserError(f"convert: HTT on the plain conv {name!r} must know which timestep an input is: "
                        "give layout='tb' ([T, B, C, H, W] inputs), 'folded' ([T*B, ...], with timesteps) "
                        "or 'per-step' (one timestep per call, e.g. snnTorch loops, with timesteps)")
    return layout


def convert(model: nn.Module, mode: str = "ptt", ranks: Any = "evbmf", *,
            include: Iterable[str] | str | None = None, exclude: Iterable[str] | str | None = None,
            layout: str = "auto", timesteps: int | None = None, schedule=None, init: str = "tt-svd",
            on_unsupported: str = "error", inplace: bool = False,
            progress: bool = False) -> tuple[nn.Module, list[ConvertedLayer]]:
    """Replace the selected 3x3 convs of ``model`` by ``mode`` TT convs (see the module docstring).

    ``layout`` (plain ``nn.Conv2d`` layers; spikingjelly layers follow their ``step_mode``): what
    the conv is fed, needed by HTT only (:mod:`sw.plugin.layers`). ``timesteps``/``schedule``: HTT's
    full-timestep flags (default: first half full). Returns ``(converted_model, report)``; the
    input model is left untouched unless ``inplace``.
    """
    from ttsnn.sw.progress import tqdm  # a bar on a terminal, plain lines in a log

    sched = _check_options(mode, layout, timesteps, schedule, init, on_unsupported)
    steps = len(sched) if sched is not None else timesteps
    target = model if inplace else _copy(model, "convert")
    layers, report_skipped = [], []
    for name, conv in find_convs(target, include, exclude):
        reason = unsupported_reason(conv)
        if reason is None:
            layers.append((name, conv))
        elif on_unsupported == "skip":
            report_skipped.append(ConvertedLayer(name, conv.in_channels, conv.out_channels,
                                                 _pair(conv.stride)[0], 0, "dense", "-", 0, 0,
                                                 note=f"left dense: {reason}"))
        else:
            raise UserError(f"convert: layer {name!r} cannot be converted: {reason}; exclude it "
                            "(exclude=[...] / --exclude) or pass on_unsupported='skip'")
    if not layers:
        raise UserError("convert: no convertible 3x3 conv selected (check include/exclude)")
    chosen = _resolve_ranks(ranks, layers)
    report = []
    for (name, conv), (rank, evbmf_ranks, note) in tqdm(list(zip(layers, chosen)), desc="convert",
                                                         leave=False, disable=not progress):
        new, row = _convert_one(name, conv, mode, rank, layout, steps, sched, init)
        row.evbmf_ranks, row.note = evbmf_ranks, note
        if name:
            parent_name, _, attr = name.rpartition(".")
            setattr(target.get_submodule(parent_name), attr, new)
        else:  # the model is itself one 3x3 conv
            target = new
        report.append(row)
    _invalidate_spikingjelly_reset_cache(target)
    return target, report + report_skipped


def _copy(model: nn.Module, what: str) -> nn.Module:
    """A deep copy of ``model``. Neuron state left by a forward pass (spikingjelly memories,
    snnTorch's ``mem``) is a non-leaf tensor that ``copy.deepcopy`` refuses: the copy gets it
    detached (state is transient; the next sequence resets it anyway)."""
    memo: dict[int, Any] = {}
    for module in model.modules():
        for value in module.__dict__.values():
            items = value.values() if isinstance(value, dict) else (value,)
            for item in items:
                if isinstance(item, Tensor) and item.grad_fn is not None:
                    memo[id(item)] = item.detach().clone()
    try:
        return copy.deepcopy(model, memo)
    except RuntimeError as exc:
        if "deepcopy" not in str(exc):
            raise
        raise UserError(f"{what}: cannot copy the model: it holds state tensors of a previous forward pass "
                        "that are not graph leaves: reset it first (spikingjelly: "
                        "functional.reset_net(model)) or pass inplace=True") from None


def _convert_one(name: str, conv: nn.Conv2d, mode: str, rank: int, layout: str, steps, sched,
                 init: str) -> tuple[PluginTTConv, ConvertedLayer]:
    layer_layout = _layout_of(conv, layout, mode, name, sched)
    stride = _pair(conv.stride)[0]
    weight = conv.weight
    tt = TTConv2d(conv.in_channels, conv.out_channels, rank, mode, stride, "stride", sched)
    tt.to(device=weight.device, dtype=weight.dtype)
    svd_err = merged_err = None
    if init == "tt-svd":
        svd_err = float(tt.load_dense_weight(weight.detach()))
        merged_err = float(relative_error(weight, tt.merged_kernel("full")))
    template = copy.deepcopy(conv).to("meta")
    args = (tt, layer_layout, steps, conv.bias, template, name)
    if layer_layout == "step-mode":
        from ttsnn.sw.plugin._spikingjelly import SJPluginTTConv

        new: PluginTTConv = SJPluginTTConv(*args, step_mode=conv.step_mode)
    else:
        new = PluginTTConv(*args)
    new.train(conv.training)
    bias = conv.out_channels if conv.bias is not None else 0
    spec = _layer_spec(name, conv)
    row = ConvertedLayer(name, conv.in_channels, conv.out_channels, stride, rank, mode, layer_layout,
                         spec.params() + bias, new.spec().params() + bias,
                         tt_svd_error=svd_err, merged_error=merged_err)
    return new, row


def _invalidate_spikingjelly_reset_cache(model: nn.Module) -> None:
    """spikingjelly caches which modules ``reset_net`` resets, per network; a conversion in place
    swaps modules, so that cache must be dropped (only if spikingjelly is already in use)."""
    import sys

    functional = sys.modules.get("spikingjelly.activation_based.functional")
    invalidate = getattr(functional, "invalidate_reset_cache", None)
    if callable(invalidate):
        invalidate(model)


def tt_layers_of(model: nn.Module) -> list[tuple[str, PluginTTConv]]:
    """The converted layers of ``model``, by qualified name."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, PluginTTConv)]


def merge(model: nn.Module, inplace: bool = False) -> nn.Module:
    """``model`` with every converted layer merged back (paper Eq. 6): STT/PTT into a 3x3 conv of
    the class it replaced (spikingjelly's keeps its step_mode), HTT into a
    :class:`sw.plugin.layers.PluginScheduledConv`. Same outputs up to float rounding."""
    target = model if inplace else _copy(model, "merge")
    converted = tt_layers_of(target)
    if not converted:
        raise UserError("merge: the model has no converted TT layer (see sw.plugin.convert)")
    for name, layer in converted:
        dense = layer.merged()
        if hasattr(layer, "step_mode") and hasattr(dense, "step_mode"):
            dense.step_mode = layer.step_mode
        if name:
            parent_name, _, attr = name.rpartition(".")
            setattr(target.get_submodule(parent_name), attr, dense)
        else:
            target = dense
    _invalidate_spikingjelly_reset_cache(target)
    return target


def count_macs(model: nn.Module, run: Callable[[], Any]) -> dict[str, int]:
    """Multiply-accumulates per layer while ``run()`` (e.g. ``lambda: model(x)``) executes, by
    the project's convention (docs/counting.md): convs and linear layers only, summed over all
    calls (timesteps). TT layers are counted with :meth:`sw.arch.ConvSpec.tt_core_macs` (G1..G4;
    HTT reduced timesteps G1 and G4 only); the cores inside them are not counted twice."""
    counts: dict[str, int] = {}
    tt_prefixes = tuple(n + "." for n, _ in tt_layers_of(model))
    handles = []

    def add(name: str, value: int) -> None:
        counts[name] = counts.get(name, 0) + int(value)

    for name, module in model.named_modules():
        if name.startswith(tt_prefixes):
            continue
        if isinstance(module, PluginTTConv):
            def hook(m, inputs, output, name=name):
                n_full, n_reduced, in_hw, out_hw = m.last_call
                spec = m.spec(in_hw, out_hw)
                add(name, n_full * spec.macs_per_timestep(True) + n_reduced * spec.macs_per_timestep(False))
        elif isinstance(module, nn.Conv2d):
            def hook(m, inputs, output, name=name):
                kh, kw = _pair(m.kernel_size)
                add(name, output.numel() * (m.in_channels // m.groups) * kh * kw)
        elif isinstance(module, nn.Linear):
            def hook(m, inputs, output, name=name):
                add(name, output.numel() * m.in_features)
        else:
            continue
        handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            run()
    finally:
        for h in handles:
            h.remove()
    return counts

