"""`cryptmail dovecot`: read mail files that Dovecot's mail-crypt plugin encrypted.

    cryptmail dovecot decrypt MAILFILE --attributes dovecot-attributes --password-stdin
    cryptmail dovecot decrypt MAILFILE --private-key global.pem [--password-stdin]
    cryptmail dovecot inspect MAILFILE

`decrypt` checks everything (key, key-data hash, GCM tag or HMAC over the whole file)
before it writes the first byte, so a wrong password, a tampered file or an unknown key
leaves stdout empty and exits 1 with one line on stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cryptmail.cli._options import read_stdin_lines
from cryptmail.cli._runtime import SubParsers
from cryptmail.crypto.dovecot import (
    DovecotKeyring,
    keyring_from_attributes,
    load_global_private_key,
    parse_attributes,
    read_dovecot_file,
    read_dovecot_header,
)
from cryptmail.errors import ConfigError
from cryptmail.secret import Password

_DECRYPT_DESCRIPTION = """\
Decrypt one Dovecot 2.3 mail-crypt file and write the mail to standard output.

Keys come either from a user's dovecot-attributes file (folder-key mode: the user's
password unlocks the user keys, which unlock every folder key in the file) or from a
global private key (PEM, encrypted PEM, JWK, a `2:` key string, or base64 of one).
Passwords are read from the first line of standard input, never from the command line.
Nothing is written unless the whole file verifies. A file without the mail-crypt magic
is written as it is, as Dovecot serves it, unless --require-encrypted is given.
"""


def register(sub: SubParsers) -> None:
    parser = sub.add_parser(
        "dovecot",
        help="read Dovecot mail-crypt files (import and migration help)",
        description="Read mail files encrypted by Dovecot 2.3's mail-crypt plugin.",
    )
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    decrypt = verbs.add_parser(
        "decrypt",
        help="decrypt one mail file to standard output",
        description=_DECRYPT_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    decrypt.add_argument("mail_file", metavar="MAILFILE", help="the encrypted mail file")
    source = decrypt.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--attributes",
        metavar="DOVECOT_ATTRIBUTES",
        help="the user's dovecot-attributes file (per-user and per-folder keys)",
    )
    source.add_argument(
        "--private-key",
        metavar="KEY_FILE",
        help="a global private key file (mail_crypt_global_private_key)",
    )
    decrypt.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the user's password (with --attributes) or the key file's password "
        "(with --private-key) from the first line of standard input",
    )
    decrypt.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        help="also decrypt files that have no integrity protection (format v1, written "
        "with mail_crypt_save_version = 1); their content cannot be verified",
    )
    decrypt.add_argument(
        "--require-encrypted",
        action="store_true",
        help="fail on a file that is not encrypted instead of copying it through",
    )
    decrypt.set_defaults(handler=_decrypt)

    inspect = verbs.add_parser(
        "inspect",
        help="show a mail file's format and the key id it is encrypted to (no key needed)",
        description="Print the format, algorithms and recipient key ids of a mail file. "
        "Reads only the header; needs no key or password.",
    )
    inspect.add_argument("mail_file", metavar="MAILFILE", help="the mail file")
    inspect.set_defaults(handler=_inspect)


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} {path}: {exc.strerror}") from None


def _keyring(args: argparse.Namespace) -> DovecotKeyring:
    password: Password | None = read_stdin_lines(1)[0] if args.password_stdin else None
    if args.attributes is not None:
        attributes = parse_attributes(_read(args.attributes, "attributes file"))
        return keyring_from_attributes(attributes, password)
    key = load_global_private_key(_read(args.private_key, "key file"), password)
    return DovecotKeyring([key])


def _decrypt(args: argparse.Namespace) -> int:
    keyring = _keyring(args)
    try:
        mail = open(args.mail_file, "rb")
    except OSError as exc:
        raise ConfigError(f"cannot read the mail file {args.mail_file}: {exc.strerror}") from None
    with mail:
        pieces = read_dovecot_file(
            mail,
            keyring,
            allow_plaintext=not args.require_encrypted,
            allow_unauthenticated=args.allow_unauthenticated,
        )
        out = sys.stdout.buffer
        for piece in pieces:
            out.write(piece)
        out.flush()
    return 0


def _inspect(args: argparse.Namespace) -> int:
    try:
        with open(args.mail_file, "rb") as mail:
            header = read_dovecot_header(mail)
    except OSError as exc:
        raise ConfigError(f"cannot read the mail file {args.mail_file}: {exc.strerror}") from None
    if header is None:
        print("format: not encrypted (empty, or no mail-crypt magic)")
        return 0
    print(f"format: v{header.version}")
    print(f"flags: {header.flags:#010x}")
    print(f"cipher: {header.cipher}")
    print(f"hash: {header.digest}")
    print(f"header size: {header.size}")
    print(f"integrity: {'yes' if header.authenticated else 'NO'}")
    for recipient in header.recipients:
        style = "old-style" if header.version == 1 else "new-style"
        print(f"recipient: {recipient.algorithm} {recipient.key_id} ({style} key id)")
    return 0
