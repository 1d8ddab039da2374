"""Following the README and the docs leaves `git status` clean.

Every file or folder that a documented command writes inside the checkout -- by default (the
commands' own defaults, read from the code) or as the README and docs/*.md spell it (`--out`,
`--report`, `--store file://./...`, `--data-dir`, `cp .env.example .env`) -- is ignored by the
project's .gitignore, checked with `git check-ignore` in a scratch repository holding only that file.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

import pytest

from handlers.runtime.settings import Settings
from jobs.cli import build_parser
from tests.support.servers import LOCALSTACK_SCRIPT

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# A flag and the value a documented command gives it: a file (--out, --report, the copy of
# .env.example) or a folder (--store file://./..., --data-dir). A value is a path in the checkout
# unless it is absolute, a URL, or a placeholder (FILE, DIR, FILE.html: capitals).
_FILES = re.compile(r"(?:--out|--report)[ =](\S+)|\bcp \.env\.example (\S+)")
_FOLDERS = re.compile(r"--store[ =]file://\./(\S+)|--data-dir[ =](\S+)")


def _code(text: str) -> Iterable[str]:
    """The shell in a Markdown page: fenced blocks and inline code spans."""
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        yield from block.splitlines()
    yield from re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))


def documented_paths() -> dict[str, str]:
    """path -> where it is documented, for every path a documented command writes in the checkout."""
    found: dict[str, str] = {}
    for page in DOCS:
        for line in _code(page.read_text()):
            values = [(a or b, "") for a, b in _FILES.findall(line)] + [(a or b, "/") for a, b in _FOLDERS.findall(line)]
            for value, folder in values:
                value = value.strip("`'\"").rstrip(".,;)").removeprefix("./").rstrip("/")
                if value.startswith("/") or "://" in value or re.search(r"[A-Z]{3}", value):
                    continue
                found.setdefault(value + folder, f"{page.relative_to(ROOT)}: {line.strip()}")
    return found


def default_paths() -> dict[str, str]:
    """path -> which default, for what the commands write when given no path."""
    parser = build_parser()
    store = next(f.default for f in dataclasses.fields(Settings) if f.name == "store_url")
    assert isinstance(store, str) and store.startswith("file://./"), store
    venv = re.search(r'^VENV="\$ROOT/(.+)"$', LOCALSTACK_SCRIPT.read_text(), flags=re.M)
    assert venv is not None, f'{LOCALSTACK_SCRIPT} no longer names its virtualenv as VENV="$ROOT/..."'
    return {
        parser.parse_args(["report"]).out: "report --out (default)",
        parser.parse_args(["package"]).out + "/": "package --out (default)",
        store.removeprefix("file://./") + "/": "--store (default)",
        venv[1] + "/": "scripts/localstack.sh (and scripts/test.sh): LocalStack's virtualenv",
    }


def not_ignored(paths: Iterable[str], tmp_path: Path) -> set[str]:
    """Those of ``paths`` the project's .gitignore does not ignore (a path ending in / is a folder:
    a file inside it is checked)."""
    git = shutil.which("git")
    if git is None:
        pytest.fail("git is not installed: apt-get install -y git")
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run([git, "init", "-q", str(repo)], check=True)
    shutil.copyfile(ROOT / ".gitignore", repo / ".gitignore")
    wanted = {path: path + "x" if path.endswith("/") else path for path in paths}
    done = subprocess.run(
        [git, "-C", str(repo), "check-ignore", "--no-index", "--stdin"],
        input="\n".join(wanted.values()) + "\n",
        capture_output=True,
        text=True,
    )
    assert done.returncode in (0, 1), done.stderr  # 1: none of them is ignored
    ignored = set(done.stdout.splitlines())
    return {path for path, probe in wanted.items() if probe not in ignored}


def test_what_documented_commands_write_in_the_checkout_is_ignored_by_git(tmp_path):
    # GIVEN every path the README and docs/*.md make a command write, and the commands' defaults
    paths = {**documented_paths(), **default_paths()}
    # WHEN git reads the project's .gitignore
    left = not_ignored(paths, tmp_path)
    # THEN it ignores each of them: `git status` stays clean after following the docs
    assert not left, "\n".join(f"{path}  ({paths[path]})" for path in sorted(left))


def test_control_the_documented_paths_include_the_readme_report_and_the_compose_settings():
    paths = documented_paths()
    assert {"stockpulse-report.html", "phone.html", "week.html", ".env", "data/"} <= set(paths), paths


def test_control_a_path_nothing_ignores_is_reported(tmp_path):
    assert not_ignored(["notes.txt", "docs/new-page.md", "data/", "build/"], tmp_path) == {"notes.txt", "docs/new-page.md"}
