"""``pip install .`` into a fresh virtual environment, then ``ttsnn demo`` from another folder.

No network: the wheel is built without build isolation from this checkout's setuptools, the
new environment gets the kit alone (``pip install --no-deps --no-index``) and sees this
environment's dependencies (torch, amaranth, ...) through a ``.pth`` line. Checks: the console
script, the configurations shipped in the wheel (``load_config("paper")``), the kit imported from
the environment and not the checkout, outputs under ``--out`` and the current folder, and nothing
written next to the installed package. Installation is safe beside other projects: the wheel adds
one top-level package, ``ttsnn`` (no ``sw``, ``gen``, ``cosim``, ``model``), and the demo runs
while packages of those four names that belong to someone else come first on ``sys.path``.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# what the wheel is built from (copied, so that the build leaves nothing in the checkout)
SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "ttsnn", "sw", "gen", "cosim", "model", "configs")


def _run(cmd, cwd, timeout=900, env=None):
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert r.returncode == 0, f"{cmd} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


def test_wheel_in_a_fresh_venv_runs_the_demo_from_another_folder(tmp_path):
    src = tmp_path / "src"
    for name in SOURCES:
        s = REPO / name
        if s.is_dir():
            shutil.copytree(s, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy2(s, src / name)
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
          "--no-index", str(src), "-w", str(tmp_path / "dist")], cwd=tmp_path)
    wheel = next((tmp_path / "dist").glob("ttsnn_kit-*.whl"))

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
    py = venv / "bin" / "python"
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=tmp_path).stdout.strip())
    # the dependencies of this environment, as plain paths: its .pth files (the checkout's editable
    # install among them) are not read from a path listed this way
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--quiet", "--no-deps",
          "--no-index", str(wheel)], cwd=tmp_path)
    installed = _files(site)
    assert "ttsnn/gen/configs/paper.toml" in installed and "ttsnn/sw/commands/ttsnn.py" in installed
    kit_tops = {f.split("/")[0] for f in installed if not f.split("/")[0].endswith((".dist-info", ".pth"))}
    assert kit_tops == {"ttsnn"}, f"the wheel installs top-level names {sorted(kit_tops)}"

    # another project's `sw`, `gen`, `cosim` and `model`, first on the path: importing one fails
    others = tmp_path / "other_projects"
    for name in ("sw", "gen", "cosim", "model"):
        (others / name).mkdir(parents=True)
        (others / name / "__init__.py").write_text(
            f"raise ImportError(\"the kit imported another project's '{name}'\")\n")
    env = {**os.environ, "PYTHONPATH": str(others)}
    env.pop("PYTHONHOME", None)
    clash = subprocess.run([str(venv / "bin" / "python"), "-c", "import gen"], cwd=tmp_path,
                           capture_output=True, text=True, env=env)
    assert "another project's 'gen'" in clash.stderr  # the decoys are really first on the path

    work = tmp_path / "elsewhere"
    work.mkdir()
    probe = _run([str(py), "-c", "import ttsnn.sw as sw, ttsnn.gen.config as c; print(sw.__file__); "
                  "print(c.load_config('paper').name, c.load_config('small').name)"], cwd=work, env=env).stdout.split()
    assert probe[0].startswith(str(site)) and probe[1:] == ["paper", "small"]

    ttsnn = venv / "bin" / "ttsnn"
    assert "replay-network" in _run([str(ttsnn), "--help"], cwd=work, env=env).stdout
    _run([str(ttsnn), "demo", "--out", "out", "--steps", "train_ptt,export,rtl,report", "--skip-dense",
          "--epochs", "1", "--max-train-samples", "48", "--max-test-samples", "16", "--min-acc-factor", "0",
          "--threads", "1", "--no-progress"], cwd=work, env=env)
    report = json.loads((work / "out" / "report.json").read_text())
    assert (work / "out" / "ptt.pt").is_file() and (work / "out" / "rtl" / "small" / "ttsnn_accel.v").is_file()
    assert report  # the demo wrote its report under --out
    assert _files(site) == installed, "the demo wrote next to the installed package"


KIT_PACKAGES = ("sw", "gen", "cosim", "model")


def test_the_kit_imports_itself_only_as_ttsnn():
    """No module of the kit or its tests imports ``sw``, ``gen``, ``cosim`` or ``model`` by the
    short name (another project's package of that name would be picked up); ``ttsnn.gen`` etc."""
    short = []
    for folder in (*KIT_PACKAGES, "ttsnn", "tests"):
        for path in sorted((REPO / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                short += [f"{path.relative_to(REPO)}:{node.lineno}: {n}" for n in names
                          if n.split(".")[0] in KIT_PACKAGES]
    assert short == [], f"{len(short)} imports by the short name, e.g. {short[:5]}"
