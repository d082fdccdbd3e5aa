"""Synthetic traffic: deterministic with a seed, valid, skewed, in sessions."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from datetime import UTC, datetime

from producer.generator import TrafficGenerator
from producer.models import parse_event

START = datetime(2024, 1, 1, tzinfo=UTC)


def generate(count: int, **options: object) -> list[dict[str, object]]:
    return list(TrafficGenerator(start=START, **options).events(count))  # type: ignore[arg-type]


def test_the_same_seed_gives_the_same_events() -> None:
    assert generate(500, seed=7) == generate(500, seed=7)


def test_another_seed_gives_other_events() -> None:
    assert generate(50, seed=7) != generate(50, seed=8)


def test_without_a_seed_runs_differ_so_event_ids_never_collide() -> None:
    one = {e["event_id"] for e in generate(200)}
    two = {e["event_id"] for e in generate(200)}
    assert one.isdisjoint(two)


def test_every_event_is_valid_and_has_a_unique_event_id() -> None:
    events = generate(5000, seed=1)
    parsed = [parse_event(e) for e in events]
    assert len({p.event_id for p in parsed}) == 5000


def test_time_advances_at_the_requested_rate() -> None:
    events = generate(5000, seed=2, rate=100.0)
    times = [parse_event(e).instant for e in events]
    assert times == sorted(times)
    assert times[0] >= START
    seconds = (times[-1] - times[0]).total_seconds()
    assert 45 < seconds < 55  # 5000 events at 100/s


def test_activity_is_skewed_towards_a_few_users() -> None:
    counts = Counter(e["user_id"] for e in generate(20000, seed=3, users=1000))
    ranked = [c for _, c in counts.most_common()]
    assert ranked[0] > 10 * statistics.median(ranked)
    assert len(counts) > 300  # and there is a long tail


def test_each_user_plays_whole_sessions_in_order() -> None:
    by_user: dict[object, list[object]] = defaultdict(list)
    for e in generate(20000, seed=4, users=300):
        by_user[e["user_id"]].append(e["event_type"])
    for types in by_user.values():
        assert types[0] == "login"
        open_session, open_match = False, False
        for t in types:
            if t == "login":
                assert not open_session
                open_session = True
            elif t == "logout":
                assert open_session
                assert not open_match
                open_session = False
            elif t == "match_start":
                assert not open_match
                open_match = True
            elif t == "match_end":
                assert open_match
                open_match = False
            else:
                assert t in {"click", "level_up", "purchase"}
                assert open_session
    kinds = Counter(t for types in by_user.values() for t in types)
    assert set(kinds) == {"login", "click", "level_up", "match_start", "match_end", "purchase", "logout"}
