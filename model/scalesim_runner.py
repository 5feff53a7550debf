"""Run SCALE-Sim (the ``scalesim`` package, v3.0.0) on conv layers: the cross-check of the
single array's cycle counts (tests/model/test_scalesim.py, docs/energy_model.md).

Standalone on purpose: it runs under a separate interpreter whose environment has ``scalesim``
with numpy < 2 (scalesim 3.0.0 fails under numpy 2 in its scratchpad model), so it imports
nothing of this project. Input (stdin, JSON): ``{"rows", "cols", "layers": [{"name", "ih",
"iw", "kh", "kw", "cin", "cout", "stride"}]}``; output (stdout, JSON): per layer, SCALE-Sim's
overall, compute and stall cycles of the output-stationary dataflow. Make the environment with

    python3 -m venv build/scalesim-venv
    build/scalesim-venv/bin/pip install scalesim==3.0.0 "numpy<2"
"""
import contextlib
import io
import json
import os
import sys
import tempfile


def main() -> None:
    spec = json.load(sys.stdin)
    from scalesim.scale_sim import scalesim
    out = {}
    with tempfile.TemporaryDirectory() as d:
        cfg = os.path.join(d, "arr.cfg")
        with open(cfg, "w") as f:
            f.write(f"""[general]
run_name = xcheck

[architecture_presets]
ArrayHeight = {spec['rows']}
ArrayWidth = {spec['cols']}
IfmapSramSzkB = 1024
FilterSramSzkB = 1024
OfmapSramSzkB = 1024
IfmapOffset = 0
FilterOffset = 10000000
OfmapOffset = 20000000
Dataflow = os
ReadRequestBuffer = 32
WriteRequestBuffer = 32

[layout]
IfmapCustomLayout = False
IfmapSRAMBankBandwidth = 10
IfmapSRAMBankNum = 10
IfmapSRAMBankPort = 2
FilterCustomLayout = False
FilterSRAMBankBandwidth = 10
FilterSRAMBankNum = 10
FilterSRAMBankPort = 2

[sparsity]
SparsitySupport = false
SparseRep = ellpack_block
OptimizedMapping = false
BlockSize = 8
RandomNumberGeneratorSeed = 40

[run_presets]
InterfaceBandwidth = CALC
UseRamulatorTrace = False
""")
        topo = os.path.join(d, "layers.csv")
        with open(topo, "w") as f:
            f.write("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n")
            for L in spec["layers"]:
                f.write(f"{L['name']}, {L['ih']}, {L['iw']}, {L['kh']}, {L['kw']}, {L['cin']}, {L['cout']}, {L['stride']},\n")
        layout = os.path.join(d, "layout.csv")
        with open(layout, "w") as f:
            f.write("Layer name,\n")
        with contextlib.redirect_stdout(io.StringIO()):
            s = scalesim(save_disk_space=True, verbose=False, config=cfg, topology=topo, layout=layout)
            s.run_scale(top_path=d)
        # scalesim 3.0.0's get_total_cycles() indexes a method (TypeError): read each layer's
        # compute report instead (overall cycles, compute cycles, stall cycles)
        out = {"layers": [dict(zip(("overall_cycles", "compute_cycles", "stall_cycles"),
                                   (int(x) for x in L.get_compute_report_items()[:3])))
                          for L in s.runner.single_layer_sim_object_list]}
    json.dump(out, sys.stdout)

if __name__ == "__main__":
    main()
