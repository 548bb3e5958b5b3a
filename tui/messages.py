"""Typed messages from the connection worker to the widgets.

The worker (tui/connection.py) owns the Client; it never touches a widget. It
posts these to the App, which routes them to the views. `JobProgress` may
replace an earlier, still-queued progress message for the same job, so a burst
of progress events costs one repaint, not one per event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textual.message import Message


@dataclass
class Snapshot:
    """Everything the TUI needs after (re)connecting, fetched in one go."""

    socket: str
    status: dict[str, Any]
    model: dict[str, Any] | None
    jobs: list[dict[str, Any]]
    prompts: list[str]
    models: list[dict[str, Any]] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)


class Connected(Message):
    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__()
        self.snapshot = snapshot


class Disconnected(Message):
    """The daemon is unreachable; `attempt` counts retries since the last success."""

    def __init__(self, reason: str, attempt: int, retry_in: float) -> None:
        super().__init__()
        self.reason = reason
        self.attempt = attempt
        self.retry_in = retry_in

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, Disconnected)


class DaemonEvent(Message):
    """Any pushed event: `name` like "job.finished", `data` its map."""

    def __init__(self, name: str, data: dict[str, Any]) -> None:
        super().__init__()
        self.name = name
        self.data = data

    @property
    def topic(self) -> str:
        return self.name.split(".", 1)[0]


class JobProgress(DaemonEvent):
    """job.progress, coalesced: a newer one for the same job supersedes a queued one."""

    def __init__(self, data: dict[str, Any]) -> None:
        super().__init__("job.progress", data)
        self.job_id = data.get("id")

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, JobProgress) and message.job_id == self.job_id


class ModelState(Message):
    """A fresh `model.state` answer (polled for memory figures)."""

    def __init__(self, state: dict[str, Any]) -> None:
        super().__init__()
        self.state = state

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ModelState)


def event_message(name: str, data: dict[str, Any]) -> DaemonEvent:
    if name == "job.progress":
        return JobProgress(data)
    return DaemonEvent(name, data)
