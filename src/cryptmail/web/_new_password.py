"""The rules for a new password, as the pages and the API apply them."""

from __future__ import annotations

from cryptmail.secret import Password
from cryptmail.users import PasswordRule, check_new_password, password_problems
from cryptmail.web._context import WebContext


def check_new(context: WebContext, address: str, new: Password) -> None:
    """Raises PasswordRejected naming every broken rule (see users.check_new_password)."""
    check_new_password(new, address, min_length=context.config.web.min_password_length)


def form_problem(context: WebContext, address: str, new: str, repeat: str) -> str:
    """The catalog key of what is wrong with a new password typed twice, or ""."""
    if new != repeat:
        return "error.mismatch"
    problems = password_problems(
        Password.from_str(new), address, min_length=context.config.web.min_password_length
    )
    # One sentence for the first broken rule: the one a person should fix first.
    return _RULE_KEYS[problems[0]] if problems else ""


_RULE_KEYS: dict[PasswordRule, str] = {
    PasswordRule.NOT_TEXT: "error.rule_control",
    PasswordRule.CONTROL: "error.rule_control",
    PasswordRule.SHORT: "error.rule_short",
    PasswordRule.LONG: "error.rule_long",
    PasswordRule.REPEATED: "error.rule_repeated",
    PasswordRule.ADDRESS: "error.rule_address",
    PasswordRule.LOCAL_PART: "error.rule_local_part",
    PasswordRule.COMMON: "error.rule_common",
}
