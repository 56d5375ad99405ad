"""Retrying Milvus calls that are safe to repeat, with exponential backoff bounded in time.

A Milvus server that restarts (a pod rescheduled, a laptop waking up, a crash) makes
every call fail with "server unavailable" for a few seconds. Reads, searches, deletes
and upserts (rows keyed by id) give the same result when repeated, so they are retried
until `RetryPolicy.seconds` have passed, reconnecting in between; then the caller gets
one `MilvusUnavailableError` that names the URI and says what to do. Anything else
(a bad filter, a wrong dimension, a plain insert that could add a row twice) is raised
at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_RETRY_SECONDS = 60.0
"""How long an operation keeps retrying while the server is unreachable (a restart of the
Milvus 2.3 standalone took 7-10 s on a 2-core machine)."""

_TRANSIENT_MESSAGES = (
    "fail connecting to server",
    "server unavailable",
    "connection refused",
    "failed to connect",
    "socket closed",
    "connection reset",
    "unavailable",
    "deadline exceeded",
    "not ready",
    "retry timeout",
    "retry run out",
    "channel closed",
    "collection not loaded",
)


@dataclass(frozen=True)
class RetryPolicy:
    """How long and how often to retry an operation while Milvus is unreachable.

    Attributes:
        seconds: Total time budget for one operation, retries included; 0 disables retries.
        first_delay: Seconds before the first retry; each next wait doubles.
        max_delay: Longest single wait.
        call_timeout: Seconds one attempt may take before it counts as failed.

    Example:
        >>> RetryPolicy(seconds=5).delays()[:4]
        [0.25, 0.5, 1.0, 2.0]
    """

    seconds: float = DEFAULT_RETRY_SECONDS
    first_delay: float = 0.25
    max_delay: float = 8.0
    call_timeout: float = 60.0

    def delays(self) -> list[float]:
        """The waits between attempts, in order, until the budget is spent."""
        waits, delay, total = [], self.first_delay, 0.0
        while total + delay <= self.seconds:
            waits.append(delay)
            total += delay
            delay = min(delay * 2, self.max_delay)
        return waits


def is_transient(error: BaseException) -> bool:
    """Whether `error` means "Milvus did not answer" (worth a retry) rather than "Milvus said no".

    Example:
        >>> is_transient(ConnectionRefusedError())
        True
        >>> is_transient(ValueError("dimension mismatch"))
        False
    """
    if isinstance(error, (ConnectionError, TimeoutError)):
        return True
    code = getattr(error, "code", None)
    if callable(code):  # grpc.RpcError
        try:
            name = getattr(code(), "name", "")
        except Exception:  # noqa: BLE001 - a broken error object is not transient
            return False
        return name in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED")
    if not type(error).__module__.startswith(("pymilvus", "grpc")):
        return False
    message = str(getattr(error, "message", "") or error).lower()
    return any(text in message for text in _TRANSIENT_MESSAGES)


def call_with_retry(
    operation: Callable[[], T],
    policy: RetryPolicy,
    describe: str,
    reconnect: Callable[[], None] | None = None,
    give_up: Callable[[BaseException, float], Exception] | None = None,
) -> T:
    """Run `operation`; on a transient failure wait, reconnect and try again until the budget is spent.

    Args:
        operation: The call to make (must be safe to repeat).
        policy: Budget and backoff.
        describe: What is being done, for the log ("search in images").
        reconnect: Called before each retry (for example to open a new client); its own
            failures are ignored, the next attempt tells.
        give_up: Builds the exception raised when the budget is spent, from the last
            error and the seconds spent; by default the last error is re-raised.

    Returns:
        What `operation` returned.
    """
    started = time.monotonic()
    waits = iter(policy.delays())
    quiet: _QuietWhileRetrying | None = None
    try:
        while True:
            try:
                return operation()
            except Exception as error:
                if not is_transient(error):
                    raise
                wait = next(waits, None)
                spent = time.monotonic() - started
                if wait is None or spent + wait > policy.seconds:
                    if give_up is None:
                        raise
                    raise give_up(error, spent) from error
                if quiet is None:
                    # pymilvus logs every failed attempt with a traceback; one warning per retry says enough.
                    quiet = _pymilvus_quieter()
                    quiet.enter()
                logger.warning(
                    "Milvus did not answer during %s; retrying in %.2g s (%.0f s spent)", describe, wait, spent
                )
                time.sleep(wait)
                if reconnect is not None:
                    try:
                        reconnect()
                    except Exception as reconnect_error:  # noqa: BLE001 - the next attempt reports it
                        logger.debug("reconnect failed: %s", reconnect_error)
    finally:
        if quiet is not None:
            quiet.leave()


class _QuietWhileRetrying(logging.Filter):
    """Drops pymilvus' log records in the threads that are retrying, and only in those.

    A filter rather than a change of the `pymilvus` logger's level: the level is shared by
    every thread, so concurrent searches that retried would race to set and restore it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.local = threading.local()

    def enter(self) -> None:
        self.local.depth = getattr(self.local, "depth", 0) + 1

    def leave(self) -> None:
        self.local.depth -= 1

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(self.local, "depth", 0)


def _pymilvus_quieter() -> _QuietWhileRetrying:
    """The filter on every pymilvus logger (a filter only applies to the logger a record starts at)."""
    names = ["pymilvus"] + [name for name in list(logging.root.manager.loggerDict) if name.startswith("pymilvus.")]
    loggers = [logging.getLogger(name) for name in names]
    quiet = next((f for f in loggers[0].filters if isinstance(f, _QuietWhileRetrying)), None) or _QuietWhileRetrying()
    for each in loggers:
        if quiet not in each.filters:
            each.addFilter(quiet)
    return quiet
