"""Reversible spiking blocks: training memory that does not grow with depth.

After Lei et al., "Towards Zero Memory Footprint Spiking Neural Network Training" (the exact
equations are not public; this is built from the description, every choice is listed in
docs/reversible.md). An MS-ResNet block that keeps its shape (stride 1, ``Cin == Cout``) splits
its membrane input ``x`` ``[T, B, C, H, W]`` into two channel groups ``x1, x2`` (``C/2`` each)
and couples them additively::

    y1 = x1 + q(F(x2))          F = BN1(conv1(LIF1(.)))     (C/2 -> C/2)
    y2 = x2 + q(G(y1))          G = BN2(conv2(LIF2(.)))     (C/2 -> C/2)
    inverse:  x2 = y2 - q(G(y1)),  x1 = y1 - q(F(x2))

so a block's input can be recomputed from its output. ``F`` and ``G`` are the two halves of the
MS-ResNet residual function (LIF -> conv -> BN), with the LIF's whole T-step state run inside
them: the membrane state is split with the channels. ``q`` rounds to a fixed-point grid of
``2**-frac_bits`` (straight-through gradient) and the chain's input is put on that grid too:
every sum and difference above is then exact in float32 (while ``|y| < 2**(23 - frac_bits)``),
so reconstructed inputs equal the real ones bit for bit and no recomputed spike can flip at
the threshold (the chain's forward warns if a membrane leaves that range). ``frac_bits=None``
drops ``q`` (plain float coupling; reconstruction is then exact only up to rounding,
:func:`reconstruction_report` measures how often a spike flips).

Backward of a chain of consecutive reversible blocks (:class:`_ReversibleChain`): the forward
runs without autograd and keeps only the chain's output; the backward walks the blocks in
reverse, block by block:

* ``'naive'``: invert (``x = inverse(y)``, no graph), re-run the block's forward on ``x`` with
  autograd, differentiate: F and G run twice each;
* ``'streamlined'``: one fused recompute-and-differentiate pass: ``G(y1)`` is computed once
  with its graph, serves both the inversion (``x2 = y2 - G(y1)``) and the backward through G;
  then ``F(x2)`` likewise (RevNet's algorithm): F and G run once each.
* ``'autograd'``: no recompute; plain autograd of the same equations (the reference).

Neuron state on recompute: the LIF is a pure function of its T-step input (``u[-1] = 0`` at
every call, :func:`sw.neurons.lif_multistep`), so every recompute starts from a reset state;
BatchNorm in training mode recomputes with the batch statistics of the (identical) recomputed
input, and its running statistics are restored after each recompute so that they are updated
once per step, as in the standard network.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any, Iterator, Sequence

import torch
from torch import Tensor, nn

from ttsnn.sw.arch import ConvSpec
from ttsnn.sw.cli_util import UserError

__all__ = ["BACKWARDS", "DEFAULT_FRAC_BITS", "round_to_grid", "ReversibleBlock",
           "ReversibleSequential", "reconstruction_report", "set_backward"]

BACKWARDS = ("streamlined", "naive", "autograd")
#: 2**-12 grid: exact float32 sums while |membrane| < 2**11; finer than any BN output matters.
DEFAULT_FRAC_BITS = 12


class _RoundToGrid(torch.autograd.Function):
    """``round(x * 2**k) / 2**k`` (exact: power-of-two scaling) with a straight-through gradient."""

    @staticmethod
    def forward(ctx, x: Tensor, scale: float) -> Tensor:  # type: ignore[override]
        return torch.round(x * scale) / scale

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        return grad, None


def round_to_grid(x: Tensor, frac_bits: int | None) -> Tensor:
    """``x`` on the grid of ``2**-frac_bits`` (identity for None); gradient passes straight."""
    if frac_bits is None:
        return x
    return _RoundToGrid.apply(x, float(2 ** frac_bits))


def _check_frac_bits(frac_bits: int | None) -> int | None:
    if frac_bits is None:
        return None
    if isinstance(frac_bits, bool) or not isinstance(frac_bits, int) or not 0 <= frac_bits <= 20:
        raise UserError(f"reversible frac_bits must be an integer in 0..20 (grid 2**-frac_bits) or "
                        f"None for float coupling, got {frac_bits!r}")
    return frac_bits


class ReversibleBlock(nn.Module):
    """One reversible MS-ResNet block over ``[T, B, C, H, W]`` (``C`` even); see the module
    docstring for the equations. ``conv1``/``conv2``: the specs of F's and G's convs
    (``C/2 -> C/2``, stride 1). Module names (``lif1, conv1, bn1`` in F, ``lif2, conv2, bn2``
    in G) match :func:`sw.arch.network_specs` with ``reversible=True``."""

    def __init__(self, conv1: ConvSpec, conv2: ConvSpec, downsample: str, neuron: dict[str, Any],
                 frac_bits: int | None = DEFAULT_FRAC_BITS):
        super().__init__()
        from ttsnn.sw.layers import BatchNormTB, make_conv as _make_conv
        from ttsnn.sw.neurons import MultiStepLIF

        for s in (conv1, conv2):
            if s.stride != 1 or s.in_channels != s.out_channels:
                raise UserError(f"{s.name}: a reversible block needs stride 1 and equal channel "
                                f"groups, got {s.in_channels}->{s.out_channels} stride {s.stride}")
        if conv1.in_channels != conv2.in_channels:
            raise UserError(f"{conv1.name}/{conv2.name}: F and G must see groups of the same size")
        self.half = conv1.in_channels
        self.frac_bits = _check_frac_bits(frac_bits)
        self.lif1 = MultiStepLIF(**neuron)
        self.conv1 = _make_conv(conv1, downsample)
        self.bn1 = BatchNormTB(self.half)
        self.lif2 = MultiStepLIF(**neuron)
        self.conv2 = _make_conv(conv2, downsample)
        self.bn2 = BatchNormTB(self.half)

    def f(self, x2: Tensor) -> Tensor:
        return round_to_grid(self.bn1(self.conv1(self.lif1(x2))), self.frac_bits)

    def g(self, y1: Tensor) -> Tensor:
        return round_to_grid(self.bn2(self.conv2(self.lif2(y1))), self.frac_bits)

    def split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.dim() != 5 or x.shape[2] != 2 * self.half:
            raise UserError(f"ReversibleBlock: expected [T, B, {2 * self.half}, H, W], got shape "
                            f"{tuple(x.shape)}")
        return x[:, :, :self.half], x[:, :, self.half:]

    def forward(self, x: Tensor) -> Tensor:
        x1, x2 = self.split(x)
        y1 = x1 + self.f(x2)
        y2 = x2 + self.g(y1)
        return torch.cat((y1, y2), dim=2)

    @torch.no_grad()
    def inverse(self, y: Tensor) -> Tensor:
        """The block's input recomputed from its output (BN running statistics untouched)."""
        y1, y2 = self.split(y)
        with keep_bn_statistics(self):
            x2 = y2 - self.g(y1)
            x1 = y1 - self.f(x2)
        return torch.cat((x1, x2), dim=2)

    def f_parameters(self) -> list[nn.Parameter]:
        return [p for m in (self.conv1, self.bn1) for p in m.parameters()]

    def g_parameters(self) -> list[nn.Parameter]:
        return [p for m in (self.conv2, self.bn2) for p in m.parameters()]

    def extra_repr(self) -> str:
        return f"groups=2x{self.half}, frac_bits={self.frac_bits}"


@contextlib.contextmanager
def keep_bn_statistics(module: nn.Module) -> Iterator[None]:
    """Restore the running statistics of ``module``'s BatchNorms on exit: a recompute in
    training mode must not update them a second time."""
    bns = [m for m in module.modules()
           if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats]
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
             for m in bns]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, (mean, var, n) in zip(bns, saved):
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.copy_(n)


def _grads(outputs: Tensor, inputs: Sequence[Tensor], grad_out: Tensor) -> list[Tensor | None]:
    return list(torch.autograd.grad(outputs, inputs, grad_out, allow_unused=True))


def _naive_block_backward(block: ReversibleBlock, y: Tensor, dy: Tensor
                          ) -> tuple[Tensor, Tensor, list[Tensor | None]]:
    """Invert, re-run the forward with autograd, differentiate: returns (x, dx, param grads)."""
    x = block.inverse(y)
    params = block.f_parameters() + block.g_parameters()
    with torch.enable_grad(), keep_bn_statistics(block):
        xr = x.detach().requires_grad_()
        grads = _grads(block(xr), [xr, *params], dy)
    return x, grads[0], grads[1:]


def _streamlined_block_backward(block: ReversibleBlock, y: Tensor, dy: Tensor
                                ) -> tuple[Tensor, Tensor, list[Tensor | None]]:
    """One recompute-and-differentiate pass: G(y1) and F(x2) are each computed once, with their
    graph; the values invert the block, the graphs give the gradients."""
    y1, y2 = block.split(y)
    dy1, dy2 = block.split(dy)
    fp, gp = block.f_parameters(), block.g_parameters()
    with torch.enable_grad(), keep_bn_statistics(block):
        z1 = y1.detach().requires_grad_()
        gz = block.g(z1)
        g_grads = _grads(gz, [z1, *gp], dy2)
        x2 = (y2 - gz.detach()).requires_grad_()
        fx = block.f(x2)
        dx1 = dy1 + g_grads[0]                  # dL/dy1 in total = dL/dx1 (y1 = x1 + F)
        f_grads = _grads(fx, [x2, *fp], dx1)
    x1 = y1 - fx.detach()
    dx2 = dy2 + f_grads[0]
    x = torch.cat((x1, x2.detach()), dim=2)
    return x, torch.cat((dx1, dx2), dim=2), f_grads[1:] + g_grads[1:]


def _check_exact_range(peak: float, frac_bits: int | None) -> None:
    """Warn when the fixed-point coupling leaves the range where float32 sums are exact
    (every value on the ``2**-frac_bits`` grid below ``2**(23 - frac_bits)``, so that sums of
    two stay below ``2**(24 - frac_bits)``: 24 significand bits)."""
    if frac_bits is None:
        return
    limit = 2.0 ** (23 - frac_bits)
    if not peak < limit:
        warnings.warn(f"reversible blocks: a membrane reached |{peak:.4g}| >= {limit:g}, outside the "
                      f"range where the 2**-{frac_bits} fixed-point coupling is exact in float32; the "
                      f"recomputed inputs may differ from the real ones (lower reversible_frac_bits)",
                      RuntimeWarning, stacklevel=3)


class _ReversibleChain(torch.autograd.Function):
    """Consecutive reversible blocks: the forward keeps only the chain's output; the backward
    reconstructs each block's input from its output and differentiates block by block."""

    @staticmethod
    def forward(ctx, x: Tensor, blocks: tuple, backward: str, *params: Tensor):  # type: ignore[override]
        ctx.blocks, ctx.backward = blocks, backward
        x = x.detach()   # plain data inside: module hooks (e.g. memory trackers) see no graph
        peak = float(x.abs().max()) if x.numel() else 0.0
        for b in blocks:
            x = b(x)
            peak = max(peak, float(x.abs().max()) if x.numel() else 0.0)
        _check_exact_range(peak, blocks[0].frac_bits)
        ctx.save_for_backward(x)
        return x

    @staticmethod
    def backward(ctx, dy: Tensor):  # type: ignore[override]
        (y,) = ctx.saved_tensors
        y = y.detach()
        step = _streamlined_block_backward if ctx.backward == "streamlined" else _naive_block_backward
        per_block = []
        for b in reversed(ctx.blocks):
            y, dy, pgrads = step(b, y, dy)
            per_block.append(pgrads)
        param_grads = [g for pg in reversed(per_block) for g in pg]
        return (dy, None, None, *param_grads)


def _chain_parameters(blocks: Sequence[ReversibleBlock]) -> list[nn.Parameter]:
    return [p for b in blocks for p in b.f_parameters() + b.g_parameters()]


class ReversibleSequential(nn.Sequential):
    """A stage whose runs of consecutive :class:`ReversibleBlock` s train without storing
    activations (``backward``: one of :data:`BACKWARDS`); other blocks run as usual. Each run's
    input is put on the fixed-point grid first (part of the network's function, also with
    ``'autograd'``)."""

    def __init__(self, *blocks: nn.Module, backward: str = "streamlined"):
        super().__init__(*blocks)
        self.backward = backward
        set_backward(self, backward)

    def _runs(self) -> list[list[nn.Module]]:
        runs: list[list[nn.Module]] = []
        for b in self:
            if isinstance(b, ReversibleBlock) and runs and isinstance(runs[-1][0], ReversibleBlock):
                runs[-1].append(b)
            else:
                runs.append([b])
        return runs

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        for run in self._runs():
            if not isinstance(run[0], ReversibleBlock):
                x = run[0](x)
                continue
            x = round_to_grid(x, run[0].frac_bits)
            params = _chain_parameters(run)
            needs_graph = torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in params))
            if self.backward == "autograd" or not needs_graph:
                for b in run:
                    x = b(x)
            else:
                x = _ReversibleChain.apply(x, tuple(run), self.backward, *params)
        return x


def set_backward(model: nn.Module, backward: str) -> None:
    """Pick the backward of every :class:`ReversibleSequential` in ``model``."""
    if backward not in BACKWARDS:
        raise UserError(f"unknown reversible backward {backward!r}; choose one of {', '.join(BACKWARDS)}")
    for m in model.modules():
        if isinstance(m, ReversibleSequential):
            m.backward = backward


@torch.no_grad()
def reconstruction_report(model: nn.Module, x: Tensor) -> dict[str, Any]:
    """Run ``model(x)`` recording every reversible block's real input, then reconstruct the
    inputs backwards from each chain's output as the backward pass does (errors accumulate
    along a chain) and compare. Returns per-block and total figures: max |x_rec - x|, the
    fraction of bit-identical values, and the spikes of LIF1 (on x2) and LIF2 (on y1) that differ
    between the reconstructed and the real inputs (``flips``, out of ``spikes_checked``)."""
    blocks = {n: m for n, m in model.named_modules() if isinstance(m, ReversibleBlock)}
    seen: dict[str, tuple[Tensor, Tensor]] = {}
    hooks = [m.register_forward_hook(lambda mod, inp, out, n=n: seen.__setitem__(n, (inp[0], out)))
             for n, m in blocks.items()]
    try:
        with keep_bn_statistics(model):
            model(x)
    finally:
        for h in hooks:
            h.remove()
    rows, names = [], list(blocks)
    y_rec: Tensor | None = None
    for i in reversed(range(len(names))):
        name, block = names[i], blocks[names[i]]
        x_true, y_true = seen[name]
        # a chain continues backwards while the next block's input is this block's output
        nxt = seen.get(names[i + 1]) if i + 1 < len(names) else None
        y = y_rec if (nxt is not None and y_rec is not None and nxt[0] is y_true) else y_true
        with keep_bn_statistics(block):
            x_rec = block.inverse(y)
            x1, x2 = block.split(x_rec)
            t1, t2 = block.split(x_true)
            flips = int((block.lif1(x2) != block.lif1(t2)).sum())
            y1r, _ = block.split(y)
            y1t, _ = block.split(y_true)
            flips += int((block.lif2(y1r) != block.lif2(y1t)).sum())
        rows.append({"block": name, "max_abs_error": float((x_rec - x_true).abs().max()),
                     "exact_fraction": float((x_rec == x_true).double().mean()),
                     "flips": flips, "spikes_checked": 2 * t2.numel()})
        y_rec = x_rec
    rows.reverse()
    return {"blocks": rows, "flips": sum(r["flips"] for r in rows),
            "spikes_checked": sum(r["spikes_checked"] for r in rows),
            "max_abs_error": max((r["max_abs_error"] for r in rows), default=0.0)}
