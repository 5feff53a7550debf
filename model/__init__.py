"""Analytical performance and energy model of BPTT training of TT-SNNs.

Counts of every action per layer and pass (:mod:`model.counts`, :mod:`model.array`,
:mod:`model.tile`) on two accelerators built from one hardware configuration
(:mod:`model.accelerators`), priced with an energy table kept as data
(:mod:`model.energy_table`, ``model/data/energy_28nm.yaml``) plus leakage x time
(:mod:`model.evaluate`). ``python -m model --help`` lists the commands; docs/energy_model.md
describes the model, its constants and their sources, the reproduction of the paper's Fig. 4
and agreement with the RTL.
"""
