"""A SASL login (Postfix's smtpd over the Dovecot auth protocol) starts the user's staged
import of old mail, as IMAP, POP3 and the web do; the answer does not wait for it."""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.keys import LoginThrottle, create_user
from cryptmail.sasl import SaslChecker, SaslServer
from cryptmail.secret import Password
from cryptmail.store import FirstLoginImports, StagedSource, list_staged, stage_import
from cryptmail.store.blobs import LocalBlobStore
from sasl.conftest import CRYPTO, Client, plain

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "dovecot-2.3"


async def test_a_sasl_login_starts_the_staged_import(engine: AsyncEngine, tmp_path: Path) -> None:
    address, secret = "carol@example.org", "Alice-Secret-521"  # alice's Dovecot password
    maildir = tmp_path / "Maildir"
    shutil.copytree(VECTORS / "maildirs" / "alice" / "Maildir", maildir)
    created = await create_user(engine, address, Password.from_str(secret), CRYPTO)
    await stage_import(engine, created.user.id, StagedSource(maildir, None))
    imports = FirstLoginImports(engine, LocalBlobStore(tmp_path / "blobs"), stale_after_s=60)
    server = SaslServer(SaslChecker(engine, CRYPTO, LoginThrottle(), imports), "127.0.0.1:0")
    await server.start()
    try:
        client = await Client.connect(server.port)
        wrong = await client.auth(1, "PLAIN", "resp=" + plain(address, "not it"))
        assert wrong.startswith("FAIL\t1")
        assert imports.progress(created.user.id) is None
        answer = await client.auth(2, "PLAIN", "resp=" + plain(address, secret))
        assert answer.startswith("OK\t2")
        await client.close()
        await imports.wait(created.user.id)
    finally:
        await server.stop(1.0)
    (row,) = await list_staged(engine, created.user.id)
    assert (row.state, row.done_messages, row.total_messages) == ("done", 7, 7)
