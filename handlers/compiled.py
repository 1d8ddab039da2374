"""The catalog, parsed once per catalog version: a compiled form kept in the store.

Parsing and validating a YAML catalog costs about 1.1 s at 10,000 products (100,000 series) —
more than everything else an order tick does. So the first process that loads a catalog file
writes its validated content as JSON under ``catalogs/<sha256 of the file>.v2.json`` (write-once;
the same file always gives the same object), and every later process that names the same file
bytes reads that instead. A changed file has another digest, so it is parsed and validated again.

A sharded deployment (handlers/shards.py) also keeps each shard's sub-catalog,
``catalogs/<sha256>.v2.shard-<k>-of-<N>.json``: an invocation of one shard of a 1M-series
catalog reads its tenth, not the whole (1.8 s to decode at 1M series, of which 1.0 s is
recomputing the fingerprint). The first process that needs any shard's form writes them all.

A compiled object is a JSON header line (format, the body's SHA-256) and a JSON body carrying the
file's digest, the catalog's fingerprint and its content. The body's checksum stands for the
fingerprint's recomputation; an object whose checksum, digest or shape does not match is
ignored with a warning and the catalog is built from the file.
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
_FORMAT = 2


def compiled_key(data: bytes, shard: tuple[int, int] | None = None) -> str:
    """The key of the compiled form of catalog file bytes ``data`` (of one shard: ``(k, N)``)."""
    tail = "" if shard is None else f".shard-{shard[0]}-of-{shard[1]}"
    return f"{CATALOG_PREFIX}{hashlib.sha256(data).hexdigest()[:32]}.v{_FORMAT}{tail}.json"


def _encode(catalog: Catalog, digest: str) -> bytes:
    body = json.dumps({"file_sha256": digest, "fingerprint": catalog.fingerprint, "seed": catalog.seed,
                       "products": [list(vars(p).values()) for p in catalog.products],
                       "warehouses": [list(vars(w).values()) for w in catalog.warehouses],
                       "initial_stock": catalog.initial_stock_table}, separators=(",", ":")).encode()
    header = json.dumps({"format": _FORMAT, "sha256": hashlib.sha256(body).hexdigest()}).encode()
    return header + b"\n" + body


def _decode(data: bytes, digest: str, source: str) -> Catalog:
    header_line, _, body = data.partition(b"\n")
    header = json.loads(header_line)
    if header.get("format") != _FORMAT or header.get("sha256") != hashlib.sha256(body).hexdigest():
        raise ValueError("checksum or format differs")
    doc = json.loads(body)
    if doc.get("file_sha256") != digest:
        raise ValueError("not the compiled form of this file")
    catalog = Catalog(tuple(Product(*row) for row in doc["products"]), tuple(Warehouse(*row) for row in doc["warehouses"]),
                      tuple(tuple(row) for row in doc["initial_stock"]), seed=doc["seed"], source=source)
    if not isinstance(doc["fingerprint"], str):
        raise ValueError("no fingerprint")
    catalog.__dict__["fingerprint"] = doc["fingerprint"]  # the checksum vouches for it (a cached_property)
    return catalog


def _read(store: Store, key: str, digest: str, source: str) -> Catalog | None:
    try:
        if store.exists(key):
            return _decode(store.get(key), digest, source)
    except (StorageError, ValueError, TypeError, KeyError, AttributeError) as exc:
        log.warning("%s: compiled catalog ignored (%s); building it from %s", key, exc, source)
    return None


def _store(store: Store, key: str, data: bytes) -> None:
    try:
        store.put_once(key, data, content_type="application/json")
    except StorageError as exc:
        log.warning("%s: the compiled catalog could not be stored (%s); the next process builds it again", key, exc)


def load_compiled(path: str | Path | None, store: Store, *, shard: tuple[int, int] | None = None) -> Catalog:
    """The catalog at ``path`` (``None``: the built-in default) — or with ``shard=(k, N)`` shard k's
    sub-catalog (handlers/shards.py) — from its compiled form in ``store`` when there is one for
    these file bytes; else parsed, validated, and compiled for next time."""
    if path is None:
        return _pick(load_catalog(None), shard)
    try:
        with Path(path).open("rb") as handle:
            data = handle.read(MAX_CATALOG_BYTES + 1)
    except OSError:
        return load_catalog(path)  # the parser names the problem
    key = compiled_key(data, shard)
    digest = hashlib.sha256(data).hexdigest()[:32]
    found = _read(store, key, digest, str(path) if shard is None else f"{path} (shard {shard[0]} of {shard[1]})")
    if found is not None:
        return found
    whole = _read(store, compiled_key(data), digest, str(path)) if shard is not None else None
    if whole is None:
        if len(data) > MAX_CATALOG_BYTES:
            return load_catalog(path)  # refused with the size limit
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return load_catalog(path)  # refused naming the byte
        whole = parse_catalog(text, source=str(path))
        _store(store, compiled_key(data), _encode(whole, digest))
    if shard is None:
        return whole
    from .shards import split

    parts = split(whole, shard[1])
    for part in parts:  # every shard's form at once: the other shards' first processes find theirs
        _store(store, compiled_key(data, (part.number, shard[1])), _encode(part.catalog, digest))
    return parts[shard[0]].catalog


def _pick(catalog: Catalog, shard: tuple[int, int] | None) -> Catalog:
    if shard is None:
        return catalog
    from .shards import split

    return split(catalog, shard[1])[shard[0]].catalog
