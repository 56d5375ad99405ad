"""`demo`: index a small photo set (downloaded, or a folder given) and search it, in its own collection."""

from __future__ import annotations

import argparse
from pathlib import Path

from utilities.cli.options import common_options, open_engine, positive

DEMO_COLLECTION = "demo_imagenette"
"""The demo's collection, apart from the default one."""


def register(commands: argparse._SubParsersAction, model: argparse.ArgumentParser) -> None:
    """Add the `demo` sub-parser to `commands`."""
    demo = commands.add_parser(
        "demo", parents=[common_options(DEMO_COLLECTION), model], help="index a small photo set and search it"
    )
    demo.add_argument("--images", type=Path, help="use this folder (class sub-folders) instead of downloading")
    demo.add_argument("--output", type=Path, default=Path("results") / "demo", help="where plots and copies go")
    demo.add_argument("--per-class", type=positive, default=20, help="database images per class")
    demo.add_argument("--queries", type=positive, default=3, help="held-out query images")
    demo.add_argument("--top-k", type=positive, default=5)
    demo.set_defaults(run=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the demo and print its summary."""
    from utilities.demo import run_demo

    summary = run_demo(
        open_engine(args),
        images=args.images,
        output=args.output,
        per_class=args.per_class,
        queries=args.queries,
        top_k=args.top_k,
    )
    print(summary)
    return 0
