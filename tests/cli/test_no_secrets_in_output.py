"""Run the credential commands at -v (DEBUG) and scan all of stdout and stderr for the
test passwords and codes; the only place a secret may appear is the one stdout line of
the command that made it."""

from __future__ import annotations

import subprocess

from cli.conftest import Cli

FIRST = "marker-cli-first-Wq31"
SECOND = "marker-cli-second-Lp72"
THIRD = "marker-cli-third-Tn09"
PHRASE = "marker-cli-phrase-Gb64"
ALICE = "alice@example.org"


def forms(secret: str) -> set[str]:
    compact = secret.replace("-", "")
    return {secret, secret.lower(), secret.upper(), compact, compact.lower(), compact.upper()}


def test_no_secret_in_any_output(cli: Cli) -> None:
    outputs: list[str] = []
    secrets = [FIRST, SECOND, THIRD, PHRASE]

    def run(*args: str, stdin: str = "", code: int = 0) -> subprocess.CompletedProcess[str]:
        done = cli.run(*args, stdin=stdin, verbose=True)
        assert done.returncode == code, done.stderr
        assert "DEBUG" in done.stderr  # -v took effect
        outputs.append(done.stderr)
        return done

    def made_secret(done: subprocess.CompletedProcess[str]) -> str:
        """The one-time secret: the only line on stdout, which is left out of the scan."""
        (secret,) = done.stdout.splitlines()
        secrets.append(secret)
        return secret

    run("domain", "add", "example.org")
    code = made_secret(run("user", "add", ALICE, "--password-stdin", stdin=f"{FIRST}\n"))
    run("user", "passwd", ALICE, "--password-stdin", stdin=f"{SECOND}\n{THIRD}\n", code=1)
    run("user", "passwd", ALICE, "--password-stdin", stdin=f"{FIRST}\n{SECOND}\n")
    run("user", "recover", ALICE, "--stdin", stdin=f"{FIRST}\n{THIRD}\n", code=1)
    made_secret(run("user", "recover", ALICE, "--stdin", stdin=f"{code}\n{THIRD}\n"))
    made_secret(run("key", "recovery-code", ALICE, "--password-stdin", stdin=f"{THIRD}\n"))
    app = made_secret(
        run("app-password", "add", ALICE, "--name", "phone", "--password-stdin", stdin=f"{THIRD}\n")
    )
    run("key", "rotate", ALICE, "--password-stdin", stdin=f"{app}\n", code=1)
    run("key", "rotate", ALICE, "--password-stdin", stdin=f"{THIRD}\n")
    export = run(
        "key",
        "export",
        ALICE,
        "--password-stdin",
        "--passphrase-stdin",
        stdin=f"{THIRD}\n{PHRASE}\n",
    )
    assert "ENCRYPTED PRIVATE KEY" in export.stdout
    outputs.append(export.stdout)
    run("app-password", "revoke", ALICE, "phone")
    outputs.append(run("user", "list").stdout)
    outputs.append(run("app-password", "list", ALICE).stdout)

    assert len(secrets) == 8
    hits = [form for text in outputs for s in secrets for form in forms(s) if form in text]
    assert hits == []
