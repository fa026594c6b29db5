"""Wrapper types for secrets: their repr and str are masked.

A password, recovery code or unlocked key travels inside one of these from the edge
(CLI stdin, IMAP LOGIN, web form) to the one crypto call that needs the raw value, so
that tracebacks, logs and debuggers never show it.
"""

from __future__ import annotations

from typing import Final

_MASK: Final = "**********"


class SecretBytes:
    """Bytes that do not show themselves."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        self._value = bytes(value)

    def reveal(self) -> bytes:
        """The raw bytes; call only at the crypto boundary."""
        return self._value

    def __len__(self) -> int:
        return len(self._value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}('{_MASK}')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        import hmac

        if not isinstance(other, SecretBytes):
            return NotImplemented
        return hmac.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash((type(self), len(self._value)))

    def __reduce__(self) -> str | tuple[object, ...]:
        # Pickling would copy the secret into another process's memory or a file by
        # accident (what `serve` hands its LMTP workers is pickled, for one). The Argon2
        # pool runs threads in this process and gets the raw bytes at the crypto call.
        raise TypeError("secrets are not picklable")


class Password(SecretBytes):
    """A user's password, app password or recovery code, as UTF-8 bytes."""

    @classmethod
    def from_str(cls, text: str) -> Password:
        return cls(text.encode("utf-8"))

    def text(self) -> str:
        return self._value.decode("utf-8")
