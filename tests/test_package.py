"""``python -m jobs package`` trusts no wheel for its name: every one is checked against the SHA-256
pinned in the requirements files before anything is zipped (jobs/wheels.py). No network: the
wheels are small ones made here, seeded into a cache or served to pip from a local directory."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from handlers.errors import ConfigError
from jobs import cli, package
from jobs.wheels import RUNTIMES, PackageError, accepts, fetch_wheels, pip_download, read_pins, refresh_pins

BINARY = {python: f"cp{python.replace('.', '')}-cp{python.replace('.', '')}-manylinux_2_17_x86_64" for python in RUNTIMES}


def make_wheel(
    directory: Path, name: str, version: str, tag: str = "py3-none-any", *, code: str = "VALUE = 1\n", requires: tuple[str, ...] = ()
) -> Path:
    """A minimal wheel of ``name`` whose module holds ``code``."""
    module = name.replace("-", "_")
    dist = f"{module}-{version}"
    path = directory / f"{dist}-{tag}.whl"
    directory.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{module}/__init__.py", code)
        archive.writestr(
            f"{dist}.dist-info/METADATA",
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(f"Requires-Dist: {r}\n" for r in requires),
        )
        archive.writestr(f"{dist}.dist-info/WHEEL", f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\nTag: {tag}\n")
        archive.writestr(f"{dist}.dist-info/RECORD", "")
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def index(tmp_path: Path) -> Path:
    """What the package index holds: a pure wheel (tinylib, needing fastlib), a compiled one per
    runtime (fastlib) and the forecast's extra (fitlib)."""
    where = tmp_path / "index"
    make_wheel(where, "tinylib", "1.0", requires=("fastlib>=2",))
    for python, tag in BINARY.items():
        make_wheel(where, "fastlib", "2.0", tag, code=f"BUILT_FOR = {python!r}\n")
    make_wheel(where, "fitlib", "3.0")
    return where


@pytest.fixture
def pins(tmp_path: Path, index: Path) -> Path:
    """jobs/lambda/ as it should be: every pin with the hash of each of its wheels."""
    where = tmp_path / "pins"
    where.mkdir()
    fast = " ".join(f"--hash=sha256:{sha256(p)}" for p in sorted(index.glob("fastlib-*.whl")))
    (where / "handlers.txt").write_text(
        f"# light\ntinylib==1.0 --hash=sha256:{sha256(next(index.glob('tinylib-*')))}\nfastlib==2.0 {fast}\n"
    )
    (where / "forecast.txt").write_text(f"-r handlers.txt\nfitlib==3.0 --hash=sha256:{sha256(next(index.glob('fitlib-*')))}\n")
    return where


def seeded_cache(tmp_path: Path, index: Path, python: str = "3.12") -> Path:
    """A wheel cache holding what an earlier build downloaded for ``python``."""
    cache = tmp_path / "cache" / f"cp{python.replace('.', '')}"
    cache.mkdir(parents=True)
    for wheel in index.glob("*.whl"):
        if "manylinux" not in wheel.name or BINARY[python] in wheel.name:
            (cache / wheel.name).write_bytes(wheel.read_bytes())
    return cache


def test_a_build_from_a_cache_of_pinned_wheels_zips_them(tmp_path, index, pins):
    """The control: GIVEN a cache holding exactly the pinned wheels THEN both zips are built, from them."""
    artifacts = package.build(tmp_path / "out", python="3.12", cache=seeded_cache(tmp_path, index), pins=pins)
    with zipfile.ZipFile(artifacts[0].path) as archive:
        assert archive.read("fastlib/__init__.py") == b"BUILT_FOR = '3.12'\n"
        assert "fitlib/__init__.py" not in archive.namelist()
    with zipfile.ZipFile(artifacts[1].path) as archive:
        assert {"tinylib/__init__.py", "fastlib/__init__.py", "fitlib/__init__.py"} <= set(archive.namelist())


@pytest.mark.parametrize("wheel", ["tinylib", "fastlib", "fitlib"])
def test_a_tampered_cached_wheel_is_refused_by_name_and_nothing_is_zipped(wheel, tmp_path, index, pins):
    """GIVEN a cached wheel edited in place (same name, other code) WHEN package builds THEN one
    error names that file and its unpinned hash, and no zip is written — not even the artifact that
    does not need it."""
    cache = seeded_cache(tmp_path, index)
    (path,) = cache.glob(f"{wheel}-*.whl")
    make_wheel(
        tmp_path / "evil",
        wheel,
        path.name.split("-")[1],
        path.name.split("-", 2)[2].removesuffix(".whl"),
        code="import os  # something else\n",
    )
    path.write_bytes(next((tmp_path / "evil").glob("*.whl")).read_bytes())
    with pytest.raises(PackageError) as raised:
        package.build(tmp_path / "out", python="3.12", cache=cache, pins=pins)
    message = str(raised.value)
    assert len(message.splitlines()) == 1
    assert message.startswith(f"{path}: sha256 {sha256(path)} is not one ") and f"{wheel}==" in message
    assert not list((tmp_path / "out").glob("*.zip")) and not (tmp_path / "out" / package.MANIFEST).exists()


def test_a_genuine_wheel_of_another_runtime_renamed_for_this_one_is_refused(tmp_path, index, pins):
    """GIVEN the cp311 build of fastlib (its hash pinned) under the cp312 build's name in the cp312
    cache THEN the tags inside it (which the hash covers, unlike its name) refuse it."""
    cache = seeded_cache(tmp_path, index)
    (target,) = cache.glob("fastlib-*.whl")
    target.write_bytes(next(index.glob(f"fastlib-2.0-{BINARY['3.11']}.whl")).read_bytes())
    with pytest.raises(PackageError, match=rf"{target.name}: built for cp311-cp311-manylinux_2_17_x86_64, not CPython 3.12"):
        package.build(tmp_path / "out", python="3.12", cache=cache, pins=pins)
    assert not list((tmp_path / "out").glob("*.zip"))


def test_a_pin_without_a_hash_is_refused_with_the_refresh_command(tmp_path, index, pins):
    (pins / "handlers.txt").write_text("tinylib==1.0\n")
    with pytest.raises(PackageError, match=r"tinylib==1.0 has no --hash=sha256: \(run python -m jobs package --refresh-pins\)"):
        fetch_wheels(pins / "handlers.txt", "3.12", cache=seeded_cache(tmp_path, index))
    (pins / "handlers.txt").write_text("tinylib>=1.0 --hash=sha256:00\n")
    with pytest.raises(ConfigError, match=r"handlers.txt: 'tinylib>=1.0 --hash=sha256:00' is not name==version"):
        read_pins(pins / "handlers.txt")


def test_missing_wheels_are_downloaded_with_their_hashes_checked_and_cached(tmp_path, index, pins):
    """GIVEN an empty cache WHEN the wheels are fetched (pip, from a local index) THEN each is
    checked and kept in the cache; a wheel the index serves under a pinned name with other bytes
    is refused (pip's --require-hashes, and the check here)."""
    cache = tmp_path / "empty"
    wheels = fetch_wheels(pins / "forecast.txt", "3.13", cache=cache, find_links=index)
    assert sorted(w.filename for w in wheels) == sorted(p.name for p in cache.glob("*.whl"))
    assert [w.data for w in wheels if w.name == "fastlib"] == [next(index.glob(f"*{BINARY['3.13']}*")).read_bytes()]
    bad = next(index.glob("fitlib-*.whl"))
    make_wheel(tmp_path / "evil", "fitlib", "3.0", code="import os\n")
    bad.write_bytes(next((tmp_path / "evil").glob("*.whl")).read_bytes())
    with pytest.raises(PackageError, match=r"pip download -r .*forecast.txt: .*"):
        fetch_wheels(pins / "forecast.txt", "3.12", cache=tmp_path / "other", find_links=index)
    assert not list((tmp_path / "other").glob("*.whl"))


@pytest.mark.slow
def test_refresh_pins_writes_the_hash_of_each_runtimes_wheel_as_pip_expects(tmp_path, index):
    """GIVEN requirements pinned by version only WHEN the pins are refreshed (pip downloads each
    runtime's wheels) THEN each pin lists the SHA-256 of every runtime's wheel, comments kept, and
    ``pip download --require-hashes`` takes the file; a wrong hash makes pip refuse (the control)."""
    where = tmp_path / "pins"
    where.mkdir()
    (where / "handlers.txt").write_text("# the light functions\ntinylib==1.0  # pure\nfastlib==2.0\n")
    (where / "forecast.txt").write_text("-r handlers.txt\nfitlib==3.0\n")
    changed = refresh_pins([where / "handlers.txt", where / "forecast.txt"], find_links=index)
    assert changed == [where / "handlers.txt", where / "forecast.txt"]
    fast = sorted(sha256(p) for p in index.glob("fastlib-*.whl"))
    assert (where / "handlers.txt").read_text() == (
        "# the light functions\n# pure\n"
        f"tinylib==1.0 \\\n    --hash=sha256:{sha256(next(index.glob('tinylib-*')))}\n"
        "fastlib==2.0 \\\n" + " \\\n".join(f"    --hash=sha256:{digest}" for digest in fast) + "\n"
    )
    assert (where / "forecast.txt").read_text() == (
        f"-r handlers.txt\nfitlib==3.0 \\\n    --hash=sha256:{sha256(next(index.glob('fitlib-*')))}\n"
    )
    assert pip_download(where / "forecast.txt", tmp_path / "got", "3.12", require_hashes=True, find_links=index).returncode == 0
    cp312 = sha256(next(index.glob(f"*{BINARY['3.12']}*")))
    (where / "handlers.txt").write_text((where / "handlers.txt").read_text().replace(cp312, cp312[::-1]))
    assert pip_download(where / "forecast.txt", tmp_path / "no", "3.12", require_hashes=True, find_links=index).returncode != 0


@pytest.mark.parametrize(
    ("tag", "python", "ok"),
    [
        ("cp312-cp312-manylinux_2_17_x86_64", "3.12", True),
        ("cp312-cp312-manylinux2014_x86_64", "3.12", True),
        ("cp311-cp311-manylinux_2_17_x86_64", "3.12", False),
        ("cp312-cp312-musllinux_1_1_x86_64", "3.12", False),
        ("cp312-cp312-manylinux_2_17_aarch64", "3.12", False),
        ("cp39-abi3-manylinux_2_17_x86_64", "3.12", True),
        ("cp313-abi3-manylinux_2_17_x86_64", "3.12", False),
        ("py3-none-any", "3.11", True),
        ("py2-none-any", "3.13", False),
        ("cp312-none-any", "3.12", True),
    ],
)
def test_only_tags_of_the_runtime_on_x86_64_linux_are_accepted(tag, python, ok):
    assert accepts(tag, python) is ok


def test_the_shipped_pins_hash_every_wheel_and_each_runtimes_compiled_one():
    """jobs/lambda/*.txt: every pin has a hash; a compiled distribution one per runtime."""
    for artifact in package.ARTIFACTS:
        pinned = read_pins(package.requirements_file(artifact))
        assert all(pin.hashes for pin in pinned.values())
        for name in ("numpy", "pyyaml") + (("scipy",) if artifact == "forecast" else ()):
            assert len(pinned[name].hashes) == len(RUNTIMES), name


def test_package_refuses_a_tampered_wheel_in_the_users_cache_in_one_line_exit_2(tmp_path, monkeypatch, capsys):
    """GIVEN ~/.cache/stockpulse/wheels/cp312 holding a six wheel that is not the pinned one WHEN
    ``python -m jobs package`` runs THEN one line names the file, exit 2, nothing is zipped (and no
    network is needed to say so)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    wheel = make_wheel(tmp_path / "xdg" / "stockpulse" / "wheels" / "cp312", "six", "1.17.0", "py2.py3-none-any")
    assert cli.main(["package", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"stockpulse: error: {wheel}: sha256 ") and "six==1.17.0" in err[-1]
    assert not [line for line in err if not line.startswith("stockpulse")]
    assert not list((tmp_path / "out").glob("*.zip"))
