"""run_scripts: the rules Pigeonhole's sieve-test cannot show (errors, limits, loops,
include, duplicate, vacation decisions); the common cases are in the Pigeonhole
differential test (tests/integration/test_sieve_pigeonhole.py)."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from cryptmail.sieve import (
    CompiledScript,
    DuplicateMark,
    FileInto,
    Keep,
    Redirect,
    Reject,
    SieveEnvelope,
    SieveMessage,
    SieveResult,
    SieveSettings,
    Vacation,
    compile_script,
    normalize_flags,
    run_scripts,
)
from cryptmail.sieve._match import Matcher

MESSAGE = (
    b"From: Alice <alice@example.net>\r\nTo: bob@example.org\r\nSubject: hi\r\n"
    b"Message-ID: <1@example.net>\r\n\r\nHello\r\n"
)
ENVELOPE = SieveEnvelope("alice@example.net", "bob+tag@example.org")


class Context:
    def __init__(self, scripts: dict[str, str] | None = None, seen: bool = False) -> None:
        self.scripts = scripts or {}
        self.seen = seen
        self.asked: list[DuplicateMark] = []

    def mailbox_exists(self, name: str) -> bool:
        return name == "Junk"

    def duplicate_seen(self, mark: DuplicateMark) -> bool:
        self.asked.append(mark)
        return self.seen

    def include(self, location: str, name: str) -> CompiledScript | None:
        text = self.scripts.get(f"{location}/{name}")
        return compile_script(text, name=name) if text is not None else None


def _run(
    *texts: str,
    context: Context | None = None,
    message: bytes = MESSAGE,
    settings: SieveSettings | None = None,
) -> SieveResult:
    scripts = [compile_script(t, name=f"s{i}") for i, t in enumerate(texts)]
    return run_scripts(scripts, SieveMessage(message), ENVELOPE, context or Context(), settings)


def test_no_script_action_is_the_implicit_keep() -> None:
    assert _run("").actions == (Keep(implicit=True),)


def test_too_many_actions_is_an_error_that_keeps() -> None:
    text = 'require ["fileinto"];' + "".join(f'fileinto "f{i}";' for i in range(40))
    result = _run(text)
    assert result.actions == (Keep(implicit=True),)
    assert result.errors == ("s0:1",)


def test_an_error_in_the_user_script_keeps_what_before_asked() -> None:
    before = 'require ["fileinto", "copy"]; fileinto :copy "Junk";'
    failing = 'require "include";\n\ninclude "nothing";'
    result = _run(before, failing, 'require "fileinto"; fileinto "Never";')
    assert result.actions == (FileInto("Junk"), Keep(implicit=True))
    assert result.errors == ("s1:3",)


def test_reject_with_a_fileinto_is_an_error_that_keeps() -> None:
    result = _run('require ["reject", "fileinto"]; fileinto "Junk"; reject "no";')
    assert result.actions == (Keep(implicit=True),)
    assert result.errors


def test_reject_and_ereject_stand_alone() -> None:
    result = _run('require "ereject"; ereject "go away";')
    assert result.actions == (Reject("go away", extended=True),)
    assert result.rejected == Reject("go away", extended=True)


def test_redirect_to_ourselves_is_not_a_loop_but_a_keep() -> None:
    result = _run('redirect "bob@example.org";')
    assert result.actions == (Keep(implicit=True),)
    result = _run('redirect "BOB+other@Example.org";')
    assert result.actions == (Keep(implicit=True),)


def test_redirects_are_limited_and_deduplicated() -> None:
    same = _run('redirect "c@example.net"; redirect "C@example.net";')
    assert same.actions == (Redirect("c@example.net"),)
    many = "".join(f'redirect "r{i}@example.net";' for i in range(5))
    assert _run(many).errors


def test_a_bad_redirect_address_is_an_error() -> None:
    assert _run('redirect "not an address";').errors


def test_include_global_shares_only_global_variables() -> None:
    context = Context(
        {
            "global/spam": 'require ["variables", "include", "fileinto"]; global "box";'
            'set "local" "x"; fileinto "${box}"; return; fileinto "Never";'
        }
    )
    main = (
        'require ["variables", "include", "fileinto"]; global "box"; set "box" "Junk";'
        'include :global "spam"; fileinto "${local}Other";'
    )
    result = _run(main, context=context)
    assert result.actions == (FileInto("Junk"), FileInto("Other"))


def test_include_once_and_optional_and_self() -> None:
    context = Context({"global/g": 'require "fileinto"; fileinto "G";'})
    once = 'require "include"; include :global :once "g"; include :global :once "g";'
    assert _run(once, context=context).actions == (FileInto("G"),)
    optional = 'require "include"; include :optional "absent";'
    assert _run(optional).actions == (Keep(implicit=True),)
    looping = Context({"global/loop": 'require "include"; include :global "loop";'})
    assert _run('require "include"; include :global "loop";', context=looping).errors


def test_duplicate_asks_with_the_message_id_and_remembers_it() -> None:
    context = Context(seen=True)
    result = _run('require "duplicate"; if duplicate :seconds 60 { discard; }', context=context)
    assert result.actions == ()
    assert context.asked == [DuplicateMark("", "<1@example.net>", 60)]
    assert result.duplicates == (DuplicateMark("", "<1@example.net>", 60),)


def test_duplicate_without_the_header_is_false() -> None:
    context = Context(seen=True)
    result = _run('require "duplicate"; if duplicate :header "x-id" { discard; }', context=context)
    assert result.actions == (Keep(implicit=True),) and context.asked == []


def test_vacation_answers_the_envelope_sender_from_the_recipient() -> None:
    result = _run('require "vacation"; vacation :days 2 :subject "Away" "Back Monday";')
    [reply, keep] = result.actions
    assert keep == Keep(implicit=True)
    assert isinstance(reply, Vacation)
    assert (reply.to, reply.sender, reply.subject) == (
        "alice@example.net",
        "bob@example.org",
        "Away",
    )
    assert reply.seconds == 2 * 86_400 and reply.in_reply_to == "<1@example.net>"


def test_vacation_is_never_sent_to_lists_bulk_or_automatic_mail() -> None:
    script = 'require "vacation"; vacation "away";'
    for extra in (
        b"List-Id: <x.example>\r\n",
        b"Precedence: bulk\r\n",
        b"Auto-Submitted: auto-replied\r\n",
    ):
        result = _run(script, message=extra + MESSAGE)
        assert not any(isinstance(a, Vacation) for a in result.actions), extra
    to_someone_else = MESSAGE.replace(b"To: bob@example.org", b"To: carol@example.org")
    assert not any(isinstance(a, Vacation) for a in _run(script, message=to_someone_else).actions)


def test_vacation_twice_is_an_error() -> None:
    assert _run('require "vacation"; vacation "a"; vacation "b";').errors


def test_flags_are_normalised_like_imap() -> None:
    assert normalize_flags(["\\seen  $Label", "\\SEEN \\Recent \\Bogus $label"]) == [
        "\\Seen",
        "$Label",
    ]


def test_fileinto_inbox_is_a_keep_and_one_copy_per_folder() -> None:
    result = _run('require "fileinto"; fileinto "INBOX"; keep; fileinto "Junk"; fileinto "Junk";')
    assert result.actions == (Keep(), FileInto("Junk"))


def test_match_variables_and_set_modifiers() -> None:
    text = (
        'require ["variables", "fileinto"];'
        'if header :matches "from" "* <*@*>" { set :upper "who" "${2}"; '
        'set :length "n" "${3}"; fileinto "${who}-${n}"; }'
    )
    assert _run(text).actions == (FileInto("ALICE-11"),)


def test_regex_built_at_run_time_that_does_not_compile_is_an_error() -> None:
    text = (
        'require ["variables", "regex"]; set "p" "(";if header :regex "subject" "${p}" { discard; }'
    )
    assert _run(text).errors


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet="aAbBÄäß. -", max_size=8),
    st.lists(st.text(alphabet="aAbBÄäß. -", max_size=4), min_size=1, max_size=3),
    st.sampled_from([":is", ":contains"]),
    st.sampled_from(["", ' :comparator "i;ascii-casemap"', ' :comparator "i;octet"']),
)
def test_is_and_contains_answer_as_the_matcher_does(
    value: str, keys: list[str], match_type: str, comparator: str
) -> None:
    """The folded-key path of :is and :contains (i;ascii-casemap folds ASCII only)
    against Matcher.match, and against the same test run with variables, which the
    path leaves to Matcher."""
    matcher = Matcher(comparator.split('"')[1] if comparator else "i;ascii-casemap", match_type)
    expected = any(matcher.match(value.strip(), key)[0] for key in keys)
    quoted = ", ".join(json.dumps(k, ensure_ascii=False) for k in keys)
    test = f'header {match_type}{comparator} "x-test" [{quoted}]'
    message = f"X-Test: {value}\r\n\r\nbody\r\n".encode()
    plain = _run(f"if {test} {{ discard; }}", message=message)
    with_variables = _run(f'require "variables"; if {test} {{ discard; }}', message=message)
    assert (not plain.actions) is expected
    assert (not with_variables.actions) is expected
