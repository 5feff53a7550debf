"""The packages form a layered import graph (issue 21): the sw library (numerics, layer lists,
file and CLI helpers) imports none of gen/cosim/model; gen imports neither cosim nor model; no
two modules import each other, directly or round a circle (imports inside functions count);
the demo (sw/commands/demo.py) is the orchestrator at the top that nothing imports."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("sw", "gen", "cosim", "model")


def _module_name(path: Path) -> str:
    """``ttsnn.sw.train`` for sw/train.py: the name the kit imports it by (ttsnn/__init__.py)."""
    parts = ["ttsnn", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package(mod: str) -> str:
    """``sw`` for ``ttsnn.sw.train``."""
    return mod.split(".")[1]


def _import_graph() -> dict[str, set[str]]:
    mods = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # package is ttsnn.<pkg>...: the level never climbs above <pkg>
                    up = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for t in targets:
                # the kit imports itself as ttsnn.sw..., ttsnn.gen... (ttsnn/__init__.py)
                t = t if t.startswith("ttsnn.") else f"ttsnn.{t}"
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != mod:
                    graph[mod].add(t)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    assert _cycles(_import_graph()) == []


def _is_cli(mod: str) -> bool:
    """Command-line front ends: they sit above every package they drive."""
    return mod.startswith("ttsnn.sw.commands") or mod.endswith("__main__")


def test_packages_are_layered():
    graph = _import_graph()
    # cosim's whole-network replay prices the RTL's counters with the energy model: cosim sits
    # above model (model never imports cosim)
    below = {"sw": (), "gen": ("sw",), "cosim": ("sw", "gen", "model"), "model": ("sw", "gen")}
    wrong = sorted(f"{m} -> {t}" for m, ts in graph.items() if not _is_cli(m) for t in ts
                   if _package(t) != _package(m) and _package(t) not in below[_package(m)])
    assert wrong == []
    # the library parts of the lower packages never reach up into a command-line front end
    # (cosim's replay reuses sw.commands.quantize's input loader: a front end of sw, below cosim)
    into_cli = sorted(f"{m} -> {t}" for m, ts in graph.items() if not _is_cli(m) for t in ts
                      if _is_cli(t) and _package(m) in ("sw", "gen"))
    assert into_cli == []


def test_the_demo_is_imported_by_nothing():
    graph = _import_graph()
    assert sorted(m for m, ts in graph.items() if "ttsnn.sw.commands.demo" in ts) == []


def test_architecture_doc_names_every_component():
    """docs/architecture.md's component diagram names every engine, the geometry unit and the
    MAC loop variants (the names a newcomer looks for in gen/)."""
    import ttsnn.gen.engines
    from ttsnn import gen
    from ttsnn.gen.engines.macloop import VARIANTS

    text = (ROOT / "docs" / "architecture.md").read_text().split("## Components (gen/)", 1)[1]
    for name in list(gen.engines.__all__) + ["TileGeometryUnit", "DESCRIPTOR_LAYOUT"] + list(VARIANTS):
        assert name in text, name
