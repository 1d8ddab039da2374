"""A refused invocation writes nothing: every refusal an invocation can make comes before its first
storage write (handlers/runtime/invoke.py, step 3). One test per refusal path; each compares every
file of the store, byte for byte, before and after."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from handlers.errors import ConfigError, InputError, StorageError
from handlers.model.catalog import parse_catalog
from handlers.runtime import layout, shards
from handlers.runtime.invoke import Runtime, invoke, invoke_all
from handlers.storage.file import FileStore
from tests.support.cli import assert_one_line_error, cli
from tests.support.crash import BUSY_CATALOG
from tests.support.ticks import SMALL_CATALOG, START, event_at, zero_clock


def files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (the file store's objects, versions and hints), by path."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(autouse=True)
def _new_process():
    """Each test's invocations start as a new process would: no manifest check and no hot part remembered."""
    shards.forget_checks()
    layout.forget()
    yield
    shards.forget_checks()
    layout.forget()


def _sharded_store(root: Path) -> str:
    url = f"file://{root}"
    assert cli("simulate", "--days", "0.02", "--num-shards", "4", "--quiet", "--store", url).returncode == 0
    return url


def test_shard_states_without_their_manifest_are_refused_whatever_the_count(tmp_path: Path):
    """GIVEN a 4-shard store whose state/shards.json is gone WHEN invoked with 2, 4 or 1 shards THEN
    each is one line naming the missing manifest and the store is unchanged (was: --num-shards 2 wrote
    a new manifest, then failed on the catalog, and the real count was refused ever after); with the
    manifest restored, the real count runs."""
    url = _sharded_store(tmp_path / "s")
    manifest = (tmp_path / "s" / shards.MANIFEST_KEY).read_bytes()
    (tmp_path / "s" / shards.MANIFEST_KEY).unlink()
    before = files(tmp_path / "s")
    for count in ("2", "4", "1"):
        assert_one_line_error(
            cli("invoke", "order_tick", "--time", "2026-01-05T00:30:00Z", "--num-shards", count, "--store", url),
            "state/shards.json: missing from",
            "holds the states of a sharded store",
        )
        assert files(tmp_path / "s") == before, count
    (tmp_path / "s" / shards.MANIFEST_KEY).write_bytes(manifest)
    proc = cli("invoke", "order_tick", "--time", "2026-01-05T00:30:00Z", "--num-shards", "4", "--store", url)
    assert proc.returncode == 0, proc.stderr


def test_another_split_is_refused_with_nothing_written(tmp_path: Path):
    url = _sharded_store(tmp_path / "s")
    before = files(tmp_path / "s")
    assert_one_line_error(
        cli("invoke", "order_tick", "--time", "2026-01-05T00:30:00Z", "--num-shards", "2", "--store", url), "split into 4 shards, got 2"
    )
    assert files(tmp_path / "s") == before


def test_sharding_an_unsharded_state_is_refused_with_nothing_written(tmp_path: Path):
    store = FileStore(tmp_path)
    invoke("order_tick", event_at(START + timedelta(minutes=1)), Runtime(store=store, catalog=BUSY_CATALOG))
    before = files(tmp_path)
    shards.forget_checks()
    with pytest.raises(ConfigError, match="holds an unsharded state"):
        invoke_all("order_tick", event_at(START + timedelta(minutes=2)), Runtime(store=store, catalog=BUSY_CATALOG, num_shards=2))
    assert files(tmp_path) == before


def test_an_event_for_another_shard_is_refused_before_the_split_is_recorded(tmp_path: Path):
    """GIVEN an empty store and a runtime serving shard 0 of 2 WHEN an event names shard 1 THEN an
    InputError, and the store is still empty (was: state/shards.json written first)."""
    part = shards.shard(BUSY_CATALOG, 0, 2)
    runtime = Runtime(store=FileStore(tmp_path), catalog=part.catalog, num_shards=2, shard=0)
    with pytest.raises(InputError, match="event.detail.shard: 1, but this runtime serves shard 0"):
        invoke("order_tick", event_at(START, detail={"shard": 1}), runtime)
    assert files(tmp_path) == {}


def test_a_shard_over_the_size_limit_is_refused_before_the_split_is_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """GIVEN an empty store and shards of more series than one invocation handles (the limit lowered
    to 1 series for the test) WHEN a first sharded invocation comes THEN it is refused naming
    --num-shards, and the store is still empty."""
    import handlers.runtime.invoke as module

    monkeypatch.setattr(module, "MAX_SERIES", 1)
    runtime = Runtime(store=FileStore(tmp_path), catalog=BUSY_CATALOG, num_shards=2)
    with pytest.raises(ConfigError, match="--num-shards / STOCKPULSE_NUM_SHARDS: shard"):
        invoke_all("order_tick", event_at(START), runtime)
    assert files(tmp_path) == {}


def test_another_catalog_is_refused_before_its_compiled_form_is_written(tmp_path: Path):
    """GIVEN a store started with the default catalog WHEN `invoke --catalog other.yaml` THEN one line
    names --catalog, and no compiled form of other.yaml (nor anything else) is written."""
    url = f"file://{tmp_path}/s"
    assert cli("invoke", "order_tick", "--time", "2026-01-05T00:01:00Z", "--store", url).returncode == 0
    other = tmp_path / "other.yaml"
    other.write_text(SMALL_CATALOG)
    before = files(tmp_path / "s")
    assert_one_line_error(
        cli("invoke", "order_tick", "--time", "2026-01-05T00:02:00Z", "--catalog", str(other), "--store", url),
        "--catalog:",
        "was started with another catalog",
    )
    assert files(tmp_path / "s") == before


def test_a_tick_too_far_ahead_is_refused_before_the_compiled_catalog_or_an_outbox_is_written(tmp_path: Path):
    """GIVEN a store whose catalog has no compiled form yet and whose last commit's log object is not
    written WHEN `invoke` comes a year ahead THEN one line names event.time, and neither the compiled
    catalog nor the log object is written (the next accepted invocation writes both)."""
    path = tmp_path / "catalog.yaml"
    path.write_text(SMALL_CATALOG)
    catalog = parse_catalog(SMALL_CATALOG, source=str(path))
    store = FileStore(tmp_path / "s")
    result = invoke("order_tick", event_at(START + timedelta(minutes=1)), Runtime(store=store, catalog=catalog, clock=zero_clock))
    store.delete(result["log_key"])  # as if the process had died right after its commit
    before = files(tmp_path / "s")
    assert_one_line_error(
        cli("invoke", "order_tick", "--time", "2027-01-05T00:00:00Z", "--catalog", str(path), "--store", f"file://{tmp_path}/s"),
        "event.time: 2027-01-05T00:00:00Z is",
    )
    assert files(tmp_path / "s") == before
    proc = cli("invoke", "restock", "--time", "2026-01-05T00:05:00Z", "--catalog", str(path), "--store", f"file://{tmp_path}/s")
    assert proc.returncode == 0, proc.stderr
    assert store.exists(result["log_key"]) and list(store.list("catalogs/"))


def test_a_damaged_state_is_refused_before_anything_is_written(tmp_path: Path):
    """GIVEN a store whose state/state.bin is not a state object WHEN `invoke --catalog FILE` THEN one
    line names the object, and nothing (not the compiled catalog) is written."""
    path = tmp_path / "catalog.yaml"
    path.write_text(SMALL_CATALOG)
    store = FileStore(tmp_path / "s")
    store.write("state/state.bin", b"not a state", etag=None)
    before = files(tmp_path / "s")
    assert_one_line_error(
        cli("invoke", "order_tick", "--time", "2026-01-05T00:01:00Z", "--catalog", str(path), "--store", f"file://{tmp_path}/s"),
        "state/state.bin: not a stockpulse state object",
    )
    assert files(tmp_path / "s") == before
    with pytest.raises(StorageError, match="not a stockpulse state object"):
        invoke("order_tick", event_at(START), Runtime(store=store, catalog=BUSY_CATALOG))
    assert files(tmp_path / "s") == before
