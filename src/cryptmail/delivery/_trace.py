"""The trace lines final delivery adds at the top of each copy: Return-Path, Delivered-To.

Written as Dovecot's LMTP writes them (lmtp_local_add_headers), since Sieve scripts and
clients moved from Dovecot read them: `Return-Path: <sender>` (`<>` for a null sender,
RFC 5321 4.4) and `Delivered-To: address`, the address as given in RCPT TO (Dovecot's
default `lmtp_hdr_delivery_address = final`: an alias's own address, not the user it
reaches). Dovecot adds one header block to the message shared by all its recipients,
so it leaves Delivered-To out when a transaction has several; each copy here is sealed
for one user anyway, so each gets the Delivered-To of the address that reached it.

Both addresses come from the engine's path syntax, which admits no CR, LF or space:
they cannot end the line and start a header of their own.
"""

from __future__ import annotations


def delivery_headers(sender: str, recipient: str) -> bytes:
    """The lines to put before the message for one recipient, each ending in CRLF."""
    return f"Return-Path: <{sender}>\r\nDelivered-To: {recipient}\r\n".encode()
