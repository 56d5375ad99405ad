"""`audit`: leaks between splits, label errors, outliers and bad images in the stored collection (lists them only)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from utilities.cli.options import common_options, open_store, positive


def register(commands: argparse._SubParsersAction, model: argparse.ArgumentParser) -> None:
    """Add the `audit` sub-parser to `commands` (it embeds nothing: `model` is not used)."""
    audit = commands.add_parser(
        "audit",
        parents=[common_options()],
        help="dataset health: copies across splits, misfiled images, outliers, bad images (moves nothing)",
    )
    audit.add_argument("--splits", nargs="+", metavar="NAME", help="split folders under --root (default: found)")
    audit.add_argument(
        "--root", type=Path, metavar="DIR", help="the indexed folder (default: the deepest folder holding every file)"
    )
    audit.add_argument("--threshold", type=float, help="cosine a near copy across splits must reach (default 0.65)")
    audit.add_argument("--neighbours", type=positive, help="nearest rows searched for each row (default 10)")
    audit.add_argument("--no-verify", action="store_true", help="list near copies without the keypoint check")
    audit.add_argument("--no-quality", action="store_true", help="skip the pixel measures (no file is read)")
    audit.add_argument(
        "--workers", type=positive, help="processes and threads for the file checks (default: one a core)"
    )
    audit.add_argument("--top", type=positive, metavar="N", help="print N items of each list (all are computed)")
    audit.add_argument("--json", action="store_true", help="print the report as JSON")
    audit.add_argument("--csv", type=Path, metavar="OUT", help="write every item of every list to this CSV")
    audit.set_defaults(run=cmd_audit)


def cmd_audit(args: argparse.Namespace) -> int:
    """Audit the collection, print the report, write the CSV if asked."""
    from utilities.audit.auditor import audit_collection
    from utilities.audit.saved import audit_path, save_audit
    from utilities.duplicates.finder import DEFAULT_NEIGHBOURS, DEFAULT_THRESHOLD
    from utilities.duplicates.provenance import Source

    store = open_store(args)
    try:
        report = audit_collection(
            store,
            splits=args.splits,
            top=args.top,
            root=args.root,
            threshold=DEFAULT_THRESHOLD if args.threshold is None else args.threshold,
            neighbours=args.neighbours or DEFAULT_NEIGHBOURS,
            verify=not args.no_verify,
            check_quality=not args.no_quality,
            workers=args.workers,
            progress=sys.stderr.isatty() or bool(os.environ.get("UTILITIES_PROGRESS")),
        )
        saved = save_audit(report, audit_path(store.target, store.name), Source.of(store))
    finally:
        store.close()
    written = report.write_csv(args.csv) if args.csv else None
    print(json.dumps(report.as_dict(), indent=2) if args.json else report)
    if not args.json:
        print(f"saved for the web page's Audit view: {saved}" + (f"; wrote {written}" if written else ""))
    return 0
