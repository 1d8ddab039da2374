"""The Lambda artifacts' dependencies: wheels pinned by version and SHA-256, fetched and checked.

``jobs/lambda/<artifact>.txt`` pins every distribution a function imports, the whole closure
(they are unpacked without resolving dependencies), in pip's hash-checking form::

    numpy==2.4.6 \\
        --hash=sha256:<its cp311 wheel> \\
        --hash=sha256:<its cp312 wheel> \\
        --hash=sha256:<its cp313 wheel>

one hash for the manylinux x86_64 wheel of each Lambda runtime in ``RUNTIMES`` (a pure-Python
wheel, the same for all, has one), so ``pip download --platform ... --python-version 3.X
--require-hashes -r <file>`` takes the file as it is.

No wheel is trusted for its file name. Each one, from the cache (``~/.cache/stockpulse/wheels``)
or just downloaded, is read once; its SHA-256 must be one its pin lists and the tags its own
``WHEEL`` file declares (inside the hashed bytes, unlike the file name) must fit the runtime; the
artifact is then unzipped from those very bytes. An altered or foreign wheel is a ``PackageError``
naming the file, before anything is zipped. ``python -m jobs package --refresh-pins`` recomputes
the hashes of the pinned versions (after a version is changed by hand): pip downloads each wheel
checking it against the index's own digest; review the diff before committing it.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from handlers.errors import ConfigError, StockpulseError

RUNTIMES = ("3.11", "3.12", "3.13")  # Lambda's python3.x runtimes this code supports
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64")
REFRESH_COMMAND = "python -m jobs package --refresh-pins"
_COMMENT = re.compile(r"(^|\s+)#.*$")  # pip's own rule: '#' at the start or after whitespace
_HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")
_MANYLINUX_X86_64 = re.compile(r"manylinux(1|2010|2014|_2_\d+)_x86_64")


class PackageError(StockpulseError):
    """The artifacts could not be built (pip failed, a wheel is not the pinned one, a limit is exceeded)."""


@dataclass(frozen=True)
class Pin:
    """``name==version`` and the SHA-256 (hex) of each of its wheels that may be used."""

    name: str  # canonical (lowercase, '-')
    version: str
    hashes: frozenset[str] = frozenset()
    spelled: str = ""  # the name as the file writes it
    comment: str = ""  # an inline comment, kept by --refresh-pins

    def line(self) -> str:
        """The pin as pip's requirements syntax, one line."""
        return " ".join([f"{self.spelled or self.name}=={self.version}", *(f"--hash=sha256:{digest}" for digest in sorted(self.hashes))])


@dataclass(frozen=True)
class Wheel:
    """A wheel file's name and the bytes that were checked (and are unzipped: never read twice)."""

    filename: str
    data: bytes = field(repr=False)

    @property
    def name(self) -> str:
        return canonical(self.filename.split("-")[0])

    @property
    def version(self) -> str:
        return self.filename.split("-")[1]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements_file(artifact: str, directory: Path | None = None) -> Path:
    return (directory or Path(str(resources.files("jobs") / "lambda"))) / f"{artifact}.txt"


def cache_dir(python: str) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "stockpulse" / "wheels" / f"cp{python.replace('.', '')}"


# -- the pins ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Line:
    raw: list[str]  # the physical lines, continuations included
    text: str  # joined, without comments
    comment: str  # an inline comment (a whole-line comment has text "")


def _logical_lines(text: str) -> list[_Line]:
    lines: list[_Line] = []
    pending: list[str] = []
    for raw in text.splitlines():
        pending.append(raw)
        if raw.rstrip().endswith("\\") and not _COMMENT.search(raw):
            continue
        joined = " ".join(part.rstrip().removesuffix("\\") for part in pending)
        found = _COMMENT.search(joined)
        comment = found.group(0).strip().removeprefix("#").strip() if found else ""
        lines.append(_Line(pending, _COMMENT.sub("", joined).strip(), comment))
        pending = []
    if pending:
        lines.append(_Line(pending, " ".join(p.rstrip().removesuffix("\\") for p in pending).strip(), ""))
    return lines


def read_pins(requirements: Path, *, includes: bool = True) -> dict[str, Pin]:
    """``canonical name -> Pin`` of every ``name==version [--hash=sha256:...]`` line, following
    ``-r`` includes (unless ``includes`` is false). Anything else is a ``ConfigError`` naming the line."""
    try:
        text = requirements.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{requirements}: cannot read ({exc.strerror})") from exc
    pins: dict[str, Pin] = {}
    for line in _logical_lines(text):
        if not line.text:
            continue
        first, *options = line.text.split()
        if first == "-r" and len(options) == 1:
            if includes:
                pins.update(read_pins(requirements.parent / options[0]))
            continue
        spelled, sep, version = first.partition("==")
        hashes = [_HASH.fullmatch(option) for option in options]
        if not sep or not spelled or not version or not all(hashes):
            raise ConfigError(f"{requirements}: {line.text!r} is not name==version [--hash=sha256:<64 hex digits>]...")
        pins[canonical(spelled)] = Pin(canonical(spelled), version, frozenset(h.group(1) for h in hashes if h), spelled, line.comment)
    return pins


# -- checking a wheel ----------------------------------------------------------------------------


def accepts(tag: str, python: str) -> bool:
    """Whether a wheel tag (``cp312-cp312-manylinux_2_17_x86_64``, ``py3-none-any``) runs on
    Lambda's CPython ``python`` on x86_64 Linux."""
    minor = int(python.split(".")[1])
    interpreter, abi, platform = tag.split("-")
    if platform != "any" and not _MANYLINUX_X86_64.fullmatch(platform):
        return False
    if abi == f"cp3{minor}":
        return interpreter == f"cp3{minor}"
    if abi == "abi3":
        found = re.fullmatch(r"cp3(\d+)", interpreter)
        return found is not None and int(found.group(1)) <= minor
    return abi == "none" and interpreter in (f"cp3{minor}", "py3", f"py3{minor}")


def _declared_tags(wheel: str, data: bytes) -> set[str]:
    """The tags a wheel's ``*.dist-info/WHEEL`` file declares (``py2.py3-none-any`` expanded)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            name = next(n for n in archive.namelist() if n.endswith(".dist-info/WHEEL") and n.count("/") == 1)
            text = archive.read(name).decode("utf-8", "replace")
    except (zipfile.BadZipFile, StopIteration, KeyError) as exc:
        raise PackageError(f"{wheel}: not a wheel (no readable .dist-info/WHEEL)") from exc
    tags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("Tag:"):
            interpreters, abis, platforms = line.partition(":")[2].strip().split("-")
            tags |= {f"{i}-{a}-{p}" for i in interpreters.split(".") for a in abis.split(".") for p in platforms.split(".")}
    return tags


def verify(path: Path, pin: Pin, python: str, *, source: str) -> Wheel:
    """The wheel at ``path``, read once, if its SHA-256 is one ``pin`` lists and the tags inside it
    fit CPython ``python`` on manylinux x86_64; else a ``PackageError`` naming the file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PackageError(f"{path}: cannot read ({exc.strerror})") from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest not in pin.hashes:
        raise PackageError(
            f"{path}: sha256 {digest} is not one {source} pins for {pin.spelled or pin.name}=={pin.version} "
            f"(altered, or not the pinned build): delete it and build again ({REFRESH_COMMAND} "
            "after changing a version)"
        )
    tags = _declared_tags(path.name, data)
    if not any(accepts(tag, python) for tag in tags):
        raise PackageError(
            f"{path}: built for {', '.join(sorted(tags)) or 'no tag'}, not CPython {python} manylinux x86_64: delete it and build again"
        )
    return Wheel(path.name, data)


def _pinned_in(directory: Path, pins: Mapping[str, Pin], python: str, source: str) -> dict[str, Wheel]:
    """The pinned wheels in ``directory``, each verified; a file named as a pinned version that
    fails is refused (never skipped: it is what was about to be zipped)."""
    found: dict[str, Wheel] = {}
    for path in sorted(directory.glob("*.whl")):
        parts = path.name.split("-")
        pin = pins.get(canonical(parts[0])) if len(parts) >= 5 else None
        if pin is None or parts[1] != pin.version:
            continue  # another version or distribution: not used
        wheel = verify(path, pin, python, source=source)
        if pin.name in found:
            raise PackageError(
                f"{directory}: two wheels of {pin.name}=={pin.version} ({found[pin.name].filename}, {path.name}): delete one"
            )
        found[pin.name] = wheel
    return found


# -- fetching ------------------------------------------------------------------------------------


def pip_download(
    requirements: Path, dest: Path, python: str, *, require_hashes: bool, find_links: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``pip download`` of Lambda's wheels for CPython ``python`` (from ``find_links`` alone when given)."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--disable-pip-version-check",
        "--no-deps",
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        python,
        "--abi",
        f"cp{python.replace('.', '')}",
        "-r",
        str(requirements),
        "-d",
        str(dest),
    ]
    for platform in PLATFORMS:
        command += ["--platform", platform]
    if require_hashes:
        command.append("--require-hashes")
    if find_links is not None:
        command += ["--no-index", "--find-links", str(find_links)]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def _pip_failure(done: subprocess.CompletedProcess[str], requirements: Path) -> PackageError:
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip() and not line.startswith("WARNING: Location")]
    return PackageError(f"pip download -r {requirements}: {lines[-1] if lines else 'failed'}")


def fetch_wheels(
    requirements: Path,
    python: str,
    *,
    cache: Path | None = None,
    find_links: Path | None = None,
    say: Callable[[str], None] = lambda line: None,
) -> list[Wheel]:
    """The wheels ``requirements`` pins, for Lambda's CPython ``python`` on x86_64, each checked
    against its pinned hashes: those the cache holds, the others downloaded (``--require-hashes``,
    then checked again here) and kept in the cache."""
    pins = read_pins(requirements)
    unhashed = sorted(pin.line() for pin in pins.values() if not pin.hashes)
    if unhashed:
        raise PackageError(f"{requirements}: {unhashed[0]} has no --hash=sha256: (run {REFRESH_COMMAND})")
    cache = cache or cache_dir(python)
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PackageError(f"wheel cache {cache}: cannot create ({exc.strerror})") from exc
    found = _pinned_in(cache, pins, python, requirements.name)
    missing = [pin for name, pin in sorted(pins.items()) if name not in found]
    if missing:
        say(f"downloading {len(missing)} wheels for CPython {python} manylinux x86_64 ({requirements.name})")
        with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as tmp:
            wanted = Path(tmp) / "requirements.txt"
            wanted.write_text("".join(pin.line() + "\n" for pin in missing), encoding="utf-8")
            done = pip_download(wanted, Path(tmp) / "wheels", python, require_hashes=True, find_links=find_links)
            if done.returncode != 0:
                raise _pip_failure(done, requirements)
            fetched = _pinned_in(Path(tmp) / "wheels", pins, python, requirements.name)
            for name, wheel in fetched.items():  # kept as the bytes that were checked
                part = Path(tmp) / f"{wheel.filename}.part"
                part.write_bytes(wheel.data)
                os.replace(part, cache / wheel.filename)
                found[name] = wheel
    absent = sorted(set(pins) - set(found))
    if absent:
        raise PackageError(f"{requirements.name}: no wheel for {', '.join(absent)} (CPython {python}, manylinux x86_64)")
    wheels = [found[name] for name in sorted(found)]
    check_closure(wheels, {name: pin.version for name, pin in pins.items()}, python, requirements.name)
    return wheels


def check_closure(wheels: Iterable[Wheel], pins: Mapping[str, str], python: str, source: str) -> None:
    """Every requirement of every wheel, on Lambda's platform, is pinned at a version it accepts
    (the pins are unpacked without resolving: a missing one would fail only at run time)."""
    from packaging.requirements import Requirement

    environment = {
        "python_version": python,
        "python_full_version": f"{python}.0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "extra": "",
    }
    for wheel in wheels:
        with zipfile.ZipFile(io.BytesIO(wheel.data)) as archive:
            metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
            lines = archive.read(metadata).decode("utf-8", "replace").splitlines()
        for line in lines:
            if not line.startswith("Requires-Dist:"):
                continue
            requirement = Requirement(line.partition(":")[2].strip())
            if requirement.marker is not None and not requirement.marker.evaluate(environment):
                continue
            pinned = pins.get(canonical(requirement.name))
            if pinned is None or not requirement.specifier.contains(pinned, prereleases=True):
                raise PackageError(
                    f"{source}: {wheel.filename.split('-')[0]} {wheel.version} needs {requirement}, pinned {pinned or 'nowhere'}"
                )


# -- refreshing the pins -------------------------------------------------------------------------


def refresh_pins(
    files: Iterable[Path],
    *,
    runtimes: Iterable[str] = RUNTIMES,
    find_links: Path | None = None,
    say: Callable[[str], None] = lambda line: None,
) -> list[Path]:
    """Rewrite each file's pins with the SHA-256 of the wheels pip picks for every runtime (the
    pinned versions stay; comments and ``-r`` lines are kept); the files that changed."""
    changed = []
    for path in files:
        own = read_pins(path, includes=False)
        hashes: dict[str, set[str]] = {name: set() for name in own}
        for python in runtimes:
            say(f"{path.name}: downloading the pinned wheels for CPython {python} to hash them")
            with tempfile.TemporaryDirectory(prefix="stockpulse-pins-") as tmp:
                plain = Path(tmp) / "requirements.txt"
                plain.write_text("".join(f"{pin.spelled}=={pin.version}\n" for pin in own.values()), encoding="utf-8")
                done = pip_download(plain, Path(tmp) / "wheels", python, require_hashes=False, find_links=find_links)
                if done.returncode != 0:
                    raise _pip_failure(done, path)
                for wheel in sorted((Path(tmp) / "wheels").glob("*.whl")):
                    name = canonical(wheel.name.split("-")[0])
                    if name not in own:
                        raise PackageError(f"{path}: pip downloaded {wheel.name}, which the file does not pin")
                    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
                    verify(wheel, Pin(name, own[name].version, frozenset({digest})), python, source=path.name)
                    hashes[name].add(digest)
        unhashed = sorted(name for name, found in hashes.items() if not found)
        if unhashed:
            raise PackageError(f"{path}: pip found no wheel for {', '.join(unhashed)}")
        text = path.read_text(encoding="utf-8")
        rewritten = _rewrite(
            text, {name: Pin(pin.name, pin.version, frozenset(hashes[name]), pin.spelled, pin.comment) for name, pin in own.items()}
        )
        if rewritten != text:
            path.write_text(rewritten, encoding="utf-8")
            changed.append(path)
    return changed


def _rewrite(text: str, pins: Mapping[str, Pin]) -> str:
    out: list[str] = []
    for line in _logical_lines(text):
        first = line.text.split()[0] if line.text else ""
        if not line.text or first == "-r":
            out.extend(line.raw)
            continue
        pin = pins[canonical(first.partition("==")[0])]
        if pin.comment:
            out.append(f"# {pin.comment}")
        hashes = [f"    --hash=sha256:{digest}" for digest in sorted(pin.hashes)]
        out.append(" \\\n".join([f"{pin.spelled}=={pin.version}", *hashes]))
    return "\n".join(out) + "\n"
