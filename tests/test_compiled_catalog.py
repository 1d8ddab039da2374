"""The catalog is parsed once per catalog version; later processes read its compiled form."""

from __future__ import annotations

import hashlib
import logging

import pytest

from handlers.errors import CatalogError, ConfigError
from handlers.model.catalog import parse_catalog
from handlers.runtime.catalogs import (
    compile_catalog,
    compiled_key,
    load_catalog,
    load_compiled,
    parse_reference,
    source_key,
    store_reference,
)
from handlers.runtime.settings import Settings
from handlers.storage.file import FileStore
from tests.support.ticks import SMALL_CATALOG


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
    from handlers.runtime import shards
    from tests.support.catalogs import catalog_text

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


# -- a catalog kept in the store: STOCKPULSE_CATALOG=store:catalogs/source/<sha>.yaml --------------


class RecordingKeys(Recording):
    """Records (method, key) of every call."""

    def __getattr__(self, name):
        method = getattr(self.inner, name)

        def call(key, *args, **kwargs):
            self.calls.append((name, key))
            return method(key, *args, **kwargs)

        return call


def kept(store, text: str, *, num_shards: int = 1, compiled: bool = True) -> str:
    """``text`` kept in ``store`` as deploy keeps it (with its compiled forms, or the source only);
    returns its store: reference."""
    data = text.encode()
    _, objects = compile_catalog(data, source="shop.yaml", num_shards=num_shards)
    for key, body in objects.items():
        if compiled or key == source_key(data):
            store.put_once(key, body)
    return store_reference(data)


def test_a_store_reference_names_the_source_by_the_digest_of_its_bytes():
    data = SMALL_CATALOG.encode()
    digest = hashlib.sha256(data).hexdigest()[:32]
    assert store_reference(data) == f"store:catalogs/source/{digest}.yaml"
    assert parse_reference(store_reference(data)) == (f"catalogs/source/{digest}.yaml", digest)
    assert parse_reference("shop.yaml") is None


def test_a_store_reference_with_its_compiled_form_reads_only_that_form(tmp_path):
    """GIVEN the catalog kept in the store with its compiled form (as deploy leaves it) WHEN a
    process loads the store: reference THEN it reads the compiled form found by the digest in the
    reference's name, never the YAML, and gets the catalog the file parses to."""
    store = RecordingKeys(FileStore(tmp_path / "store"))
    reference = kept(store.inner, SMALL_CATALOG)
    catalog = load_compiled(reference, store)
    key = compiled_key(SMALL_CATALOG.encode())
    assert store.calls == [("exists", key), ("get", key)]
    parsed = parse_catalog(SMALL_CATALOG, source=reference)
    assert catalog == parsed and catalog.fingerprint == parsed.fingerprint


def test_a_shard_of_a_store_reference_reads_only_its_own_compiled_form(tmp_path):
    from handlers.runtime import shards
    from tests.support.catalogs import catalog_text

    text = catalog_text(30)
    store = RecordingKeys(FileStore(tmp_path / "store"))
    reference = kept(store.inner, text, num_shards=3)
    part = load_compiled(reference, store, shard=(2, 3))
    key = compiled_key(text.encode(), (2, 3))
    assert store.calls == [("exists", key), ("get", key)]
    expected = shards.split(parse_catalog(text), 3)[2].catalog
    assert part.products and part.products == expected.products and part.fingerprint == expected.fingerprint


def test_a_store_reference_without_a_compiled_form_is_compiled_from_the_source_once(tmp_path):
    """GIVEN only the source object in the store (someone uploaded the YAML alone) WHEN a shard's
    process loads the reference THEN it reads the source, validates and compiles it, stores the
    whole catalog's form and every shard's; the next process reads only its shard's form."""
    from tests.support.catalogs import catalog_text

    text = catalog_text(30)
    data = text.encode()
    store = RecordingKeys(FileStore(tmp_path / "store"))
    reference = kept(store.inner, text, compiled=False)
    first = load_compiled(reference, store, shard=(0, 3))
    assert ("get", source_key(data)) in store.calls
    written = [key for name, key in store.calls if name == "put_once"]
    assert written == [compiled_key(data)] + [compiled_key(data, (k, 3)) for k in range(3)]
    store.calls.clear()
    again = load_compiled(reference, store, shard=(0, 3))
    assert store.calls == [("exists", compiled_key(data, (0, 3))), ("get", compiled_key(data, (0, 3)))]
    assert first == again and first.products


def test_a_store_reference_to_a_missing_object_is_one_error_naming_the_setting_and_key(tmp_path):
    store = FileStore(tmp_path / "store")
    reference = store_reference(SMALL_CATALOG.encode())
    with pytest.raises(ConfigError) as raised:
        load_compiled(reference, store)
    message = str(raised.value)
    assert "STOCKPULSE_CATALOG" in message and reference.removeprefix("store:") in message
    assert "no such object" in message and len(message.splitlines()) == 1
    assert not list(store.list(""))  # nothing written


@pytest.mark.parametrize(
    "reference",
    [
        "store:catalogs/source/abc.yaml",
        "store:catalogs/source/" + "A" * 32 + ".yaml",
        "store:catalogs/" + "a" * 32 + ".yaml",
        "store:../" + "a" * 32 + ".yaml",
        "store:catalogs/source/" + "a" * 32 + ".yml",
        "store:",
    ],
)
def test_a_store_reference_whose_name_is_not_a_digest_is_refused(tmp_path, reference):
    store = FileStore(tmp_path / "store")
    with pytest.raises(ConfigError, match="STOCKPULSE_CATALOG: a store: reference must name catalogs/source/"):
        load_compiled(reference, store)
    with pytest.raises(ConfigError, match="--catalog / STOCKPULSE_CATALOG: a store: reference must"):
        Settings.from_env({"STOCKPULSE_CATALOG": reference})


def test_a_source_object_whose_bytes_do_not_match_its_name_is_refused(tmp_path):
    store = FileStore(tmp_path / "store")
    reference = store_reference(SMALL_CATALOG.encode())
    store.put_once(reference.removeprefix("store:"), SMALL_CATALOG.replace("seed: 7", "seed: 8").encode())
    with pytest.raises(ConfigError, match="SHA-256 begins .*, not the .* its name says"):
        load_compiled(reference, store)
    assert list(store.list("")) == [reference.removeprefix("store:")]  # nothing compiled


def test_an_invalid_source_object_is_refused_naming_the_reference_and_the_field(tmp_path):
    store = FileStore(tmp_path / "store")
    data = SMALL_CATALOG.replace("pack_size: 10", "pack_size: 2.5").encode()
    store.put_once(source_key(data), data)
    with pytest.raises(CatalogError, match=r"store:catalogs/source/.*\.yaml: products\[0\]\.pack_size"):
        load_compiled(store_reference(data), store)


def test_a_store_reference_reads_back_through_the_settings_environment():
    reference = store_reference(SMALL_CATALOG.encode())
    settings = Settings.from_env({"STOCKPULSE_CATALOG": reference})
    assert settings.catalog_path == reference
    assert settings.to_env() == {"STOCKPULSE_CATALOG": reference}
    assert Settings.from_env(settings.to_env()) == settings


def test_report_reads_a_catalog_kept_in_the_store(tmp_path):
    """`report --catalog store:...` loads the catalog as the handlers do (handlers/runtime/catalogs.py)."""
    import subprocess
    import sys

    from handlers.runtime.catalogs import source_key, store_reference

    data = SMALL_CATALOG.encode()
    store = FileStore(tmp_path / "store")
    store.put_once(source_key(data), data)
    common = ["--store", f"file://{tmp_path / 'store'}", "--catalog", store_reference(data)]
    done = subprocess.run(
        [sys.executable, "-m", "jobs", "simulate", "--days", "0.1", "-q", *common], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    page = subprocess.run(
        [sys.executable, "-m", "jobs", "report", "--out", str(tmp_path / "r.html"), *common], capture_output=True, text=True, timeout=300
    )
    assert page.returncode == 0, page.stderr
    assert "4 product x warehouse series" in page.stdout


def test_a_compiled_form_under_another_parts_name_is_not_trusted_and_is_written_again(tmp_path, caplog):
    """GIVEN a catalog compiled for 2 shards WHEN shard 0's object lies under shard 1's name, or under
    the whole catalog's name THEN each load ignores it with a warning naming its key, gives the right
    part (was: shard 0's products, silently) and writes the right object again; the next load reads it."""
    from tests.support.catalogs import catalog_text

    path = tmp_path / "catalog.yaml"
    path.write_text(catalog_text(12))
    data = path.read_bytes()
    store = FileStore(tmp_path / "store")
    expected = {k: load_compiled(path, store, shard=(k, 2)) for k in (0, 1)}
    whole = load_compiled(path, store)
    assert expected[0].products != expected[1].products
    zero = store.get(compiled_key(data, (0, 2)))
    for key, part in ((compiled_key(data, (1, 2)), (1, 2)), (compiled_key(data), None)):
        store.delete(key)
        store.put_once(key, zero)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="stockpulse"):
            found = load_compiled(path, store, shard=part)
        assert found.products == (whole if part is None else expected[1]).products
        assert f"{key}: compiled catalog ignored (holds shard [0, 2], not" in caplog.text
        assert store.get(key) != zero
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="stockpulse"):
            assert load_compiled(path, store, shard=part).products == found.products
        assert caplog.text == ""
