"""RFC 5229 scopes, references and set modifiers."""

from __future__ import annotations

from cryptmail.sieve._variables import MAX_VALUE_SIZE, Scope, apply_modifiers


def test_references_expand_once_and_unknown_ones_are_empty() -> None:
    scope = Scope({})
    scope.set("Name", "${other}")
    assert scope.expand("[${name}] [${missing}] [${NAME}]") == "[${other}] [] [${other}]"


def test_global_names_are_shared_and_match_variables_by_number() -> None:
    shared: dict[str, str] = {}
    one, two = Scope(shared), Scope(shared)
    one.global_names.add("g")
    one.set("g", "x")
    assert two.get("global.g") == "x" and two.get("g") == ""
    one.match = ["all", "first"]
    assert one.expand("${1}/${0}/${9}") == "first/all/"


def test_values_are_capped() -> None:
    scope = Scope({})
    scope.set("v", "x" * (MAX_VALUE_SIZE + 10))
    assert len(scope.get("v")) == MAX_VALUE_SIZE


def test_modifiers() -> None:
    assert apply_modifiers("hello World", [":upperfirst"]) == "Hello World"
    assert apply_modifiers("a*b?", [":quotewildcard"]) == "a\\*b\\?"
    assert apply_modifiers("abc", [":length"]) == "3"
    assert apply_modifiers("ABC", [":lower", ":upperfirst"]) == "Abc"
