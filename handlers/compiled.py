"""The catalog, parsed once per catalog version: a compiled form kept in the store.

Parsing and validating a YAML catalog costs about 1.1 s at 10,000 products (100,000 series) —
more than everything else an order tick does. So the first process that loads a catalog file
writes its validated content as JSON under ``catalogs/<sha256 of the file>.json`` (write-once;
the same file always gives the same object), and every later process that names the same file
bytes reads that instead (~0.05 s). A changed file has another digest, so it is parsed and
validated again. The compiled object carries the file's digest and the catalog's fingerprint;
one that does not match, or does not decode, is ignored with a warning and the file is parsed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from .catalog import Catalog, Product, Warehouse, load_catalog, parse_catalog
from .errors import StorageError
from .limits import MAX_CATALOG_BYTES
from .storage import Store

__all__ = ["load_compiled", "compiled_key", "CATALOG_PREFIX"]

log = logging.getLogger("stockpulse")
CATALOG_PREFIX = "catalogs/"
_FORMAT = 1


def compiled_key(data: bytes) -> str:
    return f"{CATALOG_PREFIX}{hashlib.sha256(data).hexdigest()[:32]}.json"


def _encode(catalog: Catalog, digest: str) -> bytes:
    return json.dumps({"format": _FORMAT, "file_sha256": digest, "fingerprint": catalog.fingerprint,
                       "seed": catalog.seed, "products": [list(vars(p).values()) for p in catalog.products],
                       "warehouses": [list(vars(w).values()) for w in catalog.warehouses],
                       "initial_stock": catalog.initial_stock_table}, separators=(",", ":")).encode()


def _decode(data: bytes, digest: str, source: str) -> Catalog:
    doc = json.loads(data)
    if doc.get("format") != _FORMAT or doc.get("file_sha256") != digest:
        raise ValueError("not the compiled form of this file")
    catalog = Catalog(tuple(Product(*row) for row in doc["products"]), tuple(Warehouse(*row) for row in doc["warehouses"]),
                      tuple(tuple(row) for row in doc["initial_stock"]), seed=doc["seed"], source=source)
    if catalog.fingerprint != doc["fingerprint"]:
        raise ValueError("fingerprint differs")
    return catalog


def load_compiled(path: str | Path | None, store: Store) -> Catalog:
    """The catalog at ``path`` (``None``: the built-in default), from its compiled form in ``store``
    when there is one for these file bytes; else parsed, validated, and compiled for next time."""
    if path is None:
        return load_catalog(None)
    try:
        with Path(path).open("rb") as handle:
            data = handle.read(MAX_CATALOG_BYTES + 1)
    except OSError:
        return load_catalog(path)  # the parser names the problem
    key = compiled_key(data)
    digest = key[len(CATALOG_PREFIX):-len(".json")]
    try:
        if store.exists(key):
            return _decode(store.get(key), digest, str(path))
    except (StorageError, ValueError, TypeError, KeyError) as exc:
        log.warning("%s: compiled catalog ignored (%s); parsing %s", key, exc, path)
    if len(data) > MAX_CATALOG_BYTES:
        return load_catalog(path)  # refused with the size limit
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return load_catalog(path)  # refused naming the byte
    catalog = parse_catalog(text, source=str(path))
    try:
        store.put_once(key, _encode(catalog, digest), content_type="application/json")
    except StorageError as exc:
        log.warning("%s: the compiled catalog could not be stored (%s); the next process parses it again", key, exc)
    return catalog

