"""Simple in-process token buckets for the public chat API (per conversation and per client IP).

In-process on purpose: one server process is the embedded default; behind several workers each
keeps its own buckets, which still bounds abuse (a proxy in front should rate-limit too).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

from fastapi import HTTPException


@dataclass
class Bucket:
    """``capacity`` requests at once, refilled at ``rate`` per second."""

    capacity: float
    rate: float
    tokens: float = -1.0
    stamp: float = 0.0

    def take(self, now: float) -> float:
        """0.0 if a token was taken, else the seconds until one is available."""
        if self.tokens < 0:
            self.tokens, self.stamp = self.capacity, now
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate if self.rate > 0 else 3600.0


@dataclass
class RateLimiter:
    """Named token-bucket families keyed by e.g. IP or conversation id."""

    capacity: float
    rate: float
    max_keys: int = 50_000
    _buckets: dict[str, Bucket] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, key: str, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= self.max_keys:
                    self._evict(now)
                bucket = self._buckets[key] = Bucket(self.capacity, self.rate)
            return bucket.take(now)

    def _evict(self, now: float) -> None:
        # Buckets that would be full again carry no information: drop them.
        full_after = self.capacity / self.rate if self.rate > 0 else math.inf
        for key in [k for k, b in self._buckets.items() if now - b.stamp >= full_after]:
            del self._buckets[key]
        if len(self._buckets) >= self.max_keys:  # still full: forget the oldest half
            for key in sorted(self._buckets, key=lambda k: self._buckets[k].stamp)[: self.max_keys // 2]:
                del self._buckets[key]

    def enforce(self, key: str, what: str) -> None:
        """Raise 429 with ``Retry-After`` when ``key`` is over its limit."""
        wait = self.check(key)
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise HTTPException(
                status_code=429,
                detail=f"Too many {what}; please wait {seconds} s and try again.",
                headers={"Retry-After": str(seconds)},
            )


@dataclass
class ChatLimits:
    """The chat API's limits; replace ``app.state.chat_limits`` to tune them (tests, benchmarks)."""

    per_ip: RateLimiter = field(default_factory=lambda: RateLimiter(capacity=60, rate=2.0))
    new_conversations_per_ip: RateLimiter = field(default_factory=lambda: RateLimiter(capacity=10, rate=0.1))
    messages_per_conversation: RateLimiter = field(default_factory=lambda: RateLimiter(capacity=8, rate=0.25))

    @classmethod
    def unlimited(cls) -> ChatLimits:
        big = 1e9
        return cls(RateLimiter(big, big), RateLimiter(big, big), RateLimiter(big, big))
