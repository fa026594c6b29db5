"""An LMTP worker process imports what delivery runs and nothing else: no IMAP, no web
pages, no Alembic, no ORM, no password schemes, no importers (issue 17: at most 40 MB
per worker). tests/integration/test_lmtp_worker_imports.py checks a running worker
after a delivery; this checks what its entry point loads before it serves."""

from __future__ import annotations

import json
import subprocess
import sys

_PROBE = (
    "import json, sys\n"
    "from cryptmail.serve._worker_process import load_main\n"
    "load_main()\n"
    "print(json.dumps(sorted(sys.modules)))\n"
)
NOT_IN_A_WORKER = (
    "cryptmail.imap",
    "cryptmail.web",
    "cryptmail.pop3",
    "cryptmail.sasl",
    "cryptmail.cli",
    "cryptmail.managesieve",
    "alembic",
    "mako",
    "jinja2",
    "starlette",
    "uvicorn",
    "numpy",
    # SQLAlchemy's ORM: the asyncio extension's sessions, which cryptmail never uses.
    "sqlalchemy.orm",
    "sqlalchemy.ext.asyncio.session",
    # Delivery never checks a password, imports mail or unlocks an account.
    "cryptmail.users._schemes",
    "cryptmail.users._argon2phc",
    "cryptmail.users._blfcrypt",
    "cryptmail.users._shacrypt",
    "cryptmail.users._rules",
    "cryptmail.users._common",
    # Nor derives a key from a password: Argon2 is the login's (0.7 MiB of a worker).
    "argon2",
    "_argon2_cffi_bindings",
    "cryptmail.hashing",
    "cryptmail.keys._login",
    "cryptmail.keys._credential",
    "cryptmail.keys._cache",
    "cryptmail.keys._throttle",
    "cryptmail.keys._recovery",
    "cryptmail.keys._rekey",
    "cryptmail.keys._reset",
    "cryptmail.keys._password",
    "cryptmail.keys._app_passwords",
    "cryptmail.crypto.dovecot",
    "cryptmail.store._maildir",
    "cryptmail.store._import",
    "cryptmail.store._sealed_import",
    "cryptmail.store._staged",
    "cryptmail.store._first_login",
    "cryptmail.store._urlauth",
    "cryptmail.store._encrypt",
    "cryptmail.store._check",
    "cryptmail.store.fulltext",
    "cryptmail.db._migrate",
    # Sieve's parser and interpreter come with the first script a worker compiles (a
    # global one at its start): these workers' recipients have none.
    "sievelib",
    "cryptmail.sieve._syntax",
    "cryptmail.sieve._interpreter",
    "cryptmail.sieve._message",
    "email.headerregistry",
    # Key serialization (PKCS#8, PEM, and bcrypt for OpenSSH keys): sealing to an X25519
    # key needs only its raw bytes.
    "cryptography.hazmat.primitives.serialization",
    "bcrypt",
    # S3 only when configured (the default is local blobs).
    "cryptmail.store.blobs._s3",
    "boto3",
    "botocore",
    "aiobotocore",
)


def _loaded(modules: list[str], groups: tuple[str, ...]) -> list[str]:
    return sorted(
        name for name in modules if any(name == g or name.startswith(g + ".") for g in groups)
    )


def test_worker_entry_point_imports_no_protocol_but_lmtp() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True
    ).stdout
    modules = json.loads(out)
    assert _loaded(modules, NOT_IN_A_WORKER) == []
    assert "cryptmail.delivery._server" in modules
    assert "sqlalchemy.ext.asyncio.engine" in modules


def test_serve_package_still_offers_its_names() -> None:
    import cryptmail.serve as serve

    for name in serve.__all__:
        assert getattr(serve, name) is not None
