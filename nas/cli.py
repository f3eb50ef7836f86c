"""The ``bsrnas`` command: a thin dispatcher over one module per subcommand.

Each subcommand lives in ``nas/commands/<name>.py`` and exposes::

    HELP: str                                  # one line for ``bsrnas --help``
    def add_arguments(parser) -> None          # its options
    def run(args) -> int                       # its work; returns the exit status

Bad input (``ValueError``, a missing file) is reported as ``bsrnas: error: ...`` with exit
status 2 and no traceback; the subcommand is responsible for saving what it already computed
before such an error escapes (finished trials stay in the study, checkpoints stay on disk).
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

#: subcommand name -> module implementing it. Modules are imported only when used, so
#: ``bsrnas --help`` stays fast and one subcommand's heavy imports never slow another.
SUBCOMMANDS = {
    "eval": "nas.commands.eval",
    "lut": "nas.commands.lut",
    "search": "nas.commands.search",
    "pareto": "nas.commands.pareto",
    "retrain": "nas.commands.retrain",
    "upscale": "nas.commands.upscale",
}


def _load(name: str):
    return importlib.import_module(SUBCOMMANDS[name])


def build_parser(only: Optional[str] = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bsrnas",
        description="Neural architecture search over binary super-resolution networks.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = _load(name) if (only is None or only == name) else None
        except ModuleNotFoundError as exc:  # a subcommand not built yet: leave it out
            if exc.name == SUBCOMMANDS[name]:
                continue
            raise
        if module is None:
            sub.add_parser(name)
            continue
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(only=command if command in SUBCOMMANDS else None)
    args = parser.parse_args(argv)
    if getattr(args, "_module", None) is None:
        parser.print_help()
        return 2 if argv else 0
    try:
        return int(args._module.run(args) or 0)
    except (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
        print(f"bsrnas {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"bsrnas {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: not an error of ours
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
