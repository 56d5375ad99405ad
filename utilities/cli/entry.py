"""The entry point: parse the command line, set up logging, run the command, turn errors into one line.

Exit codes: 0 success (skipped bad images are reported, not failures), 2 usage errors, 1 anything
else, with a one-line message that says what to do.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Sequence

from utilities.cli.registry import build_parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code.

    Example:
        >>> main(["info", "--uri", "milvus.db"])  # doctest: +SKIP
        0
    """
    args = build_parser().parse_args(argv)
    _set_up_logging(args.verbose)
    from utilities.config import resolve_target
    from utilities.errors import ImageSearchError

    try:
        return args.run(args)
    except (ImageSearchError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except Exception as error:
        if type(error).__module__.startswith("pymilvus"):
            message = getattr(error, "message", None) or str(error)
            print(
                f"error: Milvus at {resolve_target(args.uri, args.token).shown} answered: "
                f"{message}. Check that the server is running and healthy (python -m utilities info), "
                "then run the same command again.",
                file=sys.stderr,
            )
            return 1
        raise
    except KeyboardInterrupt:
        print("interrupted: re-run the same command to resume (finished batches are kept)", file=sys.stderr)
        return 1


def _set_up_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if verbose:  # everything: the package's details, library warnings, TensorFlow's start-up lines
        logging.getLogger("utilities").setLevel(logging.DEBUG)
    else:  # only what was asked for (and progress bars): see utilities.quiet
        warnings.simplefilter("ignore")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import pymilvus  # noqa: F401 - its import sets up its own log handler; quiet it after that

        logging.getLogger("pymilvus").setLevel(logging.CRITICAL)  # errors reach the user as one line (main)
