"""A connection to Milvus: the pymilvus client, the Milvus Lite owner lock, retries and reconnecting.

`MilvusConnection` owns everything about reaching Milvus and nothing about collections:
`ImageCollection` (in `milvus.collection`) calls Milvus through it with typed callables
(`connection.retrying("search", lambda client: client.search(...))`), so a call can be
followed by a type checker and by go-to-definition.

The same code serves Milvus Lite (a local `.db` file) and a Milvus server
(`http://host:19530`, standalone or distributed).
"""

from __future__ import annotations

import logging
import os
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from utilities.config import MilvusTarget, resolve_target
from utilities.errors import MilvusUnavailableError
from utilities.locks import FileLock, lock_path_beside
from utilities.milvus.lite import import_milvus_lite
from utilities.milvus.retry import RetryPolicy, call_with_retry, is_transient

logger = logging.getLogger(__name__)

T = TypeVar("T")

LITE_BUSY_WAIT_SECONDS = 5.0
"""How long opening waits for a Milvus Lite file held by another process. A process
killed with SIGKILL leaves its Lite server running for a moment (1.7 s measured) before
it notices and lets go of the file."""

UNLIMITED_CALLS = ("load_collection",)
"""Calls that get no per-attempt time limit: loading a large collection may take long."""

NO_KEEPALIVE_MS = 2**31 - 1
"""`grpc.keepalive_time_ms` of INT_MAX: gRPC reads it as never (no keepalive pings at all)."""

LITE_GRPC_OPTIONS: dict[str, int] = {
    "grpc.keepalive_time_ms": NO_KEEPALIVE_MS,
    "grpc.keepalive_permit_without_calls": 0,
}
"""gRPC channel options of a Milvus Lite client (over pymilvus' own): no keepalive pings.

pymilvus pings every 10 s (`grpc.keepalive_time_ms` 10000), with no call in flight too
(`keepalive_permit_without_calls`). The Lite server (gRPC C++ with its defaults, which cannot be
changed from outside) takes pings that come more often than gRPC's server defaults allow (one in
5 minutes, one in 2 hours while no call is open) as strikes; at the third it answers GOAWAY
`too_many_pings` (ENHANCE_YOUR_CALM) and drops the connection, which gRPC then makes again, and
stderr gets `Got goaway [11] ... too_many_pings` and `Received a GOAWAY with error code
ENHANCE_YOUR_CALM`. gRPC's client slows pings with no data between them to one a minute, so this
came after about 2 minutes without a call (135 s measured, milvus-lite 2.5.1, pymilvus 2.6.17):
while a long run embeds images, say. The Lite server is a child process on a Unix socket: there is
no network path to keep open, and a server that dies closes the socket at once, so nothing is lost
without pings. Servers (`http://...`) keep pymilvus' settings.
"""


class MilvusConnection:
    """An open pymilvus `MilvusClient`, with the retry policy and, for Milvus Lite, the owner lock.

    Use `MilvusConnection.open`. Calls that are safe to repeat go through `retrying`: while
    the server is unreachable they are retried with backoff, reconnecting in between, for up
    to `milvus.retry.RetryPolicy.seconds`; then `MilvusUnavailableError` names the URI. Calls that must not be
    repeated blindly go through `once`.

    Args:
        client: A `pymilvus.MilvusClient`.
        target: Where it is connected.
        retry: Retry budget and backoff; `RetryPolicy()` (60 s) by default.
        owner_lock: The held Milvus Lite owner lock, released by `close`.

    Example:
        >>> connection = MilvusConnection.open("db/milvus.db")  # doctest: +SKIP
        >>> connection.retrying("list_collections", lambda client: client.list_collections())  # doctest: +SKIP
        []
    """

    def __init__(
        self, client: Any, target: MilvusTarget, retry: RetryPolicy | None = None, owner_lock: FileLock | None = None
    ) -> None:
        self.client = client
        self.target = target
        self.retry = retry or RetryPolicy()
        self.owner_lock = owner_lock
        self.closed = False
        self.vector_reads_checked = False  # `milvus.storage_probe.check_vector_reads` asked this server

    @classmethod
    def open(
        cls,
        uri: str | os.PathLike | None = None,
        token: str | None = None,
        timeout: float = 10.0,
        lite_busy_wait: float = LITE_BUSY_WAIT_SECONDS,
        retry: RetryPolicy | None = None,
    ) -> MilvusConnection:
        """Connect to a Lite file or a server.

        Args:
            uri: A Lite file path ending in `.db` (its folder is created), or a server
                URI such as `http://localhost:19530`. Defaults to `$MILVUS_URI`, then
                `db/milvus.db`.
            token: `user:password` or an API key; defaults to `$MILVUS_TOKEN`.
            timeout: Seconds to wait for a server to answer.
            lite_busy_wait: Seconds to keep trying a Lite file that another process holds.
            retry: The policy for later calls.

        Returns:
            The open connection.

        Raises:
            MilvusUnavailableError: The server did not answer, refused the token, Milvus Lite
                could not be imported, or the Lite file could not be opened. The message
                names the URI.
        """
        target = resolve_target(uri, token)
        if target.is_lite:
            import_milvus_lite()  # before pymilvus tries: its own error would only say "milvus-lite is required"
            if not target.uri.endswith(".db"):
                raise MilvusUnavailableError(
                    f"Milvus Lite file name {target.shown!r} must end in '.db' (for example db/milvus.db); "
                    "for a server pass a URI such as http://localhost:19530"
                )
            Path(target.uri).expanduser().absolute().parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        owner = _lock_lite_file(target, lite_busy_wait) if target.is_lite else None
        while True:
            try:
                client = new_client(target, timeout)
                return cls(client, target, retry, owner)
            except Exception as error:  # noqa: BLE001 - pymilvus raises several unrelated types here
                # The Lite server of a process killed a moment ago can hold the database for a
                # second or two after that process' lock is gone ("database is locked"): wait for it.
                if owner is not None and time.monotonic() - started < lite_busy_wait:
                    time.sleep(0.25)
                    continue
                if owner is not None:
                    owner.release()
                raise MilvusUnavailableError(_unavailable_message(target, error)) from error

    def retrying(
        self,
        what: str,
        call: Callable[[Any], T],
        collection: str = "",
        after_reconnect: Callable[[], None] | None = None,
    ) -> T:
        """Make a call that is safe to repeat, retrying while the server is unreachable.

        Args:
            what: The call's name, for messages ("search").
            call: Receives the current client (a new one after a reconnect) and makes the call.
            collection: The collection concerned, for messages.
            after_reconnect: Run after each reconnect (for example to load the collection again).

        Raises:
            MilvusUnavailableError: The server did not answer within the retry budget.
        """

        def reconnect() -> None:
            self.reconnect()
            if after_reconnect is not None:
                after_reconnect()

        return call_with_retry(
            lambda: call(self.client),
            self.retry,
            describe=f"{what} on {collection or 'Milvus'} at {self.target.shown}",
            reconnect=reconnect,
            give_up=lambda error, spent: self.unreachable(what, error, spent, collection),
        )

    def once(self, what: str, call: Callable[[Any], T], collection: str = "") -> T:
        """Make a call that must not be repeated blindly; an unreachable server is reported clearly."""
        try:
            return call(self.client)
        except Exception as error:
            if is_transient(error):
                raise self.unreachable(what, error, 0.0, collection) from error
            raise

    def reconnect(self) -> None:
        """Replace the client with a new connection (a restarted server needs one).

        The owner lock stays held: this process keeps the Lite file.
        """
        old = self.client
        self.client = new_client(self.target, self.retry.call_timeout)
        try:
            old.close()
        except Exception as error:  # noqa: BLE001 - the old connection is already broken
            logger.debug("closing the old client failed: %s", error)

    def unreachable(
        self, what: str, error: BaseException, spent: float, collection: str = ""
    ) -> MilvusUnavailableError:
        """The error for a call that met no answering server: the URI, the call, and what to do."""
        message = getattr(error, "message", None) or str(error)
        waited = f" (retried for {spent:.0f} s)" if spent >= 1 else ""
        on = f" on collection {collection!r}" if collection else ""
        return MilvusUnavailableError(
            f"Milvus at {self.target.shown} did not answer during {what}{on}{waited}: "
            f"{message}. Check that it is running (python -m utilities info --uri {self.target.shown}), then "
            "run the same command again: rows already written are kept and are not written twice."
        )

    def close(self) -> None:
        """Close the client; for Milvus Lite also stop its local server and release the file.

        A Lite file can be open in one process at a time: close it before another
        process (another notebook, the CLI) uses the same file. Other connections of
        this process on the same file stop working too.
        """
        try:
            self.client.close()
        except Exception as error:  # noqa: BLE001 - closing a connection to a stopped server
            logger.debug("closing the client failed: %s", error)
        self.closed = True
        if self.target.is_lite:
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(self.target.uri)
            if self.owner_lock is not None:
                self.owner_lock.release()  # lets another process open the file


def connect(
    uri: str | os.PathLike | None = None,
    token: str | None = None,
    timeout: float = 10.0,
    lite_busy_wait: float = LITE_BUSY_WAIT_SECONDS,
) -> tuple[Any, MilvusTarget]:
    """Open a pymilvus `MilvusClient` on a Lite file or a server (see `MilvusConnection.open`).

    A shortcut for scripts that want the raw client. For a Lite file the owner lock is
    held for as long as the returned client lives.

    Returns:
        The client and the resolved target.

    Raises:
        MilvusUnavailableError: As `MilvusConnection.open`.

    Example:
        >>> client, target = connect("db/milvus.db")  # doctest: +SKIP
    """
    connection = MilvusConnection.open(uri, token, timeout, lite_busy_wait)
    if connection.owner_lock is not None:
        weakref.finalize(connection.client, connection.owner_lock.release)
    return connection.client, connection.target


def new_client(target: MilvusTarget, timeout: float) -> Any:
    """A pymilvus `MilvusClient` on `target`; for Milvus Lite with `LITE_GRPC_OPTIONS`.

    Args:
        target: Where to connect (a Lite file is opened: its server is started if it is not running).
        timeout: Seconds to wait for the server to answer.

    Returns:
        The client. pymilvus shares one channel among the clients of a process on one address and
        token, made with the options of the first: this package's clients all pass the same ones.
    """
    from pymilvus import MilvusClient

    options = {"grpc_options": dict(LITE_GRPC_OPTIONS)} if target.is_lite else {}
    return MilvusClient(uri=target.uri, token=target.token, timeout=timeout, **options)


def _lock_lite_file(target: MilvusTarget, wait: float) -> FileLock | None:
    """Take this process's lock on a Lite file, waiting up to `wait` s for another process to let go.

    Milvus Lite locks the file itself, but a refused second opener deletes that lock file on its
    way out (milvus-lite 2.5.1), after which a third process could open the file too. This lock
    lives in a file of its own that is never deleted (`.<name>.owner.lock` beside the database),
    so two processes using this package can never both hold the file. It is a per-process lock:
    several connections of one process share the file, as Milvus Lite does.
    """
    lock = FileLock(lock_path_beside(target.uri, ".owner.lock"), per_process=True)
    if lock.acquire(timeout=wait):
        return lock
    raise MilvusUnavailableError(
        f"cannot open Milvus Lite file {target.shown!r}: another process has it open (waited "
        f"{wait:.0f} s). Milvus Lite serves one process at a time: close it there "
        "(ImageCollection.close(), or end that notebook or command), or use a Milvus server "
        "to share a collection between processes."
    )


def _unavailable_message(target: MilvusTarget, error: Exception) -> str:
    if target.is_lite:
        return (
            f"cannot open Milvus Lite file {target.shown!r}: {error}. Check that its folder is writable, that it "
            "is a Milvus Lite database, and that no program other than this package has it open."
        )
    reason = getattr(error, "message", None) or str(error)
    if _port_answers(target.uri):
        given = "the token given was refused" if target.token else "no token was given"
        return (
            f"the Milvus server at {target.shown} answers but refused the connection ({given}): {reason}. "
            "Pass the right token as user:password (--token, or $MILVUS_TOKEN), and check that this URI "
            "is Milvus' gRPC port (19530 by default), not its HTTP port."
        )
    return (
        f"nothing answers at {target.shown}: {reason}. Start the Milvus server (see conf/ and docs/guide/server.md) "
        "or fix the host and port, or use the embedded Lite file (uri='db/milvus.db')."
    )


def _port_answers(uri: str, timeout: float = 2.0) -> bool:
    """Whether something accepts TCP connections at the URI's host and port."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(uri if "://" in uri else f"http://{uri}")
    try:
        with socket.create_connection((parts.hostname or "localhost", parts.port or 19530), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False
