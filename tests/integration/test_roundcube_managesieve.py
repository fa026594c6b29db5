"""Roundcube's managesieve plugin in Chromium against our ManageSieve, then delivery.

The Roundcube rig of test_roundcube.py (servers/roundcube.py) with the managesieve
plugin on, pointed at `serve --managesieve` over STARTTLS as docs/ispmail.md configures
it (`tls://`, PLAIN). Alice makes a filter in Settings > Filters ("Subject contains
X -> move to Junk") and saves it; sievelib then sees the script stored and active, a
message delivered over LMTP with that subject lands in Junk (imaplib), another one in
INBOX. Bob uses the plugin at the same time from the same client address and keeps no
filter of Alice's. Screenshots go to test-artifacts/roundcube-managesieve/.
"""

from __future__ import annotations

import imaplib
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page
from sievelib.managesieve import Client

from .cryptmail_server import PASSWORD, CryptmailServer, make_users
from .servers import BinaryMissing
from .servers.roundcube import Roundcube
from .test_roundcube import _log_in, browser  # noqa: F401 - the browser fixture

ALICE, BOB = "alice@example.org", "bob@example.org"
WORD = "quarterly-wombat"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "roundcube-managesieve"
CONFIG = "[web]\nsecure_cookies = false\n[crypto.argon2]\nmemory_kib = 19456\n"

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[CryptmailServer, Roundcube]]:
    data_dir = tmp_path / "data"
    make_users(data_dir, "example.org", {ALICE: 2, BOB: 2})
    server = CryptmailServer(data_dir, imap=True, managesieve=True, config=CONFIG)
    server.start()
    # sievelib verifies with the default context: trust the server's own certificate.
    monkeypatch.setenv("SSL_CERT_FILE", str(data_dir / "imap-selfsigned.pem"))
    try:
        with smtplib.LMTP("127.0.0.1", server.port) as lmtp:
            for user in (ALICE, BOB):
                lmtp.sendmail("s@example.net", [user], b"Subject: welcome\r\n\r\nHello\r\n")
        roundcube = Roundcube(
            server.imap_port,
            "http://127.0.0.1:9/unused",
            settings={
                "plugins": ["managesieve"],
                "managesieve_host": f"tls://127.0.0.1:{server.managesieve_port}",
                "managesieve_auth_type": "PLAIN",
                # The server's self-signed certificate (a real one verifies by name).
                "managesieve_conn_options": {
                    "ssl": {"verify_peer": False, "verify_peer_name": False}
                },
            },
        )
        try:
            roundcube.start()
        except BinaryMissing as exc:
            pytest.skip(str(exc))
        try:
            yield server, roundcube
        finally:
            roundcube.stop()
    finally:
        server.stop()


async def _shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


async def _make_filter(page: Page, url: str, name: str, word: str, folder: str) -> None:
    """Settings > Filters > Create: "Subject contains `word`" -> "Move message to `folder`"."""
    await page.goto(url + "?_task=settings&_action=plugin.managesieve")
    await page.click("a.create")
    form = page.frame_locator("#filter-box")
    await form.locator("input[name=_name]").fill(name)
    await form.locator("select[name^='_header']").first.select_option("subject")
    await form.locator("select[name^='_rule_op']").first.select_option("contains")
    await form.locator("input[name^='_rule_target']:visible").first.fill(word)
    await form.locator("select[name^='_action_type']").first.select_option("fileinto")
    await form.locator("select[name^='_action_mailbox']").first.select_option(folder)
    await _shot(page, "01-filter-form")
    await form.locator("button.submit").click()
    await page.wait_for_selector(f"#filterslist tr:has-text('{name}')", timeout=60_000)


def _sieve(server: CryptmailServer, user: str) -> Client:
    """sievelib over STARTTLS; the test trusts the server's self-signed certificate."""
    client = Client("127.0.0.1", server.managesieve_port)
    assert client.connect(user, PASSWORD, starttls=True, authmech="PLAIN"), "login failed"
    return client


def _folder(server: CryptmailServer, user: str, folder: str) -> list[bytes]:
    imap = imaplib.IMAP4("127.0.0.1", server.imap_port)
    try:
        imap.login(user, PASSWORD)
        typ, _ = imap.select(folder, readonly=True)
        assert typ == "OK", folder
        typ, data = imap.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        return [part[1] for part in data if isinstance(part, tuple)]
    finally:
        imap.logout()


async def test_a_filter_made_in_roundcube_files_delivered_mail(
    stack: tuple[CryptmailServer, Roundcube],
    browser: Browser,  # noqa: F811 - the fixture imported above
) -> None:
    server, roundcube = stack
    alice = await _log_in(browser, roundcube.url, ALICE, PASSWORD)
    bob = await _log_in(browser, roundcube.url, BOB, PASSWORD)  # the same client address
    await _make_filter(alice, roundcube.url, "Wombats to Junk", WORD, "Junk")
    await _shot(alice, "02-filter-saved")
    await bob.goto(roundcube.url + "?_task=settings&_action=plugin.managesieve")
    await bob.wait_for_selector("#filterslist", state="attached", timeout=60_000)
    await _shot(bob, "03-bob-filters")

    sieve = _sieve(server, ALICE)
    active, others = sieve.listscripts()
    assert active is not None, f"no active script; scripts: {others}"
    script = sieve.getscript(active)
    sieve.logout()
    assert "fileinto" in script and WORD in script and '"Junk"' in script, script
    bob_sieve = _sieve(server, BOB)
    bob_active, _ = bob_sieve.listscripts()
    assert bob_active is None or WORD not in bob_sieve.getscript(bob_active)
    bob_sieve.logout()

    with smtplib.LMTP("127.0.0.1", server.port) as lmtp:
        for user in (ALICE, BOB):
            lmtp.sendmail("s@example.net", [user], f"Subject: the {WORD} memo\r\n\r\nx\r\n")
            lmtp.sendmail("s@example.net", [user], b"Subject: lunch\r\n\r\ny\r\n")
    assert [s for s in _folder(server, ALICE, "Junk") if WORD.encode() in s]
    assert not [s for s in _folder(server, ALICE, "INBOX") if WORD.encode() in s]
    assert [s for s in _folder(server, ALICE, "INBOX") if b"lunch" in s]
    assert [s for s in _folder(server, BOB, "INBOX") if WORD.encode() in s]

    await alice.goto(roundcube.url + "?_task=mail&_mbox=Junk")
    await alice.wait_for_selector(f"#messagelist tbody tr:has-text('{WORD}')", timeout=60_000)
    await _shot(alice, "04-filed-in-junk")
    assert "managesieve" not in roundcube.error_log().lower(), roundcube.error_log()
