"""What a job function gets (JobContext) and the table of job kinds (JobRegistry): the contract
between the runner and every job module, imported by both, so job modules never import the registry."""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from models.base import utcnow


@dataclass
class JobContext:
    """What a job function gets: the job's session (the runner commits it with the `done` mark),
    the config, the services (WeChat, WeChat Pay) and the clock. A job never calls `commit()`:
    the two cases that need a write kept apart from the job's own transaction go through
    `separately` and `keep_so_far`, so every commit of a job is in this module or the runner."""

    session: Session
    config: Mapping[str, Any]
    job_id: int
    attempt: int
    services: dict[str, Any] = field(default_factory=dict)
    clock: Callable[[], datetime] = utcnow

    def now(self) -> datetime:
        return self.clock()

    @contextmanager
    def separately(self) -> Iterator[Session]:
        """A short transaction of its own, committed at the end of the block whatever the job then
        does: progress a page polls while the job runs, or a failed attempt recorded before the
        job raises (its own transaction rolls back)."""
        with Session(self.session.get_bind()) as side:
            yield side
            side.commit()

    def keep_so_far(self) -> None:
        """Commit what the job wrote until now, before it calls out: a send that WeChat does not
        dedup must be marked "sending" durably first, so a worker that dies mid-call is never
        followed by a second send. The runner still commits the rest with the `done` mark."""
        self.session.commit()


JobFunction = Callable[[JobContext, dict[str, Any]], None]


class JobRegistry:
    def __init__(self) -> None:
        self._kinds: dict[str, JobFunction] = {}
        self._abandoned: dict[str, Callable[[Session, dict[str, Any]], None]] = {}

    def register(self, kind: str, fn: JobFunction,
                 on_abandoned: Callable[[Session, dict[str, Any]], None] | None = None) -> None:
        """`on_abandoned` records what a job's own state needs when its worker died on the last
        attempt and it will not run again (the runner calls it in the transaction that marks the
        job failed): a reply shown as "perhaps delivered" rather than "sending" for ever."""
        if kind in self._kinds:
            raise ValueError(f"job kind {kind!r} is already registered")
        self._kinds[kind] = fn
        if on_abandoned is not None:
            self._abandoned[kind] = on_abandoned

    def get(self, kind: str) -> JobFunction | None:
        return self._kinds.get(kind)

    def abandoned(self, kind: str) -> Callable[[Session, dict[str, Any]], None] | None:
        return self._abandoned.get(kind)

    def __contains__(self, kind: str) -> bool:
        return kind in self._kinds
