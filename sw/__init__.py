"""TT-SNN in PyTorch: LIF neurons, TT convolutions, MS-ResNet backbones, training, rank
selection, quantisation to the accelerator's formats and an integer golden model.

Kept free of heavy imports so that ``python -m sw --help`` is instant; import the
submodules (``sw.neurons``, ``sw.tt``, ``sw.resnet``, ...) directly.
"""
