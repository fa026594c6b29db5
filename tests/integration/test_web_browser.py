"""The self-service pages end to end in headless Chromium, with JavaScript off.

`serve_web` runs on a free loopback port over HTTPS (a throwaway certificate, Secure
cookies as in production) with a temporary SQLite data directory. Chromium signs in,
reads the security log, changes the password, makes and revokes an app password, signs
out and recovers with the recovery code; after each step the keys API proves the
effect: the old password fails, the new one unlocks, the app password unlocks and then
fails once revoked. (When `cryptmail.imap` lands, the same checks can go over imaplib.)

A screenshot of every page goes to test-artifacts/web/ (phone-sized, and a few at
desktop size and in German).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright
from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.config import Config, load_config
from cryptmail.db import create_engine, upgrade
from cryptmail.errors import AuthenticationFailed
from cryptmail.keys import LoginThrottle, create_user, recover, unlock_account
from cryptmail.secret import Password
from cryptmail.users import add_domain
from cryptmail.web import serve_web
from web.conftest import self_signed_certificate

ALICE = "alice@example.org"
FIRST = "correct horse battery staple"  # noqa: S105 - test passwords
SECOND = "a brand new passphrase"  # noqa: S105
THIRD = "recovered with the code"  # noqa: S105
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


@dataclass
class WebServer:
    url: str
    config: Config
    engine: AsyncEngine
    recovery_code: str

    async def unlocks(self, password: str) -> bool:
        try:
            await unlock_account(
                self.engine, ALICE, Password.from_str(password), self.config.crypto
            )
        except AuthenticationFailed:
            return False
        return True


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def _wait_for_port(port: int, task: asyncio.Task[None]) -> None:
    for _ in range(400):
        if task.done():
            task.result()  # raises what stopped the server
        try:
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.025)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise AssertionError(f"the web listener on port {port} did not answer within 10 s")


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
    port = _free_port()
    shutdown = asyncio.Event()
    task = asyncio.create_task(
        serve_web(
            config,
            "127.0.0.1",
            port,
            engine=engine,
            throttle=LoginThrottle(),
            shutdown_event=shutdown,
        )
    )
    try:
        await _wait_for_port(port, task)
        yield WebServer(f"https://127.0.0.1:{port}", config, engine, account.recovery_code)
    finally:
        shutdown.set()
        await asyncio.wait_for(task, 20)
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

    # Sign in.
    await page.goto(url + "/")
    assert page.url == url + "/sign-in"
    await _shot(page, "01-sign-in")
    await _submit(page, {"address": ALICE, "password": "not the password"})
    assert "The address or the password is wrong." in await page.inner_text("main")
    await _shot(page, "02-sign-in-failed")
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
    assert "Failed sign-in" in log and "127.0.0.1" in log and "Key created" in log
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

    # Make an app password; it unlocks the key; revoke it; it does not.
    await page.goto(url + "/account/app-passwords")
    await _shot(page, "08-app-passwords-empty")
    await _submit(page, {"name": "phone", "password": SECOND}, form="form.card")
    secret = await page.inner_text(".secret code")
    assert "It is shown only this once." in await page.inner_text("main")
    await _shot(page, "09-app-password-created")
    assert await web_server.unlocks(secret)
    await page.click("text=Done: back to app passwords")
    await _shot(page, "10-app-passwords")
    async with page.expect_navigation():
        await page.click("ul.apps button.danger")
    assert "The app password is revoked." in await page.inner_text("main")
    await _shot(page, "11-app-password-revoked")
    assert not await web_server.unlocks(secret)

    # The recovery code page.
    await page.goto(url + "/account/recovery-code")
    await _shot(page, "12-recovery-code")

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
    code = web_server.recovery_code
    await _submit(page, {"address": ALICE, "code": code, "new": THIRD, "repeat": THIRD})
    new_code = await page.inner_text(".secret code")
    assert new_code != code
    assert "It is shown only this once." in await page.inner_text("main")
    await _shot(page, "14-new-recovery-code")
    assert not await web_server.unlocks(SECOND)
    assert await web_server.unlocks(THIRD)
    with pytest.raises(AuthenticationFailed):  # the code was used up
        await recover(
            web_server.engine, ALICE, code, Password.from_str("x" * 20), web_server.config.crypto
        )

    # And in with the recovered password.
    await page.click("text=I have stored the code: continue to sign-in")
    await _submit(page, {"address": ALICE, "password": THIRD})
    assert page.url == url + "/account"


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
