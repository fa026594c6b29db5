"""cryptmail.pop3: the POP3 server (RFC 1939 with STLS, UIDL, TOP and SASL PLAIN;
RFC 2449 CAPA, PIPELINING and response codes), reading INBOX with the login, account
cache and throttle that IMAP uses.

`_wire` frames lines and writes messages (CRLF, dot-stuffing), `_login` checks
credentials, `_maildrop` is the session's view of INBOX (sizes, UIDLs, DELE, QUIT's
update), `_session` the RFC 1939 states and commands, `_listener` the sockets.
"""

from cryptmail.pop3._listener import Pop3Listener, make_pop3_context
from cryptmail.pop3._maildrop import Maildrop, uidl
from cryptmail.pop3._session import Pop3Context

__all__ = ["Maildrop", "Pop3Context", "Pop3Listener", "make_pop3_context", "uidl"]
