"""`cryptmail key`: list, rotate, export, recovery-code."""

from __future__ import annotations

from cryptography.hazmat.primitives.serialization import load_pem_private_key

from cli.conftest import ALICE, PASSWORD, Alice


def test_list_and_rotate(alice: Alice) -> None:
    cli = alice.cli
    before = cli.ok("key", "list", ALICE).stdout.splitlines()
    assert before[0].split() == ["id", "curve", "created", "active"]
    assert len(before) == 2 and before[1].split()[1] == "x25519"
    stdin = f"{PASSWORD}\n"
    done = cli.ok("key", "rotate", ALICE, "--password-stdin", "--curve", "secp384r1", stdin=stdin)
    assert "secp384r1" in done.stderr
    after = [line.split() for line in cli.ok("key", "list", ALICE).stdout.splitlines()[1:]]
    assert [(row[1], row[-1]) for row in after] == [("x25519", "no"), ("secp384r1", "yes")]
    assert "does not unlock" in cli.fails(
        "key", "rotate", ALICE, "--password-stdin", stdin="wrong\n"
    )


def test_export(alice: Alice) -> None:
    cli = alice.cli
    plain = cli.ok("key", "export", ALICE, "--password-stdin", stdin=f"{PASSWORD}\n")
    assert "UNENCRYPTED" in plain.stderr
    assert plain.stdout.startswith("-----BEGIN PRIVATE KEY-----")
    load_pem_private_key(plain.stdout.encode(), None)

    sealed = cli.ok(
        "key",
        "export",
        ALICE,
        "--password-stdin",
        "--passphrase-stdin",
        stdin=f"{PASSWORD}\nexport phrase\n",
    )
    assert "UNENCRYPTED" not in sealed.stderr
    assert sealed.stdout.startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    key = load_pem_private_key(sealed.stdout.encode(), b"export phrase")
    same = load_pem_private_key(plain.stdout.encode(), None)
    assert key.public_key() == same.public_key()
    assert "does not unlock" in cli.fails(
        "key", "export", ALICE, "--password-stdin", stdin="wrong\n"
    )


def test_recovery_code(alice: Alice) -> None:
    cli = alice.cli
    done = cli.ok("key", "recovery-code", ALICE, "--password-stdin", stdin=f"{PASSWORD}\n")
    fresh = done.stdout.strip()
    assert fresh and fresh != alice.recovery_code and "shown only this once" in done.stderr
    cli.fails(
        "user", "recover", ALICE, "--stdin", stdin=f"{alice.recovery_code}\nwrong code, strong pw\n"
    )
    cli.ok("user", "recover", ALICE, "--stdin", stdin=f"{fresh}\nthe new passphrase\n")
