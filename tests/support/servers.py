"""Real servers for integration tests, each a subprocess on a free 127.0.0.1 port.

Every context manager starts its server, polls a health endpoint until it answers
(or raises ``ServerStartError`` carrying the tail of the server's log), yields a
handle with ``url``, ``port`` and ``log_path``, and on exit stops the process
(SIGTERM to its process group, SIGKILL after a grace period) and removes its
temp dir. A server also gets SIGTERM if the Python process that started it dies,
so a killed test run leaves no orphans::

    with moto_server() as s3:               # boto3 endpoint_url=s3.url
        ...
    with pushgateway() as gateway:          # push_to_gateway(gateway.address, ...)
        gateway.stop(); gateway.start()     # an outage, then the same port again
        with prometheus(prometheus_config(gateway.address)) as prom:
            prom.wait_for("up", lambda result: len(result) == 1)

Every server listens on 127.0.0.1 only; ``listeners(server.processes())`` says what a server and
every process below it listen on (tests/integration/test_servers.py checks each kind).

Errors::

    ServerError
    ├── BinaryNotFoundError   an executable is not installed; names the package
    ├── ServerStartError      exited, or not ready before the deadline; log tail
    └── PromQLError           Prometheus answered status != "success"

No pytest here: the fixtures live in tests/integration/conftest.py.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

__all__ = [
    "HOST",
    "LOCALSTACK_SCRIPT",
    "BinaryNotFoundError",
    "Listener",
    "MotoServer",
    "PromQLError",
    "Prometheus",
    "Pushgateway",
    "ServerError",
    "ServerProcess",
    "ServerStartError",
    "find_binary",
    "descendants",
    "free_port",
    "listeners",
    "moto_server",
    "LocalStack",
    "localstack",
    "lambda_python",
    "prometheus",
    "prometheus_config",
    "pushgateway",
]

HOST = "127.0.0.1"
DEFAULT_START_TIMEOUT = 30.0
DEFAULT_STOP_TIMEOUT = 10.0
LOG_TAIL_LINES = 40

# Loopback only: never send the harness's own requests through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ServerError(RuntimeError):
    """Base class of the harness's errors."""


class BinaryNotFoundError(ServerError):
    """A server executable is not installed."""


class ServerStartError(ServerError):
    """A server exited or did not become ready in time; the message ends with its log tail."""

    def __init__(self, message: str, *, exited: bool) -> None:
        super().__init__(message)
        self.exited = exited


class PromQLError(ServerError):
    """Prometheus refused a query; the message carries its errorType and error."""


def free_port(host: str = HOST) -> int:
    """A TCP port that was free on ``host`` a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def find_binary(name: str, *, debian_package: str) -> str:
    """The absolute path of executable ``name``, or an error saying what to install."""
    path = shutil.which(name)
    if path is None:
        raise BinaryNotFoundError(
            f"{name!r} not found on PATH: install the Debian package {debian_package!r} "
            f"(apt-get install -y {debian_package}), or run scripts/test.sh, which does"
        )
    return path


def _moto_server_executable() -> str:
    path = Path(sys.executable).parent / "moto_server"
    if not path.is_file():
        raise BinaryNotFoundError(
            f"{str(path)!r} not found: install the test extra into this virtualenv "
            "(pip install -e '.[test]', which brings moto[server]), or run scripts/test.sh"
        )
    return str(path)


def _http_get(url: str, *, timeout: float) -> tuple[int, bytes]:
    """Status and body of a GET; HTTP error statuses are returned, not raised."""
    try:
        with _OPENER.open(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # PR_SET_PDEATHSIG: SIGTERM this server when the thread that started it dies.
    _LIBC.prctl(1, signal.SIGTERM, 0, 0, 0)


try:
    _LIBC: Any = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
except OSError:  # pragma: no cover
    _LIBC = None


class ServerProcess:
    """One server subprocess on a fixed port; ``stop()`` and ``start()`` may alternate.

    Subclasses say how to run the server (``_argv``) and where it reports readiness.
    """

    name = "server"
    ready_path = "/"
    # False: any HTTP answer means ready; True: only 2xx does.
    ready_needs_success = True

    def __init__(
        self,
        *,
        workdir: Path,
        port: int,
        start_timeout: float = DEFAULT_START_TIMEOUT,
    ) -> None:
        self.workdir = workdir
        self.port = port
        self.url = f"http://{HOST}:{port}"
        self.log_path = workdir / f"{self.name}.log"
        self.start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<{type(self).__name__} {self.url} {state}>"

    def _argv(self) -> list[str]:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int:
        if self._process is None:
            raise ServerError(f"{self.name} on {self.url} is not started")
        return self._process.pid

    def processes(self) -> set[int]:
        """The server's process and every process below it (a server may run others: LocalStack
        its functions)."""
        return descendants(self.pid)

    def start(self) -> None:
        """Start the server on ``self.port`` and wait until it is ready."""
        if self._process is not None:
            raise ServerError(f"{self.name} on {self.url} is already started")
        argv = self._argv()
        with open(self.log_path, "ab") as log:
            log.write(f"--- {' '.join(argv)}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                argv,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if _LIBC is not None else None,
            )
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout``); no-op when stopped."""
        process, self._process = self._process, None
        if process is None:
            return
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait()

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        ready_url = self.url + self.ready_path
        deadline = time.monotonic() + self.start_timeout
        while True:
            returncode = self._process.poll()
            if returncode is not None:
                raise ServerStartError(
                    f"{self.name} exited with code {returncode} before {ready_url} answered; "
                    f"last lines of {self.log_path}:\n{self.log_tail()}",
                    exited=True,
                )
            if self._answers(ready_url):
                return
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"{self.name} was not ready on {ready_url} within {self.start_timeout:g} s; "
                    f"last lines of {self.log_path}:\n{self.log_tail()}",
                    exited=False,
                )
            time.sleep(0.05)

    def _answers(self, url: str) -> bool:
        try:
            status, _ = _http_get(url, timeout=1.0)
        except (OSError, http.client.HTTPException):
            return False
        return 200 <= status < 300 or not self.ready_needs_success


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    try:
        os.killpg(process.pid, signum)  # the server leads its own session and group
    except ProcessLookupError:
        pass


# --- what processes listen on -------------------------------------------------------------


def descendants(pid: int) -> set[int]:
    """``pid`` and every process below it (children, their children, ...), whatever session or
    process group they moved to: parents read from /proc/<pid>/stat."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # ended meanwhile
                continue
            parent = int(stat[stat.rindex(")") + 2 :].split()[1])  # the name, in (), may hold spaces
            children.setdefault(parent, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        current = todo.pop()
        if current not in found:
            found.add(current)
            todo.extend(children.get(current, []))
    return found


class Listener(NamedTuple):
    pid: int
    protocol: str  # tcp, tcp6, udp, udp6
    address: str  # as socket.inet_ntop writes it: 127.0.0.1, 0.0.0.0, ::
    port: int


def _address(hex_address: str) -> str:
    raw = bytes.fromhex(hex_address)  # /proc/net/*: 32-bit words in host (little-endian) order
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    return socket.inet_ntop(socket.AF_INET6, b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4)))


def listeners(pids: Iterable[int]) -> list[Listener]:
    """Every listening TCP socket and every bound UDP socket the processes hold: their socket inodes
    (/proc/<pid>/fd) looked up in /proc/net/{tcp,tcp6,udp,udp6}."""
    owner = {}
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:  # ended meanwhile
            continue
        for fd in fds:
            try:
                link = os.readlink(fd)
            except OSError:
                continue
            if link.startswith("socket:["):
                owner[link[len("socket:[") : -1]] = pid
    found = []
    for protocol, state in (("tcp", "0A"), ("tcp6", "0A"), ("udp", "07"), ("udp6", "07")):
        for line in Path(f"/proc/net/{protocol}").read_text().splitlines()[1:]:
            fields = line.split()  # sl, local address, remote address, state, ..., inode (the 10th)
            if fields[9] in owner and fields[3] == state:
                address, port = fields[1].split(":")
                found.append(Listener(owner[fields[9]], protocol, _address(address), int(port, 16)))
    return found


_Server = TypeVar("_Server", bound=ServerProcess)


@contextlib.contextmanager
def _running(make: Callable[[int], _Server], *, port: int | None, attempts: int = 3) -> Iterator[_Server]:
    """Start ``make(port)``; with no port given, retry on a fresh port when another process
    took the chosen one between ``free_port()`` and the server's bind."""
    for attempt in range(1, attempts + 1):
        server = make(port if port is not None else free_port())
        try:
            server.start()
            break
        except ServerStartError as error:
            lost_port_race = error.exited and "address already in use" in str(error).lower()
            if port is not None or not lost_port_race or attempt == attempts:
                raise
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def _workdir(name: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=f"stockpulse-{name}-") as path:
        yield Path(path)


# --- moto ---------------------------------------------------------------------------------


class MotoServer(ServerProcess):
    """``moto_server`` from this virtualenv; use ``url`` as boto3's ``endpoint_url``."""

    name = "moto_server"
    ready_path = "/"
    ready_needs_success = False

    def __init__(self, *, executable: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.executable = executable

    @property
    def endpoint_url(self) -> str:
        return self.url

    def _argv(self) -> list[str]:
        return [self.executable, "-H", HOST, "-p", str(self.port)]


@contextlib.contextmanager
def moto_server(*, port: int | None = None, start_timeout: float = DEFAULT_START_TIMEOUT) -> Iterator[MotoServer]:
    """A moto server (all AWS services, S3 conditional writes included)."""
    executable = _moto_server_executable()
    with (
        _workdir("moto") as workdir,
        _running(
            lambda p: MotoServer(executable=executable, workdir=workdir, port=p, start_timeout=start_timeout),
            port=port,
        ) as server,
    ):
        yield server


# --- LocalStack ---------------------------------------------------------------------------

_ROOT = Path(__file__).resolve().parent.parent.parent
#: Installs LocalStack (host mode) with the process executor and runs it: the user's command, which
#: holds the one definition of LocalStack's environment.
LOCALSTACK_SCRIPT = _ROOT / "scripts" / "localstack.sh"


def lambda_python(version: str = "3.12") -> str:
    """A CPython of the Lambda runtime's version: ``STOCKPULSE_LAMBDA_PYTHON_<major><minor>``, else
    pyenv's (these machines have ``$(pyenv root)/versions/3.12.1``), else ``python<version>`` --
    as scripts/localstack.sh looks for the interpreters it runs functions on."""
    override = os.environ.get(f"STOCKPULSE_LAMBDA_PYTHON_{version.replace('.', '')}")
    if override:
        return override
    roots = [os.environ.get("PYENV_ROOT"), str(Path.home() / ".pyenv")]
    for root in filter(None, roots):
        for candidate in sorted(Path(root, "versions").glob(f"{version}.*"), reverse=True):
            if (candidate / "bin" / "python").is_file():
                return str(candidate / "bin" / "python")
    found = shutil.which(f"python{version}")
    if found is None:
        raise BinaryNotFoundError(
            f"no CPython {version} for the Lambda runtime: set STOCKPULSE_LAMBDA_PYTHON_{version.replace('.', '')} or install it with pyenv"
        )
    return found


class LocalStack(ServerProcess):
    """LocalStack in host mode, run by ``scripts/localstack.sh run`` as a user runs it.

    Lambda functions run as local processes of the runtime's Python (the ``process`` runtime
    executor of localstack/executor/, installed with LocalStack), as they would run in LocalStack's
    Docker containers; EventBridge rules fire them. ``stop()`` is the script's: SIGTERM to LocalStack
    and its function processes, SIGKILL to what is left after ``script_stop_timeout`` seconds."""

    name = "localstack"
    ready_path = "/_localstack/health"
    script_stop_timeout = 20

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(start_timeout=120.0, **kwargs)

    @property
    def endpoint_url(self) -> str:
        return self.url

    def _argv(self) -> list[str]:
        return [
            "bash",
            str(LOCALSTACK_SCRIPT),
            "run",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.workdir / "data"),
            "--stop-timeout",
            str(self.script_stop_timeout),
        ]

    def stop(self, timeout: float = script_stop_timeout + DEFAULT_STOP_TIMEOUT) -> None:
        super().stop(timeout)

    def _answers(self, url: str) -> bool:
        # Ready when the script says so: it has also checked that LocalStack itself holds the port.
        return super()._answers(url) and "ready on http://" in self.log_path.read_text(errors="replace")


def install_localstack() -> None:
    """``scripts/localstack.sh install``: nothing to do when it is installed, as scripts/test.sh left it."""
    done = subprocess.run(
        ["bash", str(LOCALSTACK_SCRIPT), "install"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    if done.returncode != 0:
        raise BinaryNotFoundError(
            f"{LOCALSTACK_SCRIPT} install failed (exit {done.returncode}):\n" + "\n".join(done.stdout.splitlines()[-LOG_TAIL_LINES:])
        )


@contextlib.contextmanager
def localstack(*, port: int | None = None) -> Iterator[LocalStack]:
    install_localstack()
    with _workdir("localstack") as workdir, _running(lambda p: LocalStack(workdir=workdir, port=p), port=port) as server:
        yield server


# --- Pushgateway --------------------------------------------------------------------------


class Pushgateway(ServerProcess):
    """``prometheus-pushgateway``; ``stop()`` then ``start()`` brings it back on the same port."""

    name = "pushgateway"
    ready_path = "/-/ready"

    def __init__(self, *, executable: str, persistence_file: Path | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.executable = executable
        self.persistence_file = persistence_file

    @property
    def address(self) -> str:
        """``host:port``, as ``prometheus_client.push_to_gateway`` and scrape targets take it."""
        return f"{HOST}:{self.port}"

    def metrics_text(self) -> str:
        """The Pushgateway's own ``/metrics`` page: everything pushed, in text format."""
        status, body = _http_get(self.url + "/metrics", timeout=5.0)
        if status != 200:
            raise ServerError(f"GET {self.url}/metrics answered HTTP {status}")
        return body.decode()

    def _argv(self) -> list[str]:
        # Debian's build defaults --persistence.file to /var/lib/prometheus/pushgateway.data, shared
        # by every instance: without an explicit empty value, one test's pushes leak into the next.
        return [self.executable, f"--web.listen-address={self.address}", f"--persistence.file={self.persistence_file or ''}"]


@contextlib.contextmanager
def pushgateway(
    persistence_file: str | os.PathLike[str] | None = None,
    *,
    port: int | None = None,
    start_timeout: float = DEFAULT_START_TIMEOUT,
) -> Iterator[Pushgateway]:
    """A Pushgateway; with ``persistence_file`` its metrics survive ``stop()``/``start()``."""
    executable = find_binary("prometheus-pushgateway", debian_package="prometheus-pushgateway")
    persistence = Path(persistence_file).absolute() if persistence_file is not None else None
    with (
        _workdir("pushgateway") as workdir,
        _running(
            lambda p: Pushgateway(
                executable=executable,
                persistence_file=persistence,
                workdir=workdir,
                port=p,
                start_timeout=start_timeout,
            ),
            port=port,
        ) as server,
    ):
        yield server


# --- Prometheus ---------------------------------------------------------------------------


class Prometheus(ServerProcess):
    """``prometheus`` with its config and TSDB in a temp dir; ``query``/``wait_for`` PromQL."""

    name = "prometheus"
    ready_path = "/-/ready"

    def __init__(self, *, executable: str, config_path: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.executable = executable
        self.config_path = config_path

    def _argv(self) -> list[str]:
        return [
            self.executable,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address={HOST}:{self.port}",
        ]

    def api(self, path: str, **params: str) -> Any:
        """``data`` of a GET on the HTTP API (``/api/v1/...``); PromQLError unless success."""
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        status, body = _http_get(url, timeout=10.0)
        try:
            answer = json.loads(body)
        except ValueError:
            raise PromQLError(f"GET {url} answered HTTP {status} with no JSON: {body[:500]!r}") from None
        if answer.get("status") != "success":
            raise PromQLError(f"GET {url} answered HTTP {status}: {answer.get('errorType', '?')}: {answer.get('error', body[:500])}")
        return answer["data"]

    def query(self, promql: str) -> list[Any]:
        """``data.result`` of an instant query: a list of ``{"metric": {...}, "value": [t, "v"]}``
        for a vector (``[t, "v"]`` for a scalar)."""
        return self.api("/api/v1/query", query=promql)["result"]

    def alerts(self) -> list[dict[str, Any]]:
        """Pending and firing alerts (``/api/v1/alerts``)."""
        return self.api("/api/v1/alerts")["alerts"]

    def wait_for(
        self,
        promql: str,
        predicate: Callable[[list[Any]], bool] = bool,
        timeout: float = 15.0,
        *,
        interval: float = 0.25,
    ) -> list[Any]:
        """Query until ``predicate(result)`` holds and return that result; TimeoutError
        (with the last result) when it has not held within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(promql)
            if predicate(result):
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{promql!r} did not satisfy {getattr(predicate, '__name__', predicate)} "
                    f"within {timeout:g} s on {self.url}; last result: {result!r}"
                )
            time.sleep(interval)


RuleFiles = Mapping[str, str] | Iterable[str | os.PathLike[str]]


def _write_rule_files(rule_files: RuleFiles, directory: Path) -> None:
    if isinstance(rule_files, Mapping):
        for name, text in rule_files.items():
            (directory / name).write_text(text)
    else:
        for path in rule_files:
            shutil.copyfile(path, directory / Path(path).name)


@contextlib.contextmanager
def prometheus(
    config_text: str | None = None,
    *,
    config_path: str | os.PathLike[str] | None = None,
    rule_files: RuleFiles = (),
    port: int | None = None,
    start_timeout: float = DEFAULT_START_TIMEOUT,
) -> Iterator[Prometheus]:
    """A Prometheus server from ``config_text`` or a copy of ``config_path`` (exactly one).

    The config is written to a temp dir; ``rule_files`` (paths, copied under their own
    names, or a ``{name: yaml_text}`` mapping) are put beside it, so the config can name
    them relatively. ``prometheus_config()`` renders a config that scrapes a Pushgateway.
    """
    if (config_text is None) == (config_path is None):
        raise ValueError("give exactly one of config_text and config_path")
    executable = find_binary("prometheus", debian_package="prometheus")
    with _workdir("prometheus") as workdir:
        config_file = workdir / "prometheus.yml"
        if config_text is None:
            assert config_path is not None
            shutil.copyfile(config_path, config_file)
        else:
            config_file.write_text(config_text)
        _write_rule_files(rule_files, workdir)
        with _running(
            lambda p: Prometheus(
                executable=executable,
                config_path=config_file,
                workdir=workdir,
                port=p,
                start_timeout=start_timeout,
            ),
            port=port,
        ) as server:
            yield server


def prometheus_config(
    pushgateway_address: str,
    *,
    rule_files: Iterable[str | os.PathLike[str]] = (),
    scrape_interval: str = "1s",
    evaluation_interval: str = "1s",
    job_name: str = "pushgateway",
) -> str:
    """A minimal Prometheus config scraping one Pushgateway (``host:port`` or a URL) with
    ``honor_labels: true``; ``rule_files`` are written as given (relative ones resolve
    against the config's directory)."""
    target = pushgateway_address.split("://", 1)[-1].rstrip("/")
    q = json.dumps  # a JSON string is a YAML string, quoted safely
    lines = [
        "global:",
        f"  scrape_interval: {scrape_interval}",
        f"  evaluation_interval: {evaluation_interval}",
    ]
    rules = [os.fspath(path) for path in rule_files]
    if rules:
        lines.append("rule_files:")
        lines.extend(f"  - {q(path)}" for path in rules)
    lines += [
        "scrape_configs:",
        f"  - job_name: {q(job_name)}",
        "    honor_labels: true",
        "    static_configs:",
        f"      - targets: [{q(target)}]",
    ]
    return "\n".join(lines) + "\n"
