"""Watching topic videos: the player's heartbeats, judged against wall time on the server."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from handlers.learning import Refused, topic_state
from models import Enrollment, WatchSession

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
        .order_by(WatchSession.id.desc()).limit(1))
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
    return watch


def heartbeat(session: Session, user_id: int, watch_id: int, seq: int, position: float, now: datetime) -> Beat:
    """Accept progress only as fast as real time allows since the last accepted beat.

    Forward movement within wall time × MAX_RATE + TOLERANCE counts as watched; a jump
    beyond it (a seek to the end, a forged position) moves nothing. Going back is allowed
    and earns nothing. Beats must come in order (`seq` increasing) from the active session.
    """
    watch = session.scalar(select(WatchSession).where(WatchSession.id == watch_id).with_for_update())
    if watch is None or watch.user_id != user_id:
        raise Refused("no_watch", "播放记录不存在。")
    if not watch.active:
        return Beat(False, watch.position, watch.watched_seconds, watch.completed_at is not None,
                    "another video or tab took over")
    if seq <= watch.last_seq:
        return Beat(False, watch.position, watch.watched_seconds, watch.completed_at is not None, "stale or replayed")
    position = max(0.0, min(float(position), float(watch.video_seconds)))
    elapsed = max(0.0, (now - watch.last_beat_at).total_seconds())
    watch.last_seq = seq
    watch.last_beat_at = now
    if elapsed > MAX_GAP:
        # A long silence: trust nothing forward of where we were; start a new stretch.
        if position < watch.position:
            watch.position = position
        session.flush()
        return Beat(False, watch.position, watch.watched_seconds, watch.completed_at is not None, "gap")
    gained = position - watch.position
    allowed = elapsed * MAX_RATE + TOLERANCE
    accepted = True
    reason = None
    if gained > allowed:
        accepted, reason = False, "ahead of real time"
    elif gained >= 0:
        watch.position = position
        watch.watched_seconds = min(float(watch.video_seconds), watch.watched_seconds + gained)
    else:
        watch.position = position  # rewinding is fine
    need = watch.threshold * watch.video_seconds
    if watch.completed_at is None and watch.position >= need - 0.5 and watch.watched_seconds >= need - 0.5:
        watch.completed_at = now
    session.flush()
    return Beat(accepted, watch.position, watch.watched_seconds, watch.completed_at is not None, reason)
