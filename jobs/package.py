"""``python -m jobs package``: the Lambda artifacts, as deterministic zips.

Two artifacts, because the functions import different things at run time:

``handlers.zip``   order_tick, restock, alert: the ``handlers`` package, numpy, PyYAML,
                   prometheus-client and boto3 (pinned: the runtime's own may predate the
                   conditional writes the store needs)
``forecast.zip``   the same plus scipy (the non-negative least squares the forecast fits)

Dependencies come as manylinux x86_64 wheels for the Lambda runtime's CPython (``pip download
--platform ... --python-version ...``), from the closures pinned in ``jobs/lambda/*.txt`` — each
version with the SHA-256 of its wheel for every supported runtime (pip's ``--hash=sha256:`` form,
``--require-hashes``). Every wheel, from the cache (``~/.cache/stockpulse/wheels``) or just
downloaded, is read once, checked against those hashes and against the tags its own ``WHEEL`` file
declares, and unzipped from the bytes that were checked: an altered wheel is refused by name and
nothing is zipped. ``package --refresh-pins`` recomputes the hashes after a version changes. The
wheels are unpacked straight into the zip (no ``pip install``, so no build-time files), with their
``tests`` folders and byte code left out. Every entry has a fixed date and mode and the entries
are sorted, so building twice from the same sources gives byte-identical zips and ``deploy`` can
tell from the SHA-256 whether code changed.

Route: the code is uploaded to S3 and the functions are created from there, which AWS allows up to
250 MB unzipped (a direct upload stops at 50 MB zipped; the forecast artifact is larger).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import sys
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from handlers.errors import ConfigError

from .wheels import REFRESH_COMMAND, RUNTIMES, PackageError, Wheel, fetch_wheels, refresh_pins, requirements_file

__all__ = [
    "ARTIFACTS",
    "MAX_DIRECT_UPLOAD_BYTES",
    "MAX_UNZIPPED_BYTES",
    "RUNTIMES",
    "Artifact",
    "PackageError",
    "build",
    "register",
    "requirements_file",
]

#: artifact -> the handlers it serves (the forecast is the only one that needs scipy)
ARTIFACTS: dict[str, tuple[str, ...]] = {"handlers": ("order_tick", "restock", "alert"), "forecast": ("forecast",)}
DEFAULT_PYTHON = "3.12"
MAX_UNZIPPED_BYTES = 262_144_000  # AWS Lambda: function and layers, unzipped
MAX_DIRECT_UPLOAD_BYTES = 50 * 1024 * 1024  # AWS Lambda: zipped, uploaded with the API call
_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip entry can carry
_SKIP_DIRS = {"tests", "__pycache__"}
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Artifact:
    name: str
    path: Path
    handlers: tuple[str, ...]
    python: str
    zipped_bytes: int
    unzipped_bytes: int
    sha256: str  # base64, as Lambda reports CodeSha256

    @property
    def runtime(self) -> str:
        return f"python{self.python}"

    @property
    def sha256_hex(self) -> str:
        return base64.b64decode(self.sha256).hex()

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "handlers": list(self.handlers),
            "runtime": self.runtime,
            "zipped_bytes": self.zipped_bytes,
            "unzipped_bytes": self.unzipped_bytes,
            "sha256": self.sha256,
        }


def _wheel_entries(wheel: Wheel) -> Iterator[tuple[str, bytes]]:
    """The files a wheel installs into site-packages, by their path there (from the checked bytes)."""
    with zipfile.ZipFile(io.BytesIO(wheel.data)) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            name = info.filename
            parts = name.split("/")
            if ".data" in parts[0] and parts[0].endswith(".data"):
                if len(parts) < 3 or parts[1] not in ("purelib", "platlib"):
                    continue  # scripts, headers, data: nothing a function imports
                parts = parts[2:]
                name = "/".join(parts)
            if _SKIP_DIRS & set(parts[:-1]) or name.endswith((".pyc", ".pyo")):
                continue
            yield name, archive.read(info)


def _project_entries() -> Iterator[tuple[str, bytes]]:
    """The ``handlers`` package: its modules and catalogs, from wherever it is imported from."""
    root = Path(str(resources.files("handlers")))
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if path.is_file() and path.suffix in (".py", ".yaml", ".typed") and "__pycache__" not in relative.parts:
            yield f"handlers/{relative.as_posix()}", path.read_bytes()


def write_zip(path: Path, entries: Iterator[tuple[str, bytes]]) -> tuple[int, int]:
    """Write ``entries`` deterministically (sorted, fixed date and mode); (zipped, unzipped) bytes."""
    files: dict[str, bytes] = {}
    for name, data in entries:
        if name in files and files[name] != data:
            raise PackageError(f"{path.name}: two sources for {name}")
        files[name] = data
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w") as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, so the mode below is read
            info.external_attr = (0o100755 if name.endswith(".so") or ".so." in name else 0o100644) << 16
            archive.writestr(info, files[name], compresslevel=6)
    os.replace(tmp, path)
    return path.stat().st_size, sum(len(data) for data in files.values())


def sha256_b64(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return base64.b64encode(digest.digest()).decode()


def build(
    out: Path,
    *,
    python: str = DEFAULT_PYTHON,
    cache: Path | None = None,
    pins: Path | None = None,
    say: Callable[[str], None] = lambda line: None,
) -> list[Artifact]:
    """Build every artifact into ``out`` from the requirements pinned in ``pins`` (default
    ``jobs/lambda``), every wheel checked against its hashes before anything is zipped; errors name
    what failed."""
    if python not in RUNTIMES:
        raise ConfigError(f"--python: Lambda runtimes supported are {', '.join(RUNTIMES)}, got {python!r}")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot create ({exc.strerror})") from exc
    sources = sources_fingerprint(python, pins)
    checked = {name: fetch_wheels(requirements_file(name, pins), python, cache=cache, say=say) for name in ARTIFACTS}
    artifacts = []
    for name, served in ARTIFACTS.items():
        wheels = checked[name]
        say(f"zipping {name}.zip ({len(wheels)} wheels + handlers/)")

        def entries(wheels: list[Wheel] = wheels) -> Iterator[tuple[str, bytes]]:
            yield from _project_entries()
            for wheel in wheels:
                yield from _wheel_entries(wheel)

        path = out / f"{name}.zip"
        zipped, unzipped = write_zip(path, entries())
        if unzipped > MAX_UNZIPPED_BYTES:
            raise PackageError(f"{path}: {unzipped / 1e6:.1f} MB unzipped, over Lambda's {MAX_UNZIPPED_BYTES / 1e6:.0f} MB")
        artifacts.append(Artifact(name, path, served, python, zipped, unzipped, sha256_b64(path)))
    manifest = {"python": python, "sources": sources, "artifacts": [a.as_dict() for a in artifacts]}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return artifacts


def sources_fingerprint(python: str, pins: Path | None = None) -> str:
    """What the artifacts are built from: the handlers package and the pinned requirements."""
    digest = hashlib.sha256(python.encode())
    entries = list(_project_entries()) + [(f"requirements/{name}", requirements_file(name, pins).read_bytes()) for name in ARTIFACTS]
    for name, data in sorted(entries):
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def read_built(out: Path, *, python: str = DEFAULT_PYTHON) -> dict[str, Artifact] | None:
    """The artifacts in ``out`` if they were built from the current sources for ``python``
    (their manifest says so and the zips are the ones it lists), else ``None``."""
    try:
        manifest = json.loads((out / MANIFEST).read_text())
        if manifest["python"] != python or manifest["sources"] != sources_fingerprint(python):
            return None
        found = {}
        for entry in manifest["artifacts"]:
            path = out / Path(entry["path"]).name
            if sha256_b64(path) != entry["sha256"]:
                return None
            found[entry["name"]] = Artifact(
                entry["name"], path, tuple(entry["handlers"]), python, entry["zipped_bytes"], entry["unzipped_bytes"], entry["sha256"]
            )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return found if set(found) == set(ARTIFACTS) else None


# ---------------------------------------------------------------------------------------------


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "package",
        help="build the Lambda artifacts (deterministic zips)",
        description="Build handlers.zip (order_tick, restock, alert) and forecast.zip for a Lambda "
        "Python runtime: the handlers package plus its dependencies as manylinux x86_64 "
        "wheels, each checked against the SHA-256 pinned in jobs/lambda/*.txt (refresh them "
        f"with `{REFRESH_COMMAND}`). The same sources give byte-identical zips.",
    )
    parser.add_argument("--out", default="build/lambda", metavar="DIR", help="where to write (default build/lambda)")
    parser.add_argument(
        "--python", default=DEFAULT_PYTHON, choices=RUNTIMES, help=f"the Lambda runtime's Python (default {DEFAULT_PYTHON})"
    )
    parser.add_argument("--json", action="store_true", help="print the artifacts as JSON")
    parser.add_argument(
        "--refresh-pins",
        action="store_true",
        help="rewrite the SHA-256 pins of jobs/lambda/*.txt for the pinned versions (after changing "
        f"one): the wheels of every runtime ({', '.join(RUNTIMES)}) are downloaded and hashed; "
        "nothing is built",
    )
    parser.set_defaults(func=cmd_package)


def cmd_package(args: argparse.Namespace) -> int:
    def say(line: str) -> None:
        print(f"stockpulse package: {line}", file=sys.stderr)

    if args.refresh_pins:
        files = [requirements_file(name) for name in ARTIFACTS]
        changed = refresh_pins(files, say=say)
        for path in files:
            print(f"{path}: {'rewritten: review the diff' if path in changed else 'unchanged'}")
        return 0
    artifacts = build(Path(args.out), python=args.python, say=say)
    if args.json:
        print(json.dumps([artifact.as_dict() for artifact in artifacts], indent=2))
        return 0
    print(f"{'artifact':<14} {'handlers':<28} {'runtime':<10} {'zipped':>9} {'unzipped':>9}  route")
    for a in artifacts:
        route = "direct or S3" if a.zipped_bytes <= MAX_DIRECT_UPLOAD_BYTES else "S3 (over 50 MB zipped)"
        print(
            f"{a.path.name:<14} {', '.join(a.handlers):<28} {a.runtime:<10} "
            f"{a.zipped_bytes / 1e6:>7.1f}MB {a.unzipped_bytes / 1e6:>7.1f}MB  {route}"
        )
    print(
        f"limits: {MAX_UNZIPPED_BYTES / 1e6:.0f} MB unzipped (code from S3, as deploy uploads it); "
        f"{MAX_DIRECT_UPLOAD_BYTES / 2**20:.0f} MiB zipped for a direct upload"
    )
    return 0
