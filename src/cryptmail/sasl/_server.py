"""The SASL listener: Dovecot's auth protocol on a Unix socket or loopback TCP, so that
Postfix (`smtpd_sasl_type = dovecot`) authenticates its submission clients here.

A connection is one client process (one Postfix smtpd); it may run several AUTH
requests, each under its own id, one after another or interleaved. Each request is a
mechanism fed by CONT lines until it yields credentials, which `SaslChecker` checks.
A line that breaks the protocol closes the connection (Postfix reconnects); a bad
request fails only that request. No answer ever names the reason a login failed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import itertools
import logging
import socket
from typing import Final

from cryptmail.sasl._check import Outcome, SaslChecker
from cryptmail.sasl._mechanisms import (
    MECHANISMS,
    Challenge,
    Login,
    MechanismError,
    Plain,
    new_mechanism,
)
from cryptmail.sasl._wire import (
    MAX_LINE,
    VERSION_MAJOR,
    ProtocolError,
    handshake,
    line,
    options,
    parse_line,
)
from cryptmail.secret import Password
from cryptmail.sockets import bind_listener

log = logging.getLogger(__name__)

MAX_REQUESTS: Final = 64
"""AUTH requests in progress on one connection (Postfix runs one per smtpd at a time)."""
HANDSHAKE_TIMEOUT_S: Final = 30.0
_REQUEST_ID_MAX: Final = 16


class _Connection:
    def __init__(
        self,
        checker: SaslChecker,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer_ip: str,
    ) -> None:
        self._checker = checker
        self._reader = reader
        self._writer = writer
        self._peer_ip = peer_ip
        self._pending: dict[str, tuple[Plain | Login, dict[str, str]]] = {}
        self._checks: set[asyncio.Task[None]] = set()

    @property
    def checks(self) -> set[asyncio.Task[None]]:
        """The credential checks in flight."""
        return self._checks

    async def run(self, connection_id: int) -> None:
        self._writer.write(handshake(MECHANISMS, connection_id))
        await self._writer.drain()
        try:
            await asyncio.wait_for(self._client_handshake(), HANDSHAKE_TIMEOUT_S)
            while True:
                raw = await self._read_line()
                if raw is None:
                    return
                command, params = parse_line(raw)
                await self._dispatch(command, params)
        except ProtocolError as exc:
            log.info("SASL client closed: %s", exc)
        except TimeoutError:
            log.info("SASL client closed: no handshake within %.0f s", HANDSHAKE_TIMEOUT_S)
        finally:
            # Checks in flight finish (their answers may still reach the client), unless
            # the server is stopping and its grace is over.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                for check in self._checks:
                    check.cancel()
            if self._checks:
                await asyncio.gather(*self._checks, return_exceptions=True)

    async def _read_line(self) -> bytes | None:
        try:
            raw = await self._reader.readuntil(b"\n")
        except asyncio.IncompleteReadError:
            return None
        except asyncio.LimitOverrunError:
            raise ProtocolError(f"a line over {MAX_LINE} bytes") from None
        return raw

    async def _client_handshake(self) -> None:
        raw = await self._read_line()
        if raw is None:
            raise ProtocolError("closed before its handshake")
        command, params = parse_line(raw)
        if command != "VERSION" or not params or params[0] != str(VERSION_MAJOR):
            raise ProtocolError(f"speaks another protocol version ({command} {params[:2]})")

    async def _dispatch(self, command: str, params: list[str]) -> None:
        if command == "CPID":
            return  # the client's process id: nothing to do with it here
        if command == "AUTH":
            await self._auth(params)
        elif command == "CONT":
            await self._cont(params)
        else:
            raise ProtocolError(f"unknown command {command[:20]!r}")

    def _send(self, data: bytes) -> None:
        if not self._writer.is_closing():
            self._writer.write(data)

    async def _auth(self, params: list[str]) -> None:
        if len(params) < 2:
            raise ProtocolError("AUTH without an id and a mechanism")
        request_id, mechanism_name, *rest = params
        _check_id(request_id)
        if request_id in self._pending:
            raise ProtocolError("AUTH with the id of a request in progress")
        if len(self._pending) + len(self._checks) >= MAX_REQUESTS:
            raise ProtocolError(f"more than {MAX_REQUESTS} requests in progress")
        opts = options(rest)
        mechanism = new_mechanism(mechanism_name)
        if mechanism is None:
            self._send(line("FAIL", request_id, "reason=Unsupported authentication mechanism"))
            return
        initial: bytes | None = None
        if "resp" in opts:
            initial = _decode(opts["resp"], request_id)
            if initial is None:
                self._send(line("FAIL", request_id, "reason=Invalid base64 data"))
                return
        await self._step(request_id, mechanism, opts, initial)

    async def _cont(self, params: list[str]) -> None:
        if len(params) < 1:
            raise ProtocolError("CONT without an id")
        request_id = params[0]
        found = self._pending.pop(request_id, None)
        if found is None:
            raise ProtocolError("CONT for no request in progress")
        response = _decode(params[1] if len(params) > 1 else "", request_id)
        if response is None:
            self._send(line("FAIL", request_id, "reason=Invalid base64 data"))
            return
        mechanism, opts = found
        await self._step(request_id, mechanism, opts, response)

    async def _step(
        self,
        request_id: str,
        mechanism: Plain | Login,
        opts: dict[str, str],
        response: bytes | None,
    ) -> None:
        try:
            step = mechanism.step(response)
        except MechanismError as exc:
            log.info("SASL request failed: %s", exc)
            self._send(line("FAIL", request_id))
            return
        if isinstance(step, Challenge):
            self._pending[request_id] = (mechanism, opts)
            self._send(line("CONT", request_id, base64.b64encode(step.data).decode()))
            await self._writer.drain()
            return
        client_ip = opts.get("rip") or self._peer_ip
        task = asyncio.create_task(self._check(request_id, step.address, step.password, client_ip))
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    async def _check(
        self, request_id: str, address: str, password: Password, client_ip: str
    ) -> None:
        try:
            verdict = await self._checker.check(address, password, client_ip)
        except Exception:
            log.exception("SASL check failed unexpectedly")
            self._send(line("FAIL", request_id, "temp"))
            return
        if verdict.outcome is Outcome.OK:
            self._send(line("OK", request_id, f"user={verdict.user}"))
        elif verdict.outcome is Outcome.TRY_LATER:
            self._send(line("FAIL", request_id, f"user={address}", "temp"))
        else:
            # The name tried, as Dovecot gives it: Postfix logs it (sasl_username=),
            # where fail2ban's postfix-sasl filter and the admin read it.
            self._send(line("FAIL", request_id, f"user={address}"))
        with contextlib.suppress(ConnectionError):
            await self._writer.drain()


def _check_id(request_id: str) -> None:
    if not request_id.isdigit() or len(request_id) > _REQUEST_ID_MAX:
        raise ProtocolError("a request id that is not a number")


def _decode(data: str, request_id: str) -> bytes | None:
    try:
        return base64.b64decode(data.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        log.info("SASL request %s: invalid base64", request_id)
        return None


class SaslServer:
    """The SASL listener, of the shape `serve` runs (see `cryptmail.serve.Listener`)."""

    def __init__(
        self,
        checker: SaslChecker,
        address: str,
        *,
        group: int | None = None,
        max_connections: int = 256,
    ) -> None:
        self._checker = checker
        self._address = address
        self._group = group
        self._max_connections = max_connections
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], _Connection] = {}
        self._ids = itertools.count(1)
        self._closed = asyncio.Event()
        self.port = 0
        """The TCP port bound (useful with port 0); 0 for a Unix socket."""

    @property
    def name(self) -> str:
        return f"SASL on {self._address}"

    async def start(self) -> None:
        sock = bind_listener(self._address, group=self._group, setting="sasl.socket_group")
        if sock.family != socket.AF_UNIX:
            self.port = sock.getsockname()[1]
        if sock.family == socket.AF_UNIX:
            self._server = await asyncio.start_unix_server(self._serve, sock=sock, limit=MAX_LINE)
        else:
            self._server = await asyncio.start_server(self._serve, sock=sock, limit=MAX_LINE)
        log.info("SASL listening on %s", self._address)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None  # noqa: S101 - always inside a task
        peer = writer.get_extra_info("peername")
        peer_ip = peer[0] if isinstance(peer, tuple) else ""
        if len(self._connections) >= self._max_connections:
            log.warning("SASL connection refused: %d already open", len(self._connections))
            writer.close()
            return
        connection = self._connections[task] = _Connection(self._checker, reader, writer, peer_ip)
        try:
            await connection.run(next(self._ids))
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._connections.pop(task, None)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def stop(self, grace_s: float) -> None:
        if self._server is not None:
            self._server.close()
        # A connection waits for its client's next request for as long as the client
        # likes: let the checks in flight answer within the grace, then end them all.
        checks = {c for connection in self._connections.values() for c in connection.checks}
        if checks:
            await asyncio.wait(checks, timeout=grace_s)
        tasks = list(self._connections)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._closed.set()
