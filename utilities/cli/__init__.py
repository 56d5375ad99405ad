"""Command line: `python -m utilities COMMAND` (see `--help` on each command).

The commands a user runs to index, search, find copies, serve and evaluate, each a thin call into the
package. Guide: `docs/guide/searching.md` (every command, one line each, in `README.md`).

One module per command, or per small family of commands, each holding its sub-parser beside the
function that runs it (`index`, `search`, `duplicates`, `collection`: info, create-index,
export-mapping, verify and drop, `evaluate`, `serve`, `demo`); `options` holds what they share,
`registry` lists them and builds the parser, `entry` runs one.

Exit codes: 0 success (skipped bad images are reported, not failures), 2 usage errors, 1 anything
else, with a one-line message that says what to do.
"""

from utilities.cli.demo import DEMO_COLLECTION
from utilities.cli.entry import main
from utilities.cli.registry import build_parser

__all__ = ["DEMO_COLLECTION", "build_parser", "main"]
