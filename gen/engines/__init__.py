"""The accelerator's engines, one ``wiring.Component`` per file (docs/architecture.md):

* :class:`~gen.engines.cluster1.ClusterOneEngine` (cluster 1: spikes x G1 into ``line1``)
* :class:`~gen.engines.cluster4.ClusterFourEngine` (cluster 4, max-pool, affine, residual, LIF
  into the output ring)

Each engine has a ``start`` input that resets its own registers, the descriptor and the tile
geometry as typed inputs, its memory ports, its row-progress handshake and its counter
increments (``counts``) as signature members; its docstring states the ports and timing.
"""

from .cluster1 import ClusterOneEngine
from .cluster4 import ClusterFourEngine

__all__ = ["ClusterOneEngine", "ClusterFourEngine"]
