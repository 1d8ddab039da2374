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
