"""Tests of cryptmail.web through httpx's ASGI transport (tests/integration/ drives Chromium)."""
