"""Watching topic videos: the player's heartbeats, judged against wall time on the server."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from functools import lru_cache

from sqlalchemy import Engine, bindparam, select, update
from sqlalchemy.orm import Session

from handlers import school_stats
from handlers.learning import Refused, topic_state
from models import Enrollment, WatchSession
from models.prepared import PreparedStatement, autocommit

# The fastest playback the player offers; progress beyond wall time × this is not believed.
MAX_RATE = 2.0
# Seconds of slack per heartbeat for network jitter and a player's buffered start.
TOLERANCE = 3.0
# A heartbeat this long after the last one starts a fresh stretch: progress before it is
# kept, but the gap itself earns nothing (the phone slept, the tab was hidden).
MAX_GAP = 60.0


@dataclass(frozen=True)
class Beat:
    accepted: bool
    position: float  # the verified position (where the player should be)
    watched_seconds: float
    completed: bool
    reason: str | None = None  # why a beat was not accepted, for the player's log


def start_watch(session: Session, enrollment: Enrollment, topic_code: str, now: datetime) -> WatchSession:
    """Open the player: resume from the last verified position of this topic in this round.
    Any other open session of the student stops counting (one video at a time)."""
    current, state = topic_state(session, enrollment, topic_code)
    if state.state == "done":
        raise Refused("done", "这个专题已经完成。")
    previous = session.scalar(
        select(WatchSession).where(WatchSession.enrollment_id == enrollment.id, WatchSession.round == enrollment.round,
                                   WatchSession.topic_code == topic_code)
        .order_by(WatchSession.id.desc()).limit(1)
        # Heartbeats write outside any session: never trust an already-loaded copy.
        .execution_options(populate_existing=True))
    session.execute(update(WatchSession).where(WatchSession.user_id == enrollment.user_id, WatchSession.active)
                    .values(active=False))
    resume = previous.position if previous is not None and previous.completed_at is None else 0.0
    # A rewatch after a failed test starts a new count from the start of the video.
    carried = previous.watched_seconds if previous is not None and previous.completed_at is None else 0.0
    watch = WatchSession(
        enrollment_id=enrollment.id, user_id=enrollment.user_id, round=enrollment.round, topic_code=topic_code,
        video_seconds=state.topic.video_seconds, threshold=current.version.watch_threshold, started_at=now, active=True, last_seq=0, last_beat_at=now,
        position=resume, watched_seconds=carried,
    )
    session.add(watch)
    session.flush()
    school_stats.touched(session, enrollment, now)
    return watch


_WATCHES = WatchSession.__table__
_READ = ("user_id", "active", "last_seq", "last_beat_at", "position", "watched_seconds", "video_seconds",
         "threshold", "completed_at")


@lru_cache(maxsize=16)
def _statements(engine: Engine) -> tuple[PreparedStatement, PreparedStatement]:
    """The heartbeat's read and its compare-and-set write, compiled once per engine."""
    read = select(*(_WATCHES.c[name] for name in _READ)).where(_WATCHES.c.id == bindparam("watch_id"))
    write = (
        update(_WATCHES)
        .where(_WATCHES.c.id == bindparam("watch_id"), _WATCHES.c.last_seq == bindparam("seen_seq"),
               _WATCHES.c.active.is_(True))
        .values(last_seq=bindparam("seq"), last_beat_at=bindparam("now"), position=bindparam("position"),
                watched_seconds=bindparam("watched"), completed_at=bindparam("completed_at"))
        .returning(_WATCHES.c.id)
    )
    return PreparedStatement(engine, read), PreparedStatement(engine, write)


def heartbeat(engine: Engine, user_id: int, watch_id: int, seq: int, position: float, now: datetime) -> Beat:
    """Accept progress only as fast as real time allows since the last accepted beat.

    Forward movement within wall time × MAX_RATE + TOLERANCE counts as watched; a jump
    beyond it (a seek to the end, a forged position) moves nothing. Going back is allowed
    and earns nothing. Beats must come in order (`seq` increasing) from the active session.

    It takes the engine, not a session: two statements, each its own commit, outside any
    request transaction. Read the row, then write it only if no other beat got there first
    (compare-and-set on last_seq; a loser is answered as stale). Heartbeats are the
    platform's most frequent request; this keeps one to two round trips with no lock held
    in between (measured by bench/heartbeat).
    """
    read, write = _statements(engine)
    with autocommit(engine) as dbapi:  # one pooled connection for both statements
        return _judge(read, write, dbapi, user_id, watch_id, seq, position, now)


def _judge(read: PreparedStatement, write: PreparedStatement, dbapi: object, user_id: int, watch_id: int, seq: int,
           position: float, now: datetime) -> Beat:
    row = read.first({"watch_id": watch_id}, dbapi)
    if row is None or row[0] != user_id:
        raise Refused("no_watch", "播放记录不存在。")
    (_, active, last_seq, last_beat_at, current, watched, video_seconds, threshold, completed_at) = row
    completed = completed_at is not None
    if not active:
        return Beat(False, current, watched, completed, "another video or tab took over")
    if seq <= last_seq:
        return Beat(False, current, watched, completed, "stale or replayed")
    position = max(0.0, min(float(position), float(video_seconds)))
    elapsed = max(0.0, (now - last_beat_at).total_seconds())
    accepted, reason = True, None
    if elapsed > MAX_GAP:
        # A long silence: trust nothing forward of where we were; start a new stretch.
        accepted, reason = False, "gap"
        current = min(current, position)
    else:
        gained = position - current
        if gained > elapsed * MAX_RATE + TOLERANCE:
            accepted, reason = False, "ahead of real time"
        elif gained >= 0:
            current, watched = position, min(float(video_seconds), watched + gained)
        else:
            current = position  # rewinding is fine
    need = threshold * video_seconds
    if completed_at is None and current >= need - 0.5 and watched >= need - 0.5:
        completed_at = now
    written = write.first({"watch_id": watch_id, "seen_seq": last_seq, "seq": seq, "now": now, "position": current,
                           "watched": watched, "completed_at": completed_at}, dbapi)
    if written is None:  # another beat of this session (or a new session) came in between
        return Beat(False, current, watched, completed, "stale or replayed")
    return Beat(accepted, current, watched, completed_at is not None, reason)
