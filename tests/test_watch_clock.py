"""The watch clock against scripts and against honest players, on simulated server time.

Every attacker here tries to finish a topic faster than the video allows; each must need at
least threshold x video length / max rate of server time (the bound the clock promises: credit
is earned only by elapsed server time, in total). Every honest player must finish exactly when
its playback reaches the threshold, with no beat refused.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import select

from database import get_database
from handlers.accounts.identity import ProfileForm, submit_profile
from handlers.catalog.loader import load_catalog, parse_catalog
from handlers.errors import Refused
from handlers.learning.enrolment import enroll, progress
from handlers.learning.watching import OPEN_LIMIT, Beat, heartbeat, start_watch
from models import RosterEntry, School, User, WatchSession
from models.base import utcnow
from tests.factories import course, q, to_toml

T0 = utcnow()
VIDEO = 60  # seconds
RATE = 2.0
THRESHOLD = 0.9
FLOOR = THRESHOLD * VIDEO / RATE  # 27 s: no client may complete in less server time


def at(seconds: float):  # type: ignore[no-untyped-def]
    return T0 + timedelta(seconds=seconds)


def one_topic_course() -> dict:  # type: ignore[type-arg]
    data = course()
    data["topics"] = [{"code": "t01", "title": "专题一", "summary": "概要",
                       "video": {"url": "demo:demo-t01", "seconds": VIDEO},
                       "questions": [q("t01-q1", 60), q("t01-q2", 40)]}]
    return data


@pytest.fixture
def db(app):  # type: ignore[no-untyped-def]
    with get_database(app).sessions() as session:
        load_catalog(session, parse_catalog(to_toml(one_topic_course()), "clock.toml"), "clock.toml")
        school = School(name="时钟大学")
        student = User(openid="o_clock")
        session.add_all([school, student])
        session.flush()
        session.add(RosterEntry(school_id=school.id, student_number="K001", real_name="周八"))
        submit_profile(session, student.id, ProfileForm(school.id, "周八", "教育学院", "K001", "2023级", "13900000000"),
                       now=utcnow())
        session.commit()
        session.info["enrollment"] = enroll(session, student.id, "demo-course")
        session.commit()
        yield session


class Player:
    """One client of the watch clock on simulated time: opens sessions, sends beats."""

    def __init__(self, db) -> None:  # type: ignore[no-untyped-def]
        self.db = db
        self.enrollment = db.info["enrollment"]
        self.user_id = self.enrollment.user_id
        db.commit()  # heartbeats write outside this session: hold no transaction open
        self.engine = db.get_bind()
        self.t = 0.0
        self.watch_id = 0
        self.seq = 0
        self.verified = 0.0
        self.beats: list[Beat] = []
        self.opened_refused = 0

    def open(self) -> bool:
        try:
            watch = start_watch(self.db, self.enrollment, "t01", at(self.t))
        except Refused as refusal:
            self.db.rollback()
            assert refusal.code == "too_many"
            self.opened_refused += 1
            return False
        self.db.commit()
        self.watch_id, self.seq, self.verified = watch.id, 0, watch.position
        return True

    def beat(self, position: float, paused: bool = False, resumed: bool = False) -> Beat:
        self.seq += 1
        beat = heartbeat(self.engine, self.user_id, self.watch_id, self.seq, position, at(self.t),
                         paused=paused, resumed=resumed)
        self.verified = beat.position
        self.beats.append(beat)
        return beat

    def done(self) -> bool:
        return bool(self.beats) and self.beats[-1].completed


def attack(db, step: float, claim: Callable[[Player], float], reopen_every: int = 0,  # type: ignore[no-untyped-def]
           limit: float = 400) -> float:
    """Beat every `step` server seconds claiming `claim(player)`; return the server time at completion."""
    player = Player(db)
    player.open()
    n = 0
    while not player.done():
        assert player.t < limit, "the attack never completed: the clock refused honest-looking progress"
        player.t += step
        n += 1
        if reopen_every and n % reopen_every == 0:
            player.open()
        player.beat(claim(player))
    return player.t


@pytest.mark.parametrize("name,step,claim", [
    ("burst of beats, +3 s each, 20 ms apart", 0.02, lambda p: p.verified + 3),
    ("10x speed, a beat a second", 1.0, lambda p: p.verified + 10),
    ("the old per-beat rule: 2x wall time + 3 s each beat", 1.0, lambda p: p.verified + 2 * 1 + 3),
    ("claims the end at every beat", 0.5, lambda p: VIDEO),
    ("just under the refusal line, 10 beats a second", 0.1, lambda p: p.verified + 0.2 * 1 + 2.9),
    ("just under the refusal line, a beat every 15 s", 15.0, lambda p: p.verified + 30 + 2.9),
    ("a beat every two minutes, claiming all the time", 120.0, lambda p: p.verified + 240 + 2.9),
])
def test_no_script_completes_faster_than_the_video_allows(db, name, step, claim) -> None:  # type: ignore[no-untyped-def]
    took = attack(db, step, claim)
    assert took >= FLOOR - 1e-3, f"{name}: completed after {took:.2f} s of server time, floor {FLOOR} s"


def test_opening_sessions_in_a_loop_earns_nothing_and_is_bounded(db) -> None:  # type: ignore[no-untyped-def]
    # A new session every beat used to bring a fresh allowance; now it brings no credit at all.
    player = Player(db)
    while not player.done():
        player.t += 0.5
        if player.open() or player.watch_id:
            player.beat(player.verified + 3)
        assert player.t < 400
    assert player.t >= FLOOR - 1e-3
    # Most opens were refused: at most OPEN_LIMIT a minute for one topic.
    opened = player.db.scalars(select(WatchSession.started_at)).all()
    for start in opened:
        window = [s for s in opened if start <= s < start + timedelta(seconds=60)]
        assert len(window) <= OPEN_LIMIT
    assert player.opened_refused > 0


def test_parallel_beats_with_distinct_seq_earn_one_beat_of_credit(db) -> None:  # type: ignore[no-untyped-def]
    player = Player(db)
    player.open()
    engine, user = player.engine, player.user_id
    barrier = threading.Barrier(20)
    results: list[Beat] = []

    def send(seq: int) -> None:
        barrier.wait()
        results.append(heartbeat(engine, user, player.watch_id, seq, 3 + seq, at(2)))

    threads = [threading.Thread(target=send, args=(seq,)) for seq in range(1, 21)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    db.expire_all()
    watch = db.get(WatchSession, player.watch_id)
    # 2 s of server time earn 4 s of video, however the twenty beats interleave.
    assert watch.position <= 4 + 1e-9 and watch.watched_seconds <= 4 + 1e-9


def test_a_pause_earns_nothing_to_seek_with(db) -> None:  # type: ignore[no-untyped-def]
    player = Player(db)
    player.open()
    player.t = 15
    assert player.beat(15).accepted
    player.t = 20
    assert player.beat(20, paused=True).accepted
    player.t = 320  # five minutes paused, then a seek ahead and play
    jump = player.beat(50, resumed=True)
    assert not jump.accepted and jump.position == 20


# ---- honest players: every beat accepted, completion exactly when the threshold is reached ----

def play(db, rate: float, beat_every: float, *, clock_drift: float = 0.0,  # type: ignore[no-untyped-def]
         events: Callable[[Player, float], float | None] | None = None) -> Player:
    """Play at `rate` from where the player is, beating every `beat_every` seconds. `events`
    may move the playhead (returns the new position) to act out pauses, seeks and stalls."""
    player = Player(db)
    player.open()
    position = 0.0
    while not player.done():
        player.t += beat_every
        position = min(VIDEO, position + rate * beat_every * (1 + clock_drift))
        if events:
            moved = events(player, position)
            if moved is not None:
                position = moved
        beat = player.beat(position)
        assert beat.accepted, (player.t, position, beat)
        assert beat.position >= position - 3, "the verified position fell behind the player"
        assert player.t < 1000
    return player


@pytest.mark.parametrize("rate,beat_every,expect", [
    (1.0, 15, 60), (2.0, 15, 30), (1.5, 15, 45), (1.0, 5, 55), (2.0, 1, 27), (1.25, 60, 60),
])
def test_honest_players_complete_when_the_threshold_is_reached(db, rate, beat_every, expect) -> None:  # type: ignore[no-untyped-def]
    player = play(db, rate, beat_every)
    assert player.t == expect


def test_a_media_clock_a_little_fast_at_2x_loses_nothing(db) -> None:  # type: ignore[no-untyped-def]
    player = play(db, 2.0, 15, clock_drift=0.005)
    assert player.t == 30
    assert all(b.accepted for b in player.beats)


def test_a_hidden_tab_whose_timers_fire_once_a_minute(db) -> None:  # type: ignore[no-untyped-def]
    # Chrome throttles a hidden tab's timers to one a minute; the video plays on at 2x.
    player = play(db, 2.0, 60)
    assert player.t == 60 and all(b.accepted for b in player.beats)


def test_pausing_then_playing_on_loses_nothing(db) -> None:  # type: ignore[no-untyped-def]
    player = Player(db)
    player.open()
    player.t = 15
    assert player.beat(15).accepted
    player.t = 20
    assert player.beat(20, paused=True).accepted
    player.t = 620  # ten minutes paused (the phone locked, another app)
    assert player.beat(20, resumed=True).accepted
    for t in range(635, 700, 15):
        player.t = t
        assert player.beat(min(VIDEO, 20 + t - 620)).accepted
    assert player.done() and player.beats[-1].position == VIDEO


def test_a_lost_play_beat_after_a_pause_loses_nothing(db) -> None:  # type: ignore[no-untyped-def]
    player = Player(db)
    player.open()
    player.t = 10
    player.beat(10, paused=True)
    player.t = 300  # played again here; that beat never arrived
    player.t = 315
    beat = player.beat(25)
    assert beat.accepted and beat.position == 25


def test_seeking_back_counts_each_second_once(db) -> None:  # type: ignore[no-untyped-def]
    def rewind_once(player: Player, position: float) -> float | None:
        if player.t == 30:
            return 10.0  # back to 10 s after reaching 30 s
        return None

    player = play(db, 1.0, 5, events=rewind_once)
    seen = [b.watched_seconds for b in player.beats]
    assert seen == sorted(seen)
    # At 30 s the student went back 20 s: those 20 s were not counted twice, so the threshold
    # (54 s) is reached at playback position 54 s, 20 s of server time later than without.
    assert max(seen) <= VIDEO
    assert player.t == 75


def test_a_network_stall_of_20_seconds(db) -> None:  # type: ignore[no-untyped-def]
    def stall(player: Player, position: float) -> float | None:
        # The stream stalls from 20 s to 40 s of server time: the playhead waits.
        return 20.0 if 20 < player.t <= 40 else None

    player = play(db, 1.0, 5, events=stall)
    assert player.t == 75


def test_beats_lost_for_20_seconds_then_the_network_returns(db) -> None:  # type: ignore[no-untyped-def]
    player = Player(db)
    player.open()
    for t in (15, 40, 55):  # the beats at 25 s and 30 s never arrived
        player.t = t
        assert player.beat(t).accepted
    assert player.verified == 55 and player.done()


def test_progress_follows_the_verified_clock(db) -> None:  # type: ignore[no-untyped-def]
    play(db, 2.0, 15)
    assert [t.state for t in progress(db, db.info["enrollment"]).topics] == ["test"]


def test_a_beat_timed_before_the_last_write_cannot_make_time_count_twice(db) -> None:  # type: ignore[no-untyped-def]
    # Beat 2 took its time (1 s) before beat 1 (3 s) was written, but reached the database after it.
    player = Player(db)
    player.open()
    player.t = 3
    assert player.beat(6).position == 6  # 3 s earn 6 s of video at 2x
    player.t = 1
    late = player.beat(6 + 20)
    assert not late.accepted and late.position == 6
    player.t = 4  # one more second: 2 s of video, not the 2..3 s stretch again
    assert player.beat(8 + 2.9).position == 8


def test_a_new_session_starts_its_clock_where_the_last_credited_time_ends(db) -> None:  # type: ignore[no-untyped-def]
    # The open's `now` was taken when its request began (1 s); a beat of the old session was
    # credited up to 2 s before the open read it. The new session must not earn 1..2 s again.
    player = Player(db)
    player.open()
    player.t = 2
    assert player.beat(4).position == 4
    player.t = 1
    player.open()
    player.t = 2.5
    assert player.beat(4 + 2.9).position == 5  # 0.5 s since 2 s: 1 s of video, not 3 s


def test_two_opens_at_once_leave_one_active_session(app, client, site) -> None:  # type: ignore[no-untyped-def]
    import threading

    from tests.factories import CSRF, sign_in, verify

    verify(client, site["school"])
    clients = []
    for _ in range(6):
        other = app.test_client()
        sign_in(other, site["student"], "o_h5")
        clients.append(other)
    barrier = threading.Barrier(len(clients))
    answers = []

    def open_player(c) -> None:  # type: ignore[no-untyped-def]
        barrier.wait()
        answers.append(c.post("/h5/api/watch", data={"course": "demo-course", "topic": "t01", "csrf_token": CSRF}))

    threads = [threading.Thread(target=open_player, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(a.status_code in (200, 409) for a in answers) and any(a.status_code == 200 for a in answers)
    with get_database(app).sessions() as session:
        active = session.scalars(select(WatchSession).where(WatchSession.active.is_(True))).all()
    assert len(active) == 1
