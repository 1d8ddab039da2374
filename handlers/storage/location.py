"""One location URL selects the backend: ``file://<dir>`` or ``s3://<bucket>/<prefix>``."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from handlers.errors import ConfigError
from handlers.storage.base import Store
from handlers.storage.file import FileStore
from handlers.storage.s3 import S3Store

__all__ = ["open_store"]


def open_store(url: str, *, s3_client: Any = None, setting: str = "--store", must_exist: bool = False) -> Store:
    """Open the store a location URL names. Errors name the setting (``--store``, or the feed's option).

    ``file:///abs/dir`` or ``file://./rel/dir`` (explicitly relative to the working directory);
    no host, no query, never the filesystem root; with ``must_exist`` (a feed someone else writes: a
    missing directory is a mistyped path, not an empty feed) the directory must exist.
    ``s3://BUCKET/PREFIX``, no query."""
    parsed = urlparse(url)
    if parsed.query or parsed.fragment or parsed.params:
        raise ConfigError(f"store URL {_shown(url)} ({setting}): a store URL takes no query or fragment")
    if parsed.scheme == "file":
        if parsed.netloc == ".":
            path = "." + parsed.path
        elif parsed.netloc in ("", "localhost"):
            path = parsed.path
        else:
            raise ConfigError(
                f"store URL {_shown(url)} ({setting}): file:// URLs name no host ({parsed.netloc!r}); use "
                f"file:///absolute/dir or file://./relative/dir"
            )
        if not path:
            raise ConfigError(f"store URL {_shown(url)} ({setting}): file:// needs a directory (file://./data or file:///abs/dir)")
        if Path(path).resolve() == Path("/"):
            raise ConfigError(f"store URL {_shown(url)} ({setting}): refusing the filesystem root; name a directory")
        if Path(path).exists() and not Path(path).is_dir():
            raise ConfigError(f"store URL {_shown(url)} ({setting}): {path} is a file, not a directory")
        if must_exist and not Path(path).is_dir():
            raise ConfigError(
                f"store URL {_shown(url)} ({setting}): no directory {path}; correct the path, or create it for a feed that is still empty"
            )
        return FileStore(path, url=url)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ConfigError(f"store URL {_shown(url)} ({setting}): s3:// needs a bucket (s3://BUCKET/PREFIX)")
        return S3Store(parsed.netloc, parsed.path.strip("/"), client=s3_client, url=url)
    raise ConfigError(
        f"store URL {_shown(url)} ({setting}): unsupported scheme {parsed.scheme or '(none)'!r} "
        "(use file:///DIR, file://./DIR or s3://BUCKET/PREFIX)"
    )


def _shown(url: str) -> str:
    return repr(url[:200])
