"""The rules for a new password, as the pages and the API apply them."""

from __future__ import annotations

from cryptmail.errors import PasswordRejected
from cryptmail.secret import Password
from cryptmail.users import check_new_password
from cryptmail.web._context import WebContext


def check_new(context: WebContext, address: str, new: Password) -> None:
    """Raises PasswordRejected naming every broken rule (see users.check_new_password)."""
    check_new_password(new, address, min_length=context.config.web.min_password_length)


def form_problem(context: WebContext, address: str, new: str, repeat: str) -> str:
    """The catalog key of what is wrong with a new password typed twice, or ""."""
    if new != repeat:
        return "error.mismatch"
    try:
        check_new(context, address, Password.from_str(new))
    except PasswordRejected:
        return "error.rules"
    return ""
