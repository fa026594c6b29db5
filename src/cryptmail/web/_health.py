"""Probes for a supervisor or load balancer: `/healthz` (the process answers) and
`/readyz` (it can do its work: the database and, under `serve`, the blob store answer).

Neither needs a session or says more than which part fails: no address, no path, no
error text. `/readyz` answers 503 while a part is down, so a load balancer sends the
clients elsewhere until it is back.
"""

from __future__ import annotations

import logging

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from cryptmail.errors import CryptmailError
from cryptmail.web._context import web_context

log = logging.getLogger(__name__)


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok\n", headers={"Cache-Control": "no-store"})


async def readyz(request: Request) -> Response:
    context = web_context(request)
    failing: list[str] = []
    try:
        async with context.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means not ready; the probe must not crash
        log.warning("readiness: the database does not answer (%s)", type(exc).__name__)
        failing.append("database")
    if context.readiness is not None:
        try:
            failing += await context.readiness()
        except CryptmailError as exc:
            log.warning("readiness check failed (%s)", type(exc).__name__)
            failing.append("server")
    status = 503 if failing else 200
    body = {"status": "not ready", "failing": failing} if failing else {"status": "ready"}
    return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})
