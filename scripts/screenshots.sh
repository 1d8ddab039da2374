#!/usr/bin/env bash
# Regenerates the README's pictures:  bash scripts/screenshots.sh [STORE_URL]
#   docs/images/report.png   the top of `report`'s page, by headless Chromium (Debian's chromium)
#   docs/images/status.svg   the `status` view, by rich's SVG export
# With no STORE_URL it replays the default week into a temporary store first (about a minute).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PY=.venv/bin/python
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
STORE="${1:-file://$WORK/store}"
if [ $# -eq 0 ]; then
    "$PY" -m jobs simulate --days 7 --store "$STORE" -q > /dev/null
fi
"$PY" -m jobs report --store "$STORE" --out "$WORK/report.html" > /dev/null

# Offline flags from the env notes: no background networking, a fresh profile, no name resolves.
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --user-data-dir="$WORK/profile" \
    --host-resolver-rules="MAP * ~NOTFOUND" --virtual-time-budget=20000 --hide-scrollbars \
    --window-size=1200,1500 --screenshot="$WORK/report.png" "file://$WORK/report.html" 2> /dev/null
# 256 colours keep the PNG small (well under 500 KB) without visible loss on flat charts.
"$PY" - "$WORK/report.png" docs/images/report.png <<'PYEOF'
import sys
from PIL import Image
Image.open(sys.argv[1]).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(sys.argv[2], optimize=True)
PYEOF

"$PY" - "$STORE" docs/images/status.svg <<'PYEOF'
import sys
from rich.console import Console
from handlers.runtime.catalogs import load_catalog
from handlers.storage.location import open_store
from jobs.status import status_screen
console = Console(record=True, width=122, file=open("/dev/null", "w"))
console.print(status_screen(open_store(sys.argv[1]), load_catalog(None), now=1796169600.0))
console.save_svg(sys.argv[2], title="python -m jobs status")
PYEOF
ls -l docs/images/report.png docs/images/status.svg
