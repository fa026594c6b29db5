"""Tests of cryptmail.keys on SQLite (tests/integration/ runs the keys suite on servers)."""
