"""Every option of every command line has help text, and progress in a log is plain lines.

A bar redraws itself with carriage returns: fine on a terminal, hundreds of junk lines in a log
file. Off a terminal the kit prints whole lines (sw.progress.PlainProgress) instead.
"""

from __future__ import annotations

import argparse
import importlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ttsnn.sw.progress import PlainProgress, tqdm

REPO = Path(__file__).resolve().parents[2]


class _Captured(Exception):
    pass


def _gen_parser(module: str, monkeypatch) -> argparse.ArgumentParser:
    """The parser that ``module.main`` builds (the gen CLIs build it inside main)."""
    seen = []

    def capture(self, args=None, namespace=None):
        seen.append(self)
        raise _Captured
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    with pytest.raises(_Captured):
        importlib.import_module(module).main([])
    monkeypatch.undo()
    return seen[0]


def _options_without_help(parser: argparse.ArgumentParser, name: str) -> list[str]:
    missing = []
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for sub_name, sub in a.choices.items():
                missing += _options_without_help(sub, f"{name} {sub_name}")
        elif a.help is None and a.dest != "help":
            missing.append(f"{name} {'/'.join(a.option_strings) or a.dest}")
    return missing


def test_every_option_of_every_cli_has_help(monkeypatch):
    from ttsnn.cosim.__main__ import build_parser as cosim_parser
    from ttsnn.model.__main__ import build_parser as model_parser
    from ttsnn.sw.__main__ import COMMANDS

    missing = []
    for name in COMMANDS:
        p = argparse.ArgumentParser()
        importlib.import_module(f"ttsnn.sw.commands.{name.replace('-', '_')}").add_arguments(p)
        missing += _options_without_help(p, f"sw {name}")
    missing += _options_without_help(cosim_parser(), "cosim")
    missing += _options_without_help(model_parser(), "model")
    for module in ("ttsnn.gen.__main__", "ttsnn.gen.perf", "ttsnn.gen.lint", "ttsnn.gen.synth", "ttsnn.gen.fpga"):
        missing += _options_without_help(_gen_parser(module, monkeypatch), module)
    assert missing == []


def test_named_options_list_their_allowed_values():
    from ttsnn.model.__main__ import build_parser
    from ttsnn.sw.commands.train import add_config_arguments

    p = argparse.ArgumentParser()
    add_config_arguments(p)
    helps = {a.dest: a.help for a in p._actions}
    assert all(m in helps["mode"] for m in ("dense", "stt", "ptt", "htt"))
    assert "cosine" in helps["scheduler"] and "constant" in helps["scheduler"]
    assert "ncaltech101" in helps["dataset"] and "maxpool" in helps["downsample"]
    subs = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    energy = {a.dest: a.help for a in subs["energy"]._actions}
    assert all(m in energy["modes"] for m in ("dense", "stt", "ptt", "htt"))
    sparsity = {a.dest: a.help for a in subs["sparsity"]._actions}
    assert "digits-events" in sparsity["data"] and ">= 1" in sparsity["batches"]


class _FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_a_bar_on_a_terminal_and_plain_lines_elsewhere():
    term = _FakeTerminal()
    for _ in tqdm(range(3), desc="t", file=term, mininterval=0):
        pass
    assert "\r" in term.getvalue()  # tqdm's bar
    log = io.StringIO()
    bar = tqdm(total=4, desc="steps", file=log, interval=0)
    assert isinstance(bar, PlainProgress)
    for _ in range(4):
        bar.update()
    bar.set_postfix(loss=0.5)
    bar.close()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert lines[0].startswith("steps: 1/4 it (25 %)") and lines[3].startswith("steps: 4/4 it (100 %)")
    assert lines[-1].endswith("loss=0.5")
    quiet = io.StringIO()
    for _ in tqdm(range(3), file=quiet, disable=True):
        pass
    assert quiet.getvalue() == ""


def test_plain_lines_come_at_most_once_an_interval():
    log = io.StringIO()
    bar = PlainProgress(total=1000, desc="x", file=log, interval=3600)
    for _ in range(1000):
        bar.update()
    bar.close()
    assert log.getvalue() == ""  # nothing printed under way: no closing line either


def test_a_training_run_into_a_log_writes_no_carriage_returns(tmp_path):
    env = {**os.environ, "TTSNN_PROGRESS_INTERVAL": "0"}
    r = subprocess.run([sys.executable, "-m", "ttsnn.sw", "train", "--arch", "tiny", "--mode", "ptt",
                        "--ranks", "2", "--timesteps", "2", "--dataset", "digits", "--size", "8",
                        "--epochs", "1", "--batch-size", "16", "--max-train-samples", "48",
                        "--max-test-samples", "16", "--threads", "1", "--out", str(tmp_path / "run")],
                       capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stderr and "\r" not in r.stdout
    assert "epoch 1/1: 3/3 it (100 %)" in r.stderr  # the plain progress lines (3 batches of 16)
