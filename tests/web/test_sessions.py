"""SessionStore: random ids, expiry, caps, single-use CSRF tokens, nothing secret kept."""

from __future__ import annotations

from cryptmail.db import UserId
from cryptmail.web._sessions import CSRF_TOKENS_PER_SESSION, SessionStore
from hand_clock import HandClock


def test_new_sessions_have_distinct_random_ids() -> None:
    store = SessionStore()
    ids = {store.new().id for _ in range(100)}
    assert len(ids) == 100
    assert all(len(i) >= 40 for i in ids)
    assert len(store) == 100


def test_idle_and_lifetime_expiry() -> None:
    clock = HandClock()
    store = SessionStore(idle_s=10, lifetime_s=25, _clock=clock)
    session = store.sign_in(None, UserId(1), "Alice@Example.org")
    assert session.address == "alice@example.org"
    for _ in range(2):
        clock.now += 9
        assert store.get(session.id) is session  # used within the idle time
    clock.now += 9  # 27 s after sign-in: past the lifetime, however busy
    assert store.get(session.id) is None
    idle = store.new()
    clock.now += 11
    assert store.get(idle.id) is None


def test_sign_in_replaces_the_session() -> None:
    store = SessionStore()
    anonymous = store.new()
    token = store.issue_csrf(anonymous)
    signed = store.sign_in(anonymous, UserId(7), "alice@example.org")
    assert signed.id != anonymous.id
    assert store.get(anonymous.id) is None
    assert not store.consume_csrf(signed, token)  # tokens do not carry over


def test_anonymous_flood_does_not_push_out_signed_in_sessions() -> None:
    store = SessionStore(max_anonymous=10, max_signed_in=10)
    signed = store.sign_in(None, UserId(1), "alice@example.org")
    first = store.new()
    for _ in range(100):
        store.new()
    assert store.get(signed.id) is signed
    assert store.get(first.id) is None  # oldest anonymous evicted
    assert len(store) == 11


def test_drop_user_by_id_and_address() -> None:
    store = SessionStore()
    a1 = store.sign_in(None, UserId(1), "alice@example.org")
    a2 = store.sign_in(None, UserId(1), "alice@example.org")
    bob = store.sign_in(None, UserId(2), "bob@example.org")
    assert store.drop_user(user_id=UserId(1)) == 2
    assert store.get(a1.id) is None and store.get(a2.id) is None
    assert store.get(bob.id) is bob
    assert store.drop_user(address="BOB@example.org") == 1
    assert store.get(bob.id) is None


def test_csrf_tokens_are_single_use_and_per_session() -> None:
    store = SessionStore()
    mine, other = store.new(), store.new()
    token = store.issue_csrf(mine)
    assert not store.consume_csrf(other, token)  # foreign
    assert store.consume_csrf(mine, token)
    assert not store.consume_csrf(mine, token)  # replayed
    assert not store.consume_csrf(mine, "")
    assert not store.consume_csrf(mine, "ü" * 43)


def test_csrf_tokens_are_bounded() -> None:
    store = SessionStore()
    session = store.new()
    tokens = [store.issue_csrf(session) for _ in range(CSRF_TOKENS_PER_SESSION + 5)]
    assert len(session.csrf_tokens) == CSRF_TOKENS_PER_SESSION
    assert not store.consume_csrf(session, tokens[0])
    assert store.consume_csrf(session, tokens[-1])


def test_session_holds_only_id_address_and_tokens() -> None:
    store = SessionStore()
    session = store.sign_in(None, UserId(3), "alice@example.org")
    store.issue_csrf(session)
    # The credential generation is a counter, not a secret (keys/_generation.py).
    fields = {"id", "created", "seen", "user_id", "address", "generation", "csrf_tokens"}
    assert set(vars(session)) == fields
    assert session.id not in repr(session)
    assert session.csrf_tokens[0] not in repr(session)
