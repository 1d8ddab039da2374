"""The ``s3://BUCKET/PREFIX`` backend of handlers/storage/file.py: the same operations and guarantees,
with S3 conditional writes (``If-Match`` / ``If-None-Match: *``, 412 -> ``ConflictError``).

boto3 is imported when the first client is built, never at import time (cold starts and moto
care). Every foreign error is translated in one place, :meth:`S3Store._fail`, into a
``StorageError`` naming the bucket and key.
"""

from __future__ import annotations

import errno
import hashlib
import threading
from collections.abc import Iterator
from typing import Any

from handlers.errors import ConflictError, StorageError
from handlers.storage.base import Versioned

__all__ = ["S3Store"]

_CONFLICT_CODES = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}


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

                    config = Config(retries={"mode": "standard", "max_attempts": 5},
                                    connect_timeout=5, read_timeout=30)
                    self._client = boto3.client("s3", config=config)
        return self._client

    def _key(self, key: str) -> str:
        return self.prefix + key

    def _fail(self, key: str, exc: Exception) -> StorageError:
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
        except Exception as exc:  # botocore raises ClientError and connection errors
            if _error_code(exc) in ("NoSuchKey", "404"):
                return None
            raise self._fail(key, exc) from None

    def write(self, key: str, data: bytes, *, etag: str | None) -> str:
        condition = {"IfMatch": etag} if etag is not None else {"IfNoneMatch": "*"}
        try:
            response = self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **condition)
        except Exception as exc:
            raise self._fail(key, exc) from None
        return response["ETag"]

    def matches(self, key: str, data: bytes) -> bool | None:
        """Whether write-once ``key`` holds exactly ``data`` (None: it does not exist): size and MD5
        ETag (single-part uploads, as every stockpulse object is)."""
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as exc:
            if _error_code(exc) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise self._fail(key, exc) from None
        return (head.get("ContentLength") == len(data)
                and head.get("ETag", "").strip('"') == hashlib.md5(data, usedforsecurity=False).hexdigest())

    def put_once(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> bool:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data,
                                   ContentType=content_type, IfNoneMatch="*")
        except Exception as exc:
            failure = self._fail(key, exc)
            if isinstance(failure, ConflictError):
                return False
            raise failure from None
        return True

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except Exception as exc:
            if _error_code(exc) in ("NoSuchKey", "404", "NotFound"):
                return False
            raise self._fail(key, exc) from None

    def replace(self, key: str, data: bytes, *, content_type: str = "text/plain") -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, ContentType=content_type)
        except Exception as exc:
            raise self._fail(key, exc) from None

    def get(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except Exception as exc:
            raise self._fail(key, exc) from None

    def delete(self, key: str) -> None:
        """Remove write-once object ``key`` (S3 answers a missing key with success too)."""
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as exc:
            raise self._fail(key, exc) from None

    def list(self, prefix: str) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
                for item in page.get("Contents", []):
                    yield item["Key"][len(self.prefix):]
        except Exception as exc:
            raise self._fail(prefix, exc) from None


def _error_code(exc: Exception) -> str:
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
