"""A quiet terminal: the start-up noise of TensorFlow and its C++ libraries, kept out of the user's way.

Importing TensorFlow (Keras' default backend) writes lines like
`WARNING: All log messages before absl::InitializeLog() is called are written to STDERR` and
`I0000 00:00:... port.cc:153] oneDNN custom operations are on ...` straight to the process'
file descriptor 2, from C++, whatever `TF_CPP_MIN_LOG_LEVEL` says. `import_keras` imports Keras
with that descriptor pointed at a temporary file, then writes back every line that is not such
noise, so real errors still reach the terminal. Python warnings raised during the import are
dropped too.

Nothing is hidden when the `utilities` logger is enabled for DEBUG (the CLI's `--verbose`) or
`UTILITIES_VERBOSE=1` is set.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator
from typing import Any

NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IWE]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] "  # absl's C++ log line: I0000 00:00:... 1234 port.cc:153] ...
    r"|To enable the following instructions: "  # the second line of TensorFlow's cpu_feature_guard note
    r"|.*TF-TRT Warning)"
)
"""Lines of native start-up noise, matched at the start of each line written to descriptor 2."""


def verbose() -> bool:
    """Whether the user asked to see everything: `utilities` logs at DEBUG, or `UTILITIES_VERBOSE=1`."""
    return os.environ.get("UTILITIES_VERBOSE") == "1" or logging.getLogger("utilities").isEnabledFor(logging.DEBUG)


def without_noise(text: str) -> str:
    """`text` without the lines `NOISE` matches.

    Example:
        >>> without_noise("I0000 00:00:1.5    61 port.cc:153] oneDNN custom operations are on.\\nreal\\n")
        'real\\n'
    """
    return "".join(line for line in text.splitlines(keepends=True) if not NOISE.match(line))


@contextlib.contextmanager
def native_noise_filtered(enabled: bool = True) -> Iterator[None]:
    """Inside, what anything writes to file descriptor 2 is held back; on leaving, all but the
    noise lines are written to it.

    Args:
        enabled: False runs the block untouched.
    """
    if not enabled:
        yield
        return
    with contextlib.suppress(AttributeError, ValueError, OSError):
        sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(AttributeError, ValueError, OSError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = without_noise(held.read().decode("utf-8", errors="replace"))
            if kept:
                os.write(2, kept.encode("utf-8"))


def import_keras() -> Any:
    """Import Keras (and its backend) without the backend's start-up noise, unless `verbose()`.

    With TensorFlow as the backend and `TF_CPP_MIN_LOG_LEVEL` unset, the level is set to 2 first
    (TensorFlow's later INFO and WARNING lines are hidden too; errors are not).
    """
    if "keras" in sys.modules:
        return sys.modules["keras"]
    loud = verbose()
    if not loud:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with native_noise_filtered(enabled=not loud), warnings.catch_warnings():
        if not loud:
            warnings.simplefilter("ignore")
        import keras
    return keras
