"""Synthetic game traffic: many users with Zipf-like activity playing sessions.

A session is login -> actions (click, level_up, match_start/match_end pairs) -> sometimes a purchase ->
logout. Many sessions are open at once and interleave. Event times advance by exponential gaps whose mean
is 1/rate. With a seed the output is identical from run to run (event_id included).
"""

from __future__ import annotations

import bisect
import itertools
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

PLATFORMS = ("ios", "android", "pc", "console")
COUNTRIES = ("US", "BR", "DE", "FR", "IN", "JP", "KR", "PL", "ES", "GB")
SCREENS = ("home", "shop", "inventory", "lobby", "settings", "leaderboard")
MODES = ("ranked", "casual", "coop", "battle_royale")
ITEMS = (("gem_pack_small", 0.99), ("gem_pack_large", 9.99), ("skin_dragon", 4.99), ("battle_pass", 14.99))


@dataclass(slots=True)
class _Session:
    user_id: str
    game_id: str
    started: datetime
    actions_left: int
    level: int
    match_id: str | None = None
    purchase_done: bool = False
    events: int = 0
    queue: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


class TrafficGenerator:
    def __init__(
        self,
        *,
        users: int = 1000,
        games: int = 5,
        seed: int | None = None,
        rate: float = 50.0,
        start: datetime | None = None,
        zipf_exponent: float = 1.1,
        concurrent_sessions: int = 50,
    ) -> None:
        self.seed = seed if seed is not None else random.SystemRandom().randrange(2**63)
        self._rng = random.Random(self.seed)  # noqa: S311 (simulation, reproducible by seed)
        self._users = users
        self._games = games
        self._rate = rate
        self._clock = (start or datetime.now(UTC)).astimezone(UTC)
        # Zipf-like weights: the user of rank r is picked with probability proportional to 1/r^s.
        self._cumulative = list(itertools.accumulate(1.0 / (rank**zipf_exponent) for rank in range(1, users + 1)))
        self._concurrent = max(1, min(concurrent_sessions, users))
        self._open: list[_Session] = []
        self._busy: set[str] = set()

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _pick_user(self) -> str:
        total = self._cumulative[-1]
        for _ in range(20):
            index = bisect.bisect_left(self._cumulative, self._rng.random() * total)
            user = f"u{min(index, self._users - 1) + 1:07d}"
            if user not in self._busy:
                return user
        return f"u{self._rng.randrange(self._users) + 1:07d}"

    def _new_session(self) -> _Session:
        user = self._pick_user()
        self._busy.add(user)
        digits = int(user[1:])
        session = _Session(
            user_id=user,
            game_id=f"g{(digits * 7919) % self._games + 1:03d}",
            started=self._clock,
            actions_left=max(1, int(self._rng.expovariate(1 / 12))),
            level=1 + digits % 40,
        )
        session.queue.append(
            (
                "login",
                {
                    "platform": PLATFORMS[digits % len(PLATFORMS)],
                    "country": COUNTRIES[digits % len(COUNTRIES)],
                    "app_version": f"1.{digits % 5}.{self._rng.randrange(10)}",
                },
            )
        )
        return session

    def _next_action(self, s: _Session) -> tuple[str, dict[str, Any]]:
        rng = self._rng
        if s.match_id is not None:
            match_id, s.match_id = s.match_id, None
            won = rng.random() < 0.5
            return "match_end", {
                "match_id": match_id,
                "result": "win" if won else "loss",
                "score": rng.randrange(0, 5000),
                "duration_s": rng.randrange(120, 1500),
            }
        if s.actions_left <= 0:
            if not s.purchase_done and rng.random() < 0.12:
                s.purchase_done = True
                item, price = rng.choice(ITEMS)
                return "purchase", {"item_id": item, "price": price, "currency": "USD"}
            seconds = int((self._clock - s.started).total_seconds())
            return "logout", {"session_seconds": seconds}
        s.actions_left -= 1
        roll = rng.random()
        if roll < 0.6:
            return "click", {"button_id": f"btn_{rng.randrange(1, 60)}", "screen": rng.choice(SCREENS)}
        if roll < 0.75:
            s.level += 1
            return "level_up", {"level": s.level}
        s.match_id = self._uuid()
        return "match_start", {"match_id": s.match_id, "mode": rng.choice(MODES)}

    def events(self, count: int) -> Iterator[dict[str, Any]]:
        """`count` events as contract §1 JSON objects, in time order."""
        for _ in range(count):
            while len(self._open) < self._concurrent:
                self._open.append(self._new_session())
            index = self._rng.randrange(len(self._open))
            session = self._open[index]
            event_type, payload = session.queue.pop() if session.queue else self._next_action(session)
            self._clock += timedelta(seconds=self._rng.expovariate(self._rate))
            session.events += 1
            if event_type == "logout":
                self._open[index] = self._open[-1]
                self._open.pop()
                self._busy.discard(session.user_id)
            yield {
                "event_id": self._uuid(),
                "user_id": session.user_id,
                "event_type": event_type,
                "timestamp": self._clock.isoformat(timespec="microseconds").replace("+00:00", "Z"),
                "game_id": session.game_id,
                "payload": payload,
            }
