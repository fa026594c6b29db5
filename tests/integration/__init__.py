"""Integration tests: cryptmail against real servers started by the tests on loopback."""
