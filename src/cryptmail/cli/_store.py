"""`cryptmail store check [--fix]`: every row has its blob, every blob parses, no orphans.

Exit 1 only for a problem: a missing or malformed blob, or an orphan past the grace
period still there. What a crash leaves and a later sweep takes (orphans within the
grace period, files in `blobs/tmp`) is reported with exit 0.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from cryptmail.cli._runtime import SubParsers, run_with_engine, say
from cryptmail.config import Config
from cryptmail.store import CheckReport, check_store
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
        young = set(report.young_orphans)
        for blob_id in report.orphans:
            if blob_id in report.removed:
                state = "removed"
            elif blob_id in young:
                state = "kept: younger than the grace period"
            else:
                state = "kept"
            print(f"orphan: blob {blob_id.hex()} ({state})")
        if report.orphans_go_after is not None:
            after = datetime.fromtimestamp(report.orphans_go_after, UTC)
            print(
                f"{len(young)} orphan blob(s) younger than the grace period, kept; they go "
                f"at the next sweep after {after:%Y-%m-%d %H:%M:%S} UTC (`store check --fix` "
                "from then on; the server's hourly sweep once they are a day old)"
            )
        _print_temp(report)
        clean = report.clean
        if clean:
            say("store is clean")
        elif report.missing or report.malformed:
            say("store has problems (listed above)")
        else:
            say("store has orphan blobs past the grace period (listed above); `--fix` removes them")
        return 0 if clean else 1

    return run_with_engine(args, work)


def _print_temp(report: CheckReport) -> None:
    temp, removed = report.temp, report.temp_removed
    if temp is None or not temp.count:
        return
    print(
        f"temp files: {temp.count} ({temp.bytes} bytes) in blobs/tmp: writes in flight, or "
        "left by a killed writer; `serve` removes the latter at its next start"
    )
    if removed.count:
        print(f"temp files: removed {removed.count} ({removed.bytes} bytes) of dead writers")
