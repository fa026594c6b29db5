"""Shared fixtures for the crypto core tests: key pairs on every curve."""

from __future__ import annotations

import pytest

from cryptmail.crypto import CurveName, PrivateKey, curve_names, generate_private_key


@pytest.fixture(scope="session")
def private_keys() -> dict[CurveName, PrivateKey]:
    """One key pair per curve, made once for the whole run."""
    return {curve: generate_private_key(curve) for curve in curve_names()}


@pytest.fixture(scope="session")
def other_private_keys() -> dict[CurveName, PrivateKey]:
    """A second key pair per curve, for wrong-key tests."""
    return {curve: generate_private_key(curve) for curve in curve_names()}


@pytest.fixture(params=curve_names())
def curve(request: pytest.FixtureRequest) -> CurveName:
    value: CurveName = request.param
    return value
