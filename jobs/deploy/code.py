"""The functions' code in the bucket: each deployment's zips under ``PREFIX/lambda-code/<name>/``,
content-addressed (``<artifact>-<16 hex digits of the SHA-256>.zip``) and tagged
``stockpulse:deployment=<name>``.

A deletion is limited to what this deployment made, by three marks at once: the key is in its own
folder, it has a name ``code_name`` makes, and the object carries the deployment's tag. A redeploy
deletes its superseded zips only after its functions were updated, and never one that a function
of the deployment still runs (its ``CodeSha256``); ``--destroy`` deletes them after the functions are
gone. Another deployment's code (another ``--name`` sharing the bucket and prefix) and anything
else under ``lambda-code/`` is never listed, let alone deleted. An object this deployment did not
make at one of its own keys is refused before anything changes (the functions would be made from it).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping
from urllib.parse import urlencode

from .. import package
from .aws import DeployError, _Deployment, _error_code, client_error
from .plan import TAG_KEY, code_name, code_prefix, is_code_name


def code_keys(d: _Deployment, artifacts: Mapping[str, package.Artifact]) -> dict[str, str]:
    """artifact -> the key of its zip in this deployment's folder."""
    return {name: code_prefix(d.t) + code_name(name, artifact.sha256_hex) for name, artifact in artifacts.items()}


def running_code(artifact: str, code_sha256: str | None) -> str | None:
    """The ``code_name`` of what a function runs, from the ``CodeSha256`` (base64) Lambda reports."""
    return None if not code_sha256 else code_name(artifact, base64.b64decode(code_sha256).hex())


def list_keys(d: _Deployment, prefix: str) -> Iterator[str]:
    for page in d.c.s3.get_paginator("list_objects_v2").paginate(Bucket=d.t.bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            yield item["Key"]


def _made_here(d: _Deployment, key: str) -> bool | None:
    """Whether the object at ``key`` carries this deployment's tag (``None``: no such object)."""
    with d.errors(f"s3://{d.t.bucket}/{key}"):
        try:
            tags = d.c.s3.get_object_tagging(Bucket=d.t.bucket, Key=key).get("TagSet", [])
        except client_error() as exc:
            if _error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
    return {"Key": TAG_KEY, "Value": d.t.name} in tags


def plan_code(d: _Deployment, bucket: str, keys: Mapping[str, str]) -> dict[str, bool]:
    """artifact -> whether its zip is already in the bucket. An object at one of the keys that this
    deployment did not make is refused (before anything changes)."""
    present = {}
    for name, key in keys.items():
        made = None if bucket == "missing" else _made_here(d, key)
        if made is False:
            raise DeployError(
                f"s3://{d.t.bucket}/{key}: exists and was not made by `stockpulse deploy --name "
                f"{d.t.name}` (no tag {TAG_KEY}={d.t.name}): remove it or choose another --name"
            )
        present[name] = bool(made)
    return present


def upload_code(
    d: _Deployment, artifacts: Mapping[str, package.Artifact], keys: Mapping[str, str], present: Mapping[str, bool], dry_run: bool
) -> None:
    will = "would " if dry_run else ""
    for name, artifact in artifacts.items():
        if not present[name] and not dry_run:
            with d.errors(f"s3://{d.t.bucket}/{keys[name]}"):
                d.c.s3.upload_file(str(artifact.path), d.t.bucket, keys[name], ExtraArgs={"Tagging": urlencode(d.t.tags)})
        d.row("code", keys[name].rsplit("/", 1)[-1], "unchanged" if present[name] else will + "upload")


def _own_code(d: _Deployment) -> Iterator[tuple[str, bool]]:
    """Each object in this deployment's folder: (key, whether it is code this deployment made)."""
    prefix = code_prefix(d.t)
    with d.errors(f"s3://{d.t.bucket}/{prefix}"):
        keys = list(list_keys(d, prefix))
    for key in keys:
        yield key, is_code_name(key[len(prefix) :]) and bool(_made_here(d, key))


def remove_superseded(d: _Deployment, keys: Mapping[str, str], functions: Mapping[str, str], dry_run: bool) -> None:
    """After the functions were updated: delete this deployment's zips that are neither wanted nor
    run by one of its ``functions`` (function -> artifact) as they report it now — read after the
    listing, so that code another deploy of the same name put them on meanwhile is kept."""
    will = "would " if dry_run else ""
    found = list(_own_code(d))
    in_use = set() if dry_run else {_runs_now(d, function, artifact) for function, artifact in functions.items()}
    for key, ours in found:
        name = key.rsplit("/", 1)[-1]
        if key in keys.values():
            continue
        if not ours:
            d.row("code", name, f"kept (not made by deploy --name {d.t.name})")
        elif name in in_use:
            d.row("code", name, "kept (a function still runs it)")
        else:
            if not dry_run:
                with d.errors(f"s3://{d.t.bucket}/{key}"):
                    d.c.s3.delete_object(Bucket=d.t.bucket, Key=key)
            d.row("code", name, will + "delete (superseded)")


def _runs_now(d: _Deployment, function: str, artifact: str) -> str | None:
    with d.errors(f"function {function}"):
        try:
            config = d.c.lambda_.get_function_configuration(FunctionName=function)
        except d.c.lambda_.exceptions.ResourceNotFoundException:
            return None
    return running_code(artifact, config.get("CodeSha256"))


def remove_code(d: _Deployment, dry_run: bool) -> list[str]:
    """``--destroy``, once the functions are gone: delete every zip this deployment made; the keys."""
    will = "would " if dry_run else ""
    removed = []
    for key, ours in _own_code(d):
        name = key.rsplit("/", 1)[-1]
        if not ours:
            d.row("code", name, f"kept (not made by deploy --name {d.t.name})")
            continue
        if not dry_run:
            with d.errors(f"s3://{d.t.bucket}/{key}"):
                d.c.s3.delete_object(Bucket=d.t.bucket, Key=key)
        d.row("code", name, will + "delete")
        removed.append(key)
    return removed
