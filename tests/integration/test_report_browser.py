"""The report opens in headless Chromium (Debian's ``chromium``): its charts render with the expected
titles and series, no script error, a screenshot that is not blank, and no request leaves the file.

Chromium runs offline as these machines need it (see the env notes): no background networking, a
fresh profile, every host name resolving to nothing. Its NetLog records every URL request; the
page's own are the ones whose network isolation key is the file:// site.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageStat

from jobs.cli import main
from tests.support.ticks import SMALL_CATALOG

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("report_browser")]  # its module fixture made once, on one worker

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
OFFLINE = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--enable-logging=stderr",
    "--v=0",
    "--virtual-time-budget=20000",
]


def chromium(page: Path, work: Path, *action: str) -> dict[str, Any]:
    """Open ``page``; returns stdout, stderr and the URLs the page itself requested."""
    profile, netlog = work / f"profile-{len(list(work.iterdir()))}", work / f"netlog-{len(list(work.iterdir()))}.json"
    proc = subprocess.run(
        [CHROMIUM, *OFFLINE, f"--user-data-dir={profile}", f"--log-net-log={netlog}", *action, page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    log = json.loads(netlog.read_text())
    kinds = {number: name for name, number in log["constants"]["logEventTypes"].items()}
    requested = sorted(
        {
            e["params"]["url"]
            for e in log["events"]
            if kinds[e["type"]] == "URL_REQUEST_START_JOB" and str(e["params"].get("network_isolation_key", "")).startswith("file://")
        }
    )
    return {"stdout": proc.stdout, "stderr": proc.stderr, "requested": requested}


def rendered(dom: str) -> dict[str, Any]:
    """What the page's check wrote: status, chart count, lines; and the page's script errors."""
    check = re.search(r'<ul id="render-check" data-status="([^"]*)"(?: data-charts="(\d+)")?>(.*?)</ul>', dom, re.DOTALL)
    assert check, dom[:500]
    errors = re.search(r'<pre id="page-errors"[^>]*>(.*?)</pre>', dom, re.DOTALL)
    return {
        "status": check.group(1),
        "charts": int(check.group(2) or 0),
        "lines": re.findall(r"<li>(.*?)</li>", check.group(3)),
        "errors": errors.group(1) if errors else None,
    }


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of a day replayed on a two-product catalog that runs out of stock."""
    root = tmp_path_factory.mktemp("browser")
    (root / "catalog.yaml").write_text(SMALL_CATALOG)
    store = f"file://{root}/store"
    args = ["--store", store, "--catalog", str(root / "catalog.yaml")]
    assert main(["simulate", "--days", "1", "-q", "--json", *args]) == 0
    assert main(["report", "--out", str(root / "report.html"), *args]) == 0
    return root / "report.html"


def test_the_charts_render_with_their_titles_and_series(page, tmp_path):
    """GIVEN the report WHEN Chromium opens it THEN every chart's view drew, with the expected titles
    and series, and no script error was caught or logged."""
    got = chromium(page, tmp_path, "--dump-dom")
    result = rendered(got["stdout"])
    assert result["status"] == "rendered"
    assert result["charts"] == 2 + 3 + 2 + 3  # inventory x2, demand x2 + skill, stockout x2, bars x3
    for line in [
        "chart: Inventory on hand — P-1",
        "chart: Inventory on hand — P-2",
        "chart: Daily demand vs day-ahead forecast — P-1",
        "chart: Forecast error (WAPE) per product: model vs seasonal naive",
        "chart: Predicted hours to stockout — P-2",
        "chart: Reorder alerts per product",
        "chart: Lost sales per product (units)",
        "chart: Fill rate per product",
        "series: W-A on hand",
        "series: stockout (on hand 0)",
        "series: purchase order placed",
        "series: purchase order arrived",
        "series: actual demand",
        "series: day-ahead forecast",
        "series: 80% band",
        "series: W-B predicted",
        "series: W-B actually emptied in",
        "series: lost sales",
    ]:
        assert line in result["lines"], line
    assert not result["errors"]
    assert "Uncaught" not in got["stderr"]
    for heading in ("Summary", "Inventory on hand", "Demand vs day-ahead forecast", "Predicted hours to stockout"):
        assert f">{heading}</h2>" in got["stdout"]


def test_no_request_leaves_the_file(page, tmp_path):
    """GIVEN the report WHEN Chromium opens it THEN the page made no network request (file:// reads
    are not network requests; the next test shows what one looks like)."""
    got = chromium(page, tmp_path, "--dump-dom")
    assert rendered(got["stdout"])["status"] == "rendered"
    assert got["requested"] == []


def test_the_request_check_sees_a_page_that_loads_from_the_network(tmp_path):
    """GIVEN a page with an image and a script from elsewhere WHEN Chromium opens it THEN the
    check above lists both (so it can fail)."""
    bad = tmp_path / "bad.html"
    bad.write_text('<img src="http://example.invalid/x.png"><script src="https://cdn.example.invalid/a.js"></script>')
    got = chromium(bad, tmp_path, "--dump-dom")
    assert {"http://example.invalid/x.png", "https://cdn.example.invalid/a.js"} <= set(got["requested"])


def test_the_error_check_sees_a_script_error(page, tmp_path):
    """GIVEN the report with a failing script added WHEN Chromium opens it THEN the page's error box
    shows it (so the no-error check above can fail)."""
    broken = tmp_path / "broken.html"
    broken.write_text(page.read_text().replace("</body>", "<script>null.x;</script></body>"))
    assert "null" in (rendered(chromium(broken, tmp_path, "--dump-dom")["stdout"])["errors"] or "")


def test_the_screenshot_is_not_blank(page, tmp_path):
    """GIVEN the report WHEN Chromium takes a screenshot THEN it has many colours and real contrast
    (a page whose charts failed is mostly white)."""
    shot = tmp_path / "shot.png"
    chromium(page, tmp_path, "--window-size=1280,2400", "--hide-scrollbars", f"--screenshot={shot}")
    image = Image.open(shot).convert("RGB")
    assert image.size == (1280, 2400)
    colours = image.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 200
    assert min(ImageStat.Stat(image).stddev) > 20
    plots = image.crop((0, 700, 1280, 2400))  # below the summary table: the charts
    assert min(ImageStat.Stat(plots).stddev) > 20


HOSTILE_CATALOG = """
seed: 7
products:
  - {id: "<img src=x onerror=console.error(1)>", base_demand_per_day: 240, lead_time_hours: 12, pack_size: 10}
  - {id: "[/]&amp;", base_demand_per_day: 60, lead_time_hours: 30, pack_size: 25}
warehouses: [{id: "W \\"A\\"", timezone: UTC}]
initial_stock: 60
"""


def test_ids_that_look_like_html_or_markup_and_a_damaged_object_render_as_text(tmp_path):
    """GIVEN catalog ids that are HTML, entities and rich markup, and one damaged log object WHEN the
    report opens in Chromium THEN the charts render with the ids as written in their titles, nothing
    runs or loads from an id, and the damaged object's key is shown on the page."""
    (tmp_path / "catalog.yaml").write_text(HOSTILE_CATALOG)
    args = ["--store", f"file://{tmp_path}/store", "--catalog", str(tmp_path / "catalog.yaml")]
    assert main(["simulate", "--days", "0.5", "-q", "--json", *args]) == 0
    key = sorted((tmp_path / "store" / "logs" / "order_tick").rglob("*.ndjson.gz"))[10]
    key.write_bytes(key.read_bytes()[:30])  # truncated: EOFError
    page = tmp_path / "hostile.html"
    assert main(["report", "--out", str(page), *args]) == 0
    got = chromium(page, tmp_path, "--dump-dom")
    result = rendered(got["stdout"])
    assert result["status"] == "rendered" and not result["errors"] and got["requested"] == []
    for line in (
        "chart: Inventory on hand — &lt;img src=x onerror=console.error(1)&gt;",
        "chart: Inventory on hand — [/]&amp;amp;",
        'series: W "A" on hand',
    ):
        assert line in result["lines"], result["lines"]
    shown = re.search(r'<p class="damaged" id="damaged-objects">(.*?)</p>', got["stdout"])
    assert shown and str(key.relative_to(tmp_path / "store")) in shown.group(1)
