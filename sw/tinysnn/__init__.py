"""tinySNN (Putra & Shafique): a memory- and energy-efficient unsupervised STDP network.

A Diehl & Cook (2015) style fully connected network (rate-coded inputs, excitatory LIF
neurons with adaptive thresholds, pair-wise STDP) and its tinySNN variant (no inhibitory
layer: direct lateral inhibition; weight updates once per timestep window, potentiation
scaled by the post-synaptic activity), with fixed-point quantisation (PTQ / ITQ),
memory and energy accounting and reward-based model selection.

Modules (thin, pure functions where possible):

- :mod:`sw.tinysnn.config`: :class:`SNNConfig`, one validated immutable configuration.
- :mod:`sw.tinysnn.network`: the simulation (vectorised over neurons and, for inference,
  over images; the only Python loop is over timesteps) and the learning rules.
- :mod:`sw.tinysnn.fixedpoint`: fixed-point formats; rounding is :func:`sw.quantize.round_values`.
- :mod:`sw.tinysnn.labels`: neuron labelling, prediction, accuracy, confusion matrix.
- :mod:`sw.tinysnn.data`: the embedded digits and MNIST / Fashion-MNIST IDX files.
- :mod:`sw.tinysnn.cost`: memory footprint and operation counts priced with model/'s table.
- :mod:`sw.tinysnn.select`: reward, selection per mu, Pareto front.
- :mod:`sw.tinysnn.experiment`: train / evaluate / explore drivers used by the CLI.
"""
