"""The one exception tree of cryptmail.

    CryptmailError
    ├── ConfigError                 the TOML file, a command-line option or a path given is wrong
    ├── CryptoError
    │   ├── DecryptionFailed        opaque: wrong key, tampered, truncated (one type, no detail)
    │   ├── MalformedObject         a stored object's header cannot be parsed
    │   ├── KdfParametersRefused    stored Argon2 parameters above the configured ceiling
    │   └── KdfBusy                 transient: the Argon2 queue is full; retry in a moment
    │       └── KdfUnavailable      transient: a hashing process died during the derivation
    ├── DatabaseError               the database refused a statement (driver error chained)
    │   └── DatabaseConflict        a unique or foreign-key constraint refused a write
    ├── DovecotFormatError
    │   ├── DovecotKeyNotFound      no private key for the file's recipient key id
    │   └── DovecotWrongPassword    the password does not unlock a `2:` key
    ├── UserError
    │   ├── UnknownUser
    │   ├── UnknownDomain
    │   ├── UserExists
    │   ├── DomainExists
    │   ├── AliasExists
    │   ├── UnsupportedPasswordScheme
    │   ├── MalformedPasswordHash   a stored hash cannot be parsed, or demands too much work
    │   └── PasswordRejected        a new password breaks the password rules
    ├── KeySlotError
    │   ├── AuthenticationFailed    opaque: unknown user, wrong password, no slot
    │   ├── TooManyAttempts         the login throttle refuses: too many recent failures
    │   ├── NoKeyPair               the user has no key pair yet
    │   ├── PasswordResetRefused    a password set without the old one would lock a key
    │   ├── AppPasswordNotFound
    │   └── AppPasswordExists
    ├── StoreError
    │   ├── MailboxNotFound
    │   ├── MailboxExists
    │   ├── MessageNotFound
    │   ├── BlobMissing             a row names a blob that is not in the blob store
    │   ├── ObjectTampered          a stored object failed authentication
    │   │   └── PlainBlobRefused    a plain blob where the row says the message is sealed
    │   ├── QuotaExceeded
    │   │   └── ScriptQuotaExceeded a Sieve script too large, or one script too many
    │   ├── ScriptError             a Sieve script request refused (sieve/_scripts.py)
    │   │   ├── ScriptNotFound
    │   │   ├── ScriptExists
    │   │   ├── ScriptActive        the active script cannot be deleted
    │   │   └── ScriptNameInvalid
    │   ├── KeyLocked               the operation needs the unlocked key
    │   └── StoreUnavailable        transient: database or blob store did not answer
    │       └── DatabaseUnavailable transient: no connection, dropped, stayed locked
    │           └── TransactionAborted deadlock victim or serialization failure: run it again
    ├── SieveError
    │   ├── SieveSyntaxError        a Sieve script cannot be compiled: line and reason
    │   │   └── SieveLimitExceeded  too large, too many commands, nested too deep
    │   └── SieveRuntimeError       a script failed while running: the message is kept
    └── ProtocolError               a client sent something we cannot parse
        ├── ParseError              one command is malformed: answer `tag BAD reason`, read on
        │   └── UnknownCharset      SEARCH CHARSET we cannot decode: answer NO [BADCHARSET]
        └── InputTooLarge           a command line or literal is over its limit: refuse first

The database's own errors never leave `cryptmail.db`: an engine hook turns them into
DatabaseUnavailable (retry later), DatabaseConflict (someone made that row first) or
DatabaseError where they arise, with the driver's error as `__cause__`.

Messages are sentences a person can act on; they name objects by id, never by content,
and never contain a password, a recovery code, a key or mail content.
"""

from __future__ import annotations


class CryptmailError(Exception):
    """Root of every error cryptmail raises on purpose."""


class ConfigError(CryptmailError):
    """The configuration file or a command-line option is not valid."""


class CryptoError(CryptmailError):
    """A cryptographic operation failed."""


class DecryptionFailed(CryptoError):
    """Authentication failed: wrong key, or the object was changed, swapped or truncated.

    Deliberately one type with one message, so that callers and attackers learn nothing
    from which check failed.
    """

    def __init__(self, what: str = "object") -> None:
        super().__init__(
            f"{what} failed authentication: it was changed, swapped, truncated, or the key is wrong"
        )


class MalformedObject(CryptoError):
    """A stored object's header is not in a format we know."""


class KdfParametersRefused(CryptoError):
    """Stored Argon2 parameters exceed the configured ceiling; refused before any work."""


class KdfBusy(CryptoError):
    """Transient: more password derivations are running and queued than allowed."""

    def __init__(self, retry_after_s: float = 1.0) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(
            "the password derivation queue is full (crypto.argon2.max_queued); "
            "too many logins at once, try again in a moment"
        )


class KdfUnavailable(KdfBusy):
    """Transient: the hashing process died during the derivation (killed, out of memory).

    A KdfBusy, so every login path already answers it as a temporary failure; the next
    derivation starts a new hashing process (`cryptmail.hashing`)."""

    def __init__(self) -> None:
        super().__init__()
        self.args = (
            "the password hashing process ended during the derivation; try again "
            "(the next login starts a new one)",
        )


class DatabaseError(CryptmailError):
    """The database refused or failed a statement. The driver's error is the __cause__;
    the message names its type only, never SQL or parameters (they hold hashes, slots)."""


class DatabaseConflict(DatabaseError):
    """A unique or foreign-key constraint refused a write: the row exists already, or a
    concurrent writer made it first. Callers that expect the race catch this."""


class DovecotFormatError(CryptmailError):
    """A Dovecot mail-crypt file or key string cannot be used."""


class DovecotKeyNotFound(DovecotFormatError):
    """No available private key matches the recipient key id of a Dovecot file."""


class DovecotWrongPassword(DovecotFormatError):
    """The password does not unlock a Dovecot `2:` private key."""


class UserError(CryptmailError):
    """A user, domain or alias operation failed."""


class UnknownUser(UserError):
    """No such user."""


class UnknownDomain(UserError):
    """No such domain."""


class UserExists(UserError):
    """The user already exists."""


class DomainExists(UserError):
    """The domain already exists."""


class AliasExists(UserError):
    """The alias already exists."""


class UnsupportedPasswordScheme(UserError):
    """A stored password hash uses a `{SCHEME}` we do not know."""


class MalformedPasswordHash(UserError):
    """A stored password hash of a known scheme cannot be parsed, or its work factor is
    above the ceiling we accept before doing any work."""


class PasswordRejected(UserError):
    """A new password breaks the password rules (length, contains the address, ...)."""


class KeySlotError(CryptmailError):
    """A key slot could not be used or changed."""


class AuthenticationFailed(KeySlotError):
    """Opaque login failure: unknown user, wrong password and missing slot look the same."""

    def __init__(self, detail: str = "") -> None:
        # The detail is for the operator log only; str() shows the generic sentence.
        self.detail = detail
        super().__init__("authentication failed")


class KeyRowsTampered(AuthenticationFailed):
    """The account's key pairs or key slots in the database do not match the MAC
    cryptmail wrote over them: changed outside cryptmail, so the login is refused."""


class TooManyAttempts(KeySlotError):
    """The login throttle refuses the attempt before any password is checked: recent
    failures emptied the address's or the client's allowance."""

    def __init__(self, retry_after_s: float) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(
            f"too many failed logins for this address or from this client; "
            f"try again in {max(1, round(retry_after_s))} s"
        )


class NoKeyPair(KeySlotError):
    """The user has no key pair yet; one is made at the first login with a password."""


class PasswordResetRefused(KeySlotError):
    """A password set without the old one (the admin reset) would lock the user out of
    their key: only a user with crypt = 0 and no key pair yet may be reset."""


class AppPasswordNotFound(KeySlotError):
    """No app password with that name."""


class AppPasswordExists(KeySlotError):
    """An app password with that name exists already."""


class StoreError(CryptmailError):
    """A mail store operation failed."""


class MailboxNotFound(StoreError):
    """No such mailbox."""


class MailboxExists(StoreError):
    """The mailbox exists already."""


class MessageNotFound(StoreError):
    """No such message."""


class BlobMissing(StoreError):
    """A message row names a blob that the blob store does not have."""


class ObjectTampered(StoreError):
    """A stored object failed authentication."""


class PlainBlobRefused(ObjectTampered):
    """A blob has a plain header but its row says sealed: someone may have swapped it."""


class QuotaExceeded(StoreError):
    """The user's quota would be exceeded."""


class ScriptQuotaExceeded(QuotaExceeded):
    """A Sieve script over the size limit (`limit` "MAXSIZE") or one script more than
    a user may keep (`limit` "MAXSCRIPTS"): RFC 5804's QUOTA/MAXSIZE, QUOTA/MAXSCRIPTS."""

    def __init__(self, message: str, *, limit: str = "MAXSIZE") -> None:
        super().__init__(message)
        self.limit = limit


class ScriptError(StoreError):
    """A request about a user's Sieve scripts was refused; nothing was changed."""


class ScriptNotFound(ScriptError):
    """The user has no Sieve script of that name."""


class ScriptExists(ScriptError):
    """The user has a Sieve script of that name already."""


class ScriptActive(ScriptError):
    """The active Sieve script cannot be deleted; deactivate it first."""


class ScriptNameInvalid(ScriptError):
    """A Sieve script name that is empty, too long or holds control characters."""


class KeyLocked(StoreError):
    """The operation needs the user's unlocked key, and this session does not hold it."""


class StoreUnavailable(StoreError):
    """Transient: the database or the blob store did not answer. Retry later."""


class RecipientKeyUnverified(StoreUnavailable):
    """The recipient's public key in the database does not match the MAC cryptmail
    wrote over it under the server key: changed outside cryptmail. Transient on purpose:
    the MTA keeps the message and retries while an administrator looks."""


class RecipientChanged(StoreUnavailable):
    """The user's `crypt` or active key pair changed between the recipient's lookup and
    the commit of its copy (a re-key, a key rotation, encryption switched): the copy,
    sealed for the old state, was not stored. Transient: a fresh lookup delivers it."""


class DatabaseUnavailable(StoreUnavailable):
    """Transient: the database could not be reached, dropped the connection, stayed
    locked or chose this transaction as a deadlock victim. Retry later."""


class TransactionAborted(DatabaseUnavailable):
    """The database rolled this transaction back to resolve a conflict with another
    one (a deadlock victim: MySQL/MariaDB 1213, PostgreSQL 40P01; or a serialization
    failure: 40001). Nothing of it was committed, and running the whole transaction
    again may succeed at once; `run_transaction(..., retry=True)` does so a few times.
    `code` is the driver's code (SQLSTATE or MySQL error number), for the log."""

    def __init__(self, message: str, *, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class SieveError(CryptmailError):
    """A Sieve script could not be compiled or run."""


class SieveSyntaxError(SieveError):
    """A Sieve script cannot be compiled. ``line`` is the 1-based line the problem was
    found on (None when it concerns the whole script); ``reason`` says what is wrong.
    The message is for the script's owner (ManageSieve answers it); it may quote the
    script, so delivery logs the line only."""

    def __init__(self, script: str, line: int | None, reason: str) -> None:
        self.script = script
        self.line = line
        self.reason = reason
        where = f"line {line}: " if line is not None else ""
        super().__init__(f"sieve script {script!r}: {where}{reason}")


class SieveLimitExceeded(SieveSyntaxError):
    """A Sieve script is over a configured limit (size, commands, nesting)."""


class SieveRuntimeError(SieveError):
    """A Sieve script failed while it ran (an include that is missing, too many actions,
    a loop): delivery files the message into INBOX (implicit keep) and logs the line."""

    def __init__(self, script: str, line: int, reason: str) -> None:
        self.script = script
        self.line = line
        self.reason = reason
        super().__init__(f"sieve script {script!r}: line {line}: {reason}")


class ProtocolError(CryptmailError):
    """A client sent something that cannot be parsed."""


class ParseError(ProtocolError):
    """One client command is malformed; the server answers ``tag BAD reason`` and reads on.

    ``reason`` is a fixed sentence safe to send to the client (it never echoes the
    client's arguments); ``tag`` is the command's tag when it could be read, else None.
    """

    def __init__(self, reason: str, tag: str | None = None) -> None:
        self.reason = reason
        self.tag = tag
        super().__init__(reason)


class UnknownCharset(ParseError):
    """A SEARCH names a CHARSET that cannot be decoded; RFC 3501 wants NO [BADCHARSET]."""


class InputTooLarge(ProtocolError):
    """A command line or literal is larger than the limit the server set.

    Raised before the oversized data is buffered. ``recoverable`` is True when the
    client has not sent the data yet (a synchronizing literal it waits to be invited
    for): answer ``tag NO [TOOBIG]`` or ``tag BAD`` and read on. When False the byte
    stream cannot be resynchronised: answer ``* BYE`` and close.
    """

    def __init__(
        self, reason: str, *, tag: str | None = None, limit: int, recoverable: bool
    ) -> None:
        self.reason = reason
        self.tag = tag
        self.limit = limit
        self.recoverable = recoverable
        super().__init__(reason)
