"""Global keys as Dovecot accepts them: PEM, JWK, key strings, or base64 of any (§4.6, §7).

`mail_crypt_global_private_key` and friends take PKCS#8 PEM (maybe password-encrypted),
SPKI PEM for public keys, a JWK object, a `2:`/`1` key string, or the base64 of any of
these (handy in a userdb field). `RSA PRIVATE KEY` and `EC PRIVATE KEY` PEM are refused,
as Dovecot refuses them, with a hint how to convert.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import cast

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cryptmail.crypto.dovecot._keys import DovecotPrivateKey, DovecotPublicKey, public_key_of
from cryptmail.crypto.dovecot._keystrings import load_private_key_string, load_public_key_string
from cryptmail.errors import DovecotFormatError, DovecotWrongPassword
from cryptmail.secret import SecretBytes

_JWK_CURVES: dict[str, ec.EllipticCurve] = {
    "P-256": ec.SECP256R1(),
    "P-384": ec.SECP384R1(),
    "P-521": ec.SECP521R1(),
}
_PKCS8_HINT = "convert it to PKCS#8 first: openssl pkcs8 -topk8 -in OLD.pem -out NEW.pem"


def _text(data: bytes | str) -> str:
    if isinstance(data, str):
        return data.strip()
    try:
        return data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise DovecotFormatError(
            "a Dovecot key must be ASCII text (PEM, JWK or key string)"
        ) from None


def _unbase64(text: str) -> str | None:
    try:
        decoded = base64.b64decode("".join(text.split()), validate=True)
        return decoded.decode("ascii").strip()
    except (binascii.Error, ValueError):
        return None


def _pem_label(text: str) -> str:
    first = text.splitlines()[0].strip()
    return first.removeprefix("-----BEGIN ").removesuffix("-----")


def load_global_private_key(
    data: bytes | str, password: SecretBytes | None = None
) -> DovecotPrivateKey:
    """A private key in any form Dovecot accepts for `mail_crypt_global_private_key`.

    `password` unlocks an encrypted PKCS#8 PEM or a password-locked `2:` key string.

    Raises DovecotFormatError if the data is not a supported EC or RSA private key;
    DovecotWrongPassword if it is locked and the password is missing or wrong.
    """
    return _load_private(_text(data), password, allow_base64=True)


def _load_private(text: str, password: SecretBytes | None, allow_base64: bool) -> DovecotPrivateKey:
    if text.startswith("-----BEGIN "):
        return _load_private_pem(text, password)
    if text.startswith("{"):
        key = _load_jwk(text, private=True)
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise DovecotFormatError("the JWK holds no private key (member 'd')")
        return key
    if text.startswith(("2:", "1\t")):
        return load_private_key_string(text, password=password)
    decoded = _unbase64(text) if allow_base64 else None
    if decoded is None:
        raise DovecotFormatError(
            "not a Dovecot private key: expected PKCS#8 PEM, JWK, a `2:` key string, "
            "or base64 of one of these"
        )
    return _load_private(decoded, password, allow_base64=False)


def _load_private_pem(text: str, password: SecretBytes | None) -> DovecotPrivateKey:
    label = _pem_label(text)
    if label in ("RSA PRIVATE KEY", "EC PRIVATE KEY"):
        raise DovecotFormatError(f"Dovecot does not accept {label} PEM; {_PKCS8_HINT}")
    if label not in ("PRIVATE KEY", "ENCRYPTED PRIVATE KEY"):
        raise DovecotFormatError(f"PEM {label[:40]!r} is not a private key")
    encrypted = label == "ENCRYPTED PRIVATE KEY"
    if encrypted and password is None:
        raise DovecotWrongPassword("the PEM private key is encrypted; give its password")
    try:
        key = serialization.load_pem_private_key(
            text.encode("ascii"), password=password.reveal() if encrypted and password else None
        )
    except ValueError:
        if encrypted:
            raise DovecotWrongPassword(
                "the password does not unlock the PEM private key (or the PEM is damaged)"
            ) from None
        raise DovecotFormatError("the PEM private key cannot be parsed") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise DovecotFormatError("Dovecot private keys must be EC or RSA")
    return key


def load_global_public_key(data: bytes | str) -> DovecotPublicKey:
    """A public key in any form Dovecot accepts for `mail_crypt_global_public_key`.

    Raises DovecotFormatError if it is not a supported EC or RSA public key.
    """
    return _load_public(_text(data), allow_base64=True)


def _load_public(text: str, allow_base64: bool) -> DovecotPublicKey:
    if text.startswith("-----BEGIN "):
        if _pem_label(text) != "PUBLIC KEY":
            raise DovecotFormatError("expected a PUBLIC KEY (SPKI) PEM")
        try:
            key = serialization.load_pem_public_key(text.encode("ascii"))
        except ValueError:
            raise DovecotFormatError("the PEM public key cannot be parsed") from None
        if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            raise DovecotFormatError("Dovecot public keys must be EC or RSA")
        return key
    if text.startswith("{"):
        return public_key_of(_load_jwk(text, private=False))
    if text.startswith(("2:", "1\t")):
        return load_public_key_string(text)
    decoded = _unbase64(text) if allow_base64 else None
    if decoded is None:
        raise DovecotFormatError(
            "not a Dovecot public key: expected SPKI PEM, JWK, a `2:` key string, "
            "or base64 of one of these"
        )
    return _load_public(decoded, allow_base64=False)


def _b64url_int(jwk: dict[str, object], name: str) -> int:
    value = jwk.get(name)
    if not isinstance(value, str):
        raise DovecotFormatError(f"JWK member {name!r} is missing or not a string")
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise DovecotFormatError(f"JWK member {name!r} is not base64url") from None
    return int.from_bytes(raw, "big")


def _load_jwk(text: str, private: bool) -> DovecotPrivateKey | DovecotPublicKey:
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        raise DovecotFormatError("the JWK is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise DovecotFormatError("a JWK must be a JSON object")
    jwk = cast(dict[str, object], parsed)
    has_private = "d" in jwk
    if private and not has_private:
        raise DovecotFormatError("the JWK holds no private key (member 'd')")
    try:
        if jwk.get("kty") == "EC":
            curve = _JWK_CURVES.get(str(jwk.get("crv")))
            if curve is None:
                raise DovecotFormatError(f"JWK curve {str(jwk.get('crv'))[:20]!r} is not supported")
            public_numbers = ec.EllipticCurvePublicNumbers(
                _b64url_int(jwk, "x"), _b64url_int(jwk, "y"), curve
            )
            if has_private:
                return ec.EllipticCurvePrivateNumbers(
                    _b64url_int(jwk, "d"), public_numbers
                ).private_key()
            return public_numbers.public_key()
        if jwk.get("kty") == "RSA":
            rsa_public = rsa.RSAPublicNumbers(_b64url_int(jwk, "e"), _b64url_int(jwk, "n"))
            if not has_private:
                return rsa_public.public_key()
            d = _b64url_int(jwk, "d")
            if "p" in jwk and "q" in jwk:
                p, q = _b64url_int(jwk, "p"), _b64url_int(jwk, "q")
            else:
                p, q = rsa.rsa_recover_prime_factors(rsa_public.n, rsa_public.e, d)
            return rsa.RSAPrivateNumbers(
                p,
                q,
                d,
                rsa.rsa_crt_dmp1(d, p),
                rsa.rsa_crt_dmq1(d, q),
                rsa.rsa_crt_iqmp(p, q),
                rsa_public,
            ).private_key()
    except ValueError:
        raise DovecotFormatError("the JWK does not hold a valid key") from None
    raise DovecotFormatError("JWK 'kty' must be EC or RSA")
