"""A quiet terminal: the start-up noise of TensorFlow and its C++ libraries, kept out of the user's way.

Importing TensorFlow (Keras' default backend) writes lines like
`WARNING: All log messages before absl::InitializeLog() is called are written to STDERR` and
`I0000 00:00:... port.cc:153] oneDNN custom operations are on ...` straight to the process'
file descriptor 2, from C++, whatever `TF_CPP_MIN_LOG_LEVEL` says. `import_keras` imports Keras
with that descriptor pointed into a pipe; a small helper process reads it line by line and writes
every line that is not such noise (`NOISE`: absl's `I` and `W` lines, the `absl::InitializeLog`
line) to the real descriptor 2 as it comes. absl's `E` and `F` lines pass: `E0000 ... failed call
to cuInit: CUDA_ERROR_NO_DEVICE` is why a GPU goes unused. The helper is a process, not a thread,
so that what was written before native code aborts the import still reaches the terminal: the
helper outlives the process, reads to the end of the pipe and writes it out. Python warnings raised
during the import are dropped.

Nothing is hidden when the `utilities` logger is enabled for DEBUG (the CLI's `--verbose`) or
`UTILITIES_VERBOSE=1` is set.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import warnings
from collections.abc import Iterator
from typing import Any

logger = logging.getLogger(__name__)

NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IW]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] "  # absl's INFO and WARNING lines: I0000 00:00:... 1234 port.cc:153] ...
    r"|To enable the following instructions: "  # the second line of TensorFlow's cpu_feature_guard note
    r"|.*TF-TRT Warning)"
)
"""Lines of native start-up noise, matched at the start of each line written to descriptor 2. absl's
`E` (error) and `F` (fatal) lines are not noise."""

_NOISE_BYTES = re.compile(NOISE.pattern.encode())

HELPER_WAIT_SECONDS = 10.0
"""How long leaving `native_noise_filtered` waits for the helper to write out the last lines. It only
waits longer than a moment if a process started inside the block still holds the pipe (the helper
then goes on filtering that process' lines)."""

MAX_PENDING_BYTES = 65536
"""A line longer than this is written out before its newline comes."""

_lingering: list[Any] = []
"""Helpers still filtering for such a process, kept so that they are not reported as leaked."""


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


def pass_lines(source: int, target: int) -> None:
    """Copy what is written to descriptor `source` to descriptor `target` until its end, line by line
    as each line is complete, leaving out the lines `NOISE` matches. A last line without its newline
    is written at the end. Once `target` is closed (a closed terminal) the rest is read and dropped,
    so that writers never block or fail.
    """
    pending = b""
    broken = False
    while True:
        try:
            chunk = os.read(source, 65536)
        except InterruptedError:  # pragma: no cover - retried by Python itself since 3.5
            continue
        data = pending + chunk
        cut = data.rfind(b"\n") + 1 if chunk and len(data) <= MAX_PENDING_BYTES else len(data)
        complete, pending = data[:cut], data[cut:]
        kept = b"".join(line for line in complete.splitlines(keepends=True) if not _NOISE_BYTES.match(line))
        while kept and not broken:
            try:
                kept = kept[os.write(target, kept) :]
            except OSError:  # the terminal went away: keep draining
                broken = True
        if not chunk:
            return


@contextlib.contextmanager
def native_noise_filtered(enabled: bool = True) -> Iterator[None]:
    """Inside, what anything writes to file descriptor 2 goes through `pass_lines` in a helper
    process: each line reaches descriptor 2 as soon as it is complete, unless it is noise. On
    leaving, the last lines are written before the block's caller goes on.

    If the helper cannot be started (no Python executable to run it), a thread does its work;
    then a line written just before the process aborts may be lost.

    Args:
        enabled: False runs the block untouched.
    """
    if not enabled:
        yield
        return
    with contextlib.suppress(AttributeError, ValueError, OSError):
        sys.stderr.flush()
    saved = os.dup(2)
    read_end, write_end = os.pipe()
    try:
        helper = _start_helper(read_end, saved)
    except BaseException:
        for descriptor in (read_end, write_end, saved):
            os.close(descriptor)
        raise
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield
    finally:
        with contextlib.suppress(AttributeError, ValueError, OSError):
            sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last write end: the helper reads to its end and stops
        os.close(saved)
        _wait_for(helper)


def _start_helper(read_end: int, target: int) -> Any:
    """A process (or, failing that, a thread) running `pass_lines` from `read_end` to `target`."""
    import subprocess
    import threading

    try:
        if not sys.executable:
            raise OSError("sys.executable is empty")
        if not (__file__.endswith(".py") and os.path.isfile(__file__)):
            raise OSError(f"{__file__} is not a Python file the helper can run")
        # -I -S: nothing from the environment or site-packages, only this file's standard-library imports
        helper: Any = subprocess.Popen(
            [sys.executable, "-I", "-S", os.path.abspath(__file__), "--pass-lines"],
            stdin=read_end,
            stdout=target,
            stderr=target,
            close_fds=True,
        )
        os.close(read_end)
        return helper
    except OSError as error:
        logger.debug("no helper process to filter descriptor 2 (%s): a thread filters it", error)

    def pump() -> None:
        try:
            pass_lines(read_end, target_copy)
        finally:
            os.close(read_end)
            os.close(target_copy)

    target_copy = os.dup(target)
    helper = threading.Thread(target=pump, name="native-noise-filter", daemon=True)
    helper.start()
    return helper


def _wait_for(helper: Any) -> None:
    """Wait until the helper has written everything out (see `HELPER_WAIT_SECONDS`)."""
    import subprocess

    if not hasattr(helper, "wait"):  # the thread
        helper.join(HELPER_WAIT_SECONDS)
        return
    try:
        helper.wait(HELPER_WAIT_SECONDS)
    except subprocess.TimeoutExpired:
        logger.debug("a process started during the import still writes to descriptor 2: its lines stay filtered")
        _lingering.append(helper)


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


if __name__ == "__main__":  # the helper process of `native_noise_filtered`
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the process it serves: it stops at the pipe's end
    pass_lines(0, 1)
