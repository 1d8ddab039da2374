#!/usr/bin/env bash
# The project's test command:  bash scripts/test.sh [--quick] [pytest arguments...]
#
# From any directory, on a fresh Debian 12 machine (root, or sudo; PyPI and Debian reachable)
# as on a prepared one:
#   1. apt-installs the servers the integration tests run (only when a binary is missing);
#   2. creates or updates the virtualenv .venv and installs the project with its test extra (uv, or pip);
#   3. finds CPython 3.12 and 3.13 (pyenv's or on PATH; uv installs them where the machine has none) and
#      meanwhile installs LocalStack (host mode) into .servers/localstack for the deploy tests
#      (scripts/localstack.sh install);
#   4. runs ruff (lint and format check), mypy --strict and the import contract (lint-imports), then pytest on two workers
#      (pytest-xdist; tests sharing a LocalStack stay on one), passing this script's arguments through.
# --quick: the same checks, then the unit tests only (-m "not integration and not slow": no servers, and
# not the few that replay days of the whole system end to end), the loop to run while working; CI runs
# everything.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python3}"
APT_PACKAGES=(prometheus prometheus-pushgateway prometheus-alertmanager docker-compose chromium tmux)
# What the tests call: prometheus, promtool (package prometheus), the Pushgateway, Alertmanager and amtool,
# docker-compose (validates compose files offline; no Docker engine needed), Chromium (opens the
# HTML report headless) and tmux (drives `status --watch`).
REQUIRED_BINARIES=(prometheus promtool prometheus-pushgateway prometheus-alertmanager amtool docker-compose chromium tmux)
# Services the packages above ship; tests start their own servers on free loopback ports.
PACKAGE_SERVICES=(prometheus prometheus-pushgateway prometheus-alertmanager prometheus-node-exporter)

log() { printf '==> %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        log "need root (or sudo) to run: $*"
        exit 1
    fi
}

POLICY_RC=/usr/sbin/policy-rc.d
REMOVE_POLICY_RC=false
remove_policy_rc() {
    if [ "$REMOVE_POLICY_RC" = true ]; then
        as_root rm -f "$POLICY_RC"
        REMOVE_POLICY_RC=false
    fi
}

stop_package_services() {
    local service
    for service in "${PACKAGE_SERVICES[@]}"; do
        if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
            as_root systemctl stop "$service" >/dev/null 2>&1 || true
        elif [ -x "/etc/init.d/$service" ]; then
            as_root "/etc/init.d/$service" stop >/dev/null 2>&1 || true
        fi
    done
}

install_apt_packages() {
    local packages=("$@")
    log "apt-get install ${packages[*]}"
    # Keep the packages' own services from starting while they install (exit 101 = "not
    # allowed", honoured by invoke-rc.d and deb-systemd-invoke)...
    if [ ! -e "$POLICY_RC" ]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee "$POLICY_RC" >/dev/null
        as_root chmod 755 "$POLICY_RC"
        REMOVE_POLICY_RC=true
        trap remove_policy_rc EXIT
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${packages[@]}"
    remove_policy_rc
    # ...and stop any that started all the same (no test depends on them either way).
    stop_package_services
}

missing_binaries() {
    local binary
    for binary in "${REQUIRED_BINARIES[@]}"; do
        command -v "$binary" >/dev/null 2>&1 || printf '%s\n' "$binary"
    done
}

mapfile -t missing < <(missing_binaries)
apt_packages=()
if [ "${#missing[@]}" -gt 0 ]; then
    log "missing: ${missing[*]}"
    apt_packages+=("${APT_PACKAGES[@]}")
fi
if [ ! -x .venv/bin/python ] && ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    apt_packages+=(python3-venv)  # Debian's python3 makes no virtualenv without it
fi
if [ "${#apt_packages[@]}" -gt 0 ]; then
    install_apt_packages "${apt_packages[@]}"
    mapfile -t missing < <(missing_binaries)
    if [ "${#missing[@]}" -gt 0 ]; then
        log "still missing after apt-get install: ${missing[*]}"
        exit 1
    fi
fi

if ! .venv/bin/python -c 'import sys' >/dev/null 2>&1; then
    log "creating .venv with $("$PYTHON" --version 2>&1)"
    "$PYTHON" -m venv --clear .venv
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
# uv (installs the project and, where the machine has none, the CPythons below); pip does without it.
[ -x .venv/bin/uv ] || .venv/bin/python -m pip install --quiet 'uv>=0.9,<1' || log "no uv (above): pip installs the project"

QUICK=false
for arg in "$@"; do [ "$arg" = "--quick" ] && QUICK=true; done

# CPython 3.12 and 3.13 for the deploy tests: the Lambda runtime LocalStack runs the functions on
# (STOCKPULSE_LAMBDA_PYTHON_312, _313), and LocalStack 4.14 itself (LOCALSTACK_PYTHON: it needs >= 3.12).
# pyenv's or pythonX.Y on PATH when the machine has them, else uv installs them (python-build-standalone,
# under ~/.local/share/uv). A variable already set is kept.
python_of() {  # MAJOR.MINOR -> the path of a CPython of that version, or nothing
    local found
    found=$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$1".*/bin/python 2>/dev/null | sort -V | tail -n 1)
    [ -n "$found" ] || found=$(command -v "python$1" || true)
    if [ -z "$found" ] && [ -x .venv/bin/uv ]; then
        log "no CPython $1 on this machine: uv python install $1"
        .venv/bin/uv python install --quiet "$1" >&2 && found=$(.venv/bin/uv python find --managed-python "$1" || true)
    fi
    printf '%s' "$found"
}
if [ "$QUICK" != true ]; then
    for version in 3.12 3.13; do
        variable="STOCKPULSE_LAMBDA_PYTHON_${version/./}"
        [ -n "${!variable:-}" ] || export "$variable=$(python_of "$version")"
        [ -n "${!variable}" ] || log "no CPython $version (above): the deploy tests will fail; pyenv install $version, or set $variable"
    done
    export LOCALSTACK_PYTHON="${LOCALSTACK_PYTHON:-$STOCKPULSE_LAMBDA_PYTHON_313}"
fi

# LocalStack in host mode (no Docker) with the executor that runs its Lambda functions as local
# processes, in a virtualenv of its own (.servers/localstack): the same install as a user's
# `bash scripts/localstack.sh` (docs/deploy.md); nothing to do when it is up to date. --quick runs
# the unit tests only, which start no server.
# It installs in the background while the project installs (both take most of a minute on a fresh
# clone); its exit status is waited for below.
localstack_install=""
if [ "$QUICK" != true ]; then
    bash scripts/localstack.sh install &
    localstack_install=$!
fi

# The project into .venv, again only when pyproject.toml changed since the last install: with uv's pip
# interface (the same resolution as pip, in about a tenth of pip's 90 s on a fresh clone here); with pip
# when uv is missing or fails.
project_stamp=$(sha256sum pyproject.toml | cut -c1-16)
if [ "$(cat .venv/.stockpulse-stamp 2>/dev/null)" != "$project_stamp" ]; then
    log "uv pip install -e '.[test]'"
    if ! { [ -x .venv/bin/uv ] && .venv/bin/uv pip install --quiet --python .venv/bin/python --editable '.[test]'; }; then
        log "pip install -e '.[test]' (no uv, or it failed above)"
        .venv/bin/python -m pip install --quiet --editable '.[test]'
    fi
    printf '%s\n' "$project_stamp" > .venv/.stockpulse-stamp
fi
# Lint, type-check and check the import contract first (seconds, while LocalStack may still be
# installing), then the tests. All three read their settings from pyproject.toml.
log "ruff check and format --check; mypy --strict; lint-imports"
if ! { .venv/bin/ruff check --quiet . &&
       .venv/bin/ruff format --check --quiet . &&
       .venv/bin/mypy --no-error-summary &&
       { .venv/bin/lint-imports --no-cache --no-logo >/dev/null || .venv/bin/lint-imports --no-cache --no-logo; }; }; then
    [ -z "$localstack_install" ] || kill "$localstack_install" 2>/dev/null || true
    exit 1
fi
if [ -n "$localstack_install" ]; then
    wait "$localstack_install" || { log "LocalStack's install failed (above)"; exit 1; }
fi

pytest_args=()
for arg in "$@"; do
    if [ "$arg" = "--quick" ]; then pytest_args+=(-m "not integration and not slow"); else pytest_args+=("$arg"); fi
done
case " ${pytest_args[*]} " in
    *" -n "*|*" -n="*|*" -p no:xdist "*) ;;  # the caller chose how to distribute
    *) pytest_args=(-n "${STOCKPULSE_TEST_WORKERS:-2}" --dist loadgroup "${pytest_args[@]}") ;;
esac
exec .venv/bin/python -m pytest "${pytest_args[@]}"
