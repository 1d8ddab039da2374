"""An in-memory store with the storage contract's semantics (handlers/storage/base.py): the test double
shipped with the package, as httpx ships its ``MockTransport``.

Tests and benchmarks use it to run the real runtime with no disk: the benchmarks measure policies,
not file systems, and a test can count, inspect or copy every object. The contract suite
(tests/support/storage_contract.py) runs on it as on ``file://`` and ``s3://``. Not a backend a
user can select: state in one process's memory is not object storage. Each store has its own URL,
so what a process materialised of one store is never taken for another's."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator

from handlers.errors import ConflictError, StorageError
from handlers.storage.base import Listed, Versioned

__all__ = ["MemoryStore"]


class MemoryStore:
    _made = itertools.count(1)

    def __init__(self) -> None:
        self.url = f"memory://{next(self._made)}"
        self.objects: dict[str, tuple[bytes, int]] = {}
        self._lock = threading.Lock()

    def read(self, key: str) -> Versioned | None:
        found = self.objects.get(key)
        return Versioned(found[0], str(found[1])) if found else None

    def write(self, key: str, data: bytes, *, etag: str | None) -> str:
        with self._lock:
            current = self.objects.get(key)
            if (current is None) != (etag is None) or (current is not None and str(current[1]) != etag):
                raise ConflictError(f"{key}: changed since it was read")
            version = current[1] + 1 if current else 1
            self.objects[key] = (data, version)
            return str(version)

    def put_once(self, key: str, data: bytes, *, content_type: str = "") -> bool:
        with self._lock:
            if key in self.objects:
                return False
            self.objects[key] = (data, 1)
            return True

    def replace(self, key: str, data: bytes, *, content_type: str = "") -> None:
        with self._lock:
            current = self.objects.get(key)
            self.objects[key] = (data, current[1] + 1 if current else 1)

    def exists(self, key: str) -> bool:
        return key in self.objects

    def matches(self, key: str, data: bytes) -> bool | None:
        return self.objects[key][0] == data if key in self.objects else None

    def get(self, key: str) -> bytes:
        if key not in self.objects:
            raise StorageError(f"{key}: no such object")
        return self.objects[key][0]

    def get_prefix(self, key: str, size: int) -> bytes | None:
        found = self.objects.get(key)
        return None if found is None else found[0][:size]

    def delete(self, key: str) -> None:
        with self._lock:
            self.objects.pop(key, None)

    def scan(self, prefix: str) -> Iterator[Listed]:
        for key in sorted(k for k in self.objects if k.startswith(prefix)):
            data, version = self.objects[key]
            yield Listed(key, len(data), str(version))

    def list(self, prefix: str) -> Iterator[str]:
        yield from sorted(k for k in self.objects if k.startswith(prefix))

    def copy(self) -> MemoryStore:
        twin = MemoryStore()
        twin.objects = dict(self.objects)
        return twin
