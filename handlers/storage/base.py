"""The storage contract: the operations every backend offers on the same keys, with the same guarantees.

``read(key)``                    -> ``Versioned(data, etag)`` or ``None``
``write(key, data, etag=...)``   compare-and-swap: succeeds only if the key is still at ``etag``
                                 (``None``: only if the key does not exist); else ``ConflictError``
``put_once(key, data)``          write-once: ``True`` if written, ``False`` if the key already existed
``exists(key)`` / ``matches(key, data)`` / ``get(key)`` / ``list(prefix)`` / ``delete(key)``
``scan(prefix)``                 -> ``Listed(key, size, tag)`` for each key under ``prefix``: ``tag``
                                 changes whenever the object's bytes may have (S3: its ETag)
``get_prefix(key, size)``        at most the first ``size`` bytes of a write-once object, ``None`` if
                                 it does not exist: a reader that must never read more than a bound
                                 (S3: a ranged GET; file: a bounded read)
``replace(key, data)``           unconditional overwrite (metrics text files only)

Every failure is a ``StorageError`` naming the key (``ConflictError`` for a lost conditional write),
chained to the backend's own error. tests/support/storage_contract.py runs the contract on every
backend: ``file://``, ``s3://`` against a real S3 API server, and in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Versioned", "Listed", "Store"]


@dataclass(frozen=True)
class Versioned:
    data: bytes
    etag: str


@dataclass(frozen=True)
class Listed:
    key: str
    size: int  # bytes
    tag: str  # another tag: the object may have been rewritten (S3: its ETag)


class Store(Protocol):
    url: str

    def read(self, key: str) -> Versioned | None: ...
    def write(self, key: str, data: bytes, *, etag: str | None) -> str: ...
    def put_once(self, key: str, data: bytes, *, content_type: str = ...) -> bool: ...
    def exists(self, key: str) -> bool: ...
    def matches(self, key: str, data: bytes) -> bool | None: ...
    def replace(self, key: str, data: bytes, *, content_type: str = ...) -> None: ...
    def get(self, key: str) -> bytes: ...
    def get_prefix(self, key: str, size: int) -> bytes | None: ...
    def list(self, prefix: str) -> Iterator[str]: ...
    def scan(self, prefix: str) -> Iterator[Listed]: ...
    def delete(self, key: str) -> None: ...
