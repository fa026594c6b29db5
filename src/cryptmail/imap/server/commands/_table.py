"""Every IMAP command the server answers, in one table.

A command is found here by the type of its parsed request; the :class:`Route` says in
which connection states it is allowed and whether pending mailbox updates go out before
its tagged reply. To add a command: parse it in :mod:`cryptmail.imap.wire`, write its
handler in a module of this package, and add one line below.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from cryptmail.imap.server._route import ANY, AUTH, NONAUTH, SELECTED, Route
from cryptmail.imap.server.commands import (
    _append,
    _auth,
    _context,
    _fetch,
    _idle,
    _mailboxes,
    _notify,
    _quota,
    _search,
    _sort,
    _store,
    _urlauth,
)
from cryptmail.imap.wire._parser_notify import Notify
from cryptmail.imap.wire._parser_urlauth import GenUrlAuth, ResetKey, UrlFetch
from cryptmail.imap.wire._requests import (
    Append,
    Authenticate,
    CancelUpdate,
    Capability,
    Check,
    Close,
    Command,
    Compress,
    Copy,
    Create,
    Delete,
    Enable,
    Examine,
    Expunge,
    Fetch,
    GetQuota,
    GetQuotaRoot,
    Id,
    Idle,
    List,
    Login,
    Logout,
    Lsub,
    Move,
    Namespace,
    Noop,
    Rename,
    Search,
    Select,
    SetQuota,
    Sort,
    StartTLS,
    Status,
    Store,
    Subscribe,
    Thread,
    Unselect,
    Unsubscribe,
)

COMMANDS: Final[Mapping[type[Command], Route]] = {
    # Any state
    Capability: Route(_auth.capability, ANY),
    Noop: Route(_auth.noop, ANY),
    Logout: Route(_auth.logout, ANY, refresh=False),
    Id: Route(_auth.identify, ANY),
    # Not authenticated
    StartTLS: Route(_auth.starttls, NONAUTH, refresh=False),
    Login: Route(_auth.login, NONAUTH),
    Authenticate: Route(_auth.authenticate, NONAUTH),
    # Authenticated (or selected)
    Enable: Route(_auth.enable, AUTH),
    Select: Route(_mailboxes.select, AUTH),
    Examine: Route(_mailboxes.examine, AUTH),
    Create: Route(_mailboxes.create, AUTH),
    Delete: Route(_mailboxes.delete, AUTH),
    Rename: Route(_mailboxes.rename, AUTH),
    Subscribe: Route(_mailboxes.subscribe, AUTH),
    Unsubscribe: Route(_mailboxes.unsubscribe, AUTH),
    List: Route(_mailboxes.list_, AUTH),
    Lsub: Route(_mailboxes.lsub, AUTH),
    Namespace: Route(_mailboxes.namespace, AUTH),
    Status: Route(_mailboxes.status, AUTH),
    GetQuotaRoot: Route(_quota.getquotaroot, AUTH),
    GetQuota: Route(_quota.getquota, AUTH),
    SetQuota: Route(_quota.setquota, AUTH),
    Append: Route(_append.append_without_literal, AUTH),
    Idle: Route(_idle.idle, AUTH),
    Compress: Route(_auth.compress, AUTH, refresh=False),
    Notify: Route(_notify.notify, AUTH),
    GenUrlAuth: Route(_urlauth.genurlauth, AUTH),
    UrlFetch: Route(_urlauth.urlfetch, AUTH),
    ResetKey: Route(_urlauth.resetkey, AUTH),
    # Selected
    Check: Route(_mailboxes.check, SELECTED),
    Close: Route(_mailboxes.close, SELECTED, refresh=False),
    Unselect: Route(_mailboxes.unselect, SELECTED, refresh=False),
    Fetch: Route(_fetch.fetch, SELECTED),
    Search: Route(_search.search, SELECTED),
    Sort: Route(_sort.sort, SELECTED),
    Thread: Route(_sort.thread, SELECTED),
    Store: Route(_store.store, SELECTED),
    Copy: Route(_store.copy, SELECTED),
    Move: Route(_store.move, SELECTED),
    Expunge: Route(_store.expunge_command, SELECTED),
    CancelUpdate: Route(_context.cancel_update, SELECTED),
}
"""Which handler answers each command type (commands not listed get ``BAD``)."""
