"""Runners that start real servers for the integration tests, on 127.0.0.1 and free ports.

Each runner's ``start()`` returns only once its server answers, or raises
:class:`ServerStartError` saying what to try; :class:`BinaryMissing` (a
subclass) means the program is not installed. ``stop()`` ends the server and
deletes its folder. The fixtures in ``tests/integration/conftest.py`` wrap them.
"""

from ._database import Database
from ._errors import BinaryMissing, ServerStartError
from ._ports import LOOPBACK, free_port
from .chromium import CHROMIUM_ARGS, launch_kwargs, persistent_context_kwargs
from .mariadb import MariaDB
from .postfix import Postfix, QueuedMessage
from .postgres import Postgres
from .seaweedfs import S3Credentials, SeaweedFS

__all__ = [
    "CHROMIUM_ARGS",
    "LOOPBACK",
    "BinaryMissing",
    "Database",
    "MariaDB",
    "Postfix",
    "Postgres",
    "QueuedMessage",
    "S3Credentials",
    "SeaweedFS",
    "ServerStartError",
    "free_port",
    "launch_kwargs",
    "persistent_context_kwargs",
]
