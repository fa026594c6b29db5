"""`cryptmail store check [--fix]`: every row has its blob, every blob parses, no orphans."""

from __future__ import annotations

import argparse

from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.cli._runtime import SubParsers, run_with_engine, say
from cryptmail.config import Config
from cryptmail.store import check_store
from cryptmail.store.blobs import open_blob_store


def register(sub: SubParsers) -> None:
    parser = sub.add_parser("store", help="check the message store")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    check = verbs.add_parser("check", help="check rows against blobs (no password needed)")
    check.add_argument(
        "--fix", action="store_true", help="remove orphan blobs older than the grace period"
    )
    check.add_argument(
        "--grace",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="orphans younger than this are kept: a delivery in flight writes its blob "
        "just before its row (default 600)",
    )
    check.set_defaults(handler=_check)


def _check(args: argparse.Namespace) -> int:
    async def work(config: Config, engine: AsyncEngine) -> int:
        blobs = open_blob_store(config)
        report = await check_store(engine, blobs, fix=args.fix, grace_s=args.grace)
        print(f"rows: {report.rows}")
        print(f"blobs: {report.blobs}")
        for row_id, blob_id in report.missing:
            print(f"missing: row {row_id} names blob {blob_id.hex()}, which is not stored")
        for blob_id in report.malformed:
            print(f"malformed: blob {blob_id.hex()} has no valid header")
        for blob_id in report.orphans:
            state = "removed" if blob_id in report.removed else "kept"
            print(f"orphan: blob {blob_id.hex()} ({state})")
        clean = report.clean
        say("store is clean" if clean else "store has problems (listed above)")
        return 0 if clean else 1

    return run_with_engine(args, work)
