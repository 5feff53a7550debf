"""Memory-saving training path of :class:`sw.tt.TTConv2d`: a custom autograd function that
keeps only the binary input spikes (one byte per element, ``torch.bool``) and the four core
weights for the backward pass, and recomputes the rank-channel intermediates there (the
choice the accelerator makes: its spike buffers are 1 bit, its rank buffers are small).

Plain autograd keeps, per TT conv, the float32 input (4 bytes per spike), g1's output, g2's
output (STT) or both halves' inputs (PTT), g4's input and, with max-pool downsampling, g4's
output and the pool's int64 indices. Here the forward runs the same operations as
:class:`sw.tt.TTConv2d` (so its result is bit-identical) without recording them; the backward
recomputes ``o1 = g1(x)``, the g2/g3 outputs and (max-pool only) g4's output, then applies
each core's convolution backward (``aten.convolution_backward``, the kernel plain autograd
uses) in reverse order:

- g4: ``d inner, d w4`` from ``d y`` (after the pool's backward through recomputed indices);
- STT: ``d o2, d w3`` from ``d inner``; ``d o1, d w2`` from ``d o2``;
- PTT: ``d o1 = conv_bwd(d inner, w2 / 2) + conv_bwd(d inner, w3 / 2)``, ``d w2`` and ``d w3``
  the halved-weight gradients times 1/2 (the chain rule through the forward's ``w * 0.5``);
- HTT: PTT on the full timesteps, ``d o1 = d inner`` on the reduced ones (shared g1/g4), or
  with 'stride' downsampling the two timestep classes as two separate chains;
- g1: ``d x, d w1`` from ``d o1``.

With ``keep_rank=True`` (the default of :class:`sw.tt.TTConv2d`) the forward also keeps the
rank-channel intermediates (``o1``, g4's input, STT's ``o2``) and the backward uses them
instead of recomputing them: the same tensors bit for bit, three fewer convolutions, a few
rank-channel maps more memory (still below a dense network's peak at the bench presets).

Pure functions per stage, forward next to backward; :func:`tt_conv` is the entry point.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["TTGeometry", "tt_conv", "is_binary"]

_CL = torch.channels_last


@dataclass(frozen=True)
class TTGeometry:
    """The non-tensor configuration of one TT conv (see :class:`sw.tt.TTConv2d`)."""

    mode: str                      # 'stt' | 'ptt' | 'htt'
    stride2: tuple[int, int]       # g2's stride (padding (1, 0))
    stride3: tuple[int, int]       # g3's stride (padding (0, 1))
    downsample: str                # 'none' | 'maxpool' | 'stride'
    schedule: tuple[bool, ...]     # per timestep: True = full (all True for STT/PTT)

    @property
    def pool(self) -> bool:
        return self.downsample == "maxpool"


def _lif_spikes(x: Tensor) -> bool:
    """``x`` is the spike output (output 0) of :mod:`sw.neurons`' LIF function: 0/1 by
    construction, so the value check can be skipped (the LIF feeds every block conv)."""
    fn = x.grad_fn
    return fn is not None and type(fn).__name__ == "_LIFFunctionBackward" and x.output_nr == 0


def is_binary(x: Tensor) -> bool:
    """True when every element of ``x`` is 0 or 1 (spikes)."""
    if _lif_spikes(x):
        return True
    # every non-zero is 1: two passes over x, one over bytes
    return torch.equal(x.ne(0), x.eq(1))


def _fold(x: Tensor) -> Tensor:
    return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])


def _unfold(y: Tensor, steps: int) -> Tensor:
    return y.reshape(steps, y.shape[0] // steps, *y.shape[1:])


def _conv_grads(grad: Tensor, inp: Tensor, weight: Tensor, stride, padding,
                need_input: bool = True) -> tuple[Tensor | None, Tensor]:
    """Input and weight gradients of ``F.conv2d(inp, weight, None, stride, padding)``."""
    g_in, g_w, _ = torch.ops.aten.convolution_backward(
        grad, inp, weight, None, list(stride), list(padding), [1, 1], False, [0, 0], 1,
        [need_input, True, False])
    return g_in, g_w


# --- g2/g3 (the rank-channel middle) ---------------------------------------------------------
def _middle_forward(o1: Tensor, w2: Tensor, w3: Tensor, geo: TTGeometry) -> tuple[Tensor, Tensor | None]:
    """``(inner, o2)``: STT ``g3(g2(o1))`` (o2 = g2's output), PTT ``g2'(o1) + g3'(o1)`` with
    halved weights (as :meth:`sw.tt.TTConv2d._half_cross`)."""
    if geo.mode == "stt":
        o2 = F.conv2d(o1, w2, None, geo.stride2, (1, 0))
        return F.conv2d(o2, w3, None, geo.stride3, (0, 1)), o2
    y = F.conv2d(o1, w2 * 0.5, None, geo.stride2, (1, 0))
    return y.add_(F.conv2d(o1, w3 * 0.5, None, geo.stride3, (0, 1))), None


def _middle_backward(g_inner: Tensor, o1: Tensor, o2: Tensor | None, w2: Tensor, w3: Tensor,
                     geo: TTGeometry) -> tuple[Tensor, Tensor, Tensor]:
    """``(d o1, d w2, d w3)`` of :func:`_middle_forward`."""
    if geo.mode == "stt":
        g_o2, g_w3 = _conv_grads(g_inner, o2, w3, geo.stride3, (0, 1))
        g_o1, g_w2 = _conv_grads(g_o2, o1, w2, geo.stride2, (1, 0))
        return g_o1, g_w2, g_w3
    g_a, g_w2 = _conv_grads(g_inner, o1, w2 * 0.5, geo.stride2, (1, 0))
    g_b, g_w3 = _conv_grads(g_inner, o1, w3 * 0.5, geo.stride3, (0, 1))
    return g_a.add_(g_b), g_w2 * 0.5, g_w3 * 0.5


# --- g4 and the optional 2x2 ceil-mode max-pool ----------------------------------------------
_POOL_ARGS = ([2, 2], [2, 2], [0, 0], [1, 1], True)


def _head_forward(inner: Tensor, w4: Tensor, geo: TTGeometry) -> Tensor:
    y = F.conv2d(inner, w4)
    return F.max_pool2d(y, 2, ceil_mode=True) if geo.pool else y


def _head_backward(grad: Tensor, inner: Tensor, w4: Tensor, geo: TTGeometry) -> tuple[Tensor, Tensor]:
    """``(d inner, d w4)``; with the pool, g4's output is recomputed for the pool's indices."""
    if geo.pool:
        y = F.conv2d(inner, w4)
        _, idx = torch.ops.aten.max_pool2d_with_indices(y, *_POOL_ARGS)
        grad = torch.ops.aten.max_pool2d_with_indices_backward(grad, y, *_POOL_ARGS, idx)
        del y, idx
    return _conv_grads(grad, inner, w4, (1, 1), (0, 0))


# --- whole chains over folded [N, C, H, W] inputs --------------------------------------------
def _full_forward(xf: Tensor, w, geo: TTGeometry, keep: bool = False):
    """:meth:`sw.tt.TTConv2d._full`; with ``keep`` also the rank intermediates
    ``(o1, inner, o2)`` for :func:`_full_backward` (else None)."""
    o1 = F.conv2d(xf.contiguous(memory_format=_CL), w[0])
    inner, o2 = _middle_forward(o1, w[1], w[2], geo)
    out = _head_forward(inner, w[3], geo)
    return (out, (o1, inner, o2)) if keep else (out, None)


def _full_backward(grad: Tensor, xf: Tensor, w, geo: TTGeometry, need_x: bool, kept=None):
    """``(d xf, [d w1, d w2, d w3, d w4])`` of :func:`_full_forward`, recomputing o1, o2 and
    inner unless the forward ``kept`` them."""
    xc = xf.contiguous(memory_format=_CL)
    if kept is None:
        o1 = F.conv2d(xc, w[0])
        inner, o2 = _middle_forward(o1, w[1], w[2], geo)
    else:
        o1, inner, o2 = kept
    g_inner, g_w4 = _head_backward(grad, inner, w[3], geo)
    del inner
    g_o1, g_w2, g_w3 = _middle_backward(g_inner, o1, o2, w[1], w[2], geo)
    del o1, o2, g_inner
    g_x, g_w1 = _conv_grads(g_o1, xc, w[0], (1, 1), (0, 0), need_x)
    return g_x, [g_w1, g_w2, g_w3, g_w4]


def _reduced_forward(xf: Tensor, w, geo: TTGeometry) -> Tensor:
    """:meth:`sw.tt.TTConv2d._reduced` (HTT, 'stride' downsampling: no pool)."""
    xs = xf[:, :, ::2, ::2] if geo.downsample == "stride" else xf
    return _head_forward(F.conv2d(xs.contiguous(memory_format=_CL), w[0]), w[3], geo)


def _reduced_backward(grad: Tensor, xf: Tensor, w, geo: TTGeometry, need_x: bool):
    strided = geo.downsample == "stride"
    xs = (xf[:, :, ::2, ::2] if strided else xf).contiguous(memory_format=_CL)
    o1 = F.conv2d(xs, w[0])
    g_o1, g_w4 = _head_backward(grad, o1, w[3], geo)
    del o1
    g_xs, g_w1 = _conv_grads(g_o1, xs, w[0], (1, 1), (0, 0), need_x)
    if need_x and strided:
        g_x = g_xs.new_zeros(xf.shape)
        g_x[:, :, ::2, ::2] = g_xs
        g_xs = g_x
    return g_xs, [g_w1, None, None, g_w4]


def _add_grads(a: list, b: list) -> list:
    return [y if x is None else x if y is None else x + y for x, y in zip(a, b)]


# --- HTT with stride-1 cores: shared g1 / g4 over all timesteps ------------------------------
def _htt_shared_forward(x: Tensor, w, geo: TTGeometry, keep: bool = False):
    """:meth:`sw.tt.TTConv2d._htt_shared` (same batch composition of every conv call); with
    ``keep`` also ``(o1, inner)`` for :func:`_htt_shared_backward` (else None)."""
    steps, batch = x.shape[:2]
    sched = geo.schedule
    o1 = F.conv2d(_fold(x).contiguous(memory_format=_CL), w[0])
    n_full = sum(sched)
    if n_full == 0:
        inner = o1
    elif n_full == steps:
        inner, _ = _middle_forward(o1, w[1], w[2], geo)
    elif all(sched[:n_full]):
        o1_full, o1_reduced = o1.split([n_full * batch, (steps - n_full) * batch])
        inner = torch.cat([_middle_forward(o1_full, w[1], w[2], geo)[0], o1_reduced])
    else:
        chunks = list(o1.split(batch))
        full_idx = [t for t in range(steps) if sched[t]]
        mid = _middle_forward(torch.cat([chunks[t] for t in full_idx]), w[1], w[2], geo)[0]
        for k, t in enumerate(mid.split(batch)):
            chunks[full_idx[k]] = t
        inner = torch.cat(chunks)
    out = _unfold(_head_forward(inner, w[3], geo), steps)
    return (out, (o1, inner)) if keep else (out, None)


def _htt_shared_backward(grad: Tensor, x: Tensor, w, geo: TTGeometry, need_x: bool, kept=None):
    """Recomputes o1 and the full timesteps' g2/g3 unless the forward ``kept`` ``(o1, inner)``."""
    steps, batch = x.shape[:2]
    sched = geo.schedule
    xc = _fold(x).contiguous(memory_format=_CL)
    o1 = F.conv2d(xc, w[0]) if kept is None else kept[0]
    full_idx = [t for t in range(steps) if sched[t]]
    chunks = list(o1.split(batch))
    mid = o2 = None  # PTT's middle keeps no o2
    if full_idx:  # the full timesteps' rows, in order (a view when they are one block)
        contiguous = full_idx == list(range(full_idx[0], full_idx[-1] + 1))
        o1_full = (o1[full_idx[0] * batch:(full_idx[-1] + 1) * batch] if contiguous
                   else torch.cat([chunks[t] for t in full_idx]))
        if kept is None:
            mid, o2 = _middle_forward(o1_full, w[1], w[2], geo)
            for k, t in enumerate(mid.split(batch)):
                chunks[full_idx[k]] = t
    if kept is not None:
        inner = kept[1]
    else:
        inner = torch.cat(chunks) if full_idx else o1
    g_inner, g_w4 = _head_backward(_fold(grad), inner, w[3], geo)
    del inner, chunks
    g_w2 = g_w3 = None
    if full_idx:
        rows = slice(full_idx[0] * batch, (full_idx[-1] + 1) * batch)
        g_chunks = list(g_inner.split(batch))
        g_mid = g_inner[rows] if contiguous else torch.cat([g_chunks[t] for t in full_idx])
        g_o1_full, g_w2, g_w3 = _middle_backward(g_mid, o1_full, o2, w[1], w[2], geo)
        del mid, o2, o1_full, g_mid
        if contiguous:  # g_inner is ours: overwrite the full rows in place, no cat
            g_inner[rows] = g_o1_full
        else:
            for k, t in enumerate(g_o1_full.split(batch)):
                g_chunks[full_idx[k]] = t
            g_inner = torch.cat(g_chunks)
        del g_chunks
    del o1
    g_x, g_w1 = _conv_grads(g_inner, xc, w[0], (1, 1), (0, 0), need_x)
    return (None if g_x is None else _unfold(g_x, steps)), [g_w1, g_w2, g_w3, g_w4]


# --- HTT with 'stride' downsampling: two separate chains --------------------------------------
def _htt_split_forward(x: Tensor, w, geo: TTGeometry) -> Tensor:
    """The 'stride' branch of :meth:`sw.tt.TTConv2d.forward` for HTT."""
    steps, sched = x.shape[0], geo.schedule
    n_full = sum(sched)
    if all(sched[:n_full]):
        parts = []
        if n_full:
            parts.append(_unfold(_full_forward(_fold(x[:n_full]), w, geo)[0], n_full))
        if n_full < steps:
            parts.append(_unfold(_reduced_forward(_fold(x[n_full:]), w, geo), steps - n_full))
        return torch.cat(parts) if len(parts) > 1 else parts[0]
    full = torch.tensor(sched, device=x.device)
    y_full = _unfold(_full_forward(_fold(x[full]), w, geo)[0], n_full) if n_full else None
    y_red = _unfold(_reduced_forward(_fold(x[~full]), w, geo), steps - n_full)
    out = y_red.new_empty((steps,) + tuple(y_red.shape[1:]))
    out[~full] = y_red
    if y_full is not None:
        out[full] = y_full
    return out


def _htt_split_backward(grad: Tensor, x: Tensor, w, geo: TTGeometry, need_x: bool):
    full = torch.tensor(geo.schedule, device=x.device)
    n_full = int(full.sum())
    g_x = x.new_zeros(x.shape) if need_x else None
    g_w: list = [None] * 4
    for sel, n, backward in ((full, n_full, _full_backward),
                             (~full, x.shape[0] - n_full, _reduced_backward)):
        if n == 0:
            continue
        g_part, g_w_part = backward(_fold(grad[sel]), _fold(x[sel]), w, geo, need_x)
        g_w = _add_grads(g_w, g_w_part)
        if need_x:
            g_x[sel] = _unfold(g_part, n)
    return g_x, g_w


# --- dispatch and the autograd function -------------------------------------------------------
def _forward(x: Tensor, w, geo: TTGeometry, keep: bool):
    """``(y, kept)``: kept is the rank intermediates when ``keep`` (and the geometry supports
    it: not HTT with 'stride' downsampling, which always recomputes), else None."""
    if geo.mode != "htt":
        out, kept = _full_forward(_fold(x), w, geo, keep)
        return _unfold(out, x.shape[0]), kept
    if geo.downsample != "stride":
        return _htt_shared_forward(x, w, geo, keep)
    return _htt_split_forward(x, w, geo), None


def _backward(grad: Tensor, x: Tensor, w, geo: TTGeometry, need_x: bool, kept=None):
    if geo.mode != "htt":
        g_x, g_w = _full_backward(_fold(grad), _fold(x), w, geo, need_x, kept)
        return (None if g_x is None else _unfold(g_x, x.shape[0])), g_w
    if geo.downsample != "stride":
        return _htt_shared_backward(grad, x, w, geo, need_x, kept)
    return _htt_split_backward(grad, x, w, geo, need_x)


class _TTConvFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, w1: Tensor, w2: Tensor, w3: Tensor, w4: Tensor,
                geo: TTGeometry, binary_input: bool, keep_rank: bool) -> Tensor:
        w = (w1, w2, w3, w4)
        out, kept = _forward(x, w, geo, keep_rank)
        # binary spikes: one byte each instead of four; otherwise (gradcheck) the input itself
        kept = () if kept is None else kept
        # (x.to(bool) is x != 0 elementwise; on this CPU it is ~3x faster than x.ne(0))
        ctx.save_for_backward(x.to(torch.bool) if binary_input else x, *w, *kept)
        ctx.geo, ctx.x_dtype, ctx.n_kept = geo, x.dtype, len(kept)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, *rest = ctx.saved_tensors
        w, kept = rest[:4], (tuple(rest[4:]) if ctx.n_kept else None)
        # bool -> float through uint8 (same bytes, 0/1): ~2x faster than from bool here
        x = (x.view(torch.uint8) if x.dtype == torch.bool else x).to(ctx.x_dtype)
        g_x, g_w = _backward(grad, x, w, ctx.geo, ctx.needs_input_grad[0], kept)
        g_w = [g if (g is None or g.dtype == wi.dtype) else g.to(wi.dtype) for g, wi in zip(g_w, w)]
        return (g_x, *g_w, None, None, None)


def tt_conv(x: Tensor, w1: Tensor, w2: Tensor, w3: Tensor, w4: Tensor, geo: TTGeometry,
            binary_input: bool = True, keep_rank: bool = False) -> Tensor:
    """A TT conv over ``[T, B, Cin, H, W]`` whose backward keeps ``x`` and the weights and
    recomputes the rest. ``binary_input=True`` stores ``x`` as ``torch.bool`` (valid only
    for 0/1 inputs: the caller checks, see :func:`is_binary`); False keeps ``x`` itself (for
    gradcheck, whose perturbed inputs are not binary). ``keep_rank=True`` also keeps the
    rank-channel intermediates (g1's output, g4's input and, STT, g2's output) instead of
    recomputing them: three fewer convolutions per backward for ``2-3 * r / Cin`` float
    copies of the input's size (HTT with 'stride' downsampling always recomputes)."""
    return _TTConvFunction.apply(x, w1, w2, w3, w4, geo, binary_input, keep_rank)
