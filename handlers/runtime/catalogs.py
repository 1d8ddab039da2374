"""The catalog, parsed once per catalog version: a compiled form kept in the store.

Parsing and validating a YAML catalog costs about 1.1 s at 10,000 products (100,000 series) —
more than everything else an order tick does. So the first process that loads a catalog file
writes its validated content as JSON under ``catalogs/<sha256 of the file>.v2.json`` (write-once;
the same file always gives the same object), and every later process that names the same file
bytes reads that instead. A changed file has another digest, so it is parsed and validated again.

A sharded deployment (handlers/runtime/shards.py) also keeps each shard's sub-catalog,
``catalogs/<sha256>.v2.shard-<k>-of-<N>.json``: an invocation of one shard of a 1M-series
catalog reads its tenth, not the whole (1.8 s to decode at 1M series, of which 1.0 s is
recomputing the fingerprint). The first process that needs any shard's form writes them all.

A catalog may also live in the store itself: ``STOCKPULSE_CATALOG=store:catalogs/source/<sha>.yaml``
names the file's exact bytes by a key relative to the store URL, ``<sha>`` being the first 32 hex
digits of their SHA-256 (what ``deploy --catalog FILE`` uploads, with every compiled form, since a
Lambda function has no local file). The digest is in the name, so a process looks up the compiled
form (its shard's) directly and never reads the YAML; only when that is missing does it read the
source object, check its digest, validate, compile and store, as for a local file.

A compiled object is a JSON header line (format, the body's SHA-256) and a JSON body carrying the
file's digest, which part of it the object holds (``shard``: ``[k, N]``, or ``null`` for the whole
catalog), the catalog's fingerprint and its content. The body's checksum stands for the
fingerprint's recomputation. An object whose checksum, digest, part or shape does not match its
key — a damaged one, another shard's under this shard's name, a shard's under the whole catalog's,
one written before objects named their part — is ignored with a warning naming its key, the
catalog is built from the file (for a ``store:`` reference, from the source object, checked against
its digest) and the object is written again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path

from handlers.errors import CatalogError, ConfigError, StorageError
from handlers.model.bounds import MAX_CATALOG_BYTES
from handlers.model.catalog import Catalog, Product, Warehouse, parse_catalog, parse_catalog_bytes
from handlers.runtime.shards import split
from handlers.storage.base import Store

__all__ = [
    "load_catalog",
    "default_catalog",
    "compiled_objects",
    "load_compiled",
    "store_compiled",
    "compiled_key",
    "compile_catalog",
    "compiled_globs",
    "parse_reference",
    "source_key",
    "store_reference",
    "CATALOG_PREFIX",
    "SOURCE_PREFIX",
    "STORE_SCHEME",
]

log = logging.getLogger("stockpulse")
CATALOG_PREFIX = "catalogs/"
SOURCE_PREFIX = f"{CATALOG_PREFIX}source/"
STORE_SCHEME = "store:"
_FORMAT = 2
_SOURCE_KEY = re.compile(rf"{re.escape(SOURCE_PREFIX)}([0-9a-f]{{32}})\.yaml")
_SETTING = "--catalog / STOCKPULSE_CATALOG"


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Load and validate a catalog file; ``None`` gives the built-in default."""
    if path is None:
        return default_catalog()
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_CATALOG_BYTES + 1)
    except OSError as exc:
        raise CatalogError(f"catalog {str(path)!r}: cannot read ({exc.strerror or exc})") from exc
    return parse_catalog_bytes(data, source=str(path))


def default_catalog() -> Catalog:
    text = resources.files("handlers").joinpath("catalogs/default.yaml").read_text()
    return parse_catalog(text, source="<default>")


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


def _key(digest: str, shard: tuple[int, int] | None = None) -> str:
    tail = "" if shard is None else f".shard-{shard[0]}-of-{shard[1]}"
    return f"{CATALOG_PREFIX}{digest}.v{_FORMAT}{tail}.json"


def compiled_key(data: bytes, shard: tuple[int, int] | None = None) -> str:
    """The key of the compiled form of catalog file bytes ``data`` (of one shard: ``(k, N)``)."""
    return _key(_digest(data), shard)


def source_key(data: bytes) -> str:
    """The key of catalog file bytes ``data`` kept in the store: ``catalogs/source/<sha>.yaml``."""
    return f"{SOURCE_PREFIX}{_digest(data)}.yaml"


def store_reference(data: bytes) -> str:
    """The ``STOCKPULSE_CATALOG`` value naming ``data`` kept in the store (:func:`source_key`)."""
    return STORE_SCHEME + source_key(data)


def parse_reference(value: str) -> tuple[str, str] | None:
    """``(key, digest)`` of a ``store:`` reference; ``None`` for anything else (a local path).
    Raises ``ValueError`` for a reference whose key is not ``catalogs/source/<32 hex digits>.yaml``."""
    if not value.startswith(STORE_SCHEME):
        return None
    key = value[len(STORE_SCHEME) :]
    match = _SOURCE_KEY.fullmatch(key)
    if match is None:
        raise ValueError(
            f"a {STORE_SCHEME} reference must name {SOURCE_PREFIX}<the first 32 hex digits of the "
            "file's SHA-256>.yaml (what deploy --catalog FILE uploads)"
        )
    return key, match.group(1)


def _encode(catalog: Catalog, digest: str, shard: tuple[int, int] | None = None) -> bytes:
    body = json.dumps(
        {
            "file_sha256": digest,
            "shard": None if shard is None else list(shard),
            "fingerprint": catalog.fingerprint,
            "seed": catalog.seed,
            "products": [list(vars(p).values()) for p in catalog.products],
            "warehouses": [list(vars(w).values()) for w in catalog.warehouses],
            "initial_stock": catalog.initial_stock_table,
        },
        separators=(",", ":"),
    ).encode()
    header = json.dumps({"format": _FORMAT, "sha256": hashlib.sha256(body).hexdigest()}).encode()
    return header + b"\n" + body


def _decode(data: bytes, digest: str, source: str, shard: tuple[int, int] | None = None) -> Catalog:
    header_line, _, body = data.partition(b"\n")
    header = json.loads(header_line)
    if header.get("format") != _FORMAT or header.get("sha256") != hashlib.sha256(body).hexdigest():
        raise ValueError("checksum or format differs")
    doc = json.loads(body)
    if doc.get("file_sha256") != digest:
        raise ValueError("not the compiled form of this file")
    if "shard" not in doc:
        raise ValueError("written before compiled forms named the part of the catalog they hold")
    if doc["shard"] != (None if shard is None else list(shard)):
        held = "the whole catalog" if doc["shard"] is None else f"shard {doc['shard']}"
        raise ValueError(f"holds {held}, not {'the whole catalog' if shard is None else f'shard {list(shard)}'}")
    catalog = Catalog(
        tuple(Product(*row) for row in doc["products"]),
        tuple(Warehouse(*row) for row in doc["warehouses"]),
        tuple(tuple(row) for row in doc["initial_stock"]),
        seed=doc["seed"],
        source=source,
    )
    if not isinstance(doc["fingerprint"], str):
        raise ValueError("no fingerprint")
    catalog.__dict__["fingerprint"] = doc["fingerprint"]  # the checksum vouches for it (a cached_property)
    return catalog


def _read(store: Store, key: str, digest: str, source: str, shard: tuple[int, int] | None = None) -> Catalog | None:
    try:
        if store.exists(key):
            return _decode(store.get(key), digest, source, shard)
    except (StorageError, ValueError, TypeError, KeyError, AttributeError) as exc:
        log.warning("%s: compiled catalog ignored (%s); building it from %s", key, exc, source)
    return None


def _store(store: Store, key: str, data: bytes) -> None:
    """Write a compiled form once; one already there with other bytes (damaged, another part's, an
    older layout: what :func:`_read` ignored) is written again."""
    try:
        if not store.put_once(key, data, content_type="application/json") and store.matches(key, data) is False:
            store.replace(key, data, content_type="application/json")
    except StorageError as exc:
        log.warning("%s: the compiled catalog could not be stored (%s); the next process builds it again", key, exc)


def _parse(data: bytes, source: str) -> Catalog:
    """Catalog file bytes validated as ``load_catalog`` validates a file (size, UTF-8, content)."""
    return parse_catalog_bytes(data, source=source)


def compile_catalog(data: bytes, *, source: str, num_shards: int = 1) -> tuple[Catalog, dict[str, bytes]]:
    """The catalog in file bytes ``data``, and every object that lets a process load it from a
    store without parsing: the bytes themselves under :func:`source_key`, the whole catalog's
    compiled form and, with ``num_shards > 1``, each shard's — keys relative to the store, what
    ``deploy --catalog`` uploads. Raises ``CatalogError`` naming ``source`` for an invalid file."""
    whole = _parse(data, source)
    return whole, compiled_objects(data, whole, num_shards=num_shards)


def compiled_objects(data: bytes, whole: Catalog, *, num_shards: int = 1) -> dict[str, bytes]:
    """What :func:`compile_catalog` returns besides the catalog, for a catalog already validated
    from file bytes ``data`` (e.g. read back from its compiled form: no YAML parsed again)."""
    digest = _digest(data)
    objects = {source_key(data): data, _key(digest): _encode(whole, digest)}
    if num_shards > 1:
        for part in split(whole, num_shards):
            objects[_key(digest, (part.number, num_shards))] = _encode(part.catalog, digest, (part.number, num_shards))
    return objects


def compiled_globs(num_shards: int = 1) -> list[str]:
    """Key patterns of the compiled forms a process of a deployment of ``num_shards`` reads and
    writes (an IAM policy's resources): the whole catalog's and, sharded, its shards'."""
    whole = f"{CATALOG_PREFIX}*.v{_FORMAT}.json"
    return [whole] if num_shards == 1 else [whole, f"{CATALOG_PREFIX}*.v{_FORMAT}.shard-*-of-{num_shards}.json"]


Keep = Callable[[Store, str, bytes], None]  # stores (or sets aside) one compiled object


def load_compiled(
    path: str | Path | None, store: Store, *, shard: tuple[int, int] | None = None, deferred: dict[str, bytes] | None = None
) -> Catalog:
    """The catalog at ``path`` (``None``: the built-in default; ``store:<key>``: a file kept in
    ``store``) — or with ``shard=(k, N)`` shard k's sub-catalog (handlers/runtime/shards.py) — from its
    compiled form in ``store`` when there is one for these file bytes; else parsed, validated, and
    compiled for next time. With ``deferred``, the compiled objects to write are put there instead
    of written: an invocation writes them (:func:`store_compiled`) once its checks have passed, so
    a refused one writes nothing."""
    keep: Keep = _store if deferred is None else (lambda _, key, data: deferred.__setitem__(key, data))
    if path is None:
        return _pick(load_catalog(None), shard)
    try:
        reference = parse_reference(path) if isinstance(path, str) else None
    except ValueError as exc:
        raise ConfigError(f"{_SETTING}: {exc}, got {str(path)[:200]!r}") from exc
    if reference is not None:
        return _load_referenced(str(path), *reference, store, shard, keep)
    try:
        with Path(path).open("rb") as handle:
            data = handle.read(MAX_CATALOG_BYTES + 1)
    except OSError:
        return load_catalog(path)  # the parser names the problem
    digest = _digest(data)
    found = _read(store, _key(digest, shard), digest, _label(path, shard), shard)
    if found is not None:
        return found
    whole = _read(store, _key(digest), digest, str(path)) if shard is not None else None
    if whole is None:
        whole = _parse(data, str(path))  # refused in one line naming the file: size, UTF-8, content
        keep(store, _key(digest), _encode(whole, digest))
    return _finish(store, whole, digest, shard, keep)


def _load_referenced(reference: str, key: str, digest: str, store: Store, shard: tuple[int, int] | None, keep: Keep) -> Catalog:
    """A ``store:`` reference: the compiled form by the digest in its name; on a miss the source
    object, read, checked against that digest, validated and compiled."""
    found = _read(store, _key(digest, shard), digest, _label(reference, shard), shard)
    if found is not None:
        return found
    whole = _read(store, _key(digest), digest, reference) if shard is not None else None
    if whole is None:
        if not store.exists(key):
            raise ConfigError(f"{_SETTING}: {reference}: no such object in {store.url} (deploy --catalog FILE uploads it)")
        data = store.get(key)
        if _digest(data) != digest:
            raise ConfigError(
                f"{_SETTING}: {reference}: the object's SHA-256 begins {_digest(data)}, not the "
                f"{digest} its name says (it was not uploaded by deploy --catalog)"
            )
        whole = _parse(data, reference)
        keep(store, _key(digest), _encode(whole, digest))
    return _finish(store, whole, digest, shard, keep)


def _label(path: str | Path, shard: tuple[int, int] | None) -> str:
    return str(path) if shard is None else f"{path} (shard {shard[0]} of {shard[1]})"


def _finish(store: Store, whole: Catalog, digest: str, shard: tuple[int, int] | None, keep: Keep) -> Catalog:
    if shard is None:
        return whole
    parts = split(whole, shard[1])
    for part in parts:  # every shard's form at once: the other shards' first processes find theirs
        keep(store, _key(digest, (part.number, shard[1])), _encode(part.catalog, digest, (part.number, shard[1])))
    return parts[shard[0]].catalog


_stored: set[tuple[str, str]] = set()  # (store URL, key) of the compiled objects this process wrote


def store_compiled(store: Store, objects: Mapping[str, bytes]) -> None:
    """Write the compiled objects :func:`load_compiled` set aside (once per process and store; best
    effort, as when it writes them itself)."""
    for key, data in objects.items():
        if (store.url, key) not in _stored:
            _store(store, key, data)
            _stored.add((store.url, key))


def _pick(catalog: Catalog, shard: tuple[int, int] | None) -> Catalog:
    if shard is None:
        return catalog
    return split(catalog, shard[1])[shard[0]].catalog
