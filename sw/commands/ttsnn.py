"""``ttsnn <command>``: the kit's one command line (the console script of ``pip install``).

Every command dispatches to an existing entry point, so the ``python -m`` forms keep working
unchanged: ``ttsnn train ...`` is ``python -m sw train ...``, ``ttsnn gen ...`` is
``python -m gen ...``, ``ttsnn replay ...`` is ``python -m cosim replay ...``, ``ttsnn energy
...`` is ``python -m model energy ...``; ``ttsnn cosim ...`` and ``ttsnn model ...`` reach every
command of those two. Nothing is imported before a command is chosen, so ``--help`` is instant.
"""

from __future__ import annotations

import importlib
import sys
from typing import NamedTuple, Sequence

from ttsnn.sw.cli_util import called_as, run_cli


class Command(NamedTuple):
    module: str           # the module whose ``main(argv)`` runs it
    prefix: tuple         # arguments put before the user's (the sub-command of a ``python -m`` CLI)
    help: str             # one line for ``ttsnn --help``


def _sw_commands() -> dict[str, Command]:
    from ttsnn.sw.__main__ import COMMANDS  # a table of strings, no heavy import
    return {name: Command("ttsnn.sw.__main__", (name,), text) for name, text in COMMANDS.items()}


# cosim/__main__.py's commands, reachable flat (ttsnn replay) and as `ttsnn cosim <command>`;
# tests/sw/test_ttsnn.py checks these lines against the parsers so they cannot drift
COSIM_COMMANDS = {
    "replay": "replay a trained TT layer on the RTL",
    "replay-network": "replay a whole trained network on the RTL, image by image",
    "train-step": "one training step of a trained TT layer on the RTL",
    "finetune-check": ("fine-tuning with the integer arithmetic, a sample of its steps' backward "
                       "checked on the RTL"),
}
MODEL_COMMANDS = {
    "energy": "energy of one network on one accelerator, every mode",
    "report": "Fig. 4-style report for both networks",
    "reproduce": "the paper's Fig. 4 claims against the model, bands and conditions",
    "sensitivity": "sensitivity of the Fig. 4 figures to each constant's range",
    "sparsity": "measure spike/gradient sparsity of a checkpoint",
    "tile": "forward counters of one tile (proposed accelerator)",
    "table": "the energy table as markdown, with the buffers of a configuration",
    "sweep": "design-space sweep: configurations x networks x modes",
    "hw-explore": ("quantisation search and selection of the accelerator's widths for a TT checkpoint "
                   "(docs/tinysnn.md)"),
}
GEN_COMMANDS = {
    "gen": Command("ttsnn.gen.__main__", (), "write the accelerator's Verilog and manifest for a configuration"),
    "perf": Command("ttsnn.gen.perf", (), "cycles per TT layer of MS-ResNet18/34 versus the ideal bound"),
    "lint": Command("ttsnn.gen.lint", (), "verilator --lint-only -Wall on every generated design"),
    "synth": Command("ttsnn.gen.synth", (), "Yosys synthesis of the accelerator, cells per component"),
    "fpga": Command("ttsnn.gen.fpga", (), "ECP5 synthesis, place and route: LUTs, FFs, BRAMs, DSPs, clock"),
}
GROUPS = {
    "cosim": Command("ttsnn.cosim.__main__", (), "co-simulation: check | run | replay | replay-network | "
                     "train-step | finetune-check | speed"),
    "model": Command("ttsnn.model.__main__", (), "energy model: " + " | ".join(MODEL_COMMANDS)),
}


def commands() -> dict[str, dict[str, Command]]:
    """The commands by section, in the order ``ttsnn --help`` lists them."""
    return {
        "software (python -m sw)": _sw_commands(),
        "hardware generator (python -m gen, gen.perf, gen.lint, gen.synth, gen.fpga)": GEN_COMMANDS,
        "co-simulation (python -m cosim)": {n: Command("ttsnn.cosim.__main__", (n,), h) for n, h in COSIM_COMMANDS.items()},
        "energy model (python -m model)": {n: Command("ttsnn.model.__main__", (n,), h) for n, h in MODEL_COMMANDS.items()},
        "every command of cosim / model": GROUPS,
    }


def usage() -> str:
    lines = ["usage: ttsnn <command> [options]   (ttsnn <command> --help for its options)", "",
             "The TT-SNN co-design kit's one command line; every command is also a python -m form.", ""]
    width = max(len(n) for sec in commands().values() for n in sec)
    for title, section in commands().items():
        lines.append(f"{title}:")
        lines += [f"  {name:<{width}}  {cmd.help}" for name, cmd in section.items()]
        lines.append("")
    lines.append("A mistake in what you asked prints one line (exit 2); a bug prints its traceback "
                 "(exit 1). TTSNN_DEBUG=1 shows the traceback always. docs/cli.md has examples.")
    return "\n".join(lines)


def find(name: str) -> Command | None:
    for section in commands().values():
        if name in section:
            return section[name]
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    cmd = find(argv[0])
    if cmd is None:
        known = ", ".join(n for sec in commands().values() for n in sec)
        print(f"ttsnn: error: unknown command {argv[0]!r}; commands: {known} (ttsnn --help)",
              file=sys.stderr)
        return 2
    module = importlib.import_module(cmd.module)
    # usage lines say what the user typed: `ttsnn train` (the sub-command's parser adds `train`
    # to its parent's name), `ttsnn perf`, `ttsnn cosim replay`
    with called_as("ttsnn" if cmd.prefix else f"ttsnn {argv[0]}"):
        return int(module.main([*cmd.prefix, *argv[1:]]) or 0)


def console_main() -> None:
    """The ``ttsnn`` console script."""
    sys.exit(run_cli(main, prog="ttsnn"))


if __name__ == "__main__":
    console_main()
