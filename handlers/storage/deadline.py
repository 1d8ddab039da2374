"""Deadlines, not per-read timeouts: one time budget per invocation that every network call shares.

A per-read socket timeout bounds each ``recv`` — a server that answers a byte at a time holds the
caller for as long as it likes. A :class:`Deadline` is an absolute point in time: each storage call
checks it before it starts and is waited for at most the time left (:class:`DeadlineStore`), and the
Pushgateway push (``handlers/telemetry/push.py``) re-arms its socket with the time *left* before
every read and write, so the push as a whole ends by the deadline. In Lambda the deadline is the
function's own, from ``context.get_remaining_time_in_millis()`` less a safety margin; outside
Lambda, on an ``s3://`` store, it is ``--invocation-budget`` from the invocation's start
(``Runtime.budget_seconds``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from handlers.errors import StorageError
from handlers.storage.base import Listed, Store, Versioned

__all__ = ["Deadline", "DeadlineStore", "LAMBDA_MARGIN_SECONDS"]

_T = TypeVar("_T")
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
            raise StorageError(
                f"{what}: the invocation's time budget ({self.seconds:.1f} s) is spent; "
                "nothing more is written, the next invocation continues"
            )


class DeadlineStore:
    """A store whose every call must finish by the invocation's deadline.

    Each call checks the deadline before it starts, then runs in a worker thread and is waited for
    at most the time left: a server that hangs or dribbles cannot hold the invocation past its
    deadline. A call abandoned this way may still complete later — exactly the case of a process
    that died after that call, which the commit protocol repairs (handlers/runtime/invoke.py)."""

    def __init__(self, inner: Store, deadline: Deadline) -> None:
        self.inner, self.deadline, self.url = inner, deadline, inner.url

    def _call(self, what: str, method: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        self.deadline.check(what)
        results: list[_T] = []
        failures: list[BaseException] = []

        def run() -> None:
            try:
                results.append(method(*args, **kwargs))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller below
                failures.append(exc)

        worker = threading.Thread(target=run, name="stockpulse-io", daemon=True)  # never holds up exit
        worker.start()
        worker.join(self.deadline.remaining())
        if failures:
            raise failures[0]
        if not results:
            raise StorageError(
                f"{what}: no answer from {self.url} within the invocation's time budget "
                f"({self.deadline.seconds:.1f} s); the next invocation continues"
            )
        return results[0]

    def read(self, key: str) -> Versioned | None:
        return self._call(key, self.inner.read, key)

    def write(self, key: str, data: bytes, *, etag: str | None) -> str:
        return self._call(key, self.inner.write, key, data, etag=etag)

    def put_once(self, key: str, data: bytes, **kwargs: Any) -> bool:
        return self._call(key, self.inner.put_once, key, data, **kwargs)

    def exists(self, key: str) -> bool:
        return self._call(key, self.inner.exists, key)

    def matches(self, key: str, data: bytes) -> bool | None:
        return self._call(key, self.inner.matches, key, data)

    def replace(self, key: str, data: bytes, **kwargs: Any) -> None:
        self._call(key, self.inner.replace, key, data, **kwargs)

    def get(self, key: str) -> bytes:
        return self._call(key, self.inner.get, key)

    def scan(self, prefix: str) -> Iterator[Listed]:
        return iter(self._call(prefix, lambda: list(self.inner.scan(prefix))))

    def get_prefix(self, key: str, size: int) -> bytes | None:
        return self._call(key, self.inner.get_prefix, key, size)

    def list(self, prefix: str) -> Iterator[str]:
        return iter(self._call(prefix, lambda: list(self.inner.list(prefix))))

    def delete(self, key: str) -> None:
        self._call(key, self.inner.delete, key)
