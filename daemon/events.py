"""Publish/subscribe of daemon events, in the spirit of mpd's `idle`.

A client names the topics it cares about; every event is packed once and the
same bytes are handed to each subscriber, so fan-out cost does not grow with
message size times client count.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Protocol

from dgx_music.common import protocol

log = logging.getLogger(__name__)


class Subscriber(Protocol):
    topics: set[str]

    def push(self, frame: bytes) -> None:
        """Queue an already-packed frame; the subscriber drops itself if it cannot keep up."""


class EventHub:
    def __init__(self) -> None:
        self._subscribers: set[Subscriber] = set()
        self._listeners: list[Callable[[str, dict[str, Any]], None]] = []

    def add(self, sub: Subscriber) -> None:
        self._subscribers.add(sub)

    def remove(self, sub: Subscriber) -> None:
        self._subscribers.discard(sub)

    def listen(self, fn: Callable[[str, dict[str, Any]], None]) -> None:
        """In-process listeners (HTTP event stream, metrics, systemd status)."""
        self._listeners.append(fn)

    def publish(self, name: str, data: dict[str, Any]) -> None:
        topic = protocol.topic_of(name)
        frame: bytes | None = None
        for sub in list(self._subscribers):
            if topic in sub.topics or "*" in sub.topics:
                if frame is None:
                    frame = protocol.pack(protocol.event(name, data))
                sub.push(frame)
        for fn in self._listeners:
            try:
                fn(name, data)
            except Exception:  # a broken listener must not stop the daemon's event flow
                log.exception("event listener failed on %s", name)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)
