"""cryptmail.managesieve: the ManageSieve server (RFC 5804) with STARTTLS and SASL
PLAIN, for Roundcube's managesieve plugin, sieve-connect and sievelib.

`_wire` splits command lines and writes responses, `_login` checks credentials as SMTP
AUTH does (no key of the user's is unlocked: scripts are sealed under the server key),
`_session` the states and commands over `cryptmail.sieve`'s script storage, `_listener`
the socket.
"""

from cryptmail.managesieve._listener import ManagesieveListener, make_managesieve_context
from cryptmail.managesieve._session import ManagesieveContext

__all__ = ["ManagesieveContext", "ManagesieveListener", "make_managesieve_context"]
