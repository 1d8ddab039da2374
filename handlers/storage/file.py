"""The ``file://<dir>`` backend of the storage contract (handlers/storage/base.py).

S3 implements the contract with ``If-Match`` / ``If-None-Match: *`` (handlers/storage/s3.py). The
file backend is lock-free: a CAS key is a chain of immutable version files ``<key>.versions/<n>`` created with
``link(2)`` (which fails if the name exists), so exactly one writer can create version ``n + 1``;
old versions are truncated to empty tombstones (never unlinked, so a stale writer can never
re-create one) and a hint file ``HEAD``, rewritten after every write, names the newest version: readers
start there (gallop and bisect, O(log n) probes), and a hint naming a version that is gone reveals
deleted versions instead of silently rolling back. Write-once objects are
created the same way. A crash leaves at worst a stray temporary file, never a torn object.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from handlers.errors import ConflictError, StorageError
from handlers.storage.base import Listed, Versioned

__all__ = ["FileStore", "FILE_MODE", "KEEP_VERSIONS"]

log = logging.getLogger("stockpulse")

FILE_MODE = 0o644  # objects readable by other users (a Filebeat running as its own user)
KEEP_VERSIONS = 3  # full versions kept behind the newest (for readers still loading one)


class FileStore:
    def __init__(self, root: str | os.PathLike[str], *, url: str | None = None) -> None:
        self.root = Path(root)
        self.url = url or f"file://{self.root}"
        self._seen: dict[Path, int] = {}  # newest version seen per key: where probing starts

    # -- helpers ---------------------------------------------------------------------------
    def _path(self, key: str) -> Path:
        if key.startswith("/") or ".." in key.split("/"):
            raise StorageError(f"{key}: invalid key")
        return self.root / key

    def _link_new(self, path: Path, data: bytes) -> bool:
        """Create ``path`` holding ``data`` atomically; False if it already exists."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            os.fchmod(fd, FILE_MODE)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            return True
        finally:
            os.unlink(tmp)

    def _versions_dir(self, key: str) -> Path:
        return self._path(key + ".versions")

    def _hint(self, vdir: Path) -> int:
        """The version the hint file names (0 if none); a damaged hint is ignored with a warning, a
        hint naming a version that is gone means versions were deleted: refused, never rolled back."""
        head = vdir / "HEAD"
        try:
            text = head.read_text(errors="replace")
        except FileNotFoundError:
            return 0
        n = int(text) if text.strip().isdigit() else -1
        if n < 0:
            log.warning("%s: damaged hint %r ignored (the next write rewrites it); probing for the newest version instead", head, text[:40])
            return 0
        if n and not (vdir / f"{n:012d}").exists():
            raise StorageError(
                f"{head}: names version {n}, which is gone — versions were deleted. Restore "
                f"{vdir} from a backup, or start a new --store; refusing to roll back"
            )
        return n

    def _newest(self, vdir: Path) -> int:
        """Newest version number (0 if none): from the last one seen or the hint, gallop forward and
        bisect (versions are contiguous: tombstones are never removed), O(log n) probes."""
        lo = self._seen.get(vdir, 0) or self._hint(vdir)
        step = 1
        while (vdir / f"{lo + step:012d}").exists():
            lo, step = lo + step, step * 2
        hi = lo + step  # lo exists (or is 0), hi does not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if (vdir / f"{mid:012d}").exists() else (lo, mid)
        self._seen[vdir] = lo
        return lo

    # -- compare-and-swap keys -------------------------------------------------------------
    def read(self, key: str) -> Versioned | None:
        try:
            return self._read(key)
        except OSError as exc:
            raise StorageError(f"{key}: cannot read in {self.root} ({exc.strerror})") from exc

    def _read(self, key: str) -> Versioned | None:
        vdir = self._versions_dir(key)
        for _ in range(100):
            n = self._newest(vdir)
            if n == 0:
                return None
            try:
                data = (vdir / f"{n:012d}").read_bytes()
            except FileNotFoundError:
                continue
            if data:
                return Versioned(data, str(n))
            if self._newest(vdir) == n:
                raise StorageError(
                    f"{key}: the newest version ({n}) is an emptied tombstone — newer versions "
                    f"were deleted. Restore {vdir} from a backup, or start a new --store"
                )
            # truncated by the collector after newer versions landed: read again
        raise StorageError(f"{key}: could not read a stable version (too many concurrent writers)")

    def write(self, key: str, data: bytes, *, etag: str | None) -> str:
        try:
            return self._write(key, data, etag=etag)
        except OSError as exc:
            raise StorageError(f"{key}: cannot write in {self.root} ({exc.strerror})") from exc

    def matches(self, key: str, data: bytes) -> bool | None:
        """Whether write-once ``key`` holds exactly ``data`` (None: it does not exist)."""
        try:
            return self._path(key).read_bytes() == data
        except FileNotFoundError:
            return None

    def _write(self, key: str, data: bytes, *, etag: str | None) -> str:
        vdir = self._versions_dir(key)
        current = int(etag) if etag is not None else 0
        target = current + 1
        if etag is not None and not (vdir / f"{current:012d}").exists():
            raise ConflictError(f"{key}: version {etag} does not exist")
        if not self._link_new(vdir / f"{target:012d}", data):
            raise ConflictError(f"{key}: changed since version {current} was read")
        self._publish_hint(vdir, target)
        self._collect(vdir, target)
        return str(target)

    def _publish_hint(self, vdir: Path, n: int) -> None:
        fd, tmp = tempfile.mkstemp(dir=vdir, prefix=".tmp-")
        with os.fdopen(fd, "w") as handle:
            handle.write(str(n))
        os.replace(tmp, vdir / "HEAD")

    def _collect(self, vdir: Path, newest: int) -> None:
        """Empty versions older than KEEP_VERSIONS behind ``newest`` (tombstones stay)."""
        for n in range(max(1, newest - KEEP_VERSIONS - 8), newest - KEEP_VERSIONS):
            path = vdir / f"{n:012d}"
            try:
                if path.stat().st_size:
                    os.truncate(path, 0)
            except FileNotFoundError:
                pass

    # -- write-once objects ----------------------------------------------------------------
    def put_once(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> bool:
        try:
            return self._link_new(self._path(key), data)
        except OSError as exc:
            raise StorageError(f"{key}: cannot write ({exc.strerror})") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def replace(self, key: str, data: bytes, *, content_type: str = "text/plain") -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            os.fchmod(fd, FILE_MODE)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except OSError as exc:
            raise StorageError(f"{key}: cannot write in {self.root} ({exc.strerror})") from exc

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise StorageError(f"{key}: no such object in {self.url}") from exc

    def get_prefix(self, key: str, size: int) -> bytes | None:
        """At most the first ``size`` bytes of ``key`` (never more is read); None if it does not exist."""
        try:
            with self._path(key).open("rb") as handle:
                return handle.read(size)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"{key}: cannot read in {self.root} ({exc.strerror})") from exc

    def delete(self, key: str) -> None:
        """Remove write-once object ``key`` (already gone: nothing to do)."""
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"{key}: cannot delete in {self.root} ({exc.strerror})") from exc

    def list(self, prefix: str) -> Iterator[str]:
        return (found.key for found in self.scan(prefix))

    def scan(self, prefix: str) -> Iterator[Listed]:
        """Every object under ``prefix``, in key order, with its size and a tag of its size and
        modification time (nanoseconds)."""
        base = self.root
        start = self._path(prefix.rstrip("/")) if prefix.strip("/") else base
        if not start.exists():
            return
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames[:] = sorted(d for d in dirnames if not d.endswith(".versions"))
            for name in sorted(filenames):
                if not name.startswith(".tmp-"):
                    rel = Path(dirpath, name).relative_to(base).as_posix()
                    if rel.startswith(prefix):
                        try:
                            info = os.stat(Path(dirpath, name))
                        except FileNotFoundError:  # deleted meanwhile
                            continue
                        yield Listed(rel, info.st_size, f"{info.st_size}-{info.st_mtime_ns}")
