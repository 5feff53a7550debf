"""The repository sets itself up: pins, ignores and the two README commands."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_torch_is_pinned_exactly() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    torch = [d for d in deps if re.match(r"torch\b", d)]
    assert torch == ["torch==2.13.0"], "any looser torch requirement pulls the CUDA build"
    assert not any(d.startswith("torchvision") for d in deps)


def test_readme_opens_with_the_two_commands() -> None:
    head = (ROOT / "README.md").read_text().split("\n## ")[0]
    assert "make demo" in head and "make test" in head


def test_make_targets_exist() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for target in ("demo", "test", "test-slow", "rtl", "lint", "synth", "fpga", "cosim-full", "energy", "bench"):
        assert re.search(rf"^{re.escape(target)}:", makefile, re.M), target
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_build_outputs_are_ignored() -> None:
    ignored = (ROOT / ".gitignore").read_text().split()
    for entry in (".venv/", "sim_build/", "build/", "*.fst", "__pycache__/"):
        assert entry in ignored


def test_cli_rejects_unknown_command_without_traceback() -> None:
    proc = subprocess.run([sys.executable, "-m", "ttsnn.sw", "frobnicate"], capture_output=True, text=True,
                          cwd=ROOT)
    assert proc.returncode == 2
    assert "invalid choice" in proc.stderr and "Traceback" not in proc.stderr


def test_output_path_that_is_a_file_is_a_clear_error(tmp_path) -> None:
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("keep me")
    proc = subprocess.run([sys.executable, "-m", "ttsnn.sw", "train", "--config",
                           str(ROOT / "configs" / "train" / "digits_ptt.toml"), "--out", str(blocker),
                           "--epochs", "1"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert "error" in proc.stderr and "Traceback" not in proc.stderr
    assert blocker.read_text() == "keep me"
