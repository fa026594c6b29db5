"""Finding the server programs that the Debian packages install."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable

from ._errors import BinaryMissing

_SBIN_DIRS = ("/usr/sbin", "/sbin", "/usr/local/sbin")


def find_binary(name: str, *, package: str, extra_dirs: Iterable[str] = ()) -> str:
    """Return the path of program ``name``, searching PATH, the sbin folders and ``extra_dirs``.

    Raises:
        BinaryMissing: the program is nowhere; the message names the Debian package.
    """
    found = shutil.which(name)
    if found:
        return found
    for folder in (*extra_dirs, *_SBIN_DIRS):
        candidate = os.path.join(folder, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise BinaryMissing(
        f"{name} is not installed (it comes with the Debian package {package}); "
        "run `bash scripts/install-deps.sh` to install every server the tests need"
    )
