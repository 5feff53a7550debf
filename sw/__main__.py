"""``python -m sw <command>``: the software side's command line.

Each command lives in ``sw/commands/<name>.py`` with ``add_arguments(parser)`` and
``run(args)``; it is imported only when used, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from ttsnn.sw.cli_util import prog_name, run_cli

COMMANDS = {
    "demo": "train a small PTT model on the embedded data set and report on it",
    "stats": "per-layer parameter and FLOP table of an MS-ResNet, next to its dense model",
    "train": "train a dense or TT MS-ResNet (config file + flag overrides)",
    "eval": "evaluate a checkpoint",
    "export": "merge a TT checkpoint back into a plain dense model (paper Eq. 6)",
    "decompose": "rank selection (EVBMF) and TT-SVD of a trained dense checkpoint",
    "pipeline": "dense training, EVBMF ranks, TT-SVD init and TT training in one resumable run",
    "bench": "time one training step of dense, STT, PTT and HTT side by side",
    "quantize": "quantise a trained TT layer to the accelerator's formats and report the error",
    "grad-check": "integer backward pass of a TT layer vs float autograd, on real data",
    "hw-finetune": "fine-tune with the accelerator's integer forward/backward in the loop, beside float",
    "bench-reversible": "training memory and step time of standard, checkpointed and reversible blocks",
    "tinysnn": "tinySNN STDP networks: train | eval | explore (quantisation search) | select",
    "convert": "TT plug-in: convert the 3x3 convs of any PyTorch SNN to STT/PTT/HTT, or merge them back",
    "plugin-bench": "Table III-style benchmark: tdBN/TEBN/TET/NDA training, dense vs PTT via the plug-in",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog_name("python -m sw"), description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=f"ttsnn.sw.commands.{name.replace('-', '_')}")
        # The module is imported lazily in main(); its arguments are added there.
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser.parse_args(argv)  # prints help or the 'invalid choice' error
        return 2
    name = argv[0]
    module = importlib.import_module(f"ttsnn.sw.commands.{name.replace('-', '_')}")
    sub = argparse.ArgumentParser(prog=f"{prog_name('python -m sw')} {name}", description=COMMANDS[name])
    module.add_arguments(sub)
    args = sub.parse_args(argv[1:])
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="sw"))
