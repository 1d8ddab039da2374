"""The shop's own catalog in a deployment: a function cannot read the deployer's file, so
``deploy --catalog FILE`` validates it here and keeps it in the store, write-once and
content-addressed, with its compiled forms (handlers/runtime/catalogs.py) — no function ever parses YAML:

``catalogs/source/<sha>.yaml``                  the file's exact bytes (``<sha>``: the first 32 hex
                                                digits of their SHA-256)
``catalogs/<sha>.v2.json``                      the whole catalog, compiled
``catalogs/<sha>.v2.shard-<k>-of-<N>.json``     each shard's sub-catalog (``--num-shards N``, N > 1)

under the store's prefix; the functions get ``STOCKPULSE_CATALOG=store:catalogs/source/<sha>.yaml``.
A reference given as it is (``--catalog store:...``) is passed on once the plan found its object in
the bucket. The objects are the store's data: a later deploy uploads only what is missing, and
``--destroy`` keeps them, as it keeps the state."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from handlers.errors import ConfigError, StorageError
from handlers.model.bounds import MAX_CATALOG_BYTES
from handlers.model.catalog import Catalog
from handlers.runtime.catalogs import compile_catalog, compiled_objects, load_compiled, parse_reference, store_reference
from handlers.runtime.settings import ENV
from handlers.storage.file import FileStore

from .aws import DeployError, _Deployment, _error_code, client_error, object_exists
from .plan import Target

_SETTING = f"{ENV['catalog_path'][1]} / {ENV['catalog_path'][0]}"


@dataclass(frozen=True)
class CatalogUpload:
    reference: str  # the functions' STOCKPULSE_CATALOG: store:catalogs/source/<sha>.yaml
    objects: Mapping[str, bytes] = field(default_factory=dict, repr=False)  # key in the store -> bytes
    summary: str = ""  # what the file holds, for the progress line


def prepare_catalog(value: str | None, *, num_shards: int) -> CatalogUpload | None:
    """The catalog setting made deployable, before any call: ``None`` (the built-in catalog) stays
    so; a ``store:`` reference is passed on as it is; a local file is read, validated (the same
    one-line errors as every command), compiled, and each shard checked against what one
    invocation handles. Raises ``ConfigError``/``CatalogError``."""
    if value is None:
        return None
    if parse_reference(value) is not None:
        return CatalogUpload(value)
    try:
        with Path(value).open("rb") as handle:
            data = handle.read(MAX_CATALOG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{_SETTING}: catalog {value!r}: cannot read ({exc.strerror or exc})") from exc
    catalog = _validated(value, data)
    objects = compiled_objects(data, catalog, num_shards=num_shards)
    from handlers.runtime.invoke import check_size
    from handlers.runtime.shards import split

    if num_shards == 1:
        check_size(catalog, 1, None)
    for part in split(catalog, num_shards) if num_shards > 1 else ():
        check_size(part.catalog, num_shards, part.number)
    summary = f"{len(catalog.products)} products x {len(catalog.warehouses)} warehouses = {catalog.num_series} series"
    return CatalogUpload(store_reference(data), objects, summary)


def _validated(path: str, data: bytes) -> Catalog:
    """The catalog in file ``path`` (its bytes ``data``), validated: parsed once per file version and
    then read back from its compiled form in a local cache (``~/.cache/stockpulse/catalogs``,
    handlers/runtime/catalogs.py: keyed by the bytes' digest, checksummed) — a 1M-series catalog takes
    about 30 s to parse and 0.5 s to read back, so deploying it again does not parse it again."""
    if len(data) > MAX_CATALOG_BYTES:
        return compile_catalog(data, source=path)[0]  # refused with the size limit
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "stockpulse" / "catalogs"
    try:
        base.mkdir(parents=True, exist_ok=True)
        catalog = load_compiled(path, FileStore(base))
    except (OSError, StorageError):  # no cache here: validate without one
        return compile_catalog(data, source=path)[0]
    return catalog


def catalog_objects(target: Target) -> dict[str, bytes]:
    """The deployment's catalog objects by key in the bucket (under the store's prefix)."""
    return {f"{target.key_prefix}{key}": data for key, data in target.catalog_objects.items()}


def plan_catalog(d: _Deployment, bucket: str) -> set[str]:
    """Of the catalog objects to upload, the keys the bucket already holds (write-once: kept as they
    are). A reference given as it is must name an object the bucket holds: refused otherwise, before
    anything changes."""
    t = d.t
    reference = t.environment.get(ENV["catalog_path"][0])
    wanted = catalog_objects(t)
    if reference is None:
        return set()
    parsed = parse_reference(reference)
    if parsed is None:  # function_settings lets no local path through
        raise DeployError(f"{_SETTING}: {reference!r} is not a store: reference")
    if not wanted:
        key = f"{t.key_prefix}{parsed[0]}"
        if bucket == "missing" or not _exists(d, key):
            raise DeployError(
                f"{_SETTING}: {reference}: no such object in {t.store_url} (deploy --catalog FILE uploads the file and its compiled forms)"
            )
        return set()
    return set() if bucket == "missing" else {key for key in wanted if _exists(d, key)}


def upload_catalog(d: _Deployment, present: set[str], dry_run: bool) -> None:
    """Upload the catalog objects the bucket lacks, write-once (``If-None-Match: *``): before any
    function is made or updated to name them."""
    will = "would " if dry_run else ""
    for key, data in catalog_objects(d.t).items():
        if key in present:
            d.row("catalog", key, "unchanged")
            continue
        if not dry_run:
            with d.errors(f"s3://{d.t.bucket}/{key}"):
                try:
                    d.c.s3.put_object(
                        Bucket=d.t.bucket,
                        Key=key,
                        Body=data,
                        IfNoneMatch="*",
                        ContentType="application/yaml" if key.endswith(".yaml") else "application/json",
                    )
                except client_error() as exc:
                    if _error_code(exc) not in ("PreconditionFailed", "412"):
                        raise  # else written meanwhile: the same bytes, the key is their digest
        d.row("catalog", key, will + "upload")


def _exists(d: _Deployment, key: str) -> bool:
    with d.errors(f"s3://{d.t.bucket}/{key}"):
        return object_exists(d, key)
