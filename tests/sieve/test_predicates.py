"""The compiled tests (`_predicates`) answer what the tree walker answers.

Each case compiles one script twice over: as `compile_script` makes it (its usual tests
answered by closures) and with no closures (every test walked as before), and runs both
on the same message and envelope. Generated tests cover every test kind, match type,
comparator and address part the closures take, and some they leave to the walker.
"""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from cryptmail.sieve import (
    CompiledScript,
    DuplicateMark,
    FileInto,
    SieveEnvelope,
    SieveMessage,
    SieveResult,
    SieveSettings,
    compile_script,
    run_scripts,
)
from cryptmail.sieve._predicates import Facts, address_parts

REQUIRE = (
    'require ["fileinto", "envelope", "subaddress", "relational", "comparator-i;ascii-numeric"];\n'
)


class Context:
    def mailbox_exists(self, name: str) -> bool:
        return False

    def duplicate_seen(self, mark: DuplicateMark) -> bool:
        return False

    def include(self, location: str, name: str) -> CompiledScript | None:
        return None


def _filed(result: SieveResult) -> list[str]:
    return [a.mailbox for a in result.actions if isinstance(a, FileInto)]


def _walked(script: CompiledScript) -> CompiledScript:
    return dataclasses.replace(script, predicates={})


def _both(
    text: str, raw: bytes, envelope: SieveEnvelope, delimiters: str = "+"
) -> tuple[SieveResult, SieveResult, CompiledScript]:
    script = compile_script(text, name="t")
    config = SieveSettings(recipient_delimiter=delimiters)
    fast = run_scripts([script], SieveMessage(raw), envelope, Context(), config)
    slow = run_scripts([_walked(script)], SieveMessage(raw), envelope, Context(), config)
    return fast, slow, script


# Values with the cases that matter: ASCII case, non-ASCII case (not folded by
# i;ascii-casemap), empty, substrings, a +detail, encoded-words.
WORDS = st.sampled_from(
    ["", "a", "A", "abc", "ABC", "Bench", "bench", "ÄÖ", "äö", "x+y", "b@c", "c", "rule1.example"]
)
HEADER_NAMES = st.sampled_from(["subject", "Subject", "X-Spam", "from", "to", "cc", "missing"])
ADDRESS_NAMES = st.sampled_from(["from", "To", "cc", "sender", "subject"])
MATCH = st.sampled_from([":is", ":contains", ":matches", ':value "gt"', ""])
COMPARATOR = st.sampled_from(
    ["", ':comparator "i;octet"', ':comparator "i;ascii-casemap"', ':comparator "i;ascii-numeric"']
)
PART = st.sampled_from(["", ":all", ":localpart", ":domain", ":user", ":detail"])
ADDRESSES = st.sampled_from(
    [
        "alice@example.net",
        "Alice <ALICE+List@Example.NET>",
        "bob@rule1.example, carol+x+y@B.example",
        "undisclosed-recipients:;",
        "no-at-sign",
        "",
    ]
)


def _strings(values: list[str]) -> str:
    return (
        "["
        + ", ".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
        + "]"
    )


@st.composite
def sieve_tests(draw: st.DrawFn, words: st.SearchStrategy[str], size: int, depth: int = 0) -> str:
    kinds = ["header", "address", "envelope", "exists", "size", "true", "false"]
    if depth < 2:
        kinds += ["anyof", "allof", "not"]
    kind = draw(st.sampled_from(kinds))
    if kind in ("anyof", "allof"):
        parts = draw(st.lists(sieve_tests(words, size, depth + 1), min_size=1, max_size=3))
        return f"{kind} ({', '.join(parts)})"
    if kind == "not":
        return f"not {draw(sieve_tests(words, size, depth + 1))}"
    if kind in ("true", "false"):
        return kind
    if kind == "size":
        limit = size + draw(st.integers(-1, 1))  # the edges: over and under are strict
        return f"size {draw(st.sampled_from([':over', ':under']))} {limit}"
    if kind == "exists":
        return f"exists {_strings(draw(st.lists(HEADER_NAMES, min_size=1, max_size=2)))}"
    keys = _strings(draw(st.lists(words, min_size=1, max_size=3)))
    match, comparator = draw(MATCH), draw(COMPARATOR)
    if ":value" in match:
        match = ':value "gt"'
        comparator = comparator or ':comparator "i;octet"'
    if kind == "header":
        names = _strings(draw(st.lists(HEADER_NAMES, min_size=1, max_size=2)))
        return f"header {match} {comparator} {names} {keys}"
    part = draw(PART)
    if kind == "address":
        names = _strings(draw(st.lists(ADDRESS_NAMES, min_size=1, max_size=2)))
        return f"address {part} {match} {comparator} {names} {keys}"
    names = _strings(
        draw(st.lists(st.sampled_from(["from", "to", "From", "TO"]), min_size=1, max_size=2))
    )
    return f"envelope {part} {match} {comparator} {names} {keys}"


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    subject = draw(st.sampled_from(["Bench", "ABC and abc", "=?utf-8?q?=C3=84=C3=96?=", "", "x+y"]))
    spam = draw(st.sampled_from([None, "Yes", "yes", "no"]))
    lines = [
        f"From: {draw(ADDRESSES)}",
        f"To: {draw(ADDRESSES)}",
        f"Subject: {subject}",
    ]
    if spam is not None:
        lines.append(f"X-Spam: {spam}")
    if draw(st.booleans()):
        lines.append(f"Cc: {draw(ADDRESSES)}")
    return ("\r\n".join(lines) + "\r\n\r\nbody\r\n").encode()


ENVELOPES = st.builds(
    SieveEnvelope,
    st.sampled_from(["", "alice@example.net", "R1+Tag@Rule1.Example", "local-only"]),
    st.sampled_from(["bob+tag@example.org", "BOB@example.org"]),
)


def _pieces(raw: bytes, envelope: SieveEnvelope) -> list[str]:
    """Keys that match something: the message's header values, their words and parts,
    the envelope's addresses and parts, in their case and in others."""
    head = raw.split(b"\r\n\r\n", 1)[0].decode()
    found = {envelope.sender, envelope.recipient}
    for line in head.split("\r\n"):
        value = line.partition(":")[2].strip()
        message = SieveMessage(raw)
        found.update([value, *value.replace(",", " ").split()])
        found.update(message.header(line.partition(":")[0]))
    for text in list(found):
        found.update(text.replace("<", " ").replace(">", " ").replace("@", " ").split())
    for text in list(found):
        found.update([text.upper(), text.lower(), text[1:], text[:-1]])
    return sorted(found)


@settings(max_examples=1000, deadline=None)
@given(st.data(), messages(), ENVELOPES, st.sampled_from(["+", "", "+-"]))
def test_the_closures_answer_as_the_tree_walker(
    data: st.DataObject, raw: bytes, envelope: SieveEnvelope, delimiters: str
) -> None:
    words = st.one_of(WORDS, st.sampled_from(_pieces(raw, envelope)))
    test = data.draw(sieve_tests(words, len(raw)))
    text = f'{REQUIRE}if {test} {{ fileinto "Yes"; stop; }}\nfileinto "No";\n'
    fast, slow, _script = _both(text, raw, envelope, delimiters)
    assert fast == slow


def test_the_bench_rules_are_all_compiled_and_agree() -> None:
    rule = (
        'if anyof (header :contains "subject" "bench-rule-{n}", '
        'address :domain :is "from" "rule{n}.example", envelope :localpart :is "from" "r{n}") '
        '{{ fileinto "Archive"; stop; }}\n'
    )
    text = 'require ["fileinto", "envelope"];\n' + "".join(rule.format(n=n) for n in range(20))
    script = compile_script(text, name="rules")
    # 20 ifs (by their own id), their 20 anyof tests and the 60 tests in those.
    assert len(script.predicates) == 100
    raw = b"From: x@rule7.example\r\nSubject: hello\r\n\r\nbody\r\n"
    for envelope in (SieveEnvelope("a@b.c", "d@e.f"), SieveEnvelope("r3@b.c", "d@e.f")):
        fast, slow, _script = _both(text, raw, envelope)
        assert fast == slow
    fast, _slow, _script = _both(text, raw, SieveEnvelope("a@b.c", "d@e.f"))
    assert _filed(fast) == ["Archive"]


def test_what_the_closures_leave_to_the_walker() -> None:
    text = (
        'require ["variables", "fileinto"];\n'
        'set "h" "subject";\n'
        'if header :is "${h}" "hi" { fileinto "A"; }\n'
    )
    # A script with variables has no closures: its names and keys change while it runs.
    assert compile_script(text, name="v").predicates == {}
    text = (
        'require ["fileinto", "regex", "relational", "comparator-i;ascii-numeric"];\n'
        'if header :matches "subject" "h*" { fileinto "A"; }\n'
        'if header :regex "subject" "^h" { fileinto "B"; }\n'
        'if header :count "gt" :comparator "i;ascii-numeric" "subject" "0" { fileinto "C"; }\n'
        'if address :is "subject" "x" { fileinto "D"; }\n'
        'if anyof (true, header :matches "subject" "*") { fileinto "E"; }\n'
    )
    script = compile_script(text, name="m")
    # Only the `true` inside the last anyof has a closure; the anyof does not.
    assert [type(p).__name__ for p in script.predicates.values()] == ["function"]
    raw = b"Subject: hi\r\n\r\n"
    fast, slow, _script = _both(text, raw, SieveEnvelope("a@b.c", "d@e.f"))
    assert fast == slow
    assert fast.errors  # the address test of Subject is a run-time error in both


def test_a_header_is_folded_once_for_all_the_rules() -> None:
    text = "".join(f'if header :contains "subject" "r{n}" {{ discard; }}\n' for n in range(5))
    script = compile_script(text, name="t")
    message = SieveMessage(b"Subject: ABC\r\n\r\n")
    run_scripts([script], message, SieveEnvelope("a@b.c", "d@e.f"), Context())
    assert list(message.memo.values()) == [["abc"]]


def test_address_parts() -> None:
    addresses = ["Ann+List+x@Example.ORG", "local", ""]
    assert address_parts(":all", addresses, "+") == addresses
    assert address_parts(":localpart", addresses, "+") == ["Ann+List+x", "local", ""]
    assert address_parts(":domain", addresses, "+") == ["Example.ORG", "", ""]
    assert address_parts(":user", addresses, "+") == ["Ann", "local", ""]
    assert address_parts(":detail", addresses, "+") == ["List+x"]
    assert address_parts(":detail", addresses, "") == []


EDGES = [
    # i;ascii-casemap folds ASCII only: "ÄÖ" is not "äö" (RFC 4790 9.2).
    ('header :is "subject" "ÄÖ"', "=?utf-8?q?=C3=84=C3=96?=", True),
    ('header :is "subject" "äö"', "=?utf-8?q?=C3=84=C3=96?=", False),
    ('header :contains "subject" "Ö"', "=?utf-8?q?=C3=84=C3=96?=", True),
    ('header :is :comparator "i;octet" "subject" "abc"', "ABC", False),
    ('header :contains :comparator "i;octet" "subject" "B"', "ABC", True),
    ('header :is "subject" ["x", "ABC"]', "abc", True),
    ('header :contains "subject" ""', "", True),
    ('header :is "missing" ""', "abc", False),
]


def test_edges_of_folding_and_keys() -> None:
    envelope = SieveEnvelope("a@b.c", "d@e.f")
    for test, subject, expected in EDGES:
        text = f'{REQUIRE}if {test} {{ fileinto "Yes"; stop; }}\nfileinto "No";\n'
        raw = f"Subject: {subject}\r\n\r\n".encode()
        fast, slow, script = _both(text, raw, envelope)
        assert script.predicates, test
        assert fast == slow, test
        assert _filed(fast) == ["Yes" if expected else "No"], test


def test_one_message_under_other_envelopes_and_delimiters() -> None:
    # The memo is the message's: what depends on the envelope or the delimiters is kept
    # apart for each, as a message read for several recipients needs.
    text = (
        f"{REQUIRE}"
        'if address :detail "to" "list" { fileinto "Detail"; }\n'
        'if envelope :localpart "to" "bob" { fileinto "Bob"; }\n'
    )
    script = compile_script(text, name="t")
    message = SieveMessage(b"To: ann-list@example.org\r\n\r\n")
    runs = [
        (SieveEnvelope("a@b.c", "bob@example.org"), "-", ["Detail", "Bob"]),
        (SieveEnvelope("a@b.c", "carol@example.org"), "-", ["Detail"]),
        (SieveEnvelope("a@b.c", "carol@example.org"), "+", []),
    ]
    for envelope, delimiters, filed in runs:
        config = SieveSettings(recipient_delimiter=delimiters)
        fast = run_scripts([script], message, envelope, Context(), config)
        assert _filed(fast) == filed


class CountedMessage(SieveMessage):
    """A message that notes which fields the tests read."""

    def __init__(self, raw: bytes) -> None:
        super().__init__(raw)
        self.asked: list[tuple[str, str]] = []

    def header(self, name: str) -> list[str]:
        self.asked.append(("header", name))
        return super().header(name)

    def addresses(self, name: str) -> list[str]:
        self.asked.append(("addresses", name))
        return super().addresses(name)


def test_each_field_is_read_once_for_all_the_rules_whatever_the_case_of_its_name() -> None:
    rule = (
        'if anyof (header :contains "{h}" "r{n}", address :domain :is "{a}" "d{n}", '
        'envelope :localpart :is "{e}" "l{n}") {{ fileinto "R{n}"; }}\n'
    )
    spellings = [
        ("Subject", "FROM", "from"),
        ("subject", "From", "FROM"),
        ("SUBJECT", "from", "From"),
    ]
    text = REQUIRE + "".join(
        rule.format(n=n, h=h, a=a, e=e) for n in range(9) for h, a, e in [spellings[n % 3]]
    )
    text += 'if header :is "subject" "ABC R7" { fileinto "Yes"; }\n'
    script = compile_script(text, name="t")
    message = CountedMessage(b"From: Ann <ann@D4.example>\r\nSubject: ABC r7\r\n\r\n")
    envelope = SieveEnvelope("L2@b.example", "d@e.example")
    result = run_scripts([script], message, envelope, Context())
    assert message.asked == [("header", "subject"), ("addresses", "from")]
    assert sorted(message.memo.values()) == [["abc r7"], ["d4.example"]]
    assert _filed(result) == ["R2", "R7", "Yes"]  # R4 wants d4, not d4.example
    slow = run_scripts([_walked(script)], SieveMessage(message.raw), envelope, Context())
    assert result == slow


def test_the_envelope_is_read_once_per_run() -> None:
    text = REQUIRE + "".join(
        f'if envelope :user :is "from" "u{n}" {{ fileinto "U{n}"; }}\n' for n in range(5)
    )
    script = compile_script(text, name="t")
    facts = Facts(SieveMessage(b"\r\n"), SieveEnvelope("U3+x@b.example", "d@e.example"), "+")
    ifs = [node for node in script.commands if node.name == "if"]
    answers = [script.predicates[id(node)](facts) for node in ifs]
    assert answers == [False, False, False, True, False]
    # One value list for all five, kept with the run: it depends on the delimiters.
    assert list(facts.own.values()) == [["u3"]] and facts.shared == {}
