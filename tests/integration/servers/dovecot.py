"""A private Dovecot 2.3 instance on loopback, for interop and differential tests.

    with Dovecot(users=[DovecotUser("alice", "imap-pw")], imap=True) as server:
        server.doveadm("save", "-u", "alice", "-m", "INBOX", stdin=message)
        client = imaplib.IMAP4(server.host, server.imap_port)

or, in tests, through ``dovecot_instances()`` (every instance it starts is stopped at
the end; see there for a three-line fixture)::

    def test_x(dovecot_factory: DovecotFactory) -> None:
        server = dovecot_factory(users=[...], mail_plugins=["mail_crypt"], lmtp=True)

What an instance is:

* its own folder (``base_dir``) in the system temp folder, holding ``dovecot.conf``,
  the ``users`` passwd-file (passdb and userdb, ``{PLAIN}`` passwords), the run and
  state folders, ``dovecot.log`` and one home per user: ``home/<name>``, mail in
  ``home/<name>/Maildir`` (``mail_location``), attributes (METADATA, mail-crypt keys)
  in ``home/<name>/Maildir/dovecot-attributes`` (``attribute_dict``; None leaves it unset);
* ``mail_plugins`` added to every protocol (e.g. ``["mail_crypt"]``), ``plugin_settings``
  as the ``plugin { }`` block, ``DovecotUser.userdb_fields`` as per-user userdb extra
  fields (``mail_crypt_private_password``, ``mail_crypt_global_private_key``, ``quota_rule``,
  ...), and ``extra_config`` appended as it is;
* optional IMAP (``imap=True``) and LMTP (``lmtp=True``) listeners on 127.0.0.1 ports it
  picks (``imap_port``, ``lmtp_port``); without listeners it still runs (auth and
  doveadm need the master), with ``protocols = none``.

``start()`` runs ``dovecot -F -c dovecot.conf`` and returns only once the auth service
answers and every listener has sent its greeting; otherwise it raises ServerStartError
with the log tail (BinaryMissing if Dovecot is not installed). ``stop()`` sends SIGTERM
and deletes the folder (kept with CRYPTMAIL_KEEP_SERVER_DIRS=1).

As root, mail processes run as ``mail_uid``/``mail_gid`` (default 65534, nobody), the
internal and login services as ``dovecot``/``dovenull`` (made by the Debian package);
homes belong to the mail uid, so files a test puts there must go through ``install()``
or ``give_to_mail_user()``. As another user, everything runs as that user.
"""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

from ._binaries import find_binary
from ._fixtures import ALLOW_SKIP_ENV, started_instances
from ._ports import LOOPBACK, free_port
from ._process import PrivateServer, run_checked, spawn, wait_answering, wait_until

NOBODY = 65534
_DEFAULT_ATTRIBUTE_DICT = "file:%h/Maildir/dovecot-attributes"


class DoveadmError(RuntimeError):
    """A doveadm command exited non-zero; the message holds its exit code and output."""

    def __init__(self, argv: Sequence[str], result: subprocess.CompletedProcess[bytes]) -> None:
        self.returncode = result.returncode
        self.stdout = result.stdout
        self.stderr = result.stderr
        output = (result.stderr or result.stdout).decode(errors="replace").strip()[-2000:]
        super().__init__(f"`doveadm {' '.join(argv)}` exited with {result.returncode}: {output}")


@dataclass(frozen=True)
class DovecotUser:
    """A user of the passwd-file: login name, ``{PLAIN}`` password, userdb extra fields.

    ``userdb_fields`` are written as ``userdb_<name>=<value>``; values must not contain
    spaces or colons (the passwd-file format has no quoting).
    """

    name: str
    password: str
    userdb_fields: Mapping[str, str] = field(default_factory=dict)

    def line(self, home: Path, uid: int, gid: int) -> str:
        for text in (self.name, self.password, *self.userdb_fields.values()):
            if any(char in text for char in ": \t\n"):
                raise ValueError(f"passwd-file fields cannot hold ':' or blanks: {text!r}")
        extra = " ".join(f"userdb_{name}={value}" for name, value in self.userdb_fields.items())
        return f"{self.name}:{{PLAIN}}{self.password}:{uid}:{gid}::{home}::{extra}\n"


class Dovecot(PrivateServer):
    """A private Dovecot instance; see the module docstring for what it holds."""

    host = LOOPBACK

    def __init__(
        self,
        *,
        users: Sequence[DovecotUser] = (),
        mail_plugins: Sequence[str] = (),
        plugin_settings: Mapping[str, str] | None = None,
        imap: bool = False,
        lmtp: bool = False,
        mail_location: str = "maildir:~/Maildir",
        attribute_dict: str | None = _DEFAULT_ATTRIBUTE_DICT,
        extra_config: str = "",
        mail_uid: int | None = None,
        mail_gid: int | None = None,
        start_timeout: float = 30.0,
    ) -> None:
        self.users = {user.name: user for user in users}
        self.mail_plugins = tuple(mail_plugins)
        self.plugin_settings = dict(plugin_settings or {})
        self.imap_port = free_port() if imap else None
        self.lmtp_port = free_port() if lmtp else None
        self.mail_location = mail_location
        self.attribute_dict = attribute_dict
        self.extra_config = extra_config
        as_root = os.geteuid() == 0
        self.mail_uid = mail_uid if mail_uid is not None else NOBODY if as_root else os.getuid()
        self.mail_gid = mail_gid if mail_gid is not None else NOBODY if as_root else os.getgid()
        own_name = pwd.getpwuid(os.getuid()).pw_name
        self.internal_user = "dovecot" if as_root else own_name
        self.login_user = "dovenull" if as_root else own_name
        self.start_timeout = start_timeout
        self._dovecot = "dovecot"
        self._doveadm = "doveadm"

    # -- folders ---------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self._dir / "dovecot.conf"

    @property
    def log_path(self) -> Path:
        return self._dir / "dovecot.log"

    @property
    def users_path(self) -> Path:
        return self._dir / "users"

    def home(self, user: str) -> Path:
        return self._dir / "home" / user

    def maildir(self, user: str, mailbox: str = "INBOX") -> Path:
        """The Maildir++ folder of ``mailbox`` (``INBOX``, or e.g. ``Archive`` -> ``.Archive``)."""
        root = self.home(user) / "Maildir"
        return root if mailbox == "INBOX" else root / ("." + mailbox.replace("/", "."))

    # -- configuration ---------------------------------------------------------

    def config(self) -> str:
        """The dovecot.conf text this instance runs with."""
        protocols = [
            name for name, port in (("imap", self.imap_port), ("lmtp", self.lmtp_port)) if port
        ]
        lines = [
            f"base_dir = {self._dir / 'run'}",
            f"state_dir = {self._dir / 'state'}",
            f"instance_name = cryptmail-{self._dir.name}",
            f"protocols = {' '.join(protocols) or 'none'}",
            f"listen = {self.host}",
            f"log_path = {self.log_path}",
            "ssl = no",
            "auth_mechanisms = plain login",
            "disable_plaintext_auth = no",
            f"default_internal_user = {self.internal_user}",
            f"default_login_user = {self.login_user}",
            "first_valid_uid = 1",
            f"mail_location = {self.mail_location}",
        ]
        if self.attribute_dict is not None:
            lines.append(f"mail_attribute_dict = {self.attribute_dict}")
        if self.mail_plugins:
            lines.append(f"mail_plugins = $mail_plugins {' '.join(self.mail_plugins)}")
        lines += [
            "passdb {",
            "  driver = passwd-file",
            f"  args = scheme=PLAIN username_format=%u {self.users_path}",
            "}",
            "userdb {",
            "  driver = passwd-file",
            f"  args = username_format=%u {self.users_path}",
            "}",
        ]
        if self.imap_port:
            lines += [
                "service imap-login {",
                *_listener("imap", self.host, self.imap_port),
                *_listener("imaps", self.host, 0),
                "}",
            ]
        if self.lmtp_port:
            lines += ["service lmtp {", *_listener("lmtp", self.host, self.lmtp_port), "}"]
        if self.plugin_settings:
            lines.append("plugin {")
            lines += [f"  {name} = {value}" for name, value in self.plugin_settings.items()]
            lines.append("}")
        return "\n".join(lines) + "\n" + self.extra_config + "\n"

    def _write_users(self) -> None:
        text = "".join(
            user.line(self.home(name), self.mail_uid, self.mail_gid)
            for name, user in self.users.items()
        )
        self.users_path.write_text(text)
        self.users_path.chmod(0o644)

    def add_user(self, user: DovecotUser) -> None:
        """Add or replace a user; Dovecot re-reads the passwd-file when it changes."""
        self.users[user.name] = user
        if self.base_dir is not None:
            self._make_home(user.name)
            self._write_users()

    def _make_home(self, name: str) -> None:
        home = self.home(name)
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chown(home, self.mail_uid, self.mail_gid)

    def install(self, user: str, relative: str, data: bytes, mode: int = 0o600) -> Path:
        """Write a file under the user's home (making folders), owned by the mail uid."""
        path = self.home(user) / relative
        folder = path.parent
        missing = []
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        for created in reversed(missing):
            created.mkdir(mode=0o700)
            os.chown(created, self.mail_uid, self.mail_gid)
        path.write_bytes(data)
        path.chmod(mode)
        os.chown(path, self.mail_uid, self.mail_gid)
        return path

    def give_to_mail_user(self, path: Path) -> None:
        """chown a file or a whole tree to the mail uid (after copying Maildirs in)."""
        os.chown(path, self.mail_uid, self.mail_gid)
        if path.is_dir():
            for item in path.rglob("*"):
                os.chown(item, self.mail_uid, self.mail_gid, follow_symlinks=False)

    # -- life cycle ------------------------------------------------------------

    def start(self) -> None:
        """Write the config and users, start ``dovecot -F``, wait until it answers.

        Raises:
            BinaryMissing: Dovecot is not installed.
            ServerStartError: a bad config, or no answer within ``start_timeout``.
        """
        self._dovecot = find_binary("dovecot", package="dovecot-core")
        self._doveadm = find_binary("doveadm", package="dovecot-core")
        with self._new_folder("cryptmail-dovecot-"):
            (self._dir / "home").mkdir(mode=0o755)
            for name in self.users:
                self._make_home(name)
            self._write_users()
            self.config_path.write_text(self.config())
            self.log_path.touch(mode=0o600)
            self._check_config()
            output = self._dir / "dovecot.out"
            argv = [self._dovecot, "-F", "-c", str(self.config_path)]
            self._process = spawn(argv, output=output)
            wait_answering(
                self._answers,
                server="Dovecot",
                advice=f"Try running `dovecot -F -c {self.config_path}` by hand.",
                logs={"output": output, "log": self.log_path},
                timeout=self.start_timeout,
                process=self._process,
            )

    def _check_config(self) -> None:
        doveconf = find_binary("doveconf", package="dovecot-core")
        run_checked(
            [doveconf, "-n", "-c", str(self.config_path)],
            what="checking the Dovecot config",
            timeout=30,
        )

    def _answers(self) -> bool:
        if not _unix_socket_answers(self._dir / "run" / "auth-userdb"):
            return False
        greetings = ((self.imap_port, b"* OK"), (self.lmtp_port, b"220 "))
        return all(port is None or _greets(self.host, port, text) for port, text in greetings)

    def stop(self) -> None:
        """SIGTERM the master (SIGKILL after 20 s) and delete the folder."""
        self._discard()

    # -- doveadm ---------------------------------------------------------------

    def doveadm(
        self, *argv: str, stdin: bytes | None = None, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[bytes]:
        """Run ``doveadm -c <this config> argv...``; stdout and stderr are captured.

        Raises:
            DoveadmError: it exited non-zero and ``check`` is true.
        """
        result = subprocess.run(
            [self._doveadm, "-c", str(self.config_path), *argv],
            input=stdin,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise DoveadmError(argv, result)
        return result

    def save(self, user: str, message: bytes, mailbox: str = "INBOX") -> None:
        """Deliver ``message`` into ``mailbox`` with ``doveadm save`` (mail plugins apply)."""
        self.doveadm("save", "-u", user, "-m", mailbox, stdin=message)

    def fetch_text(self, user: str, uid: int, mailbox: str = "INBOX") -> bytes:
        """The stored message with this UID, as ``doveadm fetch text`` returns it."""
        query = ("mailbox", mailbox, "uid", str(uid))
        output = self.doveadm("fetch", "-u", user, "text", *query).stdout
        if not output.startswith(b"text:\n"):
            raise DoveadmError(("fetch", "-u", user, "text", *query), _no_message(output))
        return output[len(b"text:\n") :]

    def mailbox_guid(self, user: str, mailbox: str = "INBOX") -> str:
        """The mailbox GUID (creates the Maildir on first use, as any access does)."""
        output = self.doveadm("mailbox", "status", "-u", user, "guid", mailbox).stdout
        return output.decode().strip().rsplit("guid=", 1)[-1]

    def log(self) -> str:
        """Everything Dovecot has logged so far."""
        return self.log_path.read_text(errors="replace")


def _listener(name: str, host: str, port: int) -> list[str]:
    # Port 0 switches a default listener (imaps, which would need TLS) off.
    return [f"  inet_listener {name} {{", f"    address = {host}", f"    port = {port}", "  }"]


def _no_message(output: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.CompletedProcess((), 1, output, b"no such message")


def _unix_socket_answers(path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(2)
            probe.connect(str(path))
    except OSError:
        return False
    return True


def _greets(host: str, port: int, greeting: bytes) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2) as probe:
            return probe.recv(256).startswith(greeting)
    except OSError:
        return False


# -- pytest ------------------------------------------------------------------------------


DovecotFactory = Callable[..., Dovecot]
"""What ``dovecot_instances()`` yields: takes ``Dovecot``'s keyword arguments, starts it."""


def dovecot_instances() -> AbstractContextManager[DovecotFactory]:
    """Start private Dovecot instances through the yielded factory; stop them all at exit.

    For a test, wrap it in a fixture of your own::

        @pytest.fixture
        def dovecot_factory() -> Iterator[DovecotFactory]:
            with dovecot_instances() as factory:
                yield factory

    A missing Dovecot fails the test (skips with CRYPTMAIL_ALLOW_SKIP=1), like the other
    server fixtures. Set CRYPTMAIL_KEEP_SERVER_DIRS=1 to keep their folders and logs.
    """
    return started_instances(Dovecot)


def wait_for_file(folder: Path, timeout: float = 10.0) -> list[Path]:
    """Wait until ``folder`` holds at least one file; return its files, oldest first."""

    def present() -> bool:
        return folder.is_dir() and any(folder.iterdir())

    if not wait_until(present, timeout=timeout):
        raise TimeoutError(f"no file appeared in {folder} within {timeout:.0f} s")
    return sorted(folder.iterdir(), key=lambda path: (path.stat().st_mtime, path.name))


__all__ = [
    "ALLOW_SKIP_ENV",
    "NOBODY",
    "DoveadmError",
    "Dovecot",
    "DovecotFactory",
    "DovecotUser",
    "dovecot_instances",
    "wait_for_file",
]
