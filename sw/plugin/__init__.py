"""TT-SNN as a plug-in for other SNN code (issue 20): convert the 3x3 convs of any PyTorch
network (spikingjelly, snnTorch, norse, plain torch) to STT/PTT/HTT and merge them back
(:mod:`sw.plugin.convert`), the training methods of the paper's Table III (tdBN, TEBN, the TET
loss, NDA; :mod:`sw.plugin.methods`) and a Table III-style benchmark (:mod:`sw.plugin.bench`).
See docs/plugin.md."""

from ttsnn.sw.plugin.convert import ConvertedLayer, convert, count_macs, find_convs, merge, tt_layers_of
from ttsnn.sw.plugin.layers import PluginScheduledConv, PluginTTConv

__all__ = ["convert", "merge", "count_macs", "find_convs", "tt_layers_of", "ConvertedLayer",
           "PluginTTConv", "PluginScheduledConv"]
