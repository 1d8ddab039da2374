"""The catalog is parsed once per catalog version; later processes read its compiled form."""

from __future__ import annotations

import logging

from handlers.catalog import load_catalog
from handlers.compiled import compiled_key, load_compiled
from handlers.storage import FileStore
from tests.conftest import SMALL_CATALOG


class Recording:
    def __init__(self, inner) -> None:
        self.inner, self.url, self.calls = inner, inner.url, []

    def __getattr__(self, name):
        method = getattr(self.inner, name)

        def call(*args, **kwargs):
            self.calls.append(name)
            return method(*args, **kwargs)

        return call


def test_the_first_load_compiles_and_later_loads_read_the_compiled_form(tmp_path):
    """GIVEN a catalog file WHEN it is loaded twice against one store THEN the first load stores its
    compiled form under the file's digest, the second reads it (no write) and both equal the parse."""
    path = tmp_path / "catalog.yaml"
    path.write_text(SMALL_CATALOG)
    store = Recording(FileStore(tmp_path / "store"))
    first = load_compiled(path, store)
    assert store.calls == ["exists", "put_once"]
    assert store.inner.exists(compiled_key(path.read_bytes()))
    store.calls.clear()
    second = load_compiled(path, store)
    assert store.calls == ["exists", "get"]
    parsed = load_catalog(path)
    assert first == second == parsed and second.fingerprint == parsed.fingerprint


def test_a_changed_file_is_parsed_again_and_a_damaged_compiled_form_is_ignored(tmp_path, caplog):
    """GIVEN a compiled catalog WHEN the file changes THEN the new bytes are parsed (a new key);
    WHEN the compiled object is damaged THEN it is ignored with a warning and the file is parsed."""
    path = tmp_path / "catalog.yaml"
    path.write_text(SMALL_CATALOG)
    store = FileStore(tmp_path / "store")
    old = load_compiled(path, store)
    path.write_text(SMALL_CATALOG.replace("seed:", "seed: 9\n#", 1) if "seed:" in SMALL_CATALOG else "seed: 9\n" + SMALL_CATALOG)
    changed = load_compiled(path, store)
    assert changed.seed == 9 != old.seed and changed == load_catalog(path)
    store.replace(compiled_key(path.read_bytes()), b"{not json")
    with caplog.at_level(logging.WARNING, logger="stockpulse"):
        assert load_compiled(path, store) == changed
    assert "compiled catalog ignored" in caplog.text


def test_a_shard_reads_only_its_own_compiled_sub_catalog(tmp_path):
    """GIVEN a sharded catalog WHEN a shard first loads it THEN the whole catalog and every shard's
    sub-catalog are compiled; a later process of a shard reads only its own object, equal to the
    split of the parsed catalog, fingerprint included."""
    from handlers import shards
    from tests.test_shards import catalog_text

    path = tmp_path / "catalog.yaml"
    path.write_text(catalog_text(30))
    store = Recording(FileStore(tmp_path / "store"))
    first = load_compiled(path, store, shard=(1, 3))
    data = path.read_bytes()
    assert all(store.inner.exists(compiled_key(data, (k, 3))) for k in range(3))
    store.calls.clear()
    again = load_compiled(path, store, shard=(2, 3))
    assert store.calls == ["exists", "get"]
    expected = shards.split(load_catalog(path), 3)
    assert first.products == expected[1].catalog.products and again.products == expected[2].catalog.products
    assert again.initial_stock_table == expected[2].catalog.initial_stock_table
    recomputed = type(again)(again.products, again.warehouses, again.initial_stock_table, seed=again.seed)
    assert again.fingerprint == recomputed.fingerprint == expected[2].catalog.fingerprint


def test_a_compiled_form_whose_body_was_altered_is_not_trusted(tmp_path, caplog):
    """The fingerprint is taken from the compiled object, vouched for by its checksum: a body changed
    without the checksum (a demand edited by hand) is ignored and the file is parsed."""
    path = tmp_path / "catalog.yaml"
    path.write_text(SMALL_CATALOG)
    store = FileStore(tmp_path / "store")
    parsed = load_compiled(path, store)
    key = compiled_key(path.read_bytes())
    store.replace(key, store.get(key).replace(b"240", b"999"))
    with caplog.at_level(logging.WARNING, logger="stockpulse"):
        again = load_compiled(path, store)
    assert "checksum" in caplog.text and again == parsed and again.products[0].base_demand_per_day == 240
