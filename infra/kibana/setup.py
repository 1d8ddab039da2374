"""Install the log index template and import the Kibana saved objects, idempotently.

    python3 /setup/setup.py elasticsearch   # compose es-setup: the index template (needs only ES)
    python3 /setup/setup.py kibana          # compose kibana-setup: data views, Lens panels, dashboard
    python3 /setup/setup.py                 # both, in that order

Stdlib only, Python 3.11+. Two steps, so that Filebeat waits for the template alone and a slow or
failing Kibana never holds logs back from Elasticsearch:

``elasticsearch``
    wait for Elasticsearch (``GET /_cluster/health`` answers 200), then
    ``PUT /_index_template/<name>`` for every ``*.index-template.json`` in ``ELASTICSEARCH_DIR``;
``kibana``
    wait for Kibana (``GET /api/status``: ``status.overall.level`` is ``available``), then
    ``POST /api/saved_objects/_import?overwrite=true`` of ``saved_objects.ndjson`` in ``KIBANA_DIR``
    (multipart, ``kbn-xsrf: true``). Kibana answers HTTP 200 even when objects failed: the body's
    ``success`` and ``errors`` decide.

Each wait has a deadline and prints a progress line every few seconds. Exits 0 when everything is in
place (running it again changes nothing), else 1 with one line saying why (the import's errors are
printed after it), 2 on an unknown step.

Environment: ``ELASTICSEARCH_URL`` (http://elasticsearch:9200), ``KIBANA_URL`` (http://kibana:5601),
``ELASTICSEARCH_DIR`` or ``ELASTICSEARCH_SETUP_DIR`` (/elasticsearch), ``KIBANA_DIR`` or
``KIBANA_SETUP_DIR`` (this script's folder),
``SETUP_TIMEOUT_SECONDS`` (300).
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "SetupError",
    "Response",
    "request",
    "wait_until",
    "elasticsearch_ready",
    "kibana_ready",
    "put_index_templates",
    "multipart_body",
    "import_saved_objects",
    "check_import",
    "main",
    "STEPS",
]

TEMPLATE_SUFFIX = ".index-template.json"
SAVED_OBJECTS = "saved_objects.ndjson"
STEPS = ("elasticsearch", "kibana")  # in the order they run
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # compose hosts: never via a proxy


class SetupError(RuntimeError):
    """A step failed; the message is the one line printed before exiting 1, ``details`` the lines
    printed after it (the import's errors)."""

    def __init__(self, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.details = details or []


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            raise SetupError(f"HTTP {self.status} with a body that is not JSON: {self.body[:300]!r}") from None


def request(method: str, url: str, *, body: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 30.0) -> Response:
    """One HTTP exchange; HTTP error statuses are returned, connection errors raise OSError."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with _OPENER.open(req, timeout=timeout) as answer:
            return Response(answer.status, answer.read())
    except urllib.error.HTTPError as error:
        with error:
            return Response(error.code, error.read())


def wait_until(
    name: str,
    ready: Callable[[], bool],
    *,
    timeout: float,
    interval: float = 2.0,
    progress: Callable[[str], None] = print,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Poll ``ready()`` until it is true; SetupError after ``timeout`` seconds. Connection errors
    count as "not yet"."""
    start = clock()
    last_report = start
    progress(f"waiting for {name} (up to {timeout:g} s)")
    while True:
        try:
            if ready():
                progress(f"{name} is ready after {clock() - start:.0f} s")
                return
            why = "not ready"
        except OSError as error:
            why = f"{type(error).__name__}: {error}"
        now = clock()
        if now - start >= timeout:
            raise SetupError(f"{name} not ready within {timeout:g} s (last: {why})")
        if now - last_report >= 10:
            progress(f"still waiting for {name} ({now - start:.0f} s; {why})")
            last_report = now
        sleep(interval)


def elasticsearch_ready(es_url: str) -> bool:
    return request("GET", f"{es_url}/_cluster/health?wait_for_status=yellow&timeout=5s", timeout=10).status == 200


def kibana_ready(kibana_url: str) -> bool:
    answer = request("GET", f"{kibana_url}/api/status", timeout=10)
    if answer.status != 200:
        return False
    overall = answer.json().get("status", {}).get("overall", {})
    return overall.get("level", overall.get("state")) in ("available", "green")


def put_index_templates(es_url: str, directory: Path, *, progress: Callable[[str], None] = print) -> list[str]:
    """PUT every ``<name>.index-template.json`` as ``_index_template/<name>``; returns the names."""
    files = sorted(directory.glob(f"*{TEMPLATE_SUFFIX}"))
    if not files:
        raise SetupError(f"{directory}: no *{TEMPLATE_SUFFIX} file")
    names = []
    for path in files:
        name = path.name[: -len(TEMPLATE_SUFFIX)]
        body = path.read_bytes()
        json.loads(body)  # a broken file fails here, naming nothing else
        answer = request("PUT", f"{es_url}/_index_template/{name}", body=body, headers={"Content-Type": "application/json"})
        if answer.status != 200 or answer.json().get("acknowledged") is not True:
            raise SetupError(f"PUT _index_template/{name} answered HTTP {answer.status}: {answer.body[:500]!r}")
        progress(f"index template {name} installed ({path.name})")
        names.append(name)
    return names


def multipart_body(
    field: str, filename: str, content: bytes, *, content_type: str = "application/ndjson", boundary: str | None = None
) -> tuple[bytes, str]:
    """A multipart/form-data body with one file part; returns (body, Content-Type header value)."""
    boundary = boundary or f"stockpulse-{uuid.uuid4().hex}"
    if boundary.encode() in content:
        raise ValueError("the boundary occurs in the content")
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\nContent-Type: {content_type}\r\n\r\n'
    ).encode()
    return head + content + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def check_import(answer: Response) -> dict[str, Any]:
    """The import's result, or SetupError when the status or the body says something failed."""
    result = answer.json() if answer.body else {}
    if answer.status != 200:
        raise SetupError(f"saved objects import answered HTTP {answer.status}: {answer.body[:500]!r}")
    errors = result.get("errors") or []
    if result.get("success") is not True or errors:
        details = [f"{e.get('type')}/{e.get('id')} ({e.get('title', '')}): {json.dumps(e.get('error'))}" for e in errors]
        raise SetupError(
            f"saved objects import failed: success={result.get('success')!r}, "
            f"{len(errors)} error(s), {result.get('successCount', 0)} imported",
            details,
        )
    return result


def import_saved_objects(kibana_url: str, path: Path, *, progress: Callable[[str], None] = print) -> dict[str, Any]:
    body, content_type = multipart_body("file", path.name, path.read_bytes())
    answer = request(
        "POST",
        f"{kibana_url}/api/saved_objects/_import?overwrite=true",
        body=body,
        headers={"kbn-xsrf": "true", "Content-Type": content_type},
        timeout=60,
    )
    result = check_import(answer)
    progress(f"saved objects imported: {result.get('successCount', 0)} from {path}")
    return result


def main(
    environ: dict[str, str] | None = None, *, steps: list[str] | tuple[str, ...] = STEPS, progress: Callable[[str], None] = print
) -> int:
    env = os.environ if environ is None else environ
    name = "es-setup" if list(steps) == ["elasticsearch"] else "kibana-setup"
    unknown = sorted(set(steps) - set(STEPS))
    if unknown or not steps:
        print(f"{name}: unknown step(s) {unknown or steps!r}: give {' and/or '.join(STEPS)}", file=sys.stderr)
        return 2
    es_url = env.get("ELASTICSEARCH_URL", "http://elasticsearch:9200").rstrip("/")
    kibana_url = env.get("KIBANA_URL", "http://kibana:5601").rstrip("/")
    es_dir = Path(env.get("ELASTICSEARCH_DIR") or env.get("ELASTICSEARCH_SETUP_DIR") or "/elasticsearch")
    kibana_dir = Path(env.get("KIBANA_DIR") or env.get("KIBANA_SETUP_DIR") or Path(__file__).resolve().parent)
    try:
        timeout = float(env.get("SETUP_TIMEOUT_SECONDS", "300"))
        if "elasticsearch" in steps:
            wait_until(f"Elasticsearch at {es_url}", lambda: elasticsearch_ready(es_url), timeout=timeout, progress=progress)
            put_index_templates(es_url, es_dir, progress=progress)
        if "kibana" in steps:
            wait_until(f"Kibana at {kibana_url}", lambda: kibana_ready(kibana_url), timeout=timeout, progress=progress)
            import_saved_objects(kibana_url, kibana_dir / SAVED_OBJECTS, progress=progress)
    except SetupError as error:
        print(f"{name}: {error}", file=sys.stderr)
        for line in error.details:
            print(f"  {line}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as error:
        print(f"{name}: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    progress(f"{name}: done ({', '.join(s for s in STEPS if s in steps)})")
    return 0


if __name__ == "__main__":
    sys.exit(main(steps=sys.argv[1:] or STEPS))
