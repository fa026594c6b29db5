"""compile_script: sievelib parses, we decode, check and refuse with a line and a reason."""

from __future__ import annotations

import pytest

from cryptmail.errors import SieveLimitExceeded, SieveSyntaxError
from cryptmail.sieve import SUPPORTED_EXTENSIONS, Node, compile_script

ALL = "require [" + ", ".join(f'"{e}"' for e in SUPPORTED_EXTENSIONS) + "];\n"


def _first(text: str) -> Node:
    script = compile_script(ALL + text, name="t")
    return script.commands[1]


def test_the_ispmail_junk_script_compiles() -> None:
    script = compile_script(
        'require ["fileinto"];\nif header :contains "X-Spam" "Yes" { fileinto "Junk"; stop; }\n',
        name="spam",
    )
    assert script.extensions == frozenset({"fileinto"})
    rule = script.commands[1]
    assert rule.name == "if" and rule.line == 2
    assert rule.test().name == "header"
    assert rule.test().arguments["match-type"] == ":contains"
    assert rule.test().strings("header-names") == ("X-Spam",)
    assert [c.name for c in rule.block] == ["fileinto", "stop"]
    assert rule.block[0].string("mailbox") == "Junk"


def test_strings_are_unquoted_and_text_blocks_unstuffed() -> None:
    node = _first('vacation :subject "a \\"b\\" \\\\c" text:\r\nline\r\n..dot\r\n.\r\n;\n')
    assert node.tagged("subject") == 'a "b" \\c'
    assert node.string("reason") == "line\r\n.dot\r\n"


def test_encoded_character_is_decoded_only_when_required() -> None:
    node = _first('set "x" "${hex:41 42}${unicode:263a}${hex:zz}";')
    assert node.string("value") == "AB\u263a${hex:zz}"
    plain = compile_script('require "variables"; set "x" "${hex:41}";', name="t").commands[1]
    assert plain.string("value") == "${hex:41}"


def test_numbers_take_quantifiers() -> None:
    assert _first("if size :over 10K { discard; }").test().arguments["limit"] == 10240
    assert _first("if size :under 2M { discard; }").test().arguments["limit"] == 2 << 20


@pytest.mark.parametrize(
    "text",
    [
        'if address :detail "to" "tag" { keep; }',
        'if envelope :user "to" "bob" { keep; }',
        'if header :value "ge" :comparator "i;ascii-numeric" "X-Score" "5" { keep; }',
        'if header :count "gt" "received" "3" { keep; }',
        'if string :matches "${x}" "a*" { keep; }',
        "if duplicate { discard; }",
        'if duplicate :seconds 60 :header "message-id" :last { discard; }',
        'if body :text :contains "foo" { ereject "no"; }',
        'if mailboxexists "Junk" { fileinto :create :copy :flags "\\\\Seen" "Junk"; }',
        'include :global :optional "spam"; return;',
        'global "x"; set "x" "1";',
        'if hasflag :contains "\\\\Seen" { removeflag "\\\\Seen"; }',
        'redirect :copy "a@example.org";',
        'reject "no";',
        'if header :regex "subject" "^a.*b$" { addflag "\\\\Flagged"; }',
    ],
)
def test_every_supported_extension_compiles(text: str) -> None:
    compile_script(ALL + text, name="t")


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("keep", 1, "ends inside the keep command"),
        ("if true { keep; }\n\nstop", 3, "ends inside the stop"),
        ('fileinto "x";', 1, "'fileinto' not loaded"),
        ('require "date";', 1, 'extension "date" is not supported'),
        ('keep;\nrequire "fileinto";', 2, "before every other command"),
        ('if true { require "fileinto"; }', 1, "only allowed at the top level"),
        ("frobnicate;", 1, "unknown command"),
        ("if true {\n keep;\n", 3, "right_cbracket"),
        ("}", 1, "closing bracket"),
        ('require "regex"; if header :regex "s" "(" { keep; }', 1, "invalid regular expression"),
        ('if header :comparator "i;ascii-numeric" "a" "1" { keep; }', 1, "ascii-numeric"),
        ('require "fileinto";\nfileinto "";', 2, "non-empty"),
        ('if header :is :contains "a" "b" { keep; }', 1, "single match-type"),
    ],
)
def test_bad_scripts_name_the_line_and_the_problem(text: str, line: int, words: str) -> None:
    with pytest.raises(SieveSyntaxError) as caught:
        compile_script(text, name="bad")
    assert caught.value.line == line
    assert words in caught.value.reason
    assert f"line {line}" in str(caught.value) and "'bad'" in str(caught.value)


def test_a_script_over_the_size_limit_is_refused_before_parsing() -> None:
    text = "# " + "x" * (1 << 20) + "\nkeep;"
    with pytest.raises(SieveLimitExceeded, match="max_script_size"):
        compile_script(text, name="huge")


def test_ten_thousand_rules_are_refused_with_the_limit_named() -> None:
    rule = 'if header :contains "subject" "w%d" { fileinto "f%d"; }\n'
    text = 'require "fileinto";\n' + "".join(rule % (i, i) for i in range(10_000))
    with pytest.raises(SieveLimitExceeded, match="max_commands") as caught:
        compile_script(text, name="many", max_size=1 << 24)
    assert caught.value.line is not None


def test_nesting_is_bounded_without_recursing_into_the_stack() -> None:
    with pytest.raises(SieveLimitExceeded, match="nested deeper"):
        compile_script("if true {" * 100 + "keep;" + "}" * 100, name="deep")
    with pytest.raises(SieveLimitExceeded, match="nested deeper"):
        compile_script("if " + "not " * 5000 + "true { keep; }", name="deep")


def test_nul_bytes_are_refused() -> None:
    with pytest.raises(SieveSyntaxError, match="NUL"):
        compile_script("keep;\0", name="nul")


@pytest.mark.parametrize(
    "text",
    ['"', "[", "if", "if true", "if true {", "(", ")", "text:", ":is", "a[", "if anyof(", ","],
)
def test_fragments_never_escape_as_other_exceptions(text: str) -> None:
    with pytest.raises(SieveSyntaxError):
        compile_script(text, name="frag")
