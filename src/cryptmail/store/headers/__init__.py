"""cryptmail.store.headers: header values parsed the way Dovecot 2.3 reads them.

RFC 822 tokens (:class:`Rfc822Reader`, MIME parameters), address lists
(:func:`parse_addresses`) and RFC 2047 encoded words (:func:`decode_header_value`).
Pure (no I/O); here, below the protocols, because delivery makes a message's sort keys
with them and IMAP reads messages with them: one implementation for both.
"""

from cryptmail.store.headers._addresses import Address, parse_addresses
from cryptmail.store.headers._encoded_words import decode_header_value, text_codec
from cryptmail.store.headers._rfc822 import Rfc822Reader, parse_content_params

__all__ = [
    "Address",
    "Rfc822Reader",
    "decode_header_value",
    "parse_addresses",
    "parse_content_params",
    "text_codec",
]
