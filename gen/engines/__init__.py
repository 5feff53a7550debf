"""The accelerator's engines, one ``wiring.Component`` per file (docs/architecture.md):

* :class:`~gen.engines.cluster1.ClusterOneEngine` (cluster 1: spikes x G1 into ``line1``)
* :class:`~gen.engines.cluster1_zero_skip.ClusterOneZeroSkipEngine` (cluster 1 with zero
  skipping, ``arrangement.cluster1 = "zero_skip"``: one step per 1-spike)
* :class:`~gen.engines.cluster23.ClusterTwoThreeEngine` (clusters 2 and 3 and the adder
  array, ``line1`` to ``line4``; its loop nest :class:`~gen.engines.macloop.MacRowLoop`
  ``cluster23``), which holds and lends cluster 3 to
* :class:`~gen.engines.stt_cluster3.SttClusterThreeEngine` (STT's cluster 3 on the q2 rows of
  ``row2``, loop nest ``stt_cluster3``)
* :class:`~gen.engines.cluster4.ClusterFourEngine` (cluster 4, max-pool, affine, residual, LIF
  into the output ring)

Each engine has a ``start`` input that resets its own registers, the descriptor and the tile
geometry as typed inputs, its memory ports, its row-progress handshake and its counter
increments (``counts``) as signature members; its docstring states the ports and timing.
"""

from .cluster1 import ClusterOneEngine
from .cluster1_zero_skip import ClusterOneZeroSkipEngine
from .cluster23 import ClusterTwoThreeEngine
from .cluster4 import ClusterFourEngine
from .macloop import MacRowLoop
from .stt_cluster3 import SttClusterThreeEngine

__all__ = ["ClusterOneEngine", "ClusterOneZeroSkipEngine", "ClusterTwoThreeEngine", "ClusterFourEngine", "MacRowLoop",
           "SttClusterThreeEngine"]
