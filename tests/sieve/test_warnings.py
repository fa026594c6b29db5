"""What a valid script will not do on this server: the WARNINGS ManageSieve answers."""

from __future__ import annotations

from cryptmail.sieve import ServerAbilities, compile_script, script_warnings, warnings_text
from cryptmail.sieve._warnings import MAX_WARNINGS_TEXT

SCRIPT = """require ["include", "vacation", "variables", "copy"];
if header :contains "subject" "x" {
  redirect :copy "a@example.net";
}
vacation "Away.";
include :personal "mine";
include :global "spam";
include :global :optional "gone";
include :global "${missing}";
"""


def _abilities(relay: bool, globals_: set[str]) -> ServerAbilities:
    return ServerAbilities(relay=relay, global_script=lambda name: name in globals_)


def test_each_thing_this_server_will_not_do_is_named_by_line() -> None:
    script = compile_script(SCRIPT, name="main")
    assert script_warnings(script, _abilities(False, set())) == [
        "line 3: redirect is not sent: this server has no SMTP relay; the message is kept",
        "line 5: vacation replies are not sent: this server has no SMTP relay",
        "line 6: include of personal script 'mine' is not run at delivery here; "
        "the script stops there and the message is kept",
        "line 7: there is no global script 'spam' on this server; "
        "the script stops there and the message is kept",
        "line 8: there is no global script 'gone' on this server; it is skipped",
    ]


def test_a_server_with_a_relay_and_the_global_scripts_warns_of_personal_includes_only() -> None:
    script = compile_script(SCRIPT, name="main")
    warnings = script_warnings(script, _abilities(True, {"spam", "gone"}))
    assert [w.split(":")[0] for w in warnings] == ["line 6"]
    assert script_warnings(compile_script("keep;", name="k"), _abilities(False, set())) == []


def test_the_text_stays_one_short_line() -> None:
    many = [f"line {n}: redirect is not sent: this server has no SMTP relay" for n in range(40)]
    text = warnings_text(many)
    assert len(text) <= MAX_WARNINGS_TEXT
    assert text.startswith("line 0: ") and text.endswith(" more)")
    assert warnings_text(many[:2]) == "; ".join(many[:2])
