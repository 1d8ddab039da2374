#!/usr/bin/env bash
# LocalStack 4.14.0 on this machine, without Docker (host mode): its Lambda functions run as local
# CPython processes through the runtime executor in localstack/executor/ (docs/deploy.md,
# "LocalStack without Docker").
#
#   bash scripts/localstack.sh [run] [--port N] [--data-dir DIR] [--stop-timeout SECONDS]
#   bash scripts/localstack.sh install
#
# install: a virtualenv of its own, .servers/localstack (LocalStack's pins clash with the project's),
#   made with CPython >= 3.12 ($LOCALSTACK_PYTHON, else pyenv's 3.13 or 3.12, else python3.13 or
#   python3.12 on PATH; with only 3.11, LocalStack 4.12.0, the last that runs on it), holding
#   localstack-core[runtime], the pins that keep it starting and the executor. Nothing is done when
#   the virtualenv already holds exactly that. scripts/test.sh runs it: one install path.
# run (the default): install when needed, then LocalStack on 127.0.0.1:PORT only (default 4566),
#   with S3, Lambda, EventBridge, IAM, STS and CloudWatch Logs -- what `python -m jobs deploy`
#   uses. Functions of the runtimes python3.11/3.12/3.13 run on a CPython of that version
#   ($STOCKPULSE_LAMBDA_PYTHON_312 etc., else pyenv's, else python3.12 etc. on PATH). Its files (the
#   functions' code, their logs lambda-*.log, LocalStack's log) go to --data-dir (kept) or a temp dir
#   (removed on exit). Prints the endpoint and the settings for `deploy`, then waits; Ctrl-C or
#   SIGTERM stops LocalStack and every function process it started (SIGTERM to all of them, SIGKILL
#   to what is left after --stop-timeout seconds, default 20) and exits 0. Exits 1 if LocalStack
#   dies on its own, 2 on a bad argument.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HOST=127.0.0.1
VENV="$ROOT/.servers/localstack"
EXECUTOR="$ROOT/localstack/executor"
LOCALSTACK_VERSION=4.14.0
LOCALSTACK_VERSION_PY311=4.12.0
# Without these pins LocalStack dies at start ('X509' object has no attribute 'add_extensions',
# cannot import name 'asn1'); ../shared/notes/real-servers.md.
LOCALSTACK_PINS=('cbor2<6' 'pyopenssl<24.3' 'cryptography<44' 'service_identity<24.3')
# What deploy makes and the functions use; nothing else is started.
SERVICES=s3,lambda,events,iam,sts,logs
LAMBDA_RUNTIMES=(3.11 3.12 3.13)
READY_DEADLINE="${LOCALSTACK_READY_SECONDS:-120}"

say() { printf 'localstack: %s\n' "$*"; }
die() { printf 'localstack: %s\n' "$*" >&2; exit 2; }
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

# -- install ------------------------------------------------------------------------------------

pyenv_python() {  # MAJOR.MINOR: the newest pyenv CPython of that version, if any
    local candidate found=""
    for candidate in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$1".*/bin/python; do
        [ -x "$candidate" ] && found+="$candidate"$'\n'
    done
    [ -n "$found" ] && printf '%s' "$found" | sort -V | tail -n 1
}

find_localstack_python() {
    local version
    if [ -n "${LOCALSTACK_PYTHON:-}" ]; then printf '%s\n' "$LOCALSTACK_PYTHON"; return; fi
    for version in 3.13 3.12; do
        pyenv_python "$version" && return
        command -v "python$version" && return
    done
    command -v python3 || die "no python3 to install LocalStack with: set LOCALSTACK_PYTHON"
}

stamp() {  # what the virtualenv must hold: the version, the pins and the executor's sources
    (echo "$1" "${LOCALSTACK_PINS[*]}"; cat "$EXECUTOR"/pyproject.toml "$EXECUTOR"/*.py) | sha256sum | cut -c1-16
}

installed() {
    local version
    [ -x "$VENV/bin/python" ] && [ -f "$VENV/.stamp" ] || return 1
    version=$("$VENV/bin/python" -c 'import sys; print("'$LOCALSTACK_VERSION'" if sys.version_info >= (3, 12) else "'$LOCALSTACK_VERSION_PY311'")')
    [ "$(cat "$VENV/.stamp")" = "$(stamp "$version")" ]
}

install() {
    local python version build
    installed && return
    if [ -x "$VENV/bin/python" ]; then
        python="$VENV/bin/python"  # an update keeps the virtualenv's interpreter
    else
        python=$(find_localstack_python)
    fi
    if "$python" -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then
        version=$LOCALSTACK_VERSION
    else
        version=$LOCALSTACK_VERSION_PY311
        say "only $("$python" --version 2>&1) found: LocalStack $version (4.14.0 needs Python >= 3.12; pyenv install 3.13)" >&2
    fi
    say "installing LocalStack $version (host mode) with $("$python" --version 2>&1) into $VENV" >&2
    [ -x "$VENV/bin/python" ] || "$python" -m venv "$VENV"
    # pip builds a local project in its own folder (build/, *.egg-info): build from a copy, so the
    # source tree stays as it is.
    build=$(mktemp -d "${TMPDIR:-/tmp}/stockpulse-executor.XXXXXX")
    cp -R "$EXECUTOR"/. "$build"
    # The executor keeps its version number when its code changes: reinstall it every time.
    if ! { PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 "$VENV/bin/python" -m pip install --quiet \
               "localstack-core[runtime]==$version" "${LOCALSTACK_PINS[@]}" &&
           PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 "$VENV/bin/python" -m pip install --quiet \
               --no-deps --force-reinstall "$build"; }; then
        rm -rf "$build"
        say "pip install failed (above); $VENV is left as it was before or half updated: run install again" >&2
        exit 1
    fi
    rm -rf "$build"
    stamp "$version" > "$VENV/.stamp"
}

# -- run ----------------------------------------------------------------------------------------

lambda_pythons() {  # JSON {"python3.12": "/path/to/python", ...} of the runtimes found
    local version variable python entries=()
    for version in "${LAMBDA_RUNTIMES[@]}"; do
        variable="STOCKPULSE_LAMBDA_PYTHON_${version/./}"
        python="${!variable:-}"
        [ -n "$python" ] || python=$(pyenv_python "$version") || python=$(command -v "python$version") || continue
        entries+=("\"python$version\": \"$python\"")
    done
    local IFS=,
    printf '{%s}\n' "${entries[*]}"
}

pid=""            # LocalStack's, while it runs
data_dir=""
keep_data=true
stop_timeout=20

stop() {  # SIGTERM to LocalStack's process group; SIGKILL to whatever of it is left after the timeout
    local tenths
    kill -TERM -- "-$pid" 2>/dev/null || true
    # Poll: bash reaps an ended child at once, so `kill -0` fails from then on.
    for ((tenths = 0; tenths < stop_timeout * 10; tenths++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -KILL "$pid" 2>/dev/null; then
        say "LocalStack did not stop within ${stop_timeout}s of SIGTERM: killed"
    fi
    kill -KILL -- "-$pid" 2>/dev/null || true  # and every function process left in its group
    wait "$pid" 2>/dev/null || true
    pid=""
}
cleanup() {
    [ -z "$pid" ] || stop
    if [ "$keep_data" = false ]; then rm -rf "$data_dir"; fi
}
on_signal() {
    trap '' INT TERM
    say "stopping LocalStack and its function processes"
    [ -z "$pid" ] || stop
    exit 0
}

answers() {  # URL: 0 when it answers 200 (no proxy: loopback)
    "$VENV/bin/python" - "$1" 2>/dev/null <<'EOF'
import sys, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
sys.exit(opener.open(sys.argv[1], timeout=2).status != 200)
EOF
}

serves_loopback_only() {  # PID PORT: 0 when process PID listens on 127.0.0.1:PORT and on no other address; else says why
    "$VENV/bin/python" - "$1" "$2" <<'EOF'
import ipaddress, os, sys
pid, port = sys.argv[1], int(sys.argv[2])
sockets = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
addresses = set()
for table in ("tcp", "tcp6"):
    for line in open(f"/proc/net/{table}").read().splitlines()[1:]:
        fields = line.split()  # local address (hex, in 32-bit little-endian words), ..., state (0A: LISTEN), ..., inode
        address, _, hex_port = fields[1].partition(":")
        if fields[3] == "0A" and f"socket:[{fields[9]}]" in sockets:
            words = bytes.fromhex(address)
            packed = b"".join(words[i:i + 4][::-1] for i in range(0, len(words), 4))
            addresses.add(f"{ipaddress.ip_address(packed)}:{int(hex_port, 16)}")
if not any(address.endswith(f":{port}") for address in addresses):
    sys.exit(f"LocalStack could not listen on 127.0.0.1:{port}: address already in use (another server answers there)")
if addresses != {f"127.0.0.1:{port}"}:
    sys.exit(f"LocalStack listens on {', '.join(sorted(addresses))}, not on 127.0.0.1:{port} alone")
EOF
}

run() {
    local port=4566 pythons log status deadline problem
    while [ $# -gt 0 ]; do
        case "$1" in
            --port) port="${2:?--port needs a number}"; shift 2 ;;
            --data-dir) data_dir="${2:?--data-dir needs a directory}"; shift 2 ;;
            --stop-timeout) stop_timeout="${2:?--stop-timeout needs seconds}"; shift 2 ;;
            -h|--help) usage; exit 0 ;;
            *) die "unknown argument $1 (see --help)" ;;
        esac
    done
    [[ "$port" =~ ^[0-9]+$ ]] && [ "$port" -ge 1 ] && [ "$port" -le 65535 ] || die "--port: not a port: $port"
    [[ "$stop_timeout" =~ ^[0-9]+$ ]] || die "--stop-timeout: not a whole number of seconds: $stop_timeout"
    # LocalStack's hypercorn gateway does not fail when its port is taken (it says "Ready." all the
    # same), and another server there would answer the health check below in its place.
    if (exec 3<>"/dev/tcp/$HOST/$port") 2>/dev/null; then die "--port: $HOST:$port: address already in use"; fi

    install
    pythons=$(lambda_pythons)
    [ "$pythons" != "{}" ] || die "no CPython ${LAMBDA_RUNTIMES[*]} to run functions on: install one (pyenv install 3.12) or set STOCKPULSE_LAMBDA_PYTHON_312"

    if [ -n "$data_dir" ]; then
        mkdir -p "$data_dir"
        data_dir="$(cd "$data_dir" && pwd)"
    else
        data_dir="$(mktemp -d "${TMPDIR:-/tmp}/stockpulse-localstack.XXXXXX")"
        keep_data=false
    fi
    log="$data_dir/localstack.log"
    trap cleanup EXIT
    trap on_signal INT TERM

    # The one definition of LocalStack's environment (tests/support/servers.py runs this script too).
    # GATEWAY_SERVER=hypercorn: the default (twisted) gateway ignores the host of GATEWAY_LISTEN and
    # listens on every interface. DNS_ADDRESS=0 ... LOCALSTACK_TELEMETRY=0: no DNS server, no
    # certificate download, no analytics. The process executor runs the functions.
    # setsid: LocalStack leads a session and process group of its own, which its function processes
    # stay in, so stop() reaches all of them and nothing else, and a Ctrl-C in the terminal reaches
    # this script alone, which stops them. (Neither the subshell, which execs, nor setsid forks: a
    # script has no job control, so its background child is no group leader; $! is LocalStack's pid.)
    # setpriv --pdeathsig KILL: should this script be killed outright, LocalStack goes with it (and
    # its function processes with LocalStack, localstack/executor/).
    # In the data dir: `python -m` puts the working directory first on sys.path, and LocalStack's
    # `localstack` is a namespace package, which this checkout's localstack/ folder would join.
    (
        cd "$data_dir"
        exec env GATEWAY_LISTEN="$HOST:$port" GATEWAY_SERVER=hypercorn LOCALSTACK_HOST="$HOST:$port" \
            SERVICES="$SERVICES" DNS_ADDRESS=0 SKIP_SSL_CERT_DOWNLOAD=1 DISABLE_EVENTS=1 LOCALSTACK_TELEMETRY=0 \
            FILESYSTEM_ROOT="$data_dir/fs" TMPDIR="$data_dir" \
            LAMBDA_RUNTIME_EXECUTOR=process LAMBDA_PROCESS_PYTHONS="$pythons" \
            setsid setpriv --pdeathsig KILL -- "$VENV/bin/python" -m localstack.runtime.main
    ) </dev/null >"$log" 2>&1 &
    pid=$!

    deadline=$((SECONDS + READY_DEADLINE))
    until answers "http://$HOST:$port/_localstack/health"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            say "LocalStack exited during start-up; last lines of $log:" >&2
            tail -n 20 "$log" >&2 || true
            exit 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            say "LocalStack not ready on $HOST:$port within ${READY_DEADLINE}s; last lines of $log:" >&2
            tail -n 20 "$log" >&2 || true
            exit 1
        fi
        sleep 0.5
    done
    # The answer came from LocalStack only if LocalStack holds the port (not another server that took
    # it while LocalStack started); and it must listen on loopback alone.
    if ! problem=$(serves_loopback_only "$pid" "$port" 2>&1); then
        say "$problem" >&2
        exit 1
    fi

    say "LocalStack $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("localstack-core"))') ready on http://$HOST:$port ($SERVICES)"
    say "functions run on $pythons"
    if [ "$keep_data" = true ]; then say "files: $data_dir (kept; each function process logs to lambda-*.log)"
    else say "files: $data_dir (removed on exit; each function process logs to lambda-*.log)"; fi
    say "deploy to it:  export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1"
    say "               .venv/bin/python -m jobs deploy --endpoint http://$HOST:$port"
    say "Ctrl-C stops LocalStack and every function process it started"

    status=0
    wait "$pid" || status=$?
    # Here only when LocalStack ended by itself (a signal to this script runs on_signal, which exits).
    kill -KILL -- "-$pid" 2>/dev/null || true  # function processes it left behind
    pid=""
    say "LocalStack exited on its own (status $status); last lines of $log:" >&2
    tail -n 20 "$log" >&2 || true
    exit 1
}

case "${1:-run}" in
    install) [ $# -le 1 ] || die "install takes no arguments"; install ;;
    run) [ $# -eq 0 ] || shift; run "$@" ;;
    -h|--help) usage ;;
    -*) run "$@" ;;
    *) die "unknown command $1 (install or run; see --help)" ;;
esac
