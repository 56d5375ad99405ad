"""`duplicates`: exact and edited copies among the stored images, listed (and moved aside only if asked)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from utilities.cli.options import common_options, open_engine, positive


def register(commands: argparse._SubParsersAction, model: argparse.ArgumentParser) -> None:
    """Add the `duplicates` sub-parser to `commands` (it embeds nothing: `model` is not used)."""
    duplicates = commands.add_parser(
        "duplicates",
        parents=[common_options()],
        help="exact and edited copies among the stored images (lists them; deletes nothing)",
    )
    duplicates.add_argument(
        "--exact-only",
        action="store_true",
        help="only files with the same content (no search; saved as ...duplicates.exact.json, not for the web page)",
    )
    duplicates.add_argument(
        "--threshold",
        type=float,
        help="cosine a near pair must reach to be checked (default 0.65)",
    )
    duplicates.add_argument("--neighbours", type=positive, help="nearest rows searched for each row (default 10)")
    duplicates.add_argument(
        "--no-verify",
        action="store_true",
        help="keep every pair at the threshold, without the keypoint check (saved as ...duplicates.unchecked.json)",
    )
    duplicates.add_argument(
        "--full", action="store_true", help="search every row again, not only what changed since the last search"
    )
    duplicates.add_argument("--workers", type=positive, help="processes for the keypoint check (default: one a core)")
    duplicates.add_argument(
        "--keep",
        choices=["original", "largest", "oldest"],
        default="original",
        help="which file of a group to keep (default: the original, found from the files: content, native pixels, "
        "camera metadata, JPEG generation, then the oldest)",
    )
    duplicates.add_argument(
        "--prefer",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="keep files under this folder first (repeatable), e.g. the master library over Downloads/",
    )
    duplicates.add_argument("--json", action="store_true", help="print the report as JSON")
    duplicates.add_argument("--csv", type=Path, help="write the pairs to this CSV (a, b, cosine, kind, verified)")
    duplicates.add_argument(
        "--plot", type=Path, help="write one figure per group and a histogram into this folder (replacing its last)"
    )
    acting = duplicates.add_mutually_exclusive_group()
    acting.add_argument(
        "--move-removable",
        type=Path,
        metavar="DIR",
        help="then move the files this search lists as removable into DIR (outside the indexed folder), "
        "keeping their paths; each is checked first, nothing is overwritten or deleted; DIR's manifest allows --undo",
    )
    acting.add_argument(
        "--undo", type=Path, metavar="MANIFEST", help="put back what a --move-removable moved (no search runs)"
    )
    duplicates.add_argument("--dry-run", action="store_true", help="with --move-removable: show the plan, move nothing")
    duplicates.add_argument(
        "--root",
        type=Path,
        metavar="DIR",
        help="with --move-removable: the indexed folder whose layout is kept under DIR (default: the deepest "
        "folder holding every stored file)",
    )
    duplicates.set_defaults(run=cmd_duplicates)


def cmd_duplicates(args: argparse.Namespace) -> int:
    """Find the duplicates, print the report, write what was asked, move or put back files if asked."""
    if args.dry_run and not args.move_removable:
        print("error: --dry-run goes with --move-removable DIR", file=sys.stderr)
        return 2
    if args.root and not args.move_removable:
        print("error: --root goes with --move-removable DIR", file=sys.stderr)
        return 2
    engine = open_engine(args, with_model=False)
    if args.undo:
        undone = engine.undo_move(args.undo)
        print(json.dumps(undone.as_dict(), indent=2) if args.json else undone)
        return 0
    report = engine.find_duplicates(
        threshold=args.threshold,
        neighbours=args.neighbours,
        verify=not args.no_verify,
        exact_only=args.exact_only,
        workers=args.workers,
        full=args.full,
        keep=args.keep,
        prefer=args.prefer,
    )
    written = [report.write_csv(args.csv)] if args.csv else []
    if args.plot:
        from utilities.duplicates.figures import plot_report

        written += plot_report(report, args.plot)
    moved = None
    if args.move_removable:
        moved = engine.move_removable(args.move_removable, args.dry_run, report, root=args.root)
    if args.json:
        print(json.dumps({**report.as_dict(), **({"move": moved.as_dict()} if moved else {})}, indent=2))
    else:
        print(report)
        if written:
            shown = ", ".join(str(path) for path in written[:3]) + (" ..." if len(written) > 3 else "")
            print(f"wrote {len(written)} files: {shown}")
        if moved:
            print(moved)
    return 0
