"""An LMTP worker process imports what delivery runs and nothing else: no IMAP, no web
pages, no Alembic (issue 17: at most 40 MB per worker)."""

from __future__ import annotations

import json
import subprocess
import sys

_PROBE = (
    "import json, sys\n"
    "import cryptmail.serve._worker_process\n"
    "print(json.dumps(sorted(sys.modules)))\n"
)
NOT_IN_A_WORKER = (
    "cryptmail.imap",
    "cryptmail.web",
    "cryptmail.pop3",
    "cryptmail.sasl",
    "cryptmail.cli",
    "alembic",
    "mako",
    "jinja2",
    "starlette",
    "uvicorn",
    "numpy",
)


def test_worker_entry_point_imports_no_protocol_but_lmtp() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True
    ).stdout
    modules = json.loads(out)
    loaded = sorted(
        name
        for name in modules
        if any(name == top or name.startswith(top + ".") for top in NOT_IN_A_WORKER)
    )
    assert loaded == []
    assert "cryptmail.delivery" in modules


def test_serve_package_still_offers_its_names() -> None:
    import cryptmail.serve as serve

    for name in serve.__all__:
        assert getattr(serve, name) is not None
