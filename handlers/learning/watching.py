"""Watching topic videos: the watch clock, which credits progress only as fast as server time allows.

The model, in one paragraph. A watch session holds a *credit*: seconds of video it may still
advance. Credit is earned at the course's max playback rate for every second of server time
between two beats, up to a cap (CREDIT_CAP_SECONDS of earning), and spent by forward movement of
the verified position. Nothing is granted per beat or per session: a new session starts with no
credit, so bursts of beats, opening sessions in a loop and beats in parallel earn nothing that
time has not already earned, and over a session the verified position can never move further
than elapsed server time x max rate. A beat the player sends when it pauses marks the session
paused: the time until it plays again earns nothing (so a pause cannot be spent on a seek
ahead). Going back is free and earns nothing. Because the position only moves forward by
credited amounts, what the student has seen is always [0, furthest verified point]: a second
watched twice counts once, and `watched_seconds` is that furthest point."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from sqlalchemy import Engine, bindparam, func, select, update
from sqlalchemy.orm import Session

from handlers.errors import Refused
from handlers.learning import school_progress
from handlers.learning.enrolment import topic_state
from handlers.lectures import delivery
from models import Enrollment, User, WatchSession
from models.prepared import PreparedStatement, autocommit

# Seconds of server time whose earning a session can hold at once. Longer than any honest gap
# between beats (a hidden tab's timers may fire once a minute), so a paused or throttled player
# loses nothing, yet a long silence earns no more than this.
CREDIT_CAP_SECONDS = 60.0
# A beat may claim this much more than its credit: it is accepted up to the credit (the player's
# media clock runs a little ahead of the server's, or the student pressed play before the
# session opened) and the rest is not counted. More than this is a seek ahead: refused, unspent.
SLACK_SECONDS = 3.0
# Sessions a student may open for one topic within OPEN_WINDOW: reloads are fine, a loop is not.
OPEN_LIMIT = 6
OPEN_WINDOW = timedelta(seconds=60)
# After a beat that said "paused" and no word that the player resumed, assume it played again at
# most this long before the next beat (a lost "play" beat; the player beats every 15 s).
RESUME_WINDOW_SECONDS = 20.0
# Floating-point slack when comparing seconds of video.
_EPSILON = 1e-6


@dataclass(frozen=True)
class Beat:
    accepted: bool
    position: float  # the verified position (where the player should be)
    watched_seconds: float
    completed: bool
    reason: str | None = None  # why a beat was not accepted, for the player's log


def start_watch(session: Session, enrollment: Enrollment, topic_code: str, now: datetime) -> WatchSession:
    """Open the player: resume from the last verified position of this topic in this round,
    with no credit (it is earned from now on). Any other open session of the student stops
    counting (one video at a time). More than OPEN_LIMIT opens of one topic a minute are refused."""
    current, state = topic_state(session, enrollment, topic_code)
    if state.state == "done":
        raise Refused("done", "这个专题已经完成。")
    mine = (WatchSession.enrollment_id == enrollment.id, WatchSession.round == enrollment.round,
            WatchSession.topic_code == topic_code)
    recent = session.scalar(select(func.count()).select_from(WatchSession)
                            .where(*mine, WatchSession.started_at > now - OPEN_WINDOW))
    if recent >= OPEN_LIMIT:
        raise Refused("too_many", "打开视频太频繁了，请稍等一分钟再试。")
    # One open at a time per student: two opens at once (two tabs, a script) would each deactivate
    # only what they saw, and leave two active sessions earning credit side by side.
    session.execute(select(User.id).where(User.id == enrollment.user_id).with_for_update())
    # Stop the other sessions first, then read where this topic stands: no beat of theirs can
    # land after the read (their compare-and-set needs them active).
    session.execute(update(WatchSession).where(WatchSession.user_id == enrollment.user_id, WatchSession.active)
                    .values(active=False))
    previous = session.scalar(
        select(WatchSession).where(*mine).order_by(WatchSession.id.desc()).limit(1)
        # Heartbeats write outside any session: never trust an already-loaded copy.
        .execution_options(populate_existing=True))
    # The new session's clock starts where the previous one's credited time ends, never before:
    # `now` was taken when the request began, and beats may have been credited up to a later moment.
    clock_from = max(now, previous.last_beat_at) if previous is not None else now
    # The topic's uploaded lecture as published now (a newer version reaches this open, never a
    # player already playing), else the video its catalog names.
    lecture = delivery.published(session, current.version.course.code, topic_code)
    video_seconds = delivery.seconds_of(lecture) if lecture is not None else state.topic.video_seconds
    resume = carried = 0.0  # a rewatch after a failed test starts a new count from the start
    if previous is not None and previous.completed_at is None:
        resume, carried = previous.position, previous.watched_seconds
        if previous.video_seconds != video_seconds:
            # A replaced lecture of another length: the student keeps the same share of it (a
            # re-edit covers the same ground), never more than the new video, never the threshold
            # crossed by the change alone.
            scale = video_seconds / previous.video_seconds
            resume, carried = min(resume * scale, video_seconds), min(carried * scale, video_seconds)
    watch = WatchSession(
        enrollment_id=enrollment.id, user_id=enrollment.user_id, round=enrollment.round, topic_code=topic_code,
        video_version_id=lecture.id if lecture is not None else None,
        video_seconds=video_seconds, threshold=current.version.watch_threshold,
        max_rate=current.version.max_playback_rate, started_at=now, active=True, last_seq=0, last_beat_at=clock_from,
        position=resume, watched_seconds=carried, credit=0.0, paused=False,
    )
    session.add(watch)
    session.flush()
    school_progress.touched(session, enrollment, now)
    return watch


_WATCHES = WatchSession.__table__
_READ = ("user_id", "active", "last_seq", "last_beat_at", "position", "watched_seconds", "video_seconds",
         "threshold", "completed_at", "credit", "paused", "max_rate")


@lru_cache(maxsize=16)
def _statements(engine: Engine) -> tuple[PreparedStatement, PreparedStatement]:
    """The heartbeat's read and its compare-and-set write, compiled once per engine."""
    read = select(*(_WATCHES.c[name] for name in _READ)).where(_WATCHES.c.id == bindparam("watch_id"))
    write = (
        update(_WATCHES)
        .where(_WATCHES.c.id == bindparam("watch_id"), _WATCHES.c.last_seq == bindparam("seen_seq"),
               _WATCHES.c.active.is_(True))
        .values(last_seq=bindparam("seq"), last_beat_at=bindparam("now"), position=bindparam("position"),
                watched_seconds=bindparam("watched"), completed_at=bindparam("completed_at"),
                credit=bindparam("credit"), paused=bindparam("paused"))
        .returning(_WATCHES.c.id)
    )
    return PreparedStatement(engine, read), PreparedStatement(engine, write)


def heartbeat(engine: Engine, user_id: int, watch_id: int, seq: int, position: float, now: datetime,
              paused: bool = False, resumed: bool = False) -> Beat:
    """Judge one beat by the watch clock (see the module's docstring).

    `paused`: the player is paused as it sends this beat. `resumed`: the player has just started
    playing again (the beat of its "play" event). Both only ever lower what is credited, so a
    client that lies about them gains nothing; the honest player sends them.

    It takes the engine, not a session: two statements, each its own commit, outside any
    request transaction. Read the row, then write it only if no other beat got there first
    (compare-and-set on last_seq; a loser is answered as stale). Heartbeats are the
    platform's most frequent request; this keeps one to two round trips with no lock held
    in between (measured by bench/heartbeat).
    """
    read, write = _statements(engine)
    with autocommit(engine) as dbapi:  # one pooled connection for both statements
        return _judge(read, write, dbapi, user_id, watch_id, seq, position, now, paused, resumed)


def earned(credit: float, elapsed: float, rate: float, was_paused: bool, resumed: bool) -> float:
    """The credit after `elapsed` server seconds: earned at `rate`, held up to the cap. After a
    beat that said "paused", nothing is earned until the player said it resumed, and at most
    RESUME_WINDOW_SECONDS of earning if that word was lost."""
    if was_paused:
        elapsed = 0.0 if resumed else min(elapsed, RESUME_WINDOW_SECONDS)
    return min(credit + max(0.0, elapsed) * rate, max(credit, CREDIT_CAP_SECONDS * rate))


def _judge(read: PreparedStatement, write: PreparedStatement, dbapi: object, user_id: int, watch_id: int, seq: int,
           position: float, now: datetime, paused: bool, resumed: bool) -> Beat:
    row = read.first({"watch_id": watch_id}, dbapi)
    if row is None or row[0] != user_id:
        raise Refused("no_watch", "播放记录不存在。")
    (_, active, last_seq, last_beat_at, current, watched, video_seconds, threshold, completed_at, credit,
     was_paused, rate) = row
    completed = completed_at is not None
    if not active:
        return Beat(False, current, watched, completed, "another video or tab took over")
    if seq <= last_seq:
        return Beat(False, current, watched, completed, "stale or replayed")
    position = max(0.0, min(float(position), float(video_seconds)))
    # The clock of a session never runs back: a beat whose time was taken before the last
    # write's (two hosts, or two threads that raced to the database) earns nothing and leaves
    # last_beat_at where it is, so no stretch of time is ever credited twice.
    now = max(now, last_beat_at)
    credit = earned(credit, (now - last_beat_at).total_seconds(), rate, was_paused, resumed)
    accepted, reason = True, None
    gained = position - current
    if gained > credit + SLACK_SECONDS:
        # A seek ahead or a forged position: nothing moves and the credit stays for honest play.
        accepted, reason = False, "ahead of real time"
    elif gained > 0:
        step = min(gained, credit)
        current, credit = current + step, credit - step
        watched = max(watched, min(current, float(video_seconds)))
    else:
        current = position  # going back is free and earns nothing
    need = threshold * video_seconds
    if completed_at is None and current >= need - _EPSILON and watched >= need - _EPSILON:
        completed_at = now
    written = write.first({"watch_id": watch_id, "seen_seq": last_seq, "seq": seq, "now": now, "position": current,
                           "watched": watched, "completed_at": completed_at, "credit": credit,
                           "paused": bool(paused)}, dbapi)
    if written is None:  # another beat of this session (or a new session) came in between
        return Beat(False, current, watched, completed, "stale or replayed")
    return Beat(accepted, current, watched, completed_at is not None, reason)
