"""A trained MS-ResNet as a NIR graph (Neuromorphic Intermediate Representation, ``nir`` package),
the format other SNN tools read (snnTorch, norse, Lava, Rockpool, SpiNNaker2, ...).

What is written, for the merged (dense) network of a TT checkpoint:

- every conv with the BatchNorm after it folded in, as ``nir.Conv2d`` with a bias
  (``w * g / sqrt(var + eps)``, ``b - mean * g / sqrt(var + eps)``); a TT conv is exported as its
  merged dense 3x3 conv (paper Eq. 6, :func:`sw.resnet.merge_to_dense`), not as its cores;
- every LIF as ``nir.LIF``. The kit's LIF is discrete: ``u[t] = tau * u[t-1] * (1 - s[t-1]) + x[t]``,
  ``s[t] = u[t] > v_th`` (docs/numerics.md, sw/neurons.py). NIR's LIF is the ODE
  ``tau_m du/dt = (v_leak - u) + r I``; forward Euler with step ``dt`` gives
  ``u += dt / tau_m * (-u + r I)``, i.e. ``u = (1 - dt/tau_m) u + (dt r / tau_m) I``. With
  ``tau_m = dt / (1 - tau)`` and ``r = tau_m / dt`` that is exactly the kit's update, with
  ``v_leak = 0`` and reset to ``v_reset = 0``; ``dt`` (:data:`DT`) is in the graph's metadata;
- the membrane shortcut (``out + shortcut(x)``) as a sum node: an identity 1x1 ``nir.Conv2d``
  with two incoming edges (NIR sums a node's inputs; with exactly two, the order of the sum
  does not matter, and ``1 * x + 0`` is exact);
- the head: LIF, ``nir.AvgPool2d`` over the whole map, the fc layer as a 1x1 ``nir.Conv2d``
  (output ``[classes, 1, 1]``; NIR's ``Flatten`` counts dimensions without the batch while
  snnTorch's importer hands them to ``torch.nn.Flatten`` with it, so no Flatten node is used).
  The graph gives logits at every timestep; the kit's logits are their mean over T
  (equal up to float summation order: the kit averages the spikes over time before the fc).

Not representable, refused with one line: max-pool downsampling (NIR has no max-pool node;
train with ``--downsample stride``), HTT (its kernel changes with the timestep), reversible
blocks, tdBN/TEBN. Folding the BatchNorm changes the float rounding of each conv (~1e-7
relative), so a membrane within that of the threshold can flip one spike: the export reports
how often predictions agree with the unfolded model (``tests/sw/test_nir_export.py``).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ttsnn.sw.cli_util import UserError

__all__ = ["DT", "export_nir", "fold_batchnorm", "check_exportable"]

#: the Euler step the LIF parameters are written for (seconds; any positive value works, the
#: consumers that read it, e.g. snnTorch's importer, use 1e-4)
DT = 1e-4


def check_exportable(model: nn.Module) -> None:
    """Raise :class:`UserError` if ``model`` holds something NIR cannot express."""
    from ttsnn.sw.layers import BatchNormTB, DenseConv3x3
    from ttsnn.sw.resnet import BasicBlock, MSResNet

    if not isinstance(model, MSResNet):
        raise UserError(f"NIR export takes an MS-ResNet of the kit, got {type(model).__name__}")
    hp = model.hparams
    if hp.get("mode") == "htt" or hp.get("merged_from") == "htt":
        raise UserError("NIR export: HTT changes its kernel with the timestep, which a NIR graph "
                        "cannot express; export an STT or PTT model")
    for name, m in model.named_modules():
        if isinstance(m, nn.MaxPool2d) or isinstance(m, DenseConv3x3) and getattr(m, "pool", None) is not None:
            raise UserError(f"NIR export: {name} downsamples by max-pool, which NIR has no node for; "
                            "train with --downsample stride (strided convs) to export to NIR")
        if isinstance(m, nn.BatchNorm2d) and not isinstance(m, BatchNormTB):
            raise UserError(f"NIR export: {name} is {type(m).__name__}; only the plain BatchNorm "
                            "(--norm bn) folds into the convs")
    for stage in model.layers:
        for block in stage:
            if not isinstance(block, BasicBlock):
                raise UserError(f"NIR export: {type(block).__name__} blocks (reversible) are not "
                                "supported; export a model trained without --reversible")


def _folded(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> tuple[np.ndarray, np.ndarray]:
    """Weight and bias of ``bn(conv(x))`` as one conv (eval-mode BatchNorm), in float64 first."""
    w = conv.weight.detach().double()
    b = conv.bias.detach().double() if conv.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    if bn is not None:
        scale = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
        w = w * scale[:, None, None, None]
        b = (b - bn.running_mean.double()) * scale + bn.bias.detach().double()
    return w.float().numpy(), b.float().numpy()


def _plain_conv(module: nn.Module) -> nn.Conv2d:
    return module.conv if not isinstance(module, nn.Conv2d) else module


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of a merged MS-ResNet with every BatchNorm folded into the conv before it (the
    network the NIR graph describes), run by the kit's own modules."""
    from ttsnn.sw.resnet import BasicBlock, ConvBNShortcut

    check_exportable(model)
    folded = copy.deepcopy(model).eval()

    def fold(owner: nn.Module, conv_attr: str, bn_attr: str) -> None:
        conv = _plain_conv(getattr(owner, conv_attr))
        w, b = _folded(conv, getattr(owner, bn_attr))
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(w))
            conv.bias = nn.Parameter(torch.from_numpy(b))
        setattr(owner, bn_attr, nn.Identity())

    fold(folded, "conv1", "bn1")
    for stage in folded.layers:
        for block in stage:
            assert isinstance(block, BasicBlock)
            fold(block, "conv1", "bn1")
            fold(block, "conv2", "bn2")
            if isinstance(block.shortcut, ConvBNShortcut):
                fold(block.shortcut, "conv", "bn")
    return folded


def _conv_inputs(model: nn.Module) -> dict[nn.Conv2d, tuple[int, ...]]:
    """The input shape ``(C, H, W)`` of every conv, from one forward pass on zeros."""
    shapes: dict[nn.Conv2d, tuple[int, ...]] = {}

    def record(mod: nn.Module, args: tuple) -> None:
        shapes.setdefault(mod, tuple(args[0].shape[1:]))
    hooks = [m.register_forward_pre_hook(record) for m in model.modules() if isinstance(m, nn.Conv2d)]
    size = model.hparams["input_size"]
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    try:
        with torch.no_grad():
            model(torch.zeros(1, model.in_channels, h, w))
    finally:
        for hook in hooks:
            hook.remove()
    return shapes


def export_nir(model: nn.Module, metadata: dict[str, Any] | None = None):
    """The NIR graph of a merged (dense) MS-ResNet; see the module docstring for the mapping."""
    import nir

    from ttsnn.sw.resnet import ConvBNShortcut

    check_exportable(model)
    model = model.eval()
    hp = model.hparams
    tau, v_th = float(hp["tau"]), float(hp["v_threshold"])
    if not 0.0 <= tau < 1.0:
        raise UserError(f"NIR export: the LIF decay tau must be in [0, 1) for a NIR LIF, got {tau}")
    tau_m = DT / (1.0 - tau)
    shapes = _conv_inputs(model)
    nodes: dict[str, Any] = {}
    edges: list[tuple[str, str]] = []

    def conv_node(name: str, module: nn.Module, bn: nn.Module | None, src: str) -> str:
        conv = _plain_conv(module)
        w, b = _folded(conv, bn)
        nodes[name] = nir.Conv2d(input_shape=shapes[conv][1:], weight=w, stride=conv.stride,
                                 padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=b)
        edges.append((src, name))
        return name

    def lif_node(name: str, shape: tuple[int, ...], src: str) -> str:
        nodes[name] = nir.LIF(tau=np.full(shape, tau_m), r=np.full(shape, tau_m / DT),
                              v_leak=np.zeros(shape), v_threshold=np.full(shape, v_th),
                              v_reset=np.zeros(shape))
        edges.append((src, name))
        return name

    def out_shape(module: nn.Module) -> tuple[int, ...]:
        conv = _plain_conv(module)
        c, h, w = shapes[conv]
        (kh, kw), (sh, sw), (ph, pw) = conv.kernel_size, conv.stride, conv.padding
        return conv.out_channels, (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1

    stem_in = shapes[_plain_conv(model.conv1)]
    nodes["input"] = nir.Input(input_type={"input": np.array(stem_in)})
    x = conv_node("conv1", model.conv1, model.bn1, "input")
    x_shape = out_shape(model.conv1)
    for si, stage in enumerate(model.layers):
        for bi, block in enumerate(stage):
            p = f"layers_{si}_{bi}"
            y = lif_node(f"{p}_lif1", x_shape, x)
            y = conv_node(f"{p}_conv1", block.conv1, block.bn1, y)
            y = lif_node(f"{p}_lif2", out_shape(block.conv1), y)
            y = conv_node(f"{p}_conv2", block.conv2, block.bn2, y)
            if isinstance(block.shortcut, ConvBNShortcut):
                short = conv_node(f"{p}_shortcut", block.shortcut.conv, block.shortcut.bn, x)
            else:
                short = x
            x_shape = out_shape(block.conv2)
            c = x_shape[0]
            # the membrane shortcut: a sum node of exactly two inputs (identity 1x1 conv)
            nodes[f"{p}_sum"] = nir.Conv2d(input_shape=x_shape[1:], weight=np.eye(c, dtype=np.float32)[:, :, None, None],
                                           stride=1, padding=0, dilation=1, groups=1,
                                           bias=np.zeros(c, dtype=np.float32))
            edges += [(y, f"{p}_sum"), (short, f"{p}_sum")]
            x = f"{p}_sum"
    x = lif_node("head_lif", x_shape, x)
    c, h, w = x_shape
    nodes["avgpool"] = nir.AvgPool2d(kernel_size=np.array([h, w]), stride=np.array([h, w]), padding=np.array([0, 0]))
    # the fc layer as a 1x1 conv on the pooled 1x1 map: NIR's Flatten counts dims without the
    # batch, snnTorch's importer passes them to torch.nn.Flatten with it; a 1x1 conv is read alike
    fc = model.fc
    nodes["fc"] = nir.Conv2d(input_shape=(1, 1), weight=fc.weight.detach().float().numpy()[:, :, None, None],
                             stride=1, padding=0, dilation=1, groups=1, bias=fc.bias.detach().float().numpy())
    nodes["output"] = nir.Output(output_type={"output": np.array([fc.out_features, 1, 1])})
    edges += [(x, "avgpool"), ("avgpool", "fc"), ("fc", "output")]
    meta = {"producer": "ttsnn-kit (sw.nir_export)", "dt": DT, "timesteps": int(hp["timesteps"]),
            "readout": "logits = mean over the timesteps of the output",
            "input": "a static image is presented at every timestep; event data one frame per timestep",
            "lif": "kit LIF u = tau*u*(1-s) + x, s = u > v_th, as NIR LIF with tau_m = dt/(1-tau), r = tau_m/dt",
            "merged_from": str(hp.get("merged_from", hp.get("mode"))), **(metadata or {})}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, type_check=False)
