"""A deterministic generator of real-world-shaped (and broken) MIME messages.

``generate_corpus(seed, count)`` returns the same messages for the same arguments, so
a failure can be replayed from its seed and index. The shapes come from what mail
servers meet: nested multiparts, attachments with RFC 2231 file names, forwarded
message/rfc822, digests, encoded-word subjects and names, 8-bit headers, long folded
headers, CRLF and bare-LF line ends, and the usual breakage (missing or mangled
boundaries, no final boundary, bad Content-Type, headers cut short by a boundary).
Used by the unit tests and by the differential test against Dovecot.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Callable

__all__ = ["generate_corpus", "generate_message"]

_NAMES = [
    "Alice Example", "Bob O'Brien", "Dr. Carol \"CJ\" Jones", "Émile Zola", "李小龙",
    "Ünïcödé Üser", "Smith, John", "  spaced   out  ", "", "x",
]  # fmt: skip
_LOCALS = ["alice", "bob.smith", "c+tag", '"quoted local"', "info", "a.b.c", "root"]
_DOMAINS = ["example.org", "mail.example.com", "[192.0.2.1]", "xn--bcher-kva.example", "localhost"]
_WORDS = (
    "hello world meeting report invoice urgent re fwd the quick brown fox jumps over "
    "lazy dog lorem ipsum dolor sit amet café naïve résumé 日本語 テスト"
).split()


def _encoded_word(rng: random.Random, text: str) -> str:
    charset = rng.choice(["utf-8", "UTF-8", "iso-8859-1"])
    try:
        raw = text.encode(charset)
    except UnicodeEncodeError:
        charset, raw = "utf-8", text.encode()
    if rng.random() < 0.5:
        return f"=?{charset}?B?{base64.b64encode(raw).decode()}?="
    quoted = "".join(
        chr(b) if 0x21 <= b < 0x7F and chr(b) not in "=?_ " else ("_" if b == 0x20 else f"={b:02X}")
        for b in raw
    )
    return f"=?{charset}?Q?{quoted}?="


def _phrase(rng: random.Random) -> str:
    words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 8)))
    roll = rng.random()
    if roll < 0.25:
        return _encoded_word(rng, words)
    if roll < 0.35:
        return words + "  \t " + _encoded_word(rng, rng.choice(_WORDS))
    if roll < 0.45:
        return '"' + words.replace('"', '\\"') + '" \\ quoted'
    return words


def _address(rng: random.Random) -> str:
    local, domain = rng.choice(_LOCALS), rng.choice(_DOMAINS)
    name = rng.choice(_NAMES)
    roll = rng.random()
    if roll < 0.25:
        return f"{local}@{domain}"
    if roll < 0.45:
        quoted = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return f"{quoted} <{local}@{domain}>"
    if roll < 0.55:
        return f"{_encoded_word(rng, name or 'n')} <{local}@{domain}>"
    if roll < 0.62:
        return f"{local}@{domain} ({name})"
    if roll < 0.67:
        return f"<@relay.example,@b.example:{local}@{domain}>"
    if roll < 0.72:
        return "undisclosed-recipients:;"
    if roll < 0.77:
        return f"Team: {local}@{domain}, other@{domain};"
    if roll < 0.80:
        return f"{local}"  # no domain
    if roll < 0.83:
        return f"{name} {local}@{domain}"  # display name without brackets
    if roll < 0.86:
        return f"<{local}@{domain}"  # unterminated
    if roll < 0.88:
        return "@"
    if roll < 0.90:
        return f"{local}@{domain}, , ,"
    return f"{name or 'N'} <{local}@{domain}>"


def _address_list(rng: random.Random) -> str:
    return ", ".join(_address(rng) for _ in range(rng.randint(1, 4)))


def _fold(rng: random.Random, text: str) -> str:
    if rng.random() < 0.3 or len(text) < 20:
        return text
    out, line = [], ""
    for word in text.split(" "):
        if len(line) > rng.randint(15, 70):
            out.append(line)
            line = rng.choice([" ", "\t", "  "]) + word
        else:
            line = f"{line} {word}" if line else word
    out.append(line)
    return "\r\n".join(out)


def _date(rng: random.Random) -> str:
    return rng.choice(
        [
            "Mon, 4 Mar 2024 10:00:00 +0100",
            "Tue, 29 Feb 2000 23:59:59 -0800 (PST)",
            "4 Mar 2024 10:00 GMT",
            "garbage date",
            "Wed,\r\n 5 Jun 2019 08:09:10 +0000",
            "",
        ]
    )


def _envelope_headers(rng: random.Random) -> list[str]:
    headers = []
    if rng.random() < 0.9:
        headers.append("From: " + _fold(rng, _address_list(rng)))
    if rng.random() < 0.8:
        headers.append("To: " + _fold(rng, _address_list(rng)))
    for name in ("Cc", "Bcc", "Reply-To", "Sender"):
        if rng.random() < 0.2:
            headers.append(f"{name}: " + _fold(rng, _address_list(rng)))
    if rng.random() < 0.9:
        headers.append("Subject: " + _fold(rng, _phrase(rng)))
    if rng.random() < 0.85:
        headers.append("Date: " + _date(rng))
    if rng.random() < 0.8:
        headers.append(f"Message-ID: <{rng.randrange(10**9)}.{rng.randrange(999)}@example.org>")
    if rng.random() < 0.3:
        headers.append("In-Reply-To: <parent@example.org> (comment)")
    if rng.random() < 0.1:
        headers.append("Subject: second subject wins")
    if rng.random() < 0.1:
        headers.append("X-No-Colon-Line")
    if rng.random() < 0.1:
        headers.append("X-Long: " + _fold(rng, " ".join(["word"] * rng.randint(20, 200))))
    if rng.random() < 0.08:
        headers.append("Subject : spaced name")
    rng.shuffle(headers)
    return headers


def _params(rng: random.Random, base: str) -> str:
    parts = [base]
    roll = rng.random()
    filename = rng.choice(["report.pdf", "Résumé final.docx", "a b;c.txt", "日本.txt", "x"])
    if roll < 0.25:
        parts.append(f'name="{filename}"')
    elif roll < 0.4:
        encoded = "".join(
            f"%{b:02X}" if b > 0x7E or b in b" %;" else chr(b) for b in filename.encode()
        )
        parts.append(f"name*=utf-8''{encoded}")
    elif roll < 0.5:
        parts.append(f'name*0="{filename[:3]}"; name*1="{filename[3:]}"')
    elif roll < 0.55:
        parts.append("name*0*=utf-8''a%20; name*2=missing")
    elif roll < 0.6:
        parts.append(f"name=={_encoded_word(rng, filename)}")
    return ("; " if rng.random() < 0.8 else ";\r\n\t").join(parts)


def _leaf(rng: random.Random, depth: int) -> tuple[list[str], str]:
    kind = rng.random()
    headers: list[str] = []
    if kind < 0.45:
        ctype = rng.choice(["text/plain", "text/html", "TEXT/Plain", "text/enriched"])
        charset = rng.choice(["", "; charset=utf-8", '; charset="ISO-8859-1"', "; format=flowed"])
        headers.append(f"Content-Type: {ctype}{charset}")
        body = "\r\n".join(" ".join(rng.choice(_WORDS) for _ in range(rng.randint(0, 12)))
                           for _ in range(rng.randint(0, 8)))  # fmt: skip
        if rng.random() < 0.3:
            headers.append("Content-Transfer-Encoding: quoted-printable")
            body = body.replace("é", "=C3=A9") + "=\r\nsoft break"
        elif rng.random() < 0.2:
            headers.append("Content-Transfer-Encoding: 8bit")
    elif kind < 0.75:
        ctype = rng.choice(["application/pdf", "image/png", "application/octet-stream",
                            "audio/x-wav", "application/vnd.ms-excel"])  # fmt: skip
        headers.append("Content-Type: " + _params(rng, ctype))
        headers.append(rng.choice(["Content-Transfer-Encoding: base64",
                                   "Content-Transfer-Encoding: BASE64 ",
                                   "content-transfer-encoding: x-uuencode"]))  # fmt: skip
        if rng.random() < 0.7:
            disposition = rng.choice(["attachment", "inline", "ATTACHMENT"])
            headers.append("Content-Disposition: " + _params(rng, disposition))
        payload = bytes(rng.randrange(256) for _ in range(rng.randint(0, 400)))
        encoded = base64.b64encode(payload).decode()
        body = "\r\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))
    elif kind < 0.85:
        headers.append(rng.choice([
            "Content-Type: text", "Content-Type: /plain", "Content-Type: ",
            "Content-Type: text/plain;; charset=utf-8", "Content-Type: (comment) text/plain",
            'Content-Type: application/x-foo; a="unterminated', "Content-Type: image/",
        ]))  # fmt: skip
        body = "broken content type body"
    else:
        body = "no content type at all"
    if rng.random() < 0.15:
        headers.append(f"Content-ID: <{rng.randrange(10**6)}@cid>")
    if rng.random() < 0.1:
        headers.append("Content-Description: " + _fold(rng, _phrase(rng)))
    if rng.random() < 0.08:
        headers.append("Content-Language: en-US, de")
    if rng.random() < 0.05:
        headers.append("Content-Location: http://example.org/a\r\n b")
    if rng.random() < 0.05:
        headers.append("Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==")
    return headers, body


def _part(rng: random.Random, depth: int) -> tuple[list[str], str]:
    roll = rng.random()
    if depth < 4 and roll < 0.3:
        return _multipart(rng, depth + 1)
    if depth < 4 and roll < 0.4:
        inner_headers, inner_body = _message(rng, depth + 1)
        headers = ["Content-Type: message/rfc822"]
        if rng.random() < 0.3:
            headers.append('Content-Disposition: attachment; filename="fwd.eml"')
        return headers, "\r\n".join(inner_headers) + "\r\n\r\n" + inner_body
    return _leaf(rng, depth)


def _multipart(rng: random.Random, depth: int) -> tuple[list[str], str]:
    subtype = rng.choice(["mixed", "alternative", "related", "digest", "signed", "MIXED"])
    boundary = rng.choice(
        [
            f"----=_Part_{rng.randrange(10**6)}",
            "b",
            "bb",
            "=_boundary with space",
            "x" * 75,
            f"{depth}",
        ]  # fmt: skip
    )
    quote = rng.random() < 0.6 or " " in boundary
    param = f'boundary="{boundary}"' if quote else f"boundary={boundary}"
    headers = [f"Content-Type: multipart/{subtype}; {param}"]
    parts = []
    for _ in range(rng.randint(0, 4)):
        if subtype == "digest" and rng.random() < 0.6:
            inner_headers, inner_body = _message(rng, depth + 1)
            parts.append("\r\n".join(inner_headers) + "\r\n\r\n" + inner_body)
            continue
        part_headers, part_body = _part(rng, depth)
        if rng.random() < 0.04:
            parts.append("\r\n".join(part_headers))  # header cut short by the boundary
        else:
            parts.append("\r\n".join(part_headers) + "\r\n\r\n" + part_body)
    chunks = []
    if rng.random() < 0.5:
        chunks.append("This is a multi-part message in MIME format.\r\n")
    for text in parts:
        delim = f"--{boundary}"
        if rng.random() < 0.05:
            delim += "  trailing junk"
        chunks.append(delim + "\r\n" + text + "\r\n")
    ending = rng.random()
    if ending < 0.8:
        chunks.append(f"--{boundary}--\r\n")
        if rng.random() < 0.3:
            chunks.append("epilogue text\r\n")
    elif ending < 0.9:
        chunks.append(f"--{boundary}--")  # no newline after the final boundary
    # else: no final boundary at all
    return headers, "".join(chunks)


def _message(rng: random.Random, depth: int) -> tuple[list[str], str]:
    headers = _envelope_headers(rng)
    if rng.random() < 0.8:
        headers.append(rng.choice(["MIME-Version: 1.0", "Mime-Version: 1.0 (Apple)"]))
    part_headers, body = _multipart(rng, depth) if rng.random() < 0.5 else _part(rng, depth)
    return headers + part_headers, body


def generate_message(seed: int) -> bytes:
    """One message, a pure function of ``seed``."""
    rng = random.Random(seed)
    headers, body = _message(rng, 0)
    raw = ("\r\n".join(headers) + "\r\n\r\n" + body).encode("utf-8")
    mutate: list[Callable[[bytes], bytes]] = []
    if rng.random() < 0.35:
        mutate.append(lambda b: b.replace(b"\r\n", b"\n"))
    if rng.random() < 0.05:
        mutate.append(lambda b: b.replace(b"\r\n", b"\n", rng.randint(1, 20)))
    if rng.random() < 0.1:
        mutate.append(lambda b: b.rstrip(b"\r\n"))
    if rng.random() < 0.05:
        mutate.append(lambda b: b.replace(b"\r\n\r\n", b"\r\n", 1))  # no empty line
    if rng.random() < 0.05:
        mutate.append(lambda b: b.replace(b"Subject: ", b"Subject: \xe9\xe8 latin1 ", 1))
    if rng.random() < 0.05:
        mutate.append(lambda b: b"X-Leading: x\r\n  continued\r\n" + b)
    for step in mutate:
        raw = step(raw)
    return raw


def generate_corpus(seed: int, count: int) -> list[bytes]:
    """``count`` messages derived from ``seed`` (message i uses seed*100003 + i)."""
    return [generate_message(seed * 100_003 + index) for index in range(count)]
