"""cryptmail.web: the self-service pages and the JSON API.

`create_app` builds the ASGI app; `WebServer` runs it under uvicorn for `cryptmail
serve`. Users sign in, see their key and its log, change their password, recover with
the recovery code, renew it, and manage app passwords; `/api/v1/` offers the same to
programs (openapi.yaml). `/healthz` and `/readyz` are probes for a supervisor.
"""

from cryptmail.web._app import create_app
from cryptmail.web._context import Readiness
from cryptmail.web._serve import WebServer

__all__ = ["Readiness", "WebServer", "create_app"]
