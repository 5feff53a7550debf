"""The cached Verilog of cosim (build/cosim/<config>/rtl) is regenerated when any generator
source changes, subpackages included (gen/engines, gen/backward)."""

from __future__ import annotations

from ttsnn.cosim import layer
from ttsnn.gen.config import load_config


def test_cache_key_follows_every_generator_source(tmp_path, monkeypatch):
    for rel in ("gen/top.py", "gen/engines/cluster1.py", "gen/backward/lif_gradient.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("# v1\n")
    monkeypatch.setattr(layer, "REPO_ROOT", tmp_path)
    cfg = load_config("small")
    keys = {layer._gen_key(cfg)}
    for rel in ("gen/top.py", "gen/engines/cluster1.py", "gen/backward/lif_gradient.py"):
        (tmp_path / rel).write_text("# v2\n")
        keys.add(layer._gen_key(cfg))
    assert len(keys) == 4, "each source's change gives a new key"
    assert layer._gen_key(cfg) == layer._gen_key(cfg)
