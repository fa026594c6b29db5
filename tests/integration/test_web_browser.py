"""The self-service pages end to end in headless Chromium, with JavaScript off.

`serve_web` runs on a free loopback port over HTTPS (a throwaway certificate, Secure
cookies as in production) with a temporary SQLite data directory. Chromium signs in,
reads the security log, changes the password, makes and revokes an app password, signs
out and recovers with the recovery code. Our IMAP server runs in the same process with
the same engine and the same `LoginThrottle` (as `cryptmail serve --web --imap` wires
them), and after each step Python's imaplib proves the effect over IMAP: the old password
gets NO [AUTHENTICATIONFAILED] (even while a session opened with it is still live, so its
unlocked key is cached), the new one logs in, and the message delivered before the change
reads byte-exact; the app password logs in and reads mail, and fails once revoked.

A screenshot of every page goes to test-artifacts/web/ (phone-sized, and a few at
desktop size and in German).
"""

from __future__ import annotations

import asyncio
import imaplib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import Config, load_config
from cryptmail.db import create_engine, upgrade
from cryptmail.errors import AuthenticationFailed
from cryptmail.imap import ImapListener, make_context
from cryptmail.keys import LoginThrottle, UnlockedAccounts, create_user, recover, unlock_account
from cryptmail.secret import Password
from cryptmail.store import ChangeBus, deliver_message
from cryptmail.store.blobs import LocalBlobStore
from cryptmail.users import add_domain, get_user
from cryptmail.web import WebServer as WebListener
from web.conftest import self_signed_certificate

from .servers import free_port

ALICE = "alice@example.org"
FIRST = "correct horse battery staple"  # test passwords
SECOND = "a brand new passphrase"
THIRD = "recovered with the code"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
MESSAGE = (
    b"From: Bob <bob@example.net>\r\nTo: alice@example.org\r\n"
    b"Subject: delivered before the password change\r\n"
    b"Message-ID: <before-change@example.net>\r\n\r\n"
    b"Still readable after every step.\r\n"
)


@dataclass
class WebServer:
    url: str
    config: Config
    engine: AsyncEngine
    recovery_code: str
    imap_port: int
    throttle: LoginThrottle

    async def unlocks(self, password: str) -> bool:
        try:
            await unlock_account(
                self.engine, ALICE, Password.from_str(password), self.config.crypto
            )
        except AuthenticationFailed:
            return False
        return True

    def imap_login(self, credential: str) -> imaplib.IMAP4:
        """A logged-in imaplib client (call from a thread: the server runs on this loop)."""
        client = imaplib.IMAP4("127.0.0.1", self.imap_port, timeout=30)
        try:
            client.login(ALICE, credential)
        except imaplib.IMAP4.error:
            client.shutdown()
            raise
        return client

    def imap_refuses(self, credential: str) -> bool:
        """True when LOGIN answers NO [AUTHENTICATIONFAILED]."""
        try:
            client = self.imap_login(credential)
        except imaplib.IMAP4.error as exc:
            assert "[AUTHENTICATIONFAILED]" in str(exc), exc
            return True
        client.logout()
        return False

    def imap_inbox(self, credential: str) -> list[bytes]:
        """Log in with `credential` and return every INBOX message as the server sends it."""
        client = self.imap_login(credential)
        try:
            return _read_inbox(client)
        finally:
            client.logout()


def _read_inbox(client: imaplib.IMAP4) -> list[bytes]:
    status, _ = client.select("INBOX", readonly=True)
    assert status == "OK"
    status, data = client.uid("FETCH", "1:*", "(BODY.PEEK[])")
    assert status == "OK"
    return [item[1] for item in data if isinstance(item, tuple)]


def _ended_by_the_change(client: imaplib.IMAP4) -> bool:
    """The server said BYE [UNAVAILABLE] within 5 s and closed the connection."""
    client.sock.settimeout(5)
    line = client.readline()
    closed = client.readline() == b""
    client.shutdown()
    return line.startswith(b"* BYE [UNAVAILABLE] Credentials changed") and closed


@pytest.fixture
async def web_server(tmp_path: Path) -> AsyncIterator[WebServer]:
    cert, key = self_signed_certificate(tmp_path)
    config_file = tmp_path / "cryptmail.toml"
    config_file.write_text(
        f'data_dir = "{tmp_path / "data"}"\n'
        "[crypto.argon2]\nmemory_kib = 19456\ntime_cost = 2\n"
        f'[web]\ntls_cert = "{cert}"\ntls_key = "{key}"\n'
    )
    config = load_config(config_file)
    engine = create_engine(config.database_url)
    await upgrade(engine)
    async with engine.begin() as conn:
        await add_domain(conn, "example.org")
    account = await create_user(engine, ALICE, Password.from_str(FIRST), config.crypto)
    assert account.recovery_code is not None
    blobs = LocalBlobStore(config.blob_path)
    bus = ChangeBus()
    async with engine.connect() as conn:
        user = await get_user(conn, ALICE)

    async def source() -> AsyncIterator[bytes]:
        yield MESSAGE

    await deliver_message(engine, blobs, user, source(), bus=bus)
    # One throttle for both, as `cryptmail serve` shares it (the sharing is under test).
    # One cache of unlocked accounts too, so the web's password change drops IMAP's
    # cached credentials. The walk-through tries six wrong credentials for alice on
    # purpose, more than the default burst of five.
    throttle = LoginThrottle(address_burst=20)
    accounts = UnlockedAccounts(engine, config.crypto)
    port = free_port()
    web = WebListener(
        config, "127.0.0.1", port, engine=engine, throttle=throttle, accounts=accounts
    )
    context = make_context(
        config, engine=engine, blobs=blobs, bus=bus, throttle=throttle, accounts=accounts
    )
    imap = ImapListener(context, "127.0.0.1", 0, implicit_tls=False)
    await web.start()
    await imap.start()
    imap_port = imap.port
    try:
        yield WebServer(
            f"https://127.0.0.1:{port}",
            config,
            engine,
            account.recovery_code,
            imap_port,
            throttle,
        )
    finally:
        await asyncio.wait_for(asyncio.gather(web.stop(20), imap.stop(20)), 25)
        await engine.dispose()


@pytest.fixture
async def browser(chromium_launch_kwargs: dict[str, object]) -> AsyncIterator[Browser]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(**chromium_launch_kwargs)  # type: ignore[arg-type]
        try:
            yield browser
        finally:
            await browser.close()


async def _new_page(browser: Browser, viewport: dict[str, int], locale: str = "en-US") -> Page:
    context = await browser.new_context(
        viewport=viewport,  # type: ignore[arg-type]
        device_scale_factor=2 if viewport is PHONE else 1,
        is_mobile=viewport is PHONE,
        has_touch=viewport is PHONE,
        java_script_enabled=False,
        ignore_https_errors=True,
        locale=locale,
    )
    return await context.new_page()


async def _shot(page: Page, name: str) -> None:
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def _submit(page: Page, fields: dict[str, str], form: str = "main form") -> None:
    for name, value in fields.items():
        await page.fill(f'{form} [name="{name}"]', value)
    async with page.expect_navigation():
        await page.click(f'{form} button[type="submit"]')


async def test_self_service_in_chromium(web_server: WebServer, browser: Browser) -> None:
    page = await _new_page(browser, PHONE)
    url = web_server.url
    imap = asyncio.to_thread
    # A session with the first password stays open until the password changes: its
    # unlocked key is cached, and that must not let new logins with an old credential
    # through; the change then ends it (issue 14: sessions end).
    live = await imap(web_server.imap_login, FIRST)
    assert await imap(_read_inbox, live) == [MESSAGE]

    # Sign in.
    await page.goto(url + "/")
    assert page.url == url + "/sign-in"
    await _shot(page, "01-sign-in")
    await _submit(page, {"address": ALICE, "password": "not the password"})
    assert "The address or the password is wrong." in await page.inner_text("main")
    await _shot(page, "02-sign-in-failed")
    # The web failure counts in the throttle IMAP uses, and an IMAP failure in the web's.
    after_web = web_server.throttle.debt(ALICE, "127.0.0.1")
    assert after_web > 0
    assert await imap(web_server.imap_refuses, "not the password either")
    assert web_server.throttle.debt(ALICE, "127.0.0.1") > after_web
    await _submit(page, {"address": ALICE, "password": FIRST})
    assert page.url == url + "/account"
    body = await page.inner_text("main")
    assert ALICE in body and "x25519" in body and "encrypted" in body
    assert "You have a recovery code." in body
    await _shot(page, "03-account")
    cookies = await page.context.cookies()
    (session,) = cookies
    assert session["name"] == "__Host-cryptmail"
    assert session["httpOnly"] and session["secure"] and session["sameSite"] == "Strict"

    # The security log, after the password.
    await page.goto(url + "/account/log")
    await _shot(page, "04-log-locked")
    await _submit(page, {"password": FIRST})
    log = await page.inner_text("table.log")
    assert "Failed login: wrong password" in log and "127.0.0.1" in log and "Key created" in log
    await _shot(page, "05-log")

    # Change the password.
    await page.goto(url + "/account/password")
    await _shot(page, "06-password")
    await _submit(page, {"old": FIRST, "new": SECOND, "repeat": SECOND})
    assert page.url == url + "/account?done=password_changed"
    assert "Your password is changed." in await page.inner_text("main")
    await _shot(page, "07-password-changed")
    assert not await web_server.unlocks(FIRST)
    assert await web_server.unlocks(SECOND)
    assert await imap(_ended_by_the_change, live)
    assert await imap(web_server.imap_refuses, FIRST)
    assert await imap(web_server.imap_inbox, SECOND) == [MESSAGE]

    # Make an app password; it unlocks the key; revoke it; it does not.
    await page.goto(url + "/account/app-passwords")
    await _shot(page, "08-app-passwords-empty")
    await _submit(page, {"name": "phone", "password": SECOND}, form="form.card")
    secret = await page.inner_text(".secret code")
    assert "It is shown only this once." in await page.inner_text("main")
    await _shot(page, "09-app-password-created")
    assert await web_server.unlocks(secret)
    assert await imap(web_server.imap_inbox, secret) == [MESSAGE]
    await page.click("text=Done: back to app passwords")
    await _shot(page, "10-app-passwords")
    async with page.expect_navigation():
        await page.click("ul.apps button.danger")
    # It asks first, saying what revoking does; the app password still works meanwhile.
    assert "Revoke the app password phone?" in await page.inner_text("main")
    await _shot(page, "10b-app-password-revoke-confirm")
    assert await web_server.unlocks(secret)
    async with page.expect_navigation():
        await page.click("text=Yes, revoke it")
    assert "The app password is revoked." in await page.inner_text("main")
    await _shot(page, "11-app-password-revoked")
    assert not await web_server.unlocks(secret)
    assert await imap(web_server.imap_refuses, secret)

    # The recovery code page: renew it; the code made with the account stops working.
    await page.goto(url + "/account/recovery-code")
    await _shot(page, "12-recovery-code")
    await _submit(page, {"password": SECOND}, form="form.card")
    code = await page.inner_text(".secret code")
    assert code != web_server.recovery_code
    assert "It is shown only this once." in await page.inner_text("main")
    await _shot(page, "12b-recovery-code-renewed")
    with pytest.raises(AuthenticationFailed):
        await recover(
            web_server.engine,
            ALICE,
            web_server.recovery_code,
            Password.from_str("x" * 20),
            web_server.config.crypto,
        )
    await page.click("text=I have stored the code: back to my account")
    assert page.url == url + "/account"

    # Sign out, then recover with the code.
    async with page.expect_navigation():
        await page.click("header button")
    assert "You are signed out." in await page.inner_text("main")
    (anonymous,) = await page.context.cookies()  # a fresh one for the sign-in form
    assert anonymous["value"] != session["value"]
    await page.click("text=Forgot your password?")
    body = await page.inner_text("main")
    assert body.index("nobody can open your mail again") < body.index("Recovery code")
    await _shot(page, "13-forgot")
    await _submit(page, {"address": ALICE, "code": code, "new": THIRD, "repeat": THIRD})
    new_code = await page.inner_text(".secret code")
    assert new_code != code
    assert "It is shown only this once." in await page.inner_text("main")
    await _shot(page, "14-new-recovery-code")
    assert not await web_server.unlocks(SECOND)
    assert await web_server.unlocks(THIRD)
    assert await imap(web_server.imap_refuses, SECOND)
    assert await imap(web_server.imap_refuses, FIRST)
    assert await imap(web_server.imap_inbox, THIRD) == [MESSAGE]
    with pytest.raises(AuthenticationFailed):  # the code was used up
        await recover(
            web_server.engine, ALICE, code, Password.from_str("x" * 20), web_server.config.crypto
        )

    # And in with the recovered password.
    await page.click("text=I have stored the code: continue to sign-in")
    await _submit(page, {"address": ALICE, "password": THIRD})
    assert page.url == url + "/account"

    # Every key event is in the log, with the client's address.
    await page.goto(url + "/account/log")
    await _submit(page, {"password": THIRD})
    rows = [
        " ".join((await row.inner_text()).split())
        for row in await page.query_selector_all("table.log tbody tr")
    ]
    assert any("Key created" in row for row in rows)  # by create_user, not over the web
    # (Failed sign-ins without an address are this test's direct keys API checks.)
    for event in (
        "Failed login: wrong password",
        "Password changed",
        "App password added (phone)",
        "App password revoked (phone)",
        "Recovery code renewed",
        "Recovery code used",
    ):
        assert any(event in row and row.endswith(" 127.0.0.1") for row in rows), (event, rows)
    await _shot(page, "15-log-all-events")

    # An error page.
    await page.goto(url + "/no/such/page")
    assert await page.inner_text("h1") == "Something went wrong"
    await _shot(page, "16-not-found")


async def test_pages_at_desktop_size_and_in_german(web_server: WebServer, browser: Browser) -> None:
    desktop = await _new_page(browser, DESKTOP)
    await desktop.goto(web_server.url + "/sign-in")
    await _shot(desktop, "desktop-01-sign-in")
    await _submit(desktop, {"address": ALICE, "password": FIRST})
    await _shot(desktop, "desktop-02-account")
    await desktop.goto(web_server.url + "/account/app-passwords")
    await _shot(desktop, "desktop-03-app-passwords")

    german = await _new_page(browser, PHONE, locale="de-DE")
    await german.goto(web_server.url + "/forgot")
    assert await german.get_attribute("html", "lang") == "de"
    assert "Ohne dein Passwort und deinen Wiederherstellungscode" in await german.inner_text("main")
    await _shot(german, "de-01-forgot")
    await german.goto(web_server.url + "/sign-in")
    assert await german.inner_text("h1") == "Anmelden"
    await _shot(german, "de-02-sign-in")
