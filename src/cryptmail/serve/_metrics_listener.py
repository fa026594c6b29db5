"""The metrics listener: `GET /metrics` in the Prometheus text format, nothing else.

Its own listener (`metrics.listen`, loopback by default) rather than a route on the web
port: the web port faces the Internet, and the counts (logins, refusals, deliveries
over time) are for the operator's monitoring only. A minimal HTTP/1.0 responder: one
request per connection, a bounded request head and a deadline to send it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from prometheus_client import CONTENT_TYPE_LATEST

from cryptmail.concurrency import run_blocking
from cryptmail.metrics import PrometheusMetrics

log = logging.getLogger(__name__)

_MAX_HEAD = 8192
_READ_S = 10.0
_MAX_CONNECTIONS = 16


class MetricsListener:
    """`/metrics` of `metrics` on `host:port`; a `serve.Listener`. Port 0 picks one."""

    def __init__(self, metrics: PrometheusMetrics, host: str, port: int) -> None:
        self._metrics = metrics
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None
        self._closed = asyncio.Event()
        self._busy = asyncio.Semaphore(_MAX_CONNECTIONS)

    @property
    def name(self) -> str:
        return f"metrics on {self._host}:{self._port}"

    @property
    def port(self) -> int:
        assert self._server is not None  # noqa: S101 - only after start()
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self._host, self._port)
        self._port = self.port
        log.info("metrics listening on http://%s:%d/metrics", self._host, self._port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with self._busy, asyncio.timeout(_READ_S):
                head = await reader.readuntil(b"\r\n\r\n")
                if len(head) > _MAX_HEAD:
                    raise ValueError("request head too long")
                method, _, rest = head.partition(b" ")
                path = rest.split(b" ", 1)[0].split(b"?", 1)[0]
                if method not in (b"GET", b"HEAD"):
                    await _answer(writer, b"405 Method Not Allowed", b"text/plain", b"GET only\n")
                elif path != b"/metrics":
                    await _answer(writer, b"404 Not Found", b"text/plain", b"try /metrics\n")
                else:
                    # Rendering walks every series under the registry's locks: off the loop.
                    body = await run_blocking(self._metrics.render)
                    if method == b"HEAD":
                        body = b""
                    await _answer(writer, b"200 OK", CONTENT_TYPE_LATEST.encode(), body)
        except (TimeoutError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def stop(self, grace_s: float) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace_s):
                    await self._server.wait_closed()
            self._server = None
        self._closed.set()


async def _answer(
    writer: asyncio.StreamWriter, status: bytes, content_type: bytes, body: bytes
) -> None:
    writer.write(
        b"HTTP/1.0 " + status + b"\r\nContent-Type: " + content_type
        + b"\r\nContent-Length: " + str(len(body)).encode()
        + b"\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n" + body
    )  # fmt: skip
    await writer.drain()
