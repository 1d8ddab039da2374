"""Store URLs validated, damaged store files reported with what to do (never a hang, never a silent
roll-back), the outbox repairs a damaged log object, and objects are readable by other users."""

from __future__ import annotations

import logging
import stat
from datetime import timedelta
from pathlib import Path

import pytest

from handlers.errors import ConfigError, StorageError
from handlers.runtime.invoke import Runtime, invoke, load_state
from handlers.runtime.settings import Settings
from handlers.storage.file import FileStore
from handlers.storage.location import open_store
from handlers.telemetry.metrics import metrics_key
from handlers.telemetry.publisher import publisher
from tests.support.cli import assert_one_line_error, cli
from tests.support.crash import BUSY_CATALOG
from tests.support.ticks import START, event_at, zero_clock

VERSIONS = "state/state.bin.versions"


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("file:///", "filesystem root"),
        ("file:///../..", "filesystem root"),
        ("file://host/p", "name no host ('host')"),
        ("file://~/d", "name no host ('~')"),
        ("file://data", "name no host ('data')"),
        ("file://./x?mode=1", "no query"),
        ("s3://bucket/prefix?versionId=3", "no query"),
    ],
)
def test_store_urls_are_validated(url: str, fragment: str):
    with pytest.raises(ConfigError, match="store URL") as refused:
        open_store(url)
    assert fragment in str(refused.value)


def test_explicit_relative_and_absolute_file_urls_are_accepted(tmp_path: Path):
    assert open_store("file://./data").root == Path("./data")
    assert open_store(f"file://{tmp_path}/s").root == tmp_path / "s"
    assert open_store(f"file://localhost{tmp_path}/s").root == tmp_path / "s"


def test_the_filesystem_root_is_refused_on_the_command_line_with_nothing_written():
    assert_one_line_error(cli("invoke", "order_tick", "--time", "2026-01-05T00:01:00Z", "--store", "file:///"), "filesystem root")
    assert not Path("/state/state.bin.versions").exists()


def test_a_store_path_that_is_a_file_or_under_a_file_is_one_line(tmp_path: Path):
    (tmp_path / "f").write_text("x")
    assert_one_line_error(
        cli("invoke", "order_tick", "--time", "2026-01-05T00:01:00Z", "--store", f"file://{tmp_path}/f"), "is a file, not a directory"
    )
    assert_one_line_error(
        cli("invoke", "order_tick", "--time", "2026-01-05T00:01:00Z", "--store", f"file://{tmp_path}/f/store"),
        "cannot read",
        "Not a directory",
    )
    with pytest.raises(StorageError, match=r"state/state.bin: cannot write in .* \(Not a directory\)"):
        FileStore(tmp_path / "f" / "store").write("state/state.bin", b"x", etag=None)


def written(tmp_path: Path, versions: int = 5) -> FileStore:
    store = FileStore(tmp_path)
    etag = None
    for i in range(versions):
        etag = store.write("state/state.bin", f"v{i + 1}".encode(), etag=etag)
    return store


@pytest.mark.parametrize("hint", ["garbage", "-5", "", "\x00\xff"])
def test_a_damaged_hint_is_ignored_with_a_warning_and_the_newest_version_is_found(tmp_path, hint, caplog):
    written(tmp_path)
    (tmp_path / VERSIONS / "HEAD").write_text(hint, errors="surrogateescape")
    with caplog.at_level(logging.WARNING, logger="stockpulse"):
        got = FileStore(tmp_path).read("state/state.bin")
    assert (got.data, got.etag) == (b"v5", "5")
    if hint:
        assert "damaged hint" in caplog.text


def test_a_hint_far_ahead_is_refused_at_once_instead_of_probing_down(tmp_path: Path):
    """GIVEN HEAD = 10**12 (a version that does not exist) WHEN read THEN a StorageError says versions
    were deleted and what to do — no walk down a trillion names."""
    written(tmp_path)
    (tmp_path / VERSIONS / "HEAD").write_text(str(10**12))
    with pytest.raises(StorageError, match="names version 1000000000000, which is gone .* Restore"):
        FileStore(tmp_path).read("state/state.bin")


def test_deleting_the_newest_version_is_refused_not_rolled_back(tmp_path: Path):
    written(tmp_path)
    (tmp_path / VERSIONS / "000000000005").unlink()
    with pytest.raises(StorageError, match="versions were deleted"):
        FileStore(tmp_path).read("state/state.bin")


def test_a_newest_version_that_is_an_empty_tombstone_is_refused(tmp_path: Path):
    written(tmp_path, versions=10)
    for n in (7, 8, 9, 10):
        (tmp_path / VERSIONS / f"{n:012d}").unlink()
    (tmp_path / VERSIONS / "HEAD").unlink()
    with pytest.raises(StorageError, match=r"newest version \(6\) is an emptied tombstone"):
        FileStore(tmp_path).read("state/state.bin")


def test_a_deleted_state_with_logs_left_is_refused_not_started_fresh(tmp_path: Path):
    runtime = Runtime(store=FileStore(tmp_path), catalog=BUSY_CATALOG, clock=zero_clock)
    invoke("order_tick", event_at(START), runtime)
    for path in (tmp_path / VERSIONS).iterdir():
        path.unlink()
    (tmp_path / VERSIONS).rmdir()
    with pytest.raises(StorageError, match="missing .* but logs/ holds log objects"):
        invoke("order_tick", event_at(START + timedelta(minutes=1)), runtime)
    assert_one_line_error(cli("status", "--store", f"file://{tmp_path}"), "the state was deleted")


@pytest.mark.parametrize("damage", [lambda b: b[: len(b) // 2], lambda b: b"", lambda b: b"garbage" + b])
def test_the_outbox_rewrites_a_damaged_log_object(tmp_path: Path, damage, caplog):
    """GIVEN the last commit's log object truncated or overwritten WHEN the next invocation runs THEN
    it rewrites the object with exactly what the commit promised, and says so."""
    runtime = Runtime(store=FileStore(tmp_path), catalog=BUSY_CATALOG, clock=zero_clock)
    key = invoke("order_tick", event_at(START), runtime)["log_key"]
    promised = (tmp_path / key).read_bytes()
    (tmp_path / key).write_bytes(damage(promised))
    with caplog.at_level(logging.WARNING, logger="stockpulse"):
        invoke("restock", event_at(START + timedelta(minutes=5)), runtime)
    assert (tmp_path / key).read_bytes() == promised
    assert "rewritten" in caplog.text


def test_log_and_metric_files_are_readable_by_other_users(tmp_path: Path):
    store = FileStore(tmp_path)
    settings = Settings(store_url=f"file://{tmp_path}")
    runtime = Runtime(store=store, catalog=BUSY_CATALOG, publish=publisher(settings, store=store))
    key = invoke("order_tick", event_at(START), runtime)["log_key"]
    for path in (tmp_path / key, tmp_path / metrics_key("order_tick")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    assert load_state(store)[0] is not None


# -- content-addressed objects are checked against the SHA-256 their names carry -------------------


def _swap(store: FileStore, victim: str, donor: str) -> None:
    """Put ``donor``'s bytes under ``victim``'s name (a copy gone wrong, a bad restore)."""
    data = store.get(donor)
    store.delete(victim)
    store.put_once(victim, data)


def test_one_deltas_bytes_under_another_deltas_name_is_damage_named_in_one_line(tmp_path: Path):
    """GIVEN a store whose hot part has a chain of deltas WHEN one delta's bytes lie under another
    delta's name THEN a cold process refuses with one line naming that key (was: the wrong delta
    applied silently, one series' on-hand off by one, `status` exit 0); `status` exits 2 saying so."""
    url = f"file://{tmp_path}/s"
    assert cli("simulate", "--days", "0.01", "--store", url, "--quiet").returncode == 0
    store = FileStore(tmp_path / "s")
    deltas = sorted(k for k in store.list("state/hot/") if "-delta-" in k)
    assert len(deltas) >= 3
    _swap(store, deltas[2], deltas[1])
    assert_one_line_error(cli("status", "--store", url), f"{deltas[2]}: damaged — its content's SHA-256 begins", "restore it from a backup")
    from handlers.runtime import layout

    layout.forget()
    with pytest.raises(StorageError, match=rf"{deltas[2]}: damaged"):
        load_state(store)


def test_a_history_object_with_another_objects_bytes_is_damage(tmp_path: Path):
    """GIVEN two days of order ticks WHEN the history object the hot part references holds the older
    day's bytes THEN a forecast and a cold load refuse naming it; control: the untouched store loads."""
    from handlers.model.state import STATE_KEY, unpack
    from handlers.runtime import layout

    store = FileStore(tmp_path / "s")
    runtime = Runtime(store=store, catalog=BUSY_CATALOG, clock=zero_clock)
    for moment in (START + timedelta(minutes=1), START + timedelta(days=1, minutes=1), START + timedelta(days=2, minutes=1)):
        invoke("order_tick", event_at(moment), runtime)
    layout.forget()
    assert load_state(store)[0] is not None  # control: as written, it loads
    current = unpack(store.read(STATE_KEY).data, key=STATE_KEY)[0]["history"]
    older = next(k for k in store.list("state/history/") if k != current)
    _swap(store, current, older)
    layout.forget()
    with pytest.raises(StorageError, match=rf"{current}: damaged"):
        load_state(store)
    with pytest.raises(StorageError, match=rf"{current}: damaged"):
        invoke("forecast", event_at(START + timedelta(days=2, minutes=1)), runtime)
