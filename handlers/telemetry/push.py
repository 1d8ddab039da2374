"""The Pushgateway transport: a total deadline, basic auth and TLS, credentials never shown.

``push_to_gateway(..., handler=pushgateway_handler(...))`` sends the request over ``http.client``
with a socket whose timeout is re-armed with the time *left* before every read and write, so a
server that hangs or answers a byte at a time is given up on when the budget is spent — not
after one timeout per byte. Credentials come from the URL (``https://user:pw@host``) or from the
settings; they go into an ``Authorization: Basic`` header (as prometheus_client's
``basic_auth_handler`` does) and never into a message: :func:`redact` strips them from any URL.
"""

from __future__ import annotations

import base64
import http.client
import io
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

__all__ = ["pushgateway_handler", "split_credentials", "PushTimeout"]


class PushTimeout(TimeoutError):
    """The push did not complete within its budget."""


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """``(url without user:password@, username, password)``."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None, None
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return clean, unquote(parts.username or ""), unquote(parts.password or "")


class _DeadlineSocket:
    """Delegates to a socket, arming it with the time left before every read and write."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock, self._deadline = sock, deadline

    def _arm(self) -> None:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise PushTimeout("deadline reached")
        self._sock.settimeout(left)

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        self._arm()
        return self._sock.recv_into(buffer, nbytes, flags)

    def recv(self, size: int, flags: int = 0) -> bytes:
        self._arm()
        return self._sock.recv(size, flags)

    def sendall(self, data: Any, flags: int = 0) -> None:
        view = memoryview(data).cast("B")
        while view:  # in slices, so a server that reads slowly cannot hold one sendall forever
            self._arm()
            sent = self._sock.send(view[:65536], flags)
            view = view[sent:]

    def makefile(self, mode: str = "rb", *args: Any, **kwargs: Any) -> io.BufferedReader:
        return io.BufferedReader(socket.SocketIO(self, "rb"))  # type: ignore[arg-type]

    def _decref_socketios(self) -> None:
        pass

    def close(self) -> None:
        self._sock.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _connection(url: str, deadline: float, context: ssl.SSLContext | None) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    left = max(0.001, deadline - time.monotonic())
    if parts.scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname or "", parts.port, timeout=left, context=context or ssl.create_default_context()
        )
    else:
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=left)
    conn.connect()
    conn.sock = _DeadlineSocket(conn.sock, deadline)
    return conn


def pushgateway_handler(
    budget: float, *, username: str | None = None, password: str | None = None, ca_file: str | None = None
) -> Callable[..., Callable[[], None]]:
    """A ``push_to_gateway`` handler whose whole request ends within ``budget`` seconds."""
    context = ssl.create_default_context(cafile=ca_file) if ca_file else None

    def handler(url: str, method: str, timeout: float | None, headers: Sequence[tuple[str, str]], data: bytes) -> Callable[[], None]:
        def handle() -> None:
            deadline = time.monotonic() + budget
            target, user, secret = split_credentials(url)
            user, secret = (user, secret) if user is not None else (username, password)
            sent = dict(headers)
            if user is not None and secret is not None:
                sent["Authorization"] = "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()
            parts = urlsplit(target)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            try:
                conn = _connection(target, deadline, context)
                try:
                    conn.request(method, path or "/", body=data, headers=sent)
                    response = conn.getresponse()
                    response.read()
                finally:
                    conn.close()
            except TimeoutError as exc:  # PushTimeout and socket.timeout are TimeoutErrors
                raise PushTimeout(f"no complete answer within the push budget of {budget:.3g} s") from exc
            if response.status >= 400:
                raise OSError(f"error talking to pushgateway: {response.status} {response.reason}")

        return handle

    return handler
