"""The commands, in the order `--help` lists them, and the parser built from them.

Each command lives in its own module of `utilities.cli` (or one module a small family), which
holds both its sub-parser and the function that runs it: `register(commands, model)` adds the
sub-parser(s) and sets `run` to that function. Adding a command is its module plus one line in
`COMMAND_MODULES`.
"""

from __future__ import annotations

import argparse
from importlib import import_module

from utilities.cli.options import model_options

COMMAND_MODULES = (
    "index",  # index
    "search",  # search
    "duplicates",  # duplicates
    "audit",  # audit
    "map",  # map
    "collection",  # info, create-index, export-mapping, verify, drop
    "evaluate",  # evaluate
    "serve",  # serve
    "demo",  # demo
)
"""Modules of `utilities.cli` that each register one command or a small family of them."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command.

    Example:
        >>> build_parser().parse_args(["info"]).command
        'info'
    """
    model = model_options()  # shared as a parent by the commands that embed images
    parser = argparse.ArgumentParser(prog="python -m utilities", description="Image similarity search with Milvus.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        import_module(f"utilities.cli.{name}").register(commands, model)
    return parser
