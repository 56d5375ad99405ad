"""Running an iterator in a thread, a few items ahead of the code that consumes it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from queue import Full, Queue
from typing import Any, TypeVar

T = TypeVar("T")

_END = object()


def iter_in_background(items: Iterator[T], ahead: int = 2, name: str = "background") -> Iterator[T]:
    """Yield the items of `items`, which a thread produces up to `ahead` items in advance.

    An exception raised by `items` is raised here, where its item would have come. Closing
    this generator (or an exception in the consumer) stops the thread after the item it is
    producing, and closes `items`.

    Args:
        items: The iterator to run in the thread (a generator, typically).
        ahead: How many produced items may wait for the consumer.
        name: The thread's name (seen in debuggers and `py-spy`).

    Example:
        >>> list(iter_in_background(iter(range(5))))
        [0, 1, 2, 3, 4]
    """
    queue: Queue[tuple[Any, BaseException | None]] = Queue(maxsize=ahead)
    stop = threading.Event()

    def put(entry: tuple[Any, BaseException | None]) -> bool:
        while not stop.is_set():
            try:
                queue.put(entry, timeout=0.1)
                return True
            except Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((_END, None))
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, which raises it
            put((_END, error))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item, error = queue.get()
            if item is _END:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        thread.join()
