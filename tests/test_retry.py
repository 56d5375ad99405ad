from __future__ import annotations

import time

import pytest
from pymilvus.exceptions import MilvusException

from utilities.errors import MilvusUnavailableError
from utilities.milvus import retry
from utilities.milvus.retry import RetryPolicy, call_with_retry, is_transient

UNAVAILABLE = MilvusException(
    code=2, message="Fail connecting to server on 127.0.0.1:19530, illegal connection params or server unavailable"
)


def test_delays_double_up_to_the_cap_and_fit_the_budget() -> None:
    policy = RetryPolicy(seconds=20, first_delay=0.5, max_delay=4)
    delays = policy.delays()
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    assert sum(delays) <= 20
    assert RetryPolicy(seconds=0).delays() == []


def test_unavailable_server_is_transient_but_a_refusal_is_not() -> None:
    assert is_transient(UNAVAILABLE)
    assert is_transient(ConnectionResetError())
    assert not is_transient(MilvusException(code=1100, message="invalid parameter: dim mismatch"))
    assert not is_transient(ValueError("server unavailable"))  # not from pymilvus: our own errors pass through


class FakeClock:
    """`time.monotonic` and `time.sleep` for the retry module: sleeping moves the clock, takes no time,
    and is recorded, so that waits are checked as numbers, not measured on a loaded machine."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 1000.0
        self.slept: list[float] = []
        monkeypatch.setattr(retry.time, "monotonic", lambda: self.now)
        monkeypatch.setattr(retry.time, "sleep", self.sleep)

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_a_call_that_recovers_is_retried_with_reconnects(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock(monkeypatch)
    attempts, reconnects = [], []

    def flaky() -> str:
        attempts.append(clock.now)
        if len(attempts) < 3:
            raise UNAVAILABLE
        return "ok"

    policy = RetryPolicy(seconds=5, first_delay=0.05)
    assert call_with_retry(flaky, policy, "test", reconnect=lambda: reconnects.append(clock.now)) == "ok"
    assert len(attempts) == 3 and len(reconnects) == 2
    assert clock.slept == [0.05, 0.1]  # the wait doubled
    assert reconnects == [attempts[0] + 0.05, attempts[1] + 0.1]  # a reconnect after each wait, before the retry


def test_retries_stop_when_the_budget_is_spent(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock(monkeypatch)
    calls = []

    def down() -> None:
        calls.append(clock.now)
        clock.now += 0.01  # each attempt takes a little time
        raise UNAVAILABLE

    with pytest.raises(MilvusUnavailableError, match="gave up after 0.7 s"):
        call_with_retry(
            down,
            RetryPolicy(seconds=1.0, first_delay=0.1),
            "test",
            give_up=lambda error, spent: MilvusUnavailableError(f"gave up after {spent:.1f} s: {error}"),
        )
    assert len(calls) == 4 and clock.slept == [0.1, 0.2, 0.4]  # 0.8 s more would pass the 1 s budget


def test_real_waits_are_slept(monkeypatch: pytest.MonkeyPatch) -> None:
    attempts: list[float] = []

    def flaky() -> str:
        attempts.append(time.monotonic())
        if len(attempts) < 2:
            raise UNAVAILABLE
        return "ok"

    assert call_with_retry(flaky, RetryPolicy(seconds=5, first_delay=0.05), "test") == "ok"
    assert attempts[1] - attempts[0] >= 0.05  # a sleep never ends early; no upper bound on a loaded machine


def test_errors_that_are_not_transient_are_raised_at_once() -> None:
    calls = []

    def refused() -> None:
        calls.append(1)
        raise MilvusException(code=1100, message="invalid expression")

    with pytest.raises(MilvusException, match="invalid expression"):
        call_with_retry(refused, RetryPolicy(seconds=10), "test")
    assert calls == [1]


def test_pymilvus_is_quieted_only_in_the_retrying_thread() -> None:
    import logging
    import threading

    import pymilvus  # noqa: F401 - creates its loggers

    source, parent = logging.getLogger("pymilvus.decorators"), logging.getLogger("pymilvus")
    original, seen, attempts = parent.level, [], []
    inside, proceed = threading.Event(), threading.Event()

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append((threading.current_thread().name, record.getMessage()))

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise UNAVAILABLE
        source.error("from the retrying thread")
        inside.set()
        proceed.wait(5)
        return "ok"

    handler = Keep()
    parent.addHandler(handler)
    parent.setLevel(logging.WARNING)  # the CLI, run in-process by other tests, quiets pymilvus
    level = parent.level
    try:
        worker = threading.Thread(
            target=lambda: call_with_retry(flaky, RetryPolicy(seconds=5, first_delay=0.01), "t"), name="retrying"
        )
        worker.start()
        assert inside.wait(5)
        source.error("from another thread, meanwhile")
        assert parent.level == level  # nothing global changed
        proceed.set()
        worker.join(5)
        source.error("after the retry")
    finally:
        parent.removeHandler(handler)
        parent.setLevel(original)
    assert seen == [("MainThread", "from another thread, meanwhile"), ("MainThread", "after the retry")]
