"""The deployment `auditor serve` runs: gunicorn's gthread worker, made to survive slow and
idle clients, with credentials redacted from its logs and no Server banner.

gunicorn 27's gthread worker hands a new connection to a thread as soon as any byte is
readable and then reads the request with blocking, untimed socket calls, so a client that
sends half a request holds a thread for good, and one that stops reading an export holds its
thread until the worker's timeout. Here:

- a connection gets a thread only once its request head (up to the blank line) is in: the
  main loop reads the head without blocking, and a client that does not finish it within
  AUDITOR_API_HEADER_TIMEOUT seconds is closed without ever holding a thread (same for a
  kept-alive connection's next request);
- every socket call a thread then makes (body, response writes) times out after
  AUDITOR_API_IO_TIMEOUT seconds, so a stalled reader frees its thread, its database
  connection and its export slot (the access log records the export as cut).

TLS is terminated by the reverse proxy (docs/security.md); with gunicorn's own TLS the head
cannot be read before the handshake, so these connections fall back to gthread's handling."""

from __future__ import annotations

import errno
import os
import selectors
import socket
import time
from datetime import timedelta
from functools import partial
from typing import Any

from gunicorn import glogging
from gunicorn.http import wsgi
from gunicorn.workers.gthread import TConn, ThreadWorker

from auditor.config import ApiSettings
from web.client import REDACTED, redact_logger, redact_query_string, redact_text, redact_uri

HEAD_END = b"\r\n\r\n"
MAX_HEAD_BYTES = 64 * 1024  # beyond this the thread's parser answers (431/400), not us


class _BoundedConn(TConn):  # type: ignore[misc]
    """A connection whose socket calls time out, and whose head may be read ahead."""

    def __init__(self, cfg: Any, sock: socket.socket, client: Any, server: Any) -> None:
        super().__init__(cfg, sock, client, server)
        self.head = b""
        self.io_timeout: float | None = None

    def init(self) -> None:
        super().init()  # a no-op after the first request of a kept-alive connection
        self.sock.settimeout(self.io_timeout)  # handle() made it blocking without a timeout
        if self.head:
            self.parser.unreader.unread(self.head)
            self.head = b""


def _without_server_header(response: Any) -> list[str]:
    headers: list[str] = _GUNICORN_DEFAULT_HEADERS(response)
    return [h for h in headers if not h.lower().startswith("server:")]


_GUNICORN_DEFAULT_HEADERS = wsgi.Response.default_headers


class HardenedWorker(ThreadWorker):  # type: ignore[misc]
    header_timeout: float = 10.0
    io_timeout: float = 30.0

    def init_process(self) -> None:
        settings = ApiSettings.from_env(os.environ)
        self.header_timeout = float(settings.header_timeout)
        self.io_timeout = float(settings.io_timeout)
        # gunicorn has no setting for it: the banner only helps whoever scans for versions.
        wsgi.Response.default_headers = _without_server_header
        super().init_process()

    def accept(self, listener: socket.socket) -> None:
        if self.cfg.is_ssl:
            super().accept(listener)
            return
        try:
            sock, client = listener.accept()
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = _BoundedConn(self.cfg, sock, client, listener.getsockname())
        conn.io_timeout = self.io_timeout
        self._await_head(conn)

    def on_client_socket_readable(self, conn: Any, client: Any) -> None:
        """A kept-alive connection has bytes: its next request head is awaited the same way."""
        if not isinstance(conn, _BoundedConn):
            super().on_client_socket_readable(conn, client)
            return
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._await_head(conn)

    def _await_head(self, conn: _BoundedConn) -> None:
        conn.sock.setblocking(False)
        # Same timeout for all: pending_conns stays in deadline order for murder_pending().
        conn.timeout = time.monotonic() + self.header_timeout
        self.pending_conns.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_bytes, conn))

    def _on_bytes(self, conn: _BoundedConn, client: Any) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if data:
            conn.head += data
            if HEAD_END not in conn.head and len(conn.head) < MAX_HEAD_BYTES:
                return  # more to come; murder_pending() closes it at the deadline
        self.poller.unregister(conn.sock)
        self.pending_conns.remove(conn)
        if not data:  # the client hung up
            self.nr_conns -= 1
            conn.close()
            return
        conn.data_ready = True
        self.enqueue_req(conn)


# gunicorn access-log atoms that may carry a credential.
_URI_ATOMS = ("r", "f", "{raw_uri}e", "{request_uri}e", "{http_referer}e", "{referer}i")
_QUERY_ATOMS = ("q", "{query_string}e")
_SECRET_HEADERS = ("{authorization}i", "{cookie}i", "{http_authorization}e", "{http_cookie}e")


class RedactingLogger(glogging.Logger):  # type: ignore[misc]
    """gunicorn's logger with credentials redacted: query parameters (by name, and anything
    shaped like our tokens), Authorization and Cookie headers, and error messages (an
    invalid request line is quoted in them)."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        redact_logger(self.error_log)

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: timedelta) -> Any:
        found: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        found["r"] = " ".join(
            (
                str(environ.get("REQUEST_METHOD", "-")),
                redact_uri(str(environ.get("RAW_URI", ""))),
                str(environ.get("SERVER_PROTOCOL", "-")),
            )
        )
        for key in _URI_ATOMS[1:]:
            if isinstance(found.get(key), str):
                found[key] = redact_uri(found[key])
        for key in _QUERY_ATOMS:
            if isinstance(found.get(key), str):
                found[key] = redact_query_string(found[key])
        for key in _SECRET_HEADERS:
            if key in found:
                found[key] = REDACTED
        if isinstance(found.get("U"), str):
            found["U"] = redact_text(found["U"])
        return found
