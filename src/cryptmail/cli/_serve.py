"""`cryptmail serve`: run the listeners (LMTP, IMAP, web, SASL, POP3, ManageSieve) until
SIGTERM.

Argument parsing only; the running server is `cryptmail.serve`.
"""

from __future__ import annotations

import argparse

from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.cli._options import config_from_args
from cryptmail.cli._runtime import SubParsers, run_with_engine, set_up_process
from cryptmail.config import Config
from cryptmail.crypto import warm_up
from cryptmail.serve import Addresses, prefork_workers, run_server
from cryptmail.tls import make_ssl_context

DEFAULT_LMTP = "127.0.0.1:2424"


def register(sub: SubParsers) -> None:
    parser = sub.add_parser(
        "serve", help="run the LMTP, IMAP, web, SASL, POP3 and ManageSieve listeners"
    )
    parser.add_argument("--lmtp", metavar="ADDR", help="HOST:PORT or unix:/path for LMTP")
    parser.add_argument("--imap", metavar="ADDR", help="HOST:PORT for IMAP (STARTTLS)")
    parser.add_argument("--imaps", metavar="ADDR", help="HOST:PORT for IMAP over TLS")
    parser.add_argument("--web", metavar="ADDR", help="HOST:PORT for the web pages")
    parser.add_argument(
        "--sasl", metavar="ADDR", help="unix:/path or HOST:PORT for SMTP AUTH (Postfix)"
    )
    parser.add_argument("--pop3", metavar="ADDR", help="HOST:PORT for POP3 (STLS)")
    parser.add_argument("--pop3s", metavar="ADDR", help="HOST:PORT for POP3 over TLS")
    parser.add_argument(
        "--managesieve", metavar="ADDR", help="HOST:PORT for ManageSieve (STARTTLS), e.g. 4190"
    )
    parser.set_defaults(handler=_serve)


def addresses(args: argparse.Namespace, config: Config) -> Addresses:
    """The command line's listeners; with none given, the config's (LMTP by default)."""
    given = (args.lmtp, args.imap, args.imaps, args.web, args.sasl, args.pop3, args.pop3s)
    if any((*given, args.managesieve)):
        return Addresses(
            lmtp=args.lmtp or "",
            imap=args.imap or "",
            imaps=args.imaps or "",
            web=args.web or "",
            sasl=args.sasl or "",
            pop3=args.pop3 or "",
            pop3s=args.pop3s or "",
            managesieve=args.managesieve or "",
        )
    return Addresses(
        lmtp=config.lmtp.listen or DEFAULT_LMTP,
        imap=config.imap.listen,
        imaps=config.imap.listen_tls,
        web=config.web.listen,
        sasl=config.sasl.listen,
        pop3=config.pop3.listen,
        pop3s=config.pop3.listen_tls,
        managesieve=config.managesieve.listen,
    )


def _serve(args: argparse.Namespace) -> int:
    # The LMTP workers are forked here, before the engine, the event loop or any thread
    # exists: see `cryptmail.serve._prefork`. What runs once is done before, so that its
    # writes are in the pages the workers share, not copied by the main process after
    # the fork: the config and the log's set-up, OpenSSL's set-up of each algorithm
    # (about 3 MiB of pages each process wrote, 7 MiB once it delivers), and IMAP's and
    # POP3's TLS context (1.2 MiB).
    config = config_from_args(args)
    set_up_process(args, config, server=True)
    warm_up()
    listen = addresses(args, config)
    tls = None
    if listen.imap or listen.imaps or listen.pop3 or listen.pop3s:
        tls = make_ssl_context(config)
    # Workers on demand (`lmtp.process_idle_s` > 0) start as new interpreters: none forked.
    always = listen.lmtp and config.lmtp.process_idle_s == 0
    dormant = prefork_workers(config.lmtp.process_count, config.database_url) if always else []

    async def work(config: Config, engine: AsyncEngine) -> int:
        return await run_server(config, engine, addresses(args, config), dormant, tls)

    try:
        return run_with_engine(args, work, server=True, config=config)
    finally:
        for worker in dormant:  # those not woken (a listener failed to start)
            worker.dismiss()
