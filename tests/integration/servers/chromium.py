"""Launch options for Debian's headless Chromium under Playwright.

The tests never run ``playwright install``: Playwright drives the
``/usr/bin/chromium`` from the Debian package through ``executable_path``.
``launch()`` gives every browser a fresh throwaway profile by itself;
:func:`persistent_context_kwargs` is for a test that needs to choose the
profile folder (Playwright refuses ``--user-data-dir`` among the launch args).
"""

from __future__ import annotations

from pathlib import Path

from ._binaries import find_binary

CHROMIUM_ARGS: tuple[str, ...] = (
    "--headless",
    # Root in a container has no user namespaces for the sandbox.
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def find_chromium() -> str:
    """Path of Debian's Chromium.

    Raises:
        BinaryMissing: the chromium package is not installed.
    """
    return find_binary("chromium", package="chromium")


def launch_kwargs(executable_path: str | None = None) -> dict[str, object]:
    """Keyword arguments for Playwright's ``chromium.launch(**kwargs)``."""
    return {
        "executable_path": executable_path or find_chromium(),
        "headless": True,
        "args": list(CHROMIUM_ARGS),
    }


def persistent_context_kwargs(
    user_data_dir: Path, executable_path: str | None = None
) -> dict[str, object]:
    """Keyword arguments for ``chromium.launch_persistent_context(**kwargs)``."""
    return {"user_data_dir": str(user_data_dir), **launch_kwargs(executable_path)}
