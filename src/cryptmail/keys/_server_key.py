"""The server key: 32 random bytes in a file only cryptmail can read, never in the
database.

A SQL writer (a co-hosted admin tool, a webmail plugin, an injection in either) can
change any row, but cannot compute a MAC under this key: delivery uses it to
authenticate the public key and `crypt` it reads (keys/_integrity.py), and to key the
retry tag of a delivery, and to seal users' Sieve scripts, which delivery reads without
any user secret. Each purpose has its own subkey (HKDF, one label each).

The file is made at first use (write to a temporary file, fsync, link into place, so a
concurrent first start of two processes keeps one key), mode 0600, and read once per
process. `cryptmail serve`, its LMTP workers and every admin command read the same file
(`server_key_file`); nothing passes it on a command line or in the environment.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from cryptmail.crypto import (
    SERVER_KEY_SIZE,
    FieldCipher,
    delivery_mac_key,
    delivery_tag,
    delivery_tag_key,
    sieve_record_key,
    sieve_script_key,
    staged_import_key,
)
from cryptmail.errors import ConfigError
from cryptmail.secret import SecretBytes

log = logging.getLogger(__name__)


class ServerKey:
    """The loaded server key and its subkeys; its repr shows neither."""

    __slots__ = (
        "_delivery_mac",
        "_delivery_tag",
        "_sieve_record",
        "_sieve_script",
        "_staged_import",
        "path",
    )

    def __init__(self, secret: bytes, path: Path) -> None:
        if len(secret) != SERVER_KEY_SIZE:
            raise ConfigError(f"{path}: a server key is {SERVER_KEY_SIZE} bytes")
        self.path = path
        self._delivery_mac = SecretBytes(delivery_mac_key(secret))
        self._delivery_tag = SecretBytes(delivery_tag_key(secret))
        self._staged_import = SecretBytes(staged_import_key(secret))
        self._sieve_script = SecretBytes(sieve_script_key(secret))
        self._sieve_record = SecretBytes(sieve_record_key(secret))

    def delivery_mac_key(self) -> bytes:
        return self._delivery_mac.reveal()

    def delivery_tag_key(self) -> bytes:
        return self._delivery_tag.reveal()

    def staged_import_cipher(self) -> FieldCipher:
        """Seals and opens the source of a staged first-login import (its own subkey)."""
        return FieldCipher(self._staged_import.reveal())

    def sieve_script_key(self) -> bytes:
        """The key users' Sieve scripts are sealed under (sieve/_scripts.py)."""
        return self._sieve_script.reveal()

    def sieve_record_key(self) -> bytes:
        return self._sieve_record.reveal()

    def __repr__(self) -> str:
        return f"ServerKey(path={str(self.path)!r})"

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("secrets are not picklable")


_loaded: dict[Path, ServerKey] = {}
_installed: ServerKey | None = None


def load_server_key(path: Path) -> ServerKey:
    """The server key in `path`, made now if there is no such file. Read once per
    process and path. Raises ConfigError for a file of the wrong size or one that other
    users may read."""
    path = path.absolute()
    key = _loaded.get(path)
    if key is None:
        key = ServerKey(_read_or_create(path), path)
        _loaded[path] = key
    return key


def install_server_key(key: ServerKey | None) -> None:
    """Make `key` the server key of this process (each entry point does, from its
    configuration; tests install one of their own)."""
    global _installed
    _installed = key


def server_key() -> ServerKey:
    """The server key of this process. Raises ConfigError if none was installed."""
    if _installed is None:
        raise ConfigError(
            "no server key loaded: this process did not read server_key_file at start"
        )
    return _installed


def _read_or_create(path: Path) -> bytes:
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    secret = os.urandom(SERVER_KEY_SIZE)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.write(fd, secret)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            # link, not rename: a concurrent first start that linked first wins, and
            # both processes then use its key.
            os.link(temp, path)
        except FileExistsError:
            return _read(path)
        _fsync_dir(path.parent)
        log.info(
            "made a new server key in %s: back it up, and give every node the same file",
            path,
        )
        return secret
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)


def _read(path: Path) -> bytes:
    with open(path, "rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        secret = handle.read(SERVER_KEY_SIZE + 1)
    if mode & 0o077:
        raise ConfigError(
            f"{path}: the server key file may be read by other users (mode {mode & 0o777:o}); "
            "run chmod 600 on it"
        )
    if len(secret) != SERVER_KEY_SIZE:
        raise ConfigError(
            f"{path}: not a server key ({len(secret)} bytes, expected {SERVER_KEY_SIZE}); "
            "restore it from the backup, or move it away to make a new one (users' "
            "deliveries are then deferred until they sign in or `cryptmail user crypt` "
            "records their keys again)"
        )
    return secret


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def delivery_retry_tag(user_id: int, message_digest: bytes) -> bytes:
    """The retry tag of a delivery of `message_digest` to `user_id` (store/_append.py)
    under this process's server key."""
    return delivery_tag(server_key().delivery_tag_key(), user_id, message_digest)
