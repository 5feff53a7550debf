"""The accelerator's engines, one ``wiring.Component`` per file (docs/architecture.md):

* :class:`~gen.engines.cluster1.ClusterOneEngine` (cluster 1: spikes x G1 into ``line1``)
* :class:`~gen.engines.cluster23.ClusterTwoThreeEngine` (clusters 2 and 3 and the adder
  array, ``line1`` to ``line4``), with two :class:`~gen.engines.macloop.MacRowLoop` loop nests:
  ``cluster23`` and STT's cluster-3 engine ``stt_cluster3`` (on the q2 rows of ``row2``)
* :class:`~gen.engines.cluster4.ClusterFourEngine` (cluster 4, max-pool, affine, residual, LIF
  into the output ring)

Each engine has a ``start`` input that resets its own registers, the descriptor and the tile
geometry as typed inputs, its memory ports, its row-progress handshake and its counter
increments (``counts``) as signature members; its docstring states the ports and timing.
"""

from .cluster1 import ClusterOneEngine
from .cluster23 import ClusterTwoThreeEngine
from .cluster4 import ClusterFourEngine
from .macloop import MacRowLoop

__all__ = ["ClusterOneEngine", "ClusterTwoThreeEngine", "ClusterFourEngine", "MacRowLoop"]
