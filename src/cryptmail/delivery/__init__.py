"""cryptmail.delivery: the LMTP server (RFC 2033) that Postfix hands mail to.

The engine (`_protocol.py`) parses and bounds; the handler (`_handler.py`) decides and
delivers into the encrypted store; the server (`_server.py`) listens and stops gracefully.
"""

from cryptmail.delivery._handler import DeliveryHandler, reply_for
from cryptmail.delivery._protocol import (
    DataSink,
    Envelope,
    Handler,
    Limits,
    LmtpConnection,
    Session,
)
from cryptmail.delivery._server import LmtpServer
from cryptmail.delivery._shares import ConnectionShares
from cryptmail.delivery._sieve import (
    SieveDelivery,
    SieveSetup,
    load_sieve_setup,
    sieve_delivery,
)
from cryptmail.delivery._trace import delivery_headers

__all__ = [
    "ConnectionShares",
    "DataSink",
    "DeliveryHandler",
    "Envelope",
    "Handler",
    "Limits",
    "LmtpConnection",
    "LmtpServer",
    "Session",
    "SieveDelivery",
    "SieveSetup",
    "delivery_headers",
    "load_sieve_setup",
    "reply_for",
    "sieve_delivery",
]
