"""The ``ttsnn`` console script and the CLIs' sorting of user mistakes from bugs.

A mistake of the user prints one line (exit 2); any other exception (a plain RuntimeError or a
KeyError from a dict lookup, raised where no check of the kit raised it) prints its traceback and
the line asking to report it (exit 1).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

import ttsnn.sw.commands.ttsnn as ttsnn
from ttsnn.sw.cli_util import REPORT_LINE, UserError, is_user_error, run_cli

REPO = Path(__file__).resolve().parents[2]


def _run(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = run_cli(ttsnn.main, list(argv), prog="ttsnn")
    out = capsys.readouterr()
    return rc, out.out, out.err


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, str]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest: a.help for a in action._choices_actions}


def test_help_lists_every_command_of_every_cli_once(capsys):
    from ttsnn.cosim.__main__ import build_parser as cosim_parser
    from ttsnn.model.__main__ import build_parser as model_parser
    from ttsnn.sw.__main__ import COMMANDS

    rc, out, _ = _run(capsys, "--help")
    assert rc == 0
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("  ")]
    assert len(listed) == len(set(listed)), "a command listed twice"
    expected = set(COMMANDS) | {"gen", "perf", "lint", "synth", "fpga", "cosim", "model"}
    expected |= set(_subcommands(model_parser()))
    # cosim's check/run/speed are reached as `ttsnn cosim ...` (their names alone say too little)
    expected |= set(_subcommands(cosim_parser())) - {"check", "run", "speed"}
    assert set(listed) == expected
    # the one-line helps are the parsers' own, so they cannot drift apart
    for name, text in {**_subcommands(model_parser()), **_subcommands(cosim_parser())}.items():
        if name in ttsnn.MODEL_COMMANDS or name in ttsnn.COSIM_COMMANDS:
            assert ttsnn.find(name).help == text, name


def test_dispatch_reaches_each_cli_with_its_subcommand(capsys, monkeypatch):
    seen = []
    import ttsnn.cosim.__main__ as cosim_main
    import ttsnn.gen.perf
    from ttsnn import gen
    import ttsnn.model.__main__ as model_main
    import ttsnn.sw.__main__ as sw_main
    for mod in (cosim_main, gen.perf, model_main, sw_main):
        monkeypatch.setattr(mod, "main", lambda argv, mod=mod: seen.append((mod.__name__, argv)) or 0)
    for argv in (["replay", "--layer", "x"], ["perf", "--json"], ["energy", "--modes", "stt"],
                 ["train", "--epochs", "1"], ["cosim", "check"], ["model", "table"]):
        assert _run(capsys, *argv)[0] == 0
    assert seen == [("ttsnn.cosim.__main__", ["replay", "--layer", "x"]), ("ttsnn.gen.perf", ["--json"]),
                    ("ttsnn.model.__main__", ["energy", "--modes", "stt"]), ("ttsnn.sw.__main__", ["train", "--epochs", "1"]),
                    ("ttsnn.cosim.__main__", ["check"]), ("ttsnn.model.__main__", ["table"])]


def test_unknown_command_is_one_line(capsys):
    rc, _, err = _run(capsys, "trian")
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "unknown command 'trian'" in err


def test_a_missing_checkpoint_is_one_line(capsys, tmp_path):
    rc, _, err = _run(capsys, "eval", "--checkpoint", str(tmp_path / "none.pt"))
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and "none.pt" in lines[0], err
    assert "Traceback" not in err


def test_a_bad_config_is_one_line(capsys, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[widths]\nnot_a_width = 3\n")
    rc, _, err = _run(capsys, "gen", "--config", str(bad), "--out", str(tmp_path / "rtl"))
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and "bad.toml" in lines[0], err


@pytest.mark.parametrize("exc", [RuntimeError("boom inside"), KeyError("internal_key")])
def test_an_internal_error_keeps_its_traceback_and_asks_for_a_report(capsys, monkeypatch, exc):
    import ttsnn.sw.commands.stats as stats

    def broken(args):
        raise exc
    monkeypatch.setattr(stats, "run", broken)
    rc, _, err = _run(capsys, "stats", "--arch", "tiny")
    assert rc == 1
    assert "Traceback (most recent call last)" in err and "broken" in err
    assert REPORT_LINE in err


def test_a_lookup_error_inside_kit_code_is_a_bug_but_a_kit_check_is_a_mistake(monkeypatch):
    import ttsnn.cosim.__main__ as cosim_main
    from ttsnn.gen.config import ConfigError, config_from_dict, load_config
    from ttsnn.model.counts import Counts
    from ttsnn.sw.cli_util import MissingFileError

    # a KeyError from cosim's dispatch table (a dict lookup inside kit code, no `raise`): a bug
    monkeypatch.setattr(cosim_main, "build_parser", lambda: argparse.Namespace(
        parse_args=lambda argv: argparse.Namespace(command="no-such-command")))
    with pytest.raises(KeyError) as info:
        cosim_main.main([])
    assert not is_user_error(info.value)
    with pytest.raises(OSError) as info:
        load_config("no-such-config")  # the kit's check of a name the user gave
    assert isinstance(info.value, MissingFileError) and is_user_error(info.value)
    data = load_config("paper").to_dict()
    data["clusters"]["spike_pes"] = 0
    with pytest.raises(ValueError) as info:
        config_from_dict(data, source="edited.toml")  # an invalid configuration
    assert isinstance(info.value, ConfigError) and is_user_error(info.value)
    with pytest.raises(ValueError) as info:
        Counts().add("adder", "add", 8, -1.0)  # an internal consistency check of the kit: a bug
    assert not isinstance(info.value, UserError) and not is_user_error(info.value)
    with pytest.raises(ValueError) as info:
        int("twelve")  # raised by an operation, not by a check of the kit
    assert not is_user_error(info.value)
    assert is_user_error(UserError("x")) and is_user_error(ConfigError("f", "m"))


def test_the_python_m_forms_still_work():
    r = subprocess.run([sys.executable, "-m", "ttsnn.cosim", "--help"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0 and "replay" in r.stdout
    r = subprocess.run([sys.executable, "-m", "ttsnn.sw.commands.ttsnn", "--help"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0 and "replay-network" in r.stdout and "hw-explore" in r.stdout


BOOM = ("import argparse, runpy, sys\n"
        "def boom(self, *a, **k):\n"
        "    raise RuntimeError('injected internal failure')\n"
        "argparse.ArgumentParser.parse_args = boom\n"
        "sys.argv[0] = {mod!r}\n"
        "runpy.run_module({mod!r}, run_name='__main__', alter_sys=True)\n")


@pytest.mark.parametrize("module, mistake", [
    ("sw", ["eval", "--checkpoint", "/nonexistent/ckpt.pt"]),
    ("gen", ["--config", "/nonexistent/cfg.toml", "--out", "OUT"]),
    ("ttsnn.gen.perf", ["--config", "/nonexistent/cfg.toml"]),
    ("ttsnn.gen.lint", ["/nonexistent/rtl"]),
    ("ttsnn.gen.synth", ["--config", "/nonexistent/cfg.toml", "--out", "OUT"]),
    ("ttsnn.gen.fpga", ["--config", "/nonexistent/cfg.toml", "--out", "OUT"]),
    ("cosim", ["replay", "--checkpoint", "/nonexistent/ckpt.pt", "--layer", "layers.0.0.conv1"]),
    ("model", ["sparsity", "--checkpoint", "/nonexistent/ckpt.pt", "--out", "OUT/s.json"]),
])
def test_each_python_m_cli_one_line_for_a_mistake_traceback_for_a_bug(module, mistake, tmp_path):
    argv = [a.replace("OUT", str(tmp_path / "out")) for a in mistake]
    r = subprocess.run([sys.executable, "-m", module, *argv], capture_output=True, text=True, cwd=tmp_path,
                       env={**__import__("os").environ, "PYTHONPATH": str(REPO)}, timeout=300)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "nonexistent" in lines[0], r.stderr
    r = subprocess.run([sys.executable, "-c", BOOM.format(mod=module)], capture_output=True, text=True,
                       cwd=tmp_path, env={**__import__("os").environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert r.returncode == 1, r.stderr
    assert "Traceback (most recent call last)" in r.stderr and "injected internal failure" in r.stderr
    assert REPORT_LINE in r.stderr


@pytest.mark.parametrize("argv, usage", [
    (["train"], "usage: ttsnn train "), (["replay"], "usage: ttsnn replay "),
    (["cosim", "replay"], "usage: ttsnn cosim replay "), (["perf"], "usage: ttsnn perf "),
    (["model", "energy"], "usage: ttsnn model energy "), (["energy"], "usage: ttsnn energy "),
])
def test_usage_lines_name_the_command_the_user_typed(capsys, argv, usage):
    with pytest.raises(SystemExit) as info:
        ttsnn.main([*argv, "--help"])
    assert info.value.code == 0 and capsys.readouterr().out.startswith(usage)


def test_the_python_m_forms_keep_their_own_usage_lines(capsys):
    import ttsnn.cosim.__main__ as cosim_main
    import ttsnn.sw.__main__ as sw_main

    with pytest.raises(SystemExit):
        ttsnn.main(["train", "--help"])  # sets, then restores, the program name
    for main, argv, usage in [(sw_main.main, ["train", "--help"], "usage: python -m sw train "),
                              (cosim_main.main, ["replay", "--help"], "usage: python -m cosim replay ")]:
        capsys.readouterr()
        with pytest.raises(SystemExit):
            main(argv)
        assert capsys.readouterr().out.startswith(usage)
