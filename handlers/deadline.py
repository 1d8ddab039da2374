"""Deadlines, not per-read timeouts: one time budget per invocation that every network call shares.

A per-read socket timeout bounds each ``recv`` — a server that answers a byte at a time holds the
caller for as long as it likes. A :class:`Deadline` is an absolute point in time: each storage call
checks it before it starts (:class:`DeadlineStore`), and the Pushgateway push (``handlers/push.py``)
re-arms its socket with the time *left* before every read and write, so the push as a whole ends
by the deadline. In Lambda the deadline is the function's own, from
``context.get_remaining_time_in_millis()`` less a safety margin; outside Lambda there is none and
the push alone is bounded, by ``--push-timeout`` in total.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from .errors import StorageError
from .storage import Store, Versioned

__all__ = ["Deadline", "DeadlineStore", "LAMBDA_MARGIN_SECONDS"]

LAMBDA_MARGIN_SECONDS = 1.0  # kept back from the Lambda timeout to report instead of being killed


class Deadline:
    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._at = clock() + seconds

    @classmethod
    def from_context(cls, context: Any, *, margin: float = LAMBDA_MARGIN_SECONDS) -> Deadline | None:
        """The Lambda function's deadline, or None without a Lambda context."""
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        if remaining is None:
            return None
        return cls(max(0.0, remaining() / 1000 - margin))

    def remaining(self) -> float:
        return max(0.0, self._at - self._clock())

    def check(self, what: str) -> None:
        if self.remaining() <= 0:
            raise StorageError(f"{what}: the invocation's time budget ({self.seconds:.1f} s) is spent; "
                               "nothing more is written, the next invocation continues")


class DeadlineStore:
    """A store whose every call first checks the invocation's deadline."""

    def __init__(self, inner: Store, deadline: Deadline) -> None:
        self.inner, self.deadline, self.url = inner, deadline, inner.url

    def read(self, key: str) -> Versioned | None:
        self.deadline.check(key)
        return self.inner.read(key)

    def write(self, key: str, data: bytes, *, etag: str | None) -> str:
        self.deadline.check(key)
        return self.inner.write(key, data, etag=etag)

    def put_once(self, key: str, data: bytes, **kwargs: Any) -> bool:
        self.deadline.check(key)
        return self.inner.put_once(key, data, **kwargs)

    def exists(self, key: str) -> bool:
        self.deadline.check(key)
        return self.inner.exists(key)

    def matches(self, key: str, data: bytes) -> bool | None:
        self.deadline.check(key)
        return self.inner.matches(key, data)

    def replace(self, key: str, data: bytes, **kwargs: Any) -> None:
        self.deadline.check(key)
        self.inner.replace(key, data, **kwargs)

    def get(self, key: str) -> bytes:
        self.deadline.check(key)
        return self.inner.get(key)

    def list(self, prefix: str) -> Iterator[str]:
        self.deadline.check(prefix)
        return self.inner.list(prefix)
