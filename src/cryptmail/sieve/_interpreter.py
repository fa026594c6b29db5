"""Run compiled scripts against one message: (scripts, message, envelope) -> actions.

Pure and synchronous: what it must ask the world (does a mailbox exist, was this id
seen, the text of an included script) goes through `SieveContext`, which delivery
answers. The sequence before -> user -> after follows Pigeonhole's multiscript rule:
the next script runs only while the implicit keep stands; a runtime error in a script
ends the run with what earlier scripts asked plus the implicit keep (never a loss).
"""

from __future__ import annotations

import email.utils
import functools
from collections.abc import Sequence
from typing import Protocol

from cryptmail.errors import SieveError, SieveRuntimeError
from cryptmail.sieve._actions import (
    Action,
    DuplicateMark,
    FileInto,
    Keep,
    Redirect,
    Reject,
    SieveResult,
    Vacation,
)
from cryptmail.sieve._match import Matcher, ascii_lower
from cryptmail.sieve._message import ADDRESS_HEADERS, SieveEnvelope, SieveMessage
from cryptmail.sieve._predicates import Facts, address_parts
from cryptmail.sieve._settings import SieveSettings
from cryptmail.sieve._tree import CompiledScript, Node
from cryptmail.sieve._vacation import strip_detail, vacation_reply
from cryptmail.sieve._variables import Scope, apply_modifiers

SYSTEM_FLAGS = {f.lower(): f for f in ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")}
MAX_INCLUDE_DEPTH = 10  # Pigeonhole's sieve_include_max_nesting_depth
MAX_INCLUDES = 255  # Pigeonhole's sieve_include_max_includes


class SieveContext(Protocol):
    """What the interpreter asks delivery (each answer may do I/O; run it in a thread)."""

    def mailbox_exists(self, name: str) -> bool: ...

    def duplicate_seen(self, mark: DuplicateMark) -> bool: ...

    def include(self, location: str, name: str) -> CompiledScript | None: ...


@functools.lru_cache(maxsize=4096)
def _folded_keys(keys: tuple[str, ...]) -> tuple[frozenset[str], tuple[str, ...]]:
    """A test's keys under i;ascii-casemap, as a set (:is) and in order (:contains):
    folded once per key list, not once per value and key at every delivery."""
    folded = tuple(ascii_lower(k) for k in keys)
    return frozenset(folded), folded


@functools.lru_cache(maxsize=64)
def _matcher(comparator: str, match_type: str, relation: str) -> Matcher:
    return Matcher(comparator, match_type, relation)


class _Stop(Exception):
    """`stop`: no more commands in any script."""


class _Return(Exception):
    """`return`: back to the script that included this one."""


def normalize_flags(words: Sequence[str]) -> list[str]:
    """Split flag strings on spaces, keep one of each (case-insensitive), spell system
    flags as IMAP does, drop system flags that do not exist (\\Recent is the server's)."""
    out: dict[str, str] = {}
    for text in words:
        for word in text.split():
            lowered = word.lower()
            if word.startswith("\\"):
                if lowered not in SYSTEM_FLAGS:
                    continue
                word = SYSTEM_FLAGS[lowered]
            out.setdefault(lowered, word)
    return list(out.values())


class _Run:
    """The state of one top-level script and everything it includes."""

    def __init__(
        self,
        script: CompiledScript,
        message: SieveMessage,
        envelope: SieveEnvelope,
        context: SieveContext,
        settings: SieveSettings,
        earlier: list[Action],
        facts: Facts,
    ) -> None:
        self.script = script
        self.message = message
        self.envelope = envelope
        self.context = context
        self.settings = settings
        self.facts = facts
        self.earlier = earlier
        self.actions: list[Action] = []
        self.duplicates: list[DuplicateMark] = []
        self.implicit_keep = True
        self.flags: list[str] = []
        self.shared: dict[str, str] = {}
        self.included: set[tuple[str, str]] = set()
        self.include_count = 0
        self.line = 0
        self.current = script

    # -- errors and strings -------------------------------------------------------

    def fail(self, reason: str) -> SieveRuntimeError:
        return SieveRuntimeError(self.current.name, self.line, reason)

    def text(self, scope: Scope, script: CompiledScript, value: str) -> str:
        return scope.expand(value) if "variables" in script.extensions else value

    def texts(self, scope: Scope, script: CompiledScript, values: Sequence[str]) -> list[str]:
        if "variables" not in script.extensions:
            return list(values)
        return [scope.expand(v) for v in values]

    # -- control ------------------------------------------------------------------

    def run_script(self, script: CompiledScript, scope: Scope, depth: int) -> None:
        previous = self.current
        self.current = script
        try:
            self.block(script, script.commands, scope, depth)
        except _Return:
            pass
        finally:
            self.current = previous

    def block(
        self, script: CompiledScript, nodes: Sequence[Node], scope: Scope, depth: int
    ) -> None:
        taken = True
        predicates = script.predicates
        facts = self.facts
        for node in nodes:
            self.line = node.line
            name = node.name
            if name == "if":
                # The if's own id keys its test's closure, when the test has one.
                compiled = predicates.get(id(node))
                if compiled is not None:
                    taken = compiled(facts)
                else:
                    taken = self.test(script, node.test(), scope)
                if taken:
                    self.block(script, node.block, scope, depth)
            elif name == "elsif":
                if not taken:
                    compiled = predicates.get(id(node))
                    if compiled is not None:
                        taken = compiled(facts)
                    else:
                        taken = self.test(script, node.test(), scope)
                    if taken:
                        self.block(script, node.block, scope, depth)
            elif name == "else":
                if not taken:
                    self.block(script, node.block, scope, depth)
                taken = True
            else:
                self.command(script, node, scope, depth)

    def command(self, script: CompiledScript, node: Node, scope: Scope, depth: int) -> None:
        name = node.name
        if name == "require":
            return
        if name == "stop":
            raise _Stop
        if name == "return":
            raise _Return
        if name == "keep":
            self.store(Keep(self.flags_of(script, node, scope)))
            self.implicit_keep = False
        elif name == "fileinto":
            mailbox = self.text(scope, script, node.string("mailbox"))
            flags = self.flags_of(script, node, scope)
            create = "create" in node.arguments
            if mailbox.upper() == "INBOX":
                self.store(Keep(flags))
            else:
                self.store(FileInto(mailbox, flags, create))
            if "copy" not in node.arguments:
                self.implicit_keep = False
        elif name == "redirect":
            self.redirect(script, node, scope)
        elif name == "discard":
            self.implicit_keep = False
        elif name in ("reject", "ereject"):
            reason = self.text(scope, script, node.string("text"))
            self.add(Reject(reason, extended=name == "ereject"))
            self.implicit_keep = False
        elif name == "vacation":
            self.vacation(script, node, scope)
        elif name == "set":
            modifiers = [
                v
                for k, v in node.arguments.items()
                if isinstance(v, str)
                and k in ("case", "first-case", "quotewildcard", "encoding", "length")
            ]
            value = apply_modifiers(self.text(scope, script, node.string("value")), modifiers)
            scope.set(node.string("name"), value)
        elif name in ("setflag", "addflag", "removeflag"):
            self.flag_action(script, node, scope)
        elif name == "include":
            self.include(script, node, scope, depth)
        elif name == "global":
            for variable in node.strings("names"):
                scope.global_names.add(variable.lower())
        else:
            raise self.fail(f"the command {name} is not supported")

    # -- actions ------------------------------------------------------------------

    def add(self, action: Action) -> None:
        if len(self.earlier) + len(self.actions) >= self.settings.max_actions:
            raise self.fail(f"more than {self.settings.max_actions} actions (sieve.max_actions)")
        self.actions.append(action)

    def store(self, action: Keep | FileInto) -> None:
        target = "INBOX" if isinstance(action, Keep) else action.mailbox
        for index, existing in enumerate(self.actions):
            same = (
                isinstance(existing, Keep)
                and target == "INBOX"
                or isinstance(existing, FileInto)
                and existing.mailbox == target
            )
            if same:  # RFC 5228 4.2: one copy per mailbox; the later flags win
                self.actions[index] = action
                return
        self.add(action)

    def flags_of(self, script: CompiledScript, node: Node, scope: Scope) -> frozenset[str]:
        # Without :flags the current flags apply even in a script that does not require
        # imap4flags: an earlier script in the sequence may have set them (Pigeonhole).
        if "flags" in node.arguments:
            given = node.tagged("flags")
            words = [given] if isinstance(given, str) else list(given or ())  # type: ignore[arg-type]
            return frozenset(normalize_flags(self.texts(scope, script, [str(w) for w in words])))
        return frozenset(self.flags)

    def flag_action(self, script: CompiledScript, node: Node, scope: Scope) -> None:
        variable = node.string("variable-name") if "variable-name" in node.arguments else None
        given = normalize_flags(self.texts(scope, script, node.strings("list-of-flags")))
        current = normalize_flags([scope.get(variable)]) if variable else list(self.flags)
        if node.name == "setflag":
            result = given
        elif node.name == "addflag":
            result = normalize_flags([*current, *given])
        else:
            drop = {f.lower() for f in given}
            result = [f for f in current if f.lower() not in drop]
        if variable:
            scope.set(variable, " ".join(result))
        else:
            self.flags = result

    def redirect(self, script: CompiledScript, node: Node, scope: Scope) -> None:
        address = self.text(scope, script, node.string("address")).strip()
        parsed = email.utils.parseaddr(address)[1]
        if not parsed or "@" not in parsed or parsed != address.strip("<>"):
            raise self.fail("redirect needs one valid address")
        delimiters = self.settings.recipient_delimiter
        own = {
            ascii_lower(strip_detail(a, delimiters))
            for a in (self.envelope.recipient, *self.settings.own_addresses)
        }
        if ascii_lower(strip_detail(parsed, delimiters)) in own:
            return  # to ourselves: a loop, not a delivery; the implicit keep stays
        redirects = [a for a in (*self.earlier, *self.actions) if isinstance(a, Redirect)]
        if any(ascii_lower(r.address) == ascii_lower(parsed) for r in redirects):
            if "copy" not in node.arguments:
                self.implicit_keep = False
            return
        if len(redirects) >= self.settings.max_redirects:
            raise self.fail(f"more than {self.settings.max_redirects} redirects")
        self.add(Redirect(parsed))
        if "copy" not in node.arguments:
            self.implicit_keep = False

    def vacation(self, script: CompiledScript, node: Node, scope: Scope) -> None:
        if any(isinstance(a, Vacation) for a in (*self.earlier, *self.actions)):
            raise self.fail("vacation may be used once")
        days = node.tagged("days")
        addresses = node.tagged("addresses")
        own = list(self.settings.own_addresses)
        if isinstance(addresses, str):
            own.append(self.text(scope, script, addresses))
        elif isinstance(addresses, tuple):
            own += self.texts(scope, script, [str(a) for a in addresses])

        def optional(name: str) -> str | None:
            value = node.tagged(name)
            return self.text(scope, script, value) if isinstance(value, str) else None

        reply = vacation_reply(
            self.message,
            self.envelope,
            own=own,
            reason=self.text(scope, script, node.string("reason")),
            subject=optional("subject"),
            from_address=optional("from"),
            days=days if isinstance(days, int) else None,
            handle=optional("handle"),
            mime="mime" in node.arguments,
            delimiters=self.settings.recipient_delimiter,
        )
        if reply is not None:
            self.add(reply)

    def include(self, script: CompiledScript, node: Node, scope: Scope, depth: int) -> None:
        location = node.string("location", ":personal").lstrip(":")
        name = self.text(scope, script, node.string("script"))
        key = (location, name)
        if "once" in node.arguments and key in self.included:
            return
        if depth + 1 > MAX_INCLUDE_DEPTH:
            raise self.fail(f"includes nested deeper than {MAX_INCLUDE_DEPTH}")
        self.include_count += 1
        if self.include_count > MAX_INCLUDES:
            raise self.fail(f"more than {MAX_INCLUDES} includes")
        if location == "personal" and name == self.script.name:
            raise self.fail("a script may not include itself")
        included = self.context.include(location, name)
        if included is None:
            if "optional" in node.arguments:
                return
            raise self.fail(f"the {location} script to include does not exist")
        self.included.add(key)
        self.run_script(included, Scope(self.shared), depth + 1)

    # -- tests --------------------------------------------------------------------

    def test(self, script: CompiledScript, node: Node, scope: Scope) -> bool:
        compiled = script.predicates.get(id(node))
        if compiled is not None:  # the usual test, answered by its closure (_predicates)
            return compiled(self.facts)
        name = node.name
        if name == "true":
            return True
        if name == "false":
            return False
        if name == "not":
            return not self.test(script, node.test(), scope)
        if name == "anyof":
            return any(self.test(script, t, scope) for t in node.tests())
        if name == "allof":
            return all(self.test(script, t, scope) for t in node.tests())
        if name == "exists":
            names = self.texts(scope, script, node.strings("header-names"))
            return all(self.message.has_header(n) for n in names)
        if name == "size":
            limit = node.arguments.get("limit")
            assert isinstance(limit, int)  # noqa: S101 - the grammar takes a number
            over = node.arguments.get("comparator") == ":over"
            return self.message.size > limit if over else self.message.size < limit
        if name == "header":
            names = self.texts(scope, script, node.strings("header-names"))
            values = [v for n in names for v in self.message.header(n)]
            return self.matches(script, node, scope, values)
        if name == "address":
            names = self.texts(scope, script, node.strings("header-list"))
            for header in names:
                if ascii_lower(header) not in ADDRESS_HEADERS:
                    raise self.fail("address tests only headers that hold addresses")
            found = [a for n in names for a in self.message.addresses(n)]
            return self.matches(script, node, scope, self.parts(node, found))
        if name == "envelope":
            found = []
            for part in self.texts(scope, script, node.strings("header-list")):
                part = ascii_lower(part)
                if part == "from":
                    found.append(self.envelope.sender)
                elif part == "to":
                    found.append(self.envelope.recipient)
            return self.matches(script, node, scope, self.parts(node, found))
        if name == "string":
            values = self.texts(scope, script, node.strings("source"))
            if node.arguments.get("match-type") == ":count":
                values = [v for v in values if v]
            return self.matches(script, node, scope, values)
        if name == "body":
            transform = node.string("body-transform", ":text")
            types = node.tagged("body-transform")
            wanted = [types] if isinstance(types, str) else list(types or ())  # type: ignore[arg-type]
            wanted = self.texts(scope, script, [str(t) for t in wanted])
            values = self.message.body(transform, tuple(wanted))
            return self.matches(script, node, scope, values, body=True)
        if name == "hasflag":
            if "variable-list" in node.arguments:
                variables = self.texts(scope, script, node.strings("variable-list"))
                have = normalize_flags([scope.get(v) for v in variables])
            else:
                have = list(self.flags)
            return self.matches(script, node, scope, have, flags=True)
        if name == "mailboxexists":
            names = self.texts(scope, script, node.strings("mailbox-names"))
            return all(n.upper() == "INBOX" or self.context.mailbox_exists(n) for n in names)
        if name == "duplicate":
            return self.duplicate(script, node, scope)
        raise self.fail(f"the test {name} is not supported")

    def parts(self, node: Node, addresses: list[str]) -> list[str]:
        part = node.string("address-part", ":all")
        return address_parts(part, addresses, self.settings.recipient_delimiter)

    def matches(
        self,
        script: CompiledScript,
        node: Node,
        scope: Scope,
        values: list[str],
        *,
        body: bool = False,
        flags: bool = False,
    ) -> bool:
        match_type = node.string("match-type", ":is")
        relation = node.tagged("match-type")
        comparator = node.tagged("comparator")
        if (
            match_type in (":is", ":contains")
            and comparator in (None, "i;ascii-casemap")
            and not flags
            and "variables" not in script.extensions
        ):
            # The usual test (fixed keys, any case): what Matcher.match answers, without
            # a call per value and key; neither match type sets match variables.
            as_set, folded = _folded_keys(node.strings("key-list"))
            if match_type == ":is":
                return any(ascii_lower(value) in as_set for value in values)
            lowered = [ascii_lower(value) for value in values]
            return any(key in value for value in lowered for key in folded)
        matcher = _matcher(
            comparator if isinstance(comparator, str) else "i;ascii-casemap",
            match_type,
            relation if isinstance(relation, str) else "eq",
        )
        keys = self.texts(scope, script, node.strings("key-list" if not flags else "list-of-flags"))
        if flags:
            keys = [k for key in keys for k in key.split()]
        if match_type == ":count":
            return any(matcher.count(len(values), key) for key in keys)
        try:
            for value in values:
                for key in keys:
                    ok, match_variables = matcher.match(value, key)
                    if ok:
                        if match_variables is not None and "variables" in script.extensions:
                            scope.match = match_variables
                        return True
        except Exception as exc:  # a regex built from variables at run time
            raise self.fail(f"the test cannot be evaluated ({type(exc).__name__})") from None
        return False

    def duplicate(self, script: CompiledScript, node: Node, scope: Scope) -> bool:
        source = node.string("source")
        given = node.tagged("source")
        if source == ":uniqueid" and isinstance(given, str):
            unique = self.text(scope, script, given)
        else:
            header = given if source == ":header" and isinstance(given, str) else "message-id"
            values = self.message.raw_header(self.text(scope, script, header))
            if not values:
                return False  # RFC 7352 3.1: no id, no duplicate
            unique = values[0].strip()
        seconds = node.tagged("seconds")
        handle = node.tagged("handle")
        mark = DuplicateMark(
            handle=self.text(scope, script, handle) if isinstance(handle, str) else "",
            unique_id=unique,
            seconds=min(seconds if isinstance(seconds, int) else 12 * 3600, 2 * 86_400),
            last="last" in node.arguments,
        )
        seen = self.context.duplicate_seen(mark)
        self.duplicates.append(mark)
        return seen


def run_scripts(
    scripts: Sequence[CompiledScript],
    message: SieveMessage,
    envelope: SieveEnvelope,
    context: SieveContext,
    settings: SieveSettings | None = None,
) -> SieveResult:
    """Run `scripts` in order (before, user, after) and return what they ask.

    A script that fails at run time ends the sequence: its own actions are dropped, what
    earlier scripts asked stays, and the implicit keep is taken (RFC 5228 2.10.6)."""
    settings = settings or SieveSettings()
    actions: list[Action] = []
    duplicates: list[DuplicateMark] = []
    errors: list[str] = []
    keep = True
    flags: frozenset[str] = frozenset()
    # One for the whole sequence: what a script's tests read, the next one finds.
    facts = Facts(message, envelope, settings.recipient_delimiter)
    for script in scripts:
        run = _Run(script, message, envelope, context, settings, actions, facts)
        run.flags = list(flags)  # as Pigeonhole: the flags variable lives on in the next
        try:
            run.run_script(script, Scope(run.shared), 0)
        except _Stop:
            pass
        except SieveError as exc:
            line = exc.line if isinstance(exc, SieveRuntimeError) else run.line
            errors.append(f"{script.name}:{line}")
            keep = True
            flags = frozenset()
            break
        except RecursionError:
            errors.append(f"{script.name}:{run.line}")
            keep = True
            flags = frozenset()
            break
        if any(isinstance(a, Reject) for a in run.actions) and any(
            isinstance(a, Keep | FileInto | Redirect | Vacation) for a in (*actions, *run.actions)
        ):
            errors.append(f"{script.name}:{run.line}")  # RFC 5429 2.1: reject stands alone
            keep = True
            flags = frozenset()
            break
        actions.extend(run.actions)
        duplicates.extend(run.duplicates)
        keep = run.implicit_keep
        flags = frozenset(run.flags)
        if not keep:
            break
    if keep:
        stored = [a for a in actions if isinstance(a, Keep)]
        if not stored:
            actions.append(Keep(flags, implicit=True))
    return SieveResult(tuple(actions), tuple(duplicates), tuple(errors))
