"""RFC 5229 variables: one scope per script, `global` names shared across an include
tree (RFC 6609), match variables from the last successful :matches / :regex, and the
`set` modifiers. Names are case-insensitive."""

from __future__ import annotations

import re

_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*|[0-9]+)\}")
_WILDCARDS = re.compile(r"([*?\\])")
# RFC 5229 3: a value longer than this is cut (Pigeonhole: sieve_variables_max_value_size).
MAX_VALUE_SIZE = 4096
MAX_VARIABLES = 255


class Scope:
    """The variables one script sees; `shared` is the include tree's global store."""

    def __init__(self, shared: dict[str, str]) -> None:
        self.local: dict[str, str] = {}
        self.shared = shared
        self.global_names: set[str] = set()
        self.match: list[str] = []

    def get(self, name: str) -> str:
        key = name.lower()
        if key.isdigit():
            index = int(key)
            return self.match[index] if index < len(self.match) else ""
        if key.startswith("global."):
            return self.shared.get(key[7:], "")
        if key in self.global_names:
            return self.shared.get(key, "")
        return self.local.get(key, "")

    def set(self, name: str, value: str) -> None:
        key = name.lower()
        value = value[:MAX_VALUE_SIZE]
        if key.startswith("global."):
            self.shared[key[7:]] = value
        elif key in self.global_names:
            self.shared[key] = value
        elif key in self.local or len(self.local) < MAX_VARIABLES:
            self.local[key] = value

    def expand(self, text: str) -> str:
        if "${" not in text:
            return text
        return _REFERENCE.sub(lambda m: self.get(m.group(1)), text)


def apply_modifiers(value: str, modifiers: list[str]) -> str:
    """`set` modifiers in RFC 5229 4.1 precedence: :lower/:upper, :lowerfirst/
    :upperfirst, :quotewildcard, :length (highest first applied last)."""
    present = set(modifiers)
    if ":lower" in present:
        value = value.lower()
    if ":upper" in present:
        value = value.upper()
    if ":lowerfirst" in present and value:
        value = value[0].lower() + value[1:]
    if ":upperfirst" in present and value:
        value = value[0].upper() + value[1:]
    if ":quotewildcard" in present:
        value = _WILDCARDS.sub(r"\\\1", value)
    if ":quoteregex" in present:
        value = re.escape(value)
    if ":length" in present:
        value = str(len(value))
    return value
