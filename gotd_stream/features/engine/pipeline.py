"""Stages as threads joined by bounded queues: at most DEPTH items wait between two, a failure in a stage is
raised in the consumer, and a consumer that stops early stops them; `prefetch` is the one-stage case."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

DEPTH = 1  # windows waiting between two stages (a GPU window is 32k documents)


class _Failed:
    """An exception travelling down the stages to the consumer, which raises it."""

    def __init__(self, exc: BaseException):
        self.exc = exc


_END = object()


def send(q: queue.Queue, item: Any, stop: threading.Event) -> bool:
    """Put unless the consumer has gone away; False when it has."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def receive(q: queue.Queue, stop: threading.Event) -> Iterator[Any]:
    """Items of a stage's input queue until the end marker; a failure upstream is raised here."""
    while True:
        try:
            item = q.get(timeout=0.1)
        except queue.Empty:
            if stop.is_set():
                return
            continue
        if item is _END:
            return
        if isinstance(item, _Failed):
            raise item.exc
        yield item


def start_stage(body: Callable[[], None], sink: queue.Queue, stop: threading.Event, name: str) -> threading.Thread:
    """Run one stage in a daemon thread; pass the end marker, or the exception that ended it, downstream."""

    def run() -> None:
        try:
            body()
        except BaseException as exc:  # noqa: BLE001 - every failure must reach the consumer, which re-raises it
            send(sink, _Failed(exc), stop)
        else:
            send(sink, _END, stop)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread


def prefetch(results: Iterable[Any], name: str) -> Iterator[Any]:
    """The items of `results`, each computed in a thread while the caller works on the one before.

    A failure in the thread is raised in the caller; an early stop leaves the thread to end on its own.
    """
    stop = threading.Event()
    ready: queue.Queue = queue.Queue(DEPTH)

    def produce() -> None:
        for item in results:
            if not send(ready, item, stop):
                return

    thread = start_stage(produce, ready, stop, name)
    try:
        yield from receive(ready, stop)
    finally:
        stop.set()
        thread.join(timeout=0.5)
