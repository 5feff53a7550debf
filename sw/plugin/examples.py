"""Small networks written the way spikingjelly and snnTorch users write them: what the tests
convert, and what ``python -m sw convert --model ttsnn.sw.plugin.examples:NAME`` can build.

Each factory takes keyword arguments only (the CLI passes ``--model-kwargs`` JSON). The
libraries are imported inside the factories: ``sw`` itself never needs them.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["spikingjelly_net", "spikingjelly_seq_net", "snntorch_net", "SnnTorchConvNet"]


def spikingjelly_net(in_channels: int = 2, channels: int = 8, num_classes: int = 10,
                     step_mode: str = "m", tau: float = 2.0) -> nn.Module:
    """spikingjelly's layer-by-layer style: ``layer.Conv2d`` / ``layer.BatchNorm2d`` /
    ``neuron.LIFNode`` in a Sequential; ``step_mode='m'`` takes ``[T, B, C, H, W]`` and returns
    ``[T, B, num_classes]``, ``'s'`` one timestep per call (reset with ``functional.reset_net``)."""
    from spikingjelly.activation_based import functional, layer, neuron, surrogate

    def lif():
        return neuron.LIFNode(tau=tau, surrogate_function=surrogate.ATan(), detach_reset=True)

    c = channels
    net = nn.Sequential(
        layer.Conv2d(in_channels, c, 3, padding=1, bias=False), layer.BatchNorm2d(c), lif(),
        layer.Conv2d(c, 2 * c, 3, stride=2, padding=1, bias=False), layer.BatchNorm2d(2 * c), lif(),
        layer.Conv2d(2 * c, 2 * c, 3, padding=1, bias=True), layer.BatchNorm2d(2 * c), lif(),
        layer.AdaptiveAvgPool2d(1), layer.Flatten(), layer.Linear(2 * c, num_classes),
    )
    functional.set_step_mode(net, step_mode)
    return net


def spikingjelly_seq_net(in_channels: int = 2, channels: int = 8, num_classes: int = 10,
                         tau: float = 2.0) -> nn.Module:
    """spikingjelly's container style: plain ``nn.Conv2d`` inside ``SeqToANNContainer`` (fed the
    folded ``[T*B, C, H, W]``) and multi-step LIF nodes; ``[T, B, ...]`` in, ``[T, B, K]`` out."""
    from spikingjelly.activation_based import layer, neuron, surrogate

    def lif():
        return neuron.LIFNode(tau=tau, surrogate_function=surrogate.ATan(), detach_reset=True,
                              step_mode="m")

    c = channels
    return nn.Sequential(
        layer.SeqToANNContainer(nn.Conv2d(in_channels, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)),
        lif(),
        layer.SeqToANNContainer(nn.Conv2d(c, 2 * c, 3, stride=2, padding=1, bias=False),
                                nn.BatchNorm2d(2 * c)),
        lif(),
        layer.SeqToANNContainer(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * c, num_classes)),
    )


class SnnTorchConvNet(nn.Module):
    """snnTorch's tutorial style: plain ``nn.Conv2d`` + ``snn.Leaky``, with the time loop in
    ``forward``: each conv is called once per timestep on ``[B, C, H, W]``. Input ``[T, B, C, H, W]``,
    output the stacked output spikes ``[T, B, num_classes]``."""

    def __init__(self, in_channels: int = 2, channels: int = 8, num_classes: int = 10, beta: float = 0.5):
        super().__init__()
        import snntorch as snn
        from snntorch import surrogate

        grad = surrogate.atan()
        c = channels
        self.conv1 = nn.Conv2d(in_channels, c, 3, padding=1)
        self.lif1 = snn.Leaky(beta=beta, spike_grad=grad)
        self.conv2 = nn.Conv2d(c, 2 * c, 3, stride=2, padding=1)
        self.lif2 = snn.Leaky(beta=beta, spike_grad=grad)
        self.fc = nn.Linear(2 * c, num_classes)
        self.lif3 = snn.Leaky(beta=beta, spike_grad=grad)

    def forward(self, x: Tensor) -> Tensor:
        mem1, mem2, mem3 = self.lif1.init_leaky(), self.lif2.init_leaky(), self.lif3.init_leaky()
        out = []
        for t in range(x.shape[0]):
            spk1, mem1 = self.lif1(self.conv1(x[t]), mem1)
            spk2, mem2 = self.lif2(self.conv2(spk1), mem2)
            spk3, mem3 = self.lif3(self.fc(spk2.mean(dim=(2, 3))), mem3)
            out.append(spk3 + mem3)  # spikes plus membrane: a graded read-out for the tests
        return torch.stack(out)


def snntorch_net(in_channels: int = 2, channels: int = 8, num_classes: int = 10,
                 beta: float = 0.5) -> nn.Module:
    """A :class:`SnnTorchConvNet`."""
    return SnnTorchConvNet(in_channels, channels, num_classes, beta)
