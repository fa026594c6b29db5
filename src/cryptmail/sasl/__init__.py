"""cryptmail.sasl: SMTP AUTH for Postfix, through Dovecot's auth protocol.

Postfix's `smtpd_sasl_type = dovecot` connects to `SaslServer` (a Unix socket such as
`/var/spool/postfix/private/auth`, or loopback TCP) and hands it each AUTH its clients
send; `SaslChecker` checks the password or an app password with the login throttle
shared with IMAP and the web. `_wire` is the line format, `_mechanisms` PLAIN and LOGIN.
"""

from cryptmail.sasl._check import Outcome, SaslChecker, Verdict
from cryptmail.sasl._server import SaslServer

__all__ = ["Outcome", "SaslChecker", "SaslServer", "Verdict"]
