"""Compile Sieve scripts (RFC 5228 and extensions) with sievelib into frozen `Node` trees.

sievelib parses the grammar and checks each command's arguments and `require`d
extensions. It lacks a few commands and argument values we support (ereject, include,
return, global, duplicate, mailboxexists, the `string` test, `:user`/`:detail`,
i;ascii-numeric), so this module adds them through sievelib's own `add_commands`, and
replaces every command class with a subclass that records the line it starts on (sievelib
keeps no positions, and a script's owner needs a line to fix). Then the tree is checked
(supported extensions, limits, regexes) and converted: strings unquoted, `text:` blocks
unstuffed, `${hex:..}`/`${unicode:..}` decoded when encoded-character is required.
"""

from __future__ import annotations

import bisect
import re
import threading
from typing import Any

from sievelib import commands as sc
from sievelib.parser import Parser

from cryptmail.errors import SieveLimitExceeded, SieveSyntaxError
from cryptmail.sieve._predicates import compile_predicates
from cryptmail.sieve._tree import CompiledScript, Node, Value

# What a script may `require`. The managesieve helper announces this list as its SIEVE
# capability; keep it to what the interpreter runs.
SUPPORTED_EXTENSIONS: tuple[str, ...] = (
    "body",
    "comparator-i;ascii-numeric",
    "copy",
    "duplicate",
    "encoded-character",
    "envelope",
    "ereject",
    "fileinto",
    "imap4flags",
    "include",
    "mailbox",
    "regex",
    "reject",
    "relational",
    "subaddress",
    "vacation",
    "variables",
)

# Defaults of the [sieve] limits (config.py documents them). A script above
# DEFAULT_MAX_SCRIPT_SIZE bytes or with more than DEFAULT_MAX_COMMANDS commands and tests
# is refused before it is stored; MAX_NESTING follows Pigeonhole's block nesting limit.
DEFAULT_MAX_SCRIPT_SIZE = 256 * 1024
DEFAULT_MAX_COMMANDS = 10_000
MAX_NESTING = 32

_COMPARATORS = ['"i;octet"', '"i;ascii-casemap"', '"i;ascii-numeric"']
_COMPARATOR: dict[str, Any] = {
    **sc.comparator,
    "extra_arg": {"type": "string", "values": _COMPARATORS},
}
_ADDRESS_PART: dict[str, Any] = {
    **sc.address_part,
    "extension_values": {":user": "subaddress", ":detail": "subaddress"},
}
_MATCH_TYPE: dict[str, Any] = dict(sc.match_type)


def _string_list(name: str) -> dict[str, Any]:
    return {"name": name, "type": ["string", "stringlist"], "required": True}


def _tag(name: str, *, extra: str | list[str] | None = None) -> dict[str, Any]:
    arg: dict[str, Any] = {"name": name, "type": ["tag"], "values": [f":{name}"]}
    if extra is not None:
        arg["extra_arg"] = {"type": extra}
    return arg


class AddressCommand(sc.TestCommand):
    args_definition = [
        _COMPARATOR,
        _ADDRESS_PART,
        _MATCH_TYPE,
        _string_list("header-list"),
        _string_list("key-list"),
    ]


class EnvelopeCommand(AddressCommand):
    extension = "envelope"


class HeaderCommand(sc.TestCommand):
    args_definition = [
        _COMPARATOR,
        _MATCH_TYPE,
        _string_list("header-names"),
        _string_list("key-list"),
    ]


class StringCommand(sc.TestCommand):
    extension = "variables"
    args_definition = [_COMPARATOR, _MATCH_TYPE, _string_list("source"), _string_list("key-list")]


class BodyCommand(sc.TestCommand):
    extension = "body"
    args_definition = [
        _COMPARATOR,
        _MATCH_TYPE,
        {
            "name": "body-transform",
            "values": [":raw", ":content", ":text"],
            "extra_arg": {"type": "stringlist", "valid_for": [":content"]},
            "type": ["tag"],
            "required": False,
        },
        _string_list("key-list"),
    ]


class HasflagCommand(sc.HasflagCommand):
    args_definition = [
        _COMPARATOR,
        _MATCH_TYPE,
        {"name": "variable-list", "type": ["string", "stringlist"], "required": False},
        _string_list("list-of-flags"),
    ]


class ErejectCommand(sc.ActionCommand):
    extension = "ereject"
    args_definition = [{"name": "text", "type": ["string"], "required": True}]


class IncludeCommand(sc.ActionCommand):
    extension = "include"
    args_definition = [
        {"name": "location", "type": ["tag"], "values": [":personal", ":global"]},
        _tag("once"),
        _tag("optional"),
        {"name": "script", "type": ["string"], "required": True},
    ]


class ReturnCommand(sc.ActionCommand):
    extension = "include"
    args_definition: list[dict[str, Any]] = []


class GlobalCommand(sc.ActionCommand):
    extension = "include"
    args_definition = [_string_list("names")]


class DuplicateCommand(sc.TestCommand):
    extension = "duplicate"
    args_definition = [
        _tag("handle", extra="string"),
        {
            "name": "source",
            "type": ["tag"],
            "values": [":header", ":uniqueid"],
            "extra_arg": {"type": "string"},
        },
        _tag("seconds", extra="number"),
        _tag("last"),
    ]
    # Every argument is optional, and sievelib takes a test with all its required
    # arguments as finished at once, so `duplicate :seconds 60` would end at the tag.
    # A test with non-deterministic arguments stays open until "{", "," or ")".
    non_deterministic_args = True

    def __init__(self, parent: sc.Command | None = None) -> None:
        super().__init__(parent)
        self.closed = False

    def iscomplete(self, atype: str | None = None, avalue: str | None = None) -> bool:
        return self.closed and bool(super().iscomplete(atype, avalue))

    def reassign_arguments(self) -> None:
        self.closed = True


class MailboxexistsCommand(sc.TestCommand):
    extension = "mailbox"
    args_definition = [_string_list("mailbox-names")]


class _ParseState(threading.local):
    """The parse in progress on this thread, so command objects can learn their line."""

    def __init__(self) -> None:
        self.parser: Parser | None = None
        self.newlines: list[int] = []


_state = _ParseState()


def _current_line() -> int:
    parser = _state.parser
    if parser is None:
        return 0
    return bisect.bisect_right(_state.newlines, parser.lexer.pos) + 1


def _with_line(cls: type[sc.Command]) -> type[sc.Command]:
    def __init__(self: Any, parent: sc.Command | None = None) -> None:
        cls.__init__(self, parent)
        self.lineno = _current_line()

    return type(cls.__name__, (cls,), {"__init__": __init__})


def _register() -> None:
    # sievelib looks commands up by class name in its module namespace; add_commands is
    # its documented way to add or replace them. Only this module parses Sieve here.
    ours = [
        AddressCommand,
        BodyCommand,
        DuplicateCommand,
        EnvelopeCommand,
        ErejectCommand,
        GlobalCommand,
        HasflagCommand,
        HeaderCommand,
        IncludeCommand,
        MailboxexistsCommand,
        ReturnCommand,
        StringCommand,
    ]
    names = {cls.__name__ for cls in ours}
    theirs = [
        obj
        for name, obj in vars(sc).items()
        if name.endswith("Command")
        and name not in names
        and isinstance(obj, type)
        and issubclass(obj, sc.Command)
        and "args_definition" in dir(obj)
        and not getattr(obj, "lineno_recorded", False)
    ]
    wrapped = []
    for cls in [*ours, *theirs]:
        sub = _with_line(cls)
        sub.lineno_recorded = True  # marks a class wrapped already, should we run twice
        wrapped.append(sub)
    sc.add_commands(wrapped)


_register()

_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_ENCODED = re.compile(r"\$\{(hex|unicode):([^}]*)\}", re.IGNORECASE)
_HEX_PAIRS = re.compile(r"^\s*(?:[0-9a-fA-F]{1,2}\s*)*$")
_UNICODE_HEX = re.compile(r"^\s*(?:[0-9a-fA-F]{1,6}\s*)*$")
_NUMBER = re.compile(r"^([0-9]+)([KMGkmg]?)$")
_MULTIPLIERS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_ERROR_LINE = re.compile(r"^line \d+: (parsing error: )?")


class _Converter:
    """Turns one parsed sievelib tree into Nodes, counting commands against the limit."""

    def __init__(self, name: str, max_commands: int, extensions: frozenset[str]) -> None:
        self.name = name
        self.max_commands = max_commands
        self.extensions = extensions
        self.count = 0

    def fail(self, line: int | None, reason: str) -> SieveSyntaxError:
        return SieveSyntaxError(self.name, line, reason)

    def node(self, command: sc.Command, depth: int) -> Node:
        line = int(getattr(command, "lineno", 0))
        self.count += 1
        if self.count > self.max_commands:
            raise SieveLimitExceeded(
                self.name,
                line,
                f"the script has more than {self.max_commands} commands and tests "
                "(sieve.max_commands); split it or simplify it",
            )
        if depth > MAX_NESTING:
            raise SieveLimitExceeded(
                self.name, line, f"blocks and tests are nested deeper than {MAX_NESTING} levels"
            )
        if command.name == "require" and depth > 0:
            raise self.fail(line, "require is only allowed at the top level")
        arguments: dict[str, Value] = {}
        extras: dict[str, Value] = {}
        for definition in command.args_definition:
            key = definition["name"]
            if key in command.arguments:
                arguments[key] = self.value(command.arguments[key], line, depth)
            if key in command.extra_arguments:
                extras[key] = self.value(command.extra_arguments[key], line, depth)
        block = tuple(self.node(child, depth + 1) for child in command.children)
        result = Node(command.name, line, arguments, extras, block)
        self.check(result)
        return result

    def value(self, raw: object, line: int, depth: int) -> Value:
        if isinstance(raw, sc.Command):
            return self.node(raw, depth + 1)
        if isinstance(raw, list):
            if all(isinstance(item, sc.Command) for item in raw):
                return tuple(self.node(item, depth + 1) for item in raw)
            return tuple(self.string(str(item), line) for item in raw)
        text = str(raw)
        if text.startswith(":"):
            return text.lower()
        number = _NUMBER.match(text)
        if number:
            return int(number.group(1)) * _MULTIPLIERS[number.group(2).lower()]
        return self.string(text, line)

    def string(self, token: str, line: int) -> str:
        if token.startswith('"'):
            text = _ESCAPE.sub(r"\1", token[1:-1])
        elif token[:5].lower() == "text:":
            text = _multiline(token)
        else:
            raise self.fail(line, "a string was expected")
        if "encoded-character" in self.extensions:
            text = _decode_encoded(text)
        return text

    def check(self, node: Node) -> None:
        """What sievelib does not check and Pigeonhole refuses at compile time."""
        comparator = node.tagged("comparator")
        if comparator == "i;ascii-numeric" and "comparator-i;ascii-numeric" not in self.extensions:
            raise self.fail(
                node.line,
                'the comparator "i;ascii-numeric" needs require "comparator-i;ascii-numeric"',
            )
        if node.arguments.get("match-type") == ":regex" and "variables" not in self.extensions:
            for key in node.strings("key-list"):
                try:
                    re.compile(key)
                except re.error as exc:
                    raise self.fail(node.line, f"invalid regular expression: {exc}") from None
        if node.name in ("fileinto", "redirect") and not node.string(
            "mailbox" if node.name == "fileinto" else "address"
        ):
            raise self.fail(node.line, f"{node.name} needs a non-empty argument")


def _multiline(token: str) -> str:
    # text: [comment] CRLF *(line CRLF) "." CRLF; the first line and the dot go, and a
    # leading ".." is unstuffed to "." (RFC 5228 2.4.2).
    lines = token.split("\n")[1:]
    if lines and lines[-1].rstrip("\r") == ".":
        lines = lines[:-1]
    body = [line[1:] if line.startswith("..") else line for line in lines]
    return "\n".join(body) + ("\n" if body else "")


def _decode_encoded(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        kind, digits = match.group(1).lower(), match.group(2)
        if kind == "hex" and _HEX_PAIRS.match(digits):
            raw = bytes(int(pair, 16) for pair in digits.split())
            return raw.decode("utf-8", errors="replace")
        if kind == "unicode" and _UNICODE_HEX.match(digits):
            points = [int(cp, 16) for cp in digits.split()]
            if all(cp < 0xD800 or 0xDFFF < cp <= 0x10FFFF for cp in points):
                return "".join(chr(cp) for cp in points)
        return match.group(0)  # not a valid encoding: left as written (RFC 5228 2.4.2.4)

    return _ENCODED.sub(replace, text)


def _requires(commands: list[sc.Command], name: str) -> frozenset[str]:
    found: set[str] = set()
    seen_other = False
    for command in commands:
        line = int(getattr(command, "lineno", 0))
        if command.name != "require":
            seen_other = True
            continue
        if seen_other:
            raise SieveSyntaxError(name, line, "require must come before every other command")
        raw = command.arguments["capabilities"]
        for item in raw if isinstance(raw, list) else [raw]:
            capability = _ESCAPE.sub(r"\1", str(item)[1:-1])
            if capability not in SUPPORTED_EXTENSIONS:
                raise SieveSyntaxError(
                    name,
                    line,
                    f'extension "{capability}" is not supported; supported: '
                    + " ".join(SUPPORTED_EXTENSIONS),
                )
            found.add(capability)
    return frozenset(found)


def compile_script(
    text: str,
    *,
    name: str,
    max_size: int = DEFAULT_MAX_SCRIPT_SIZE,
    max_commands: int = DEFAULT_MAX_COMMANDS,
) -> CompiledScript:
    """Parse and check one script; raise SieveSyntaxError (line and reason) if it is not
    valid, SieveLimitExceeded if it is over a limit. Pure: no I/O, safe in a thread."""
    data = text.encode("utf-8", errors="surrogateescape")
    if len(data) > max_size:
        raise SieveLimitExceeded(
            name,
            None,
            f"the script is {len(data)} bytes, more than the limit of {max_size} "
            "(sieve.max_script_size)",
        )
    if "\0" in text:
        raise SieveSyntaxError(name, None, "the script contains a NUL character")
    parser = Parser()
    _state.parser = parser
    _state.newlines = [m.start() for m in re.finditer(rb"\n", data)]
    try:
        ok = parser.parse(data)
    except (AttributeError, IndexError, KeyError, TypeError, ValueError, RecursionError):
        # sievelib trips over some malformed inputs instead of reporting them.
        raise SieveSyntaxError(name, _current_line(), "the script cannot be parsed here") from None
    finally:
        _state.parser = None
        _state.newlines = []
    if not ok:
        line = parser.error_pos[0] if getattr(parser, "error_pos", None) else None
        reason = _ERROR_LINE.sub("", str(parser.error))
        raise SieveSyntaxError(name, line, reason)
    # sievelib ends quietly in the middle of a command ("keep" without ";"); its current
    # command is a private attribute, read here because no public one says so.
    unfinished = getattr(parser, "_Parser__curcommand", None)
    if unfinished is not None:
        raise SieveSyntaxError(
            name,
            int(getattr(unfinished, "lineno", 0)) or None,
            f"the script ends inside the {unfinished.name} command (a ; or }} is missing)",
        )
    extensions = _requires(parser.result, name)
    converter = _Converter(name, max_commands, extensions)
    commands = tuple(converter.node(command, 0) for command in parser.result)
    return CompiledScript(
        name=name,
        commands=commands,
        extensions=extensions,
        size=len(data),
        predicates=compile_predicates(commands, extensions),
    )
