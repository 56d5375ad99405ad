from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from utilities.indexing.background import iter_in_background


def test_items_come_in_order_and_an_error_comes_where_its_item_would() -> None:
    def items() -> Iterator[int]:
        yield from range(3)
        raise OSError("disk gone")

    got: list[int] = []
    with pytest.raises(OSError, match="disk gone"):
        for item in iter_in_background(items()):
            got.append(item)
    assert got == [0, 1, 2]


def test_the_producer_runs_ahead_of_the_consumer_but_not_further_than_asked() -> None:
    produced: list[int] = []

    def items() -> Iterator[int]:
        for number in range(100):
            produced.append(number)
            yield number

    consumer = iter_in_background(items(), ahead=3)
    assert next(consumer) == 0
    # one handed over, three waiting in the queue, one produced and waiting for room: wait until the
    # producer has filled them (however slow the machine), then check it goes no further
    deadline = time.monotonic() + 30
    while len(produced) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # time to overrun, if it would
    assert len(produced) == 5
    assert [next(consumer) for _ in range(4)] == [1, 2, 3, 4]  # in order, none lost
    consumer.close()


def test_closing_early_stops_and_closes_the_producer() -> None:
    closed = threading.Event()

    def items() -> Iterator[int]:
        try:
            number = 0
            while True:
                yield number
                number += 1
        finally:
            closed.set()

    for item in iter_in_background(items(), ahead=2, name="endless"):
        if item == 5:
            break
    assert closed.wait(30), "the producer was not closed"
    deadline = time.monotonic() + 30
    while [thread for thread in threading.enumerate() if thread.name == "endless"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not [thread for thread in threading.enumerate() if thread.name == "endless"]
