"""A private Postfix instance on loopback that hands virtual mail to an LMTP server."""

from __future__ import annotations

import json
import os
import re
import smtplib
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ._binaries import find_binary
from ._errors import ServerStartError
from ._ports import LOOPBACK, free_port
from ._process import (
    PrivateServer,
    log_tail,
    pid_alive,
    pids_with_environ,
    run_checked,
    stop_pids,
    wait_answering,
    wait_until,
)

# Every service runs unchrooted: a chroot would need copies of /etc files in each queue folder.
_MASTER_SERVICES = """\
pickup     unix      n - n 60    1 pickup
cleanup    unix      n - n -     0 cleanup
qmgr       unix      n - n 300   1 qmgr
rewrite    unix      - - n -     - trivial-rewrite
bounce     unix      - - n -     0 bounce
defer      unix      - - n -     0 bounce
trace      unix      - - n -     0 bounce
verify     unix      - - n -     1 verify
flush      unix      n - n 1000? 0 flush
proxymap   unix      - - n -     - proxymap
proxywrite unix      - - n -     1 proxymap
showq      unix      n - n -     - showq
error      unix      - - n -     - error
retry      unix      - - n -     - error
discard    unix      - - n -     - discard
lmtp       unix      - - n -     - lmtp
anvil      unix      - - n -     1 anvil
scache     unix      - - n -     1 scache
postlog    unix-dgram n - n -    1 postlogd
"""

NO_EXTERNAL_DELIVERY = "error:5.7.1 tests never deliver outside the virtual domains"


def _backdate(folder: Path) -> None:
    """Set every file's mtime 10 s in the past.

    Postfix re-reads a config or texthash file that changed in the last
    second, sleeping 300 ms between reads, until it is a second old; fresh files
    otherwise cost each command and daemon about 2 s.
    """
    past = time.time() - 10
    for path in folder.iterdir():
        os.utime(path, (past, past))


def _postqueue() -> str:
    return find_binary("postqueue", package="postfix")


@dataclass(frozen=True)
class QueuedMessage:
    """One message in the Postfix queue, as ``postqueue -j`` reports it."""

    queue_id: str
    queue_name: str
    sender: str
    recipients: tuple[str, ...]
    delay_reasons: tuple[str, ...]


class Postfix(PrivateServer):
    """A Postfix instance with its own config, queue, data folder and log file.

    Mail for ``domains`` goes to ``lmtp``, a Postfix LMTP next hop such as
    ``inet:127.0.0.1:2424`` or ``unix:/path/to/socket`` (the socket and its
    folders must be reachable by the ``postfix`` user). ``aliases`` maps an
    address to a space-separated list of targets (virtual_alias_maps).
    ``mailboxes``, if given, is the list of addresses that exist
    (virtual_mailbox_maps); by default every address in ``domains`` is taken
    and the LMTP server decides. ``settings`` overrides any main.cf parameter.

    Retries are quick so tests see them: a deferred message is tried again
    after 2-4 s. There are no DNS lookups, and mail to any other domain
    bounces at once. Postfix must be started as root (its master daemon
    switches to ``postfix``).
    """

    host = LOOPBACK

    def __init__(
        self,
        *,
        domains: Sequence[str],
        lmtp: str,
        smtp_port: int | None = None,
        aliases: Mapping[str, str] | None = None,
        mailboxes: Sequence[str] | None = None,
        hostname: str = "mx.cryptmail.test",
        settings: Mapping[str, str] | None = None,
        start_timeout: float = 30.0,
    ) -> None:
        if not domains:
            raise ValueError("Postfix needs at least one virtual mailbox domain")
        self.domains = tuple(domains)
        self.lmtp = lmtp
        self.smtp_port = smtp_port if smtp_port is not None else free_port()
        self.aliases = dict(aliases or {})
        self.mailboxes = None if mailboxes is None else tuple(mailboxes)
        self.hostname = hostname
        self.settings = dict(settings or {})
        self.start_timeout = start_timeout
        self.start_seconds: float | None = None
        """Wall time the last ``start()`` took."""
        self._postfix = "postfix"

    # -- folders -------------------------------------------------------------

    @property
    def config_dir(self) -> Path:
        return self._dir / "etc"

    @property
    def queue_dir(self) -> Path:
        return self._dir / "queue"

    @property
    def log_path(self) -> Path:
        return self._dir / "maillog"

    # -- configuration -------------------------------------------------------

    def main_cf(self) -> dict[str, str]:
        """The main.cf parameters this instance runs with."""
        params = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.queue_dir),
            "data_directory": str(self._dir / "data"),
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": self.hostname,
            "mydomain": self.hostname.partition(".")[2] or self.hostname,
            "myorigin": "$myhostname",
            "mydestination": "",
            "local_recipient_maps": "",
            "alias_maps": "",
            "alias_database": "",
            "inet_interfaces": "loopback-only",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            "smtpd_peername_lookup": "no",
            "smtpd_error_sleep_time": "0s",
            "smtp_dns_support_level": "disabled",
            "lmtp_dns_support_level": "disabled",
            "smtp_host_lookup": "native",
            "lmtp_host_lookup": "native",
            "default_transport": NO_EXTERNAL_DELIVERY,
            "relay_transport": NO_EXTERNAL_DELIVERY,
            "virtual_mailbox_domains": " ".join(self.domains),
            "virtual_transport": f"lmtp:{self.lmtp}",
            # A backoff above the scan interval leaves the delivery agent time to
            # unlock the message it deferred; see wait_queue_empty().
            "queue_run_delay": "1s",
            "minimal_backoff_time": "2s",
            "maximal_backoff_time": "4s",
            "in_flow_delay": "0s",
            "biff": "no",
            "maillog_file": str(self.log_path),
            "maillog_file_prefixes": str(self._dir),
            "syslog_name": "postfix-cryptmail",
        }
        if self.aliases:
            params["virtual_alias_maps"] = f"texthash:{self.config_dir / 'virtual_aliases'}"
        if self.mailboxes is not None:
            params["virtual_mailbox_maps"] = f"texthash:{self.config_dir / 'virtual_mailboxes'}"
        params.update(self.settings)
        return params

    def master_cf(self) -> str:
        """The master.cf this instance runs with: SMTP on its port plus the internal services."""
        return f"{self.host}:{self.smtp_port} inet n - n - - smtpd\n{_MASTER_SERVICES}"

    def _write_config(self) -> None:
        self.config_dir.mkdir()
        self.queue_dir.mkdir(mode=0o755)
        main = "".join(f"{name} = {value}\n" for name, value in self.main_cf().items())
        (self.config_dir / "main.cf").write_text(main)
        (self.config_dir / "master.cf").write_text(self.master_cf())
        if self.aliases:
            lines = "".join(f"{alias} {target}\n" for alias, target in self.aliases.items())
            (self.config_dir / "virtual_aliases").write_text(lines)
        if self.mailboxes is not None:
            lines = "".join(f"{address} OK\n" for address in self.mailboxes)
            (self.config_dir / "virtual_mailboxes").write_text(lines)
        self.log_path.touch(mode=0o600)
        _backdate(self.config_dir)

    # -- life cycle ----------------------------------------------------------

    def start(self) -> None:
        """Write the config, check it, start the master and wait for the SMTP banner.

        Raises:
            BinaryMissing: Postfix is not installed.
            ServerStartError: not root, a bad config, or no SMTP answer in ``start_timeout``.
        """
        started = time.monotonic()
        self._postfix = find_binary("postfix", package="postfix")
        if os.geteuid() != 0:
            raise ServerStartError(
                "a private Postfix instance must be started as root, because its master "
                "daemon switches to the postfix user; run the integration tests as root"
            )
        with self._new_folder("cryptmail-postfix-"):
            self._write_config()
            self._control("check", what="checking the Postfix config")
            self._control("start", what="starting Postfix")
            wait_answering(
                self._answers,
                server=f"Postfix started but smtpd on {self.host}:{self.smtp_port}",
                advice=(
                    f"Is the port taken? Try running `postfix -c {self.config_dir} start` by hand."
                ),
                logs={"log": self.log_path},
                timeout=self.start_timeout,
                interval=0.1,
            )
        self.start_seconds = time.monotonic() - started

    def _control(self, command: str, *, what: str) -> None:
        try:
            run_checked([self._postfix, "-c", str(self.config_dir), command], what=what)
        except ServerStartError as exc:
            tail = log_tail(self.log_path)
            raise ServerStartError(f"{exc}\nThe Postfix log ends with:\n{tail}") from exc

    def _answers(self) -> bool:
        try:
            with smtplib.SMTP(self.host, self.smtp_port, timeout=2) as client:
                client.noop()
        except (OSError, smtplib.SMTPException):
            return False
        return True

    @property
    def master_pid(self) -> int | None:
        """Process id of the running master daemon, or None."""
        if self.base_dir is None:
            return None
        try:
            pid = int((self.queue_dir / "pid" / "master.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def reconfigure(self, settings: Mapping[str, str]) -> None:
        """Change main.cf parameters and reload the running instance."""
        self.settings.update(settings)
        argv = [find_binary("postconf", package="postfix"), "-c", str(self.config_dir), "-e"]
        argv += [f"{name}={value}" for name, value in settings.items()]
        run_checked(argv, what="changing the Postfix config")
        _backdate(self.config_dir)
        self._control("reload", what="reloading Postfix")

    def stop(self) -> None:
        """Stop the instance (``postfix stop``, SIGKILL after 10 s) and delete its folder.

        Every process whose environment names this instance's config folder is
        waited for, so nothing outlives the folder even if the pid file was
        never written or is unreadable.
        """
        if self.base_dir is not None and self._instance_pids():
            subprocess.run(
                [self._postfix, "-c", str(self.config_dir), "stop"],
                capture_output=True,
                check=False,
                timeout=30,
            )
            stop_pids(self._instance_pids, grace=10)
        self._discard()

    def _instance_pids(self) -> list[int]:
        """Live processes of this instance: the master and its children carry MAIL_CONFIG."""
        return pids_with_environ(f"MAIL_CONFIG={self.config_dir}")

    # -- mail ----------------------------------------------------------------

    def send(
        self,
        message: bytes,
        sender: str,
        recipients: Sequence[str],
        *,
        via: Literal["sendmail", "smtp"] = "sendmail",
    ) -> None:
        """Submit a message through this instance's ``sendmail -C`` or over SMTP to its port.

        Raises:
            ServerStartError: sendmail failed. smtplib.SMTPException: the SMTP server refused.
        """
        if via == "smtp":
            with smtplib.SMTP(self.host, self.smtp_port, timeout=30) as client:
                client.sendmail(sender, list(recipients), message)
            return
        sendmail = find_binary("sendmail", package="postfix")
        run_checked(
            [sendmail, "-C", str(self.config_dir), "-i", "-f", sender, "--", *recipients],
            what="submitting mail with sendmail",
            stdin=message,
        )

    def queue(self) -> list[QueuedMessage]:
        """Every message still queued (incoming, active, deferred, hold)."""
        result = run_checked(
            [_postqueue(), "-c", str(self.config_dir), "-j"], what="listing the Postfix queue"
        )
        entries = []
        for line in result.stdout.decode().splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            recipients = item.get("recipients", [])
            entries.append(
                QueuedMessage(
                    queue_id=item["queue_id"],
                    queue_name=item["queue_name"],
                    sender=item.get("sender", ""),
                    recipients=tuple(r["address"] for r in recipients),
                    delay_reasons=tuple(
                        r["delay_reason"] for r in recipients if "delay_reason" in r
                    ),
                )
            )
        return entries

    def queue_ids(self) -> list[str]:
        return [entry.queue_id for entry in self.queue()]

    def queue_empty(self) -> bool:
        return not self.queue()

    def wait_queue_empty(self, timeout: float = 30.0, *, nudge_every: float | None = 3.0) -> None:
        """Wait until every queued message is delivered or bounced.

        While mail is queued, ``postqueue -f`` runs every ``nudge_every``
        seconds (None: never). With retries this fast, the queue manager can
        find a deferred message still locked by the delivery agent that just
        deferred it; it then sets that message aside for a fixed 60 s
        (``qmgr_active_feed``). A flush retries it at once.

        Raises:
            TimeoutError: mail is still queued after ``timeout``; lists it and the log tail.
        """
        deadline = time.monotonic() + timeout
        last_nudge = time.monotonic()
        while not self.queue_empty():
            now = time.monotonic()
            if now >= deadline:
                raise TimeoutError(
                    f"Postfix queue not empty after {timeout:.0f} s: {self.queue()}\n"
                    f"log:\n{log_tail(self.log_path)}"
                )
            if nudge_every is not None and now - last_nudge >= nudge_every:
                self.flush()
                last_nudge = now
            time.sleep(0.2)

    def flush(self) -> None:
        """Try every deferred message now (``postqueue -f``)."""
        run_checked([_postqueue(), "-c", str(self.config_dir), "-f"], what="flushing the queue")

    # -- log -----------------------------------------------------------------

    def log(self) -> str:
        """Everything Postfix has logged so far."""
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        """Wait until a log line matches the regular expression ``pattern``; return the match.

        Raises:
            TimeoutError: no line matched within ``timeout``; the message has the log tail.
        """
        regex = re.compile(pattern, re.MULTILINE)
        found: list[re.Match[str]] = []

        def matched() -> bool:
            match = regex.search(self.log())
            if match:
                found.append(match)
            return match is not None

        if not wait_until(matched, timeout=timeout, interval=0.1):
            raise TimeoutError(
                f"no Postfix log line matched {pattern!r} within {timeout:.0f} s; "
                f"log:\n{log_tail(self.log_path)}"
            )
        return found[0]
