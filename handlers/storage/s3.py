"""The ``s3://BUCKET/PREFIX`` backend of the storage contract (handlers/storage/base.py), with S3
conditional writes (``If-Match`` / ``If-None-Match: *``, 412 -> ``ConflictError``).

boto3 is imported when the first client is built, never at import time (cold starts and moto
care). Only botocore's errors and ``OSError`` are caught (:func:`foreign_errors`), and each is
translated in one place, :meth:`S3Store._fail`, into a ``StorageError`` naming the bucket and key,
chained to the original (``raise ... from exc``: a Lambda's log shows botocore's own error under
it). Anything else — a ``TypeError``, a bug — is not storage's to explain and propagates as it is.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import threading
from collections.abc import Iterator
from typing import Any

from handlers.errors import ConflictError, StorageError
from handlers.storage.base import Listed, Versioned

__all__ = ["S3Store"]

_CONFLICT_CODES = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}
_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}


@functools.cache
def foreign_errors() -> tuple[type[BaseException], ...]:
    """What an S3 call may raise that this backend translates: botocore's client and transport errors
    (imported on the first failure, with botocore already loaded by the client) and ``OSError``."""
    from botocore.exceptions import BotoCoreError, ClientError

    return ClientError, BotoCoreError, OSError


class S3Store:
    def __init__(self, bucket: str, prefix: str = "", *, client: Any = None, url: str | None = None) -> None:
        self.bucket = bucket
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self.url = url or f"s3://{bucket}/{self.prefix}"
        self._client = client
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        """boto3 S3 client, built on first use (never at import: cold starts and moto care)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    import boto3
                    from botocore.config import Config

                    config = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=30)
                    self._client = boto3.client("s3", config=config)
        return self._client

    def _key(self, key: str) -> str:
        return self.prefix + key

    def _fail(self, key: str, exc: BaseException) -> StorageError:
        code = _error_code(exc)
        if code in _CONFLICT_CODES:
            return ConflictError(f"{self._key(key)}: conditional write lost ({code})")
        if code == "NoSuchBucket":
            return StorageError(f"s3://{self.bucket}: no such bucket (create it first)")
        return StorageError(f"s3://{self.bucket}/{self._key(key)}: {code or type(exc).__name__}: {exc}")

    def read(self, key: str) -> Versioned | None:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            return Versioned(response["Body"].read(), response["ETag"])
        except foreign_errors() as exc:
            if _error_code(exc) in _NOT_FOUND:
                return None
            raise self._fail(key, exc) from exc

    def write(self, key: str, data: bytes, *, etag: str | None) -> str:
        condition = {"IfMatch": etag} if etag is not None else {"IfNoneMatch": "*"}
        try:
            response = self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **condition)
        except foreign_errors() as exc:
            raise self._fail(key, exc) from exc
        return str(response["ETag"])

    def matches(self, key: str, data: bytes) -> bool | None:
        """Whether write-once ``key`` holds exactly ``data`` (None: it does not exist): size and MD5
        ETag (single-part uploads, as every stockpulse object is)."""
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except foreign_errors() as exc:
            if _error_code(exc) in _NOT_FOUND:
                return None
            raise self._fail(key, exc) from exc
        return bool(
            head.get("ContentLength") == len(data)
            and head.get("ETag", "").strip('"') == hashlib.md5(data, usedforsecurity=False).hexdigest()
        )

    def put_once(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> bool:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, ContentType=content_type, IfNoneMatch="*")
        except foreign_errors() as exc:
            failure = self._fail(key, exc)
            if isinstance(failure, ConflictError):
                return False
            raise failure from exc
        return True

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except foreign_errors() as exc:
            if _error_code(exc) in _NOT_FOUND:
                return False
            raise self._fail(key, exc) from exc

    def replace(self, key: str, data: bytes, *, content_type: str = "text/plain") -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, ContentType=content_type)
        except foreign_errors() as exc:
            raise self._fail(key, exc) from exc

    def get(self, key: str) -> bytes:
        try:
            return bytes(self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read())
        except foreign_errors() as exc:
            raise self._fail(key, exc) from exc

    def get_prefix(self, key: str, size: int) -> bytes | None:
        """At most the first ``size`` bytes of ``key``: a ranged GET, and never more read from the body
        even if a server ignored the range; None if it does not exist."""
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key), Range=f"bytes=0-{max(size, 1) - 1}")
            body = response["Body"]
            try:
                return bytes(body.read(size))
            finally:
                body.close()
        except foreign_errors() as exc:
            code = _error_code(exc)
            if code in _NOT_FOUND:
                return None
            if code in ("InvalidRange", "416"):  # an empty object has no byte 0
                return b""
            raise self._fail(key, exc) from exc

    def delete(self, key: str) -> None:
        """Remove write-once object ``key`` (S3 answers a missing key with success too)."""
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except foreign_errors() as exc:
            raise self._fail(key, exc) from exc

    def list(self, prefix: str) -> Iterator[str]:
        return (found.key for found in self.scan(prefix))

    def scan(self, prefix: str) -> Iterator[Listed]:
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
                for item in page.get("Contents", []):
                    yield Listed(item["Key"][len(self.prefix) :], int(item.get("Size", 0)), str(item.get("ETag", "")))
        except foreign_errors() as exc:
            raise self._fail(prefix, exc) from exc


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        code = str(error.get("Code", ""))
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("", "None") and status:
            return str(status)
        return code
    if isinstance(exc, OSError) and exc.errno == errno.ENOENT:
        return "404"
    return ""
