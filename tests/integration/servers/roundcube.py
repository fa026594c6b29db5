"""Debian's Roundcube (the ISPmail guide's webmail) under PHP's built-in web server.

Roundcube runs from the package's tree (/var/lib/roundcube/public_html) with a private
configuration directory (``ROUNDCUBE_CONFIG_DIR``), its own SQLite database, temp and
log folders, so nothing under /etc is read or changed. The configuration points IMAP
at our server on loopback and the password plugin at our JSON API (the `httpapi`
driver, settings as docs/web.md gives them); ``settings`` adds or overrides entries.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from ._binaries import find_binary
from ._errors import BinaryMissing
from ._ports import LOOPBACK, free_port
from ._process import PrivateServer, log_tail, wait_answering

PUBLIC_HTML = Path("/var/lib/roundcube/public_html")
SHARE = Path("/usr/share/roundcube")
PACKAGE_CONFIG = Path("/etc/roundcube")
PACKAGES = "roundcube-core roundcube-plugins roundcube-sqlite3 php-cli php-sqlite3"


def _php_value(value: object) -> str:
    """A PHP literal for a str, bool, int, list or dict (nested)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, Mapping):
        items = ", ".join(f"{_php_value(k)} => {_php_value(v)}" for k, v in value.items())
        return f"[{items}]"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_php_value(v) for v in value) + "]"
    raise TypeError(f"no PHP literal for {value!r}")


class Roundcube(PrivateServer):
    """``php -S 127.0.0.1:PORT`` serving Roundcube; ``url`` once started."""

    def __init__(
        self, imap_port: int, api_url: str, settings: Mapping[str, object] | None = None
    ) -> None:
        self.imap_port = imap_port
        self.api_url = api_url
        self.settings = dict(settings or {})
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/"

    @property
    def log_dir(self) -> Path:
        return self._dir / "logs"

    def start(self) -> None:
        php = find_binary("php", package="php-cli")
        if not (PUBLIC_HTML / "index.php").exists():
            raise BinaryMissing(
                f"Roundcube is not installed (Debian packages {PACKAGES}); "
                "run `bash scripts/install-deps.sh`"
            )
        with self._new_folder("cryptmail-roundcube-") as base:
            config_dir = base / "config"
            config_dir.mkdir()
            for name in ("defaults.inc.php", "mimetypes.php"):
                (config_dir / name).write_bytes((PACKAGE_CONFIG / name).read_bytes())
            for name in ("temp", "logs"):
                (base / name).mkdir()
            database = base / "roundcube.db"
            with sqlite3.connect(database) as db:
                db.executescript((SHARE / "SQL" / "sqlite.initial.sql").read_text())
            (config_dir / "config.inc.php").write_text(self._config(base, database))
            self.port = free_port()
            env = {
                **os.environ,
                "ROUNDCUBE_CONFIG_DIR": str(config_dir),
                # Several requests at once: two users, and Roundcube's own parallel calls.
                "PHP_CLI_SERVER_WORKERS": "4",
            }
            output = base / "php.log"
            with output.open("wb") as sink:
                self._process = subprocess.Popen(
                    [php, "-S", f"{LOOPBACK}:{self.port}", "-t", str(PUBLIC_HTML)],
                    stdin=subprocess.DEVNULL,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    env=env,
                )
            wait_answering(
                self._answers,
                server=f"Roundcube on {self.url}",
                advice=f"Is PHP with the Roundcube packages ({PACKAGES}) installed?",
                logs={"PHP log": output, "Roundcube error log": base / "logs" / "errors.log"},
                timeout=30,
                process=self._process,
            )

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.url, timeout=5) as answer:  # noqa: S310
                return bool(answer.status == 200)
        except OSError:
            return False

    def _config(self, base: Path, database: Path) -> str:
        config: dict[str, object] = {
            "db_dsnw": f"sqlite:///{database}?mode=0640",
            "imap_host": f"{LOOPBACK}:{self.imap_port}",
            "smtp_host": "",
            "temp_dir": f"{base / 'temp'}/",
            "log_dir": f"{base / 'logs'}/",
            # Roundcube's own session secret (not a user password); fixed for the test.
            "des_key": "cryptmail-roundcube-test",
            "plugins": ["password"],
            "skin": "elastic",
            "enable_installer": False,
            "language": "en_US",
            # The password plugin against our API, as docs/web.md gives it.
            "password_driver": "httpapi",
            "password_httpapi_url": self.api_url,
            "password_httpapi_method": "POST",
            "password_httpapi_var_user": "address",
            "password_httpapi_var_curpass": "old",
            "password_httpapi_var_newpass": "new",
            "password_confirm_current": True,
            "password_minimum_length": 10,
            "password_http_client": {"http_errors": False},
        }
        config.update(self.settings)
        lines = ["<?php", "$config = [];"]
        lines += [f"$config[{_php_value(k)}] = {_php_value(v)};" for k, v in config.items()]
        return "\n".join(lines) + "\n"

    def error_log(self) -> str:
        """What Roundcube logged as errors so far (empty if nothing)."""
        path = self.log_dir / "errors.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def log_tail(self) -> str:
        return log_tail(self._dir / "php.log")

    def stop(self) -> None:
        self._discard()
