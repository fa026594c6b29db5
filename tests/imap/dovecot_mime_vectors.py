# ruff: noqa: E501 -- answers recorded from Dovecot 2.3.19.1, one byte string per line
"""ENVELOPE, BODYSTRUCTURE and BODY that Dovecot 2.3.19.1 gave for small messages.

Recorded once from a private Dovecot (Maildir files written byte for byte, FETCH over
IMAP); each entry: message, BODYSTRUCTURE, BODY, ENVELOPE. Do not edit by hand: an
entry that stops matching means our MIME code changed, not the vector.
"""

VECTORS = {
    "plain_lf": (
        b"Subject: plain\n\nbody\nline2\n",
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 13 2 NIL NIL NIL NIL)',
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 13 2)',
        b'(NIL "plain" NIL NIL NIL NIL NIL NIL NIL NIL)',
    ),
    "empty": (
        b"",
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL)',
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0)',
        b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)",
    ),
    "header_only_no_newline": (
        b"Subject: x",
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL)',
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0)',
        b'(NIL "x" NIL NIL NIL NIL NIL NIL NIL NIL)',
    ),
    "multipart_mixed": (
        b'From: "Alice A." <alice@example.org>\r\nTo: bob@example.com, Group: c@d, e@f;\r\nSubject: =?utf-8?q?h=C3=A9llo?= world\r\nDate: Mon, 4 Mar 2024 10:00:00 +0100\r\nMessage-ID: <abc@x>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="XX"\r\n\r\npreamble\r\n--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello\r\nthere\r\n--XX\r\nContent-Type: message/rfc822\r\n\r\nFrom: x@y\r\nSubject: inner\r\n\r\ninner body\r\n--XX\r\nContent-Type: application/pdf; name*0*=utf-8\'\'a%20b; name*1=.pdf\r\nContent-Disposition: attachment; filename="x.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n--XX--\r\nepilogue\r\n',
        b'(("text" "plain" ("charset" "utf-8") NIL NIL "7bit" 12 1 NIL NIL NIL NIL)("message" "rfc822" NIL NIL NIL "7bit" 39 (NIL "inner" ((NIL NIL "x" "y")) ((NIL NIL "x" "y")) ((NIL NIL "x" "y")) NIL NIL NIL NIL NIL) ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 10 0 NIL NIL NIL NIL) 3 NIL NIL NIL NIL)("application" "pdf" ("name*" "utf-8\'\'a%20b.pdf") NIL NIL "base64" 4 NIL ("attachment" ("filename" "x.pdf")) NIL NIL) "mixed" ("boundary" "XX") NIL NIL NIL)',
        b'(("text" "plain" ("charset" "utf-8") NIL NIL "7bit" 12 1)("message" "rfc822" NIL NIL NIL "7bit" 39 (NIL "inner" ((NIL NIL "x" "y")) ((NIL NIL "x" "y")) ((NIL NIL "x" "y")) NIL NIL NIL NIL NIL) ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 10 0) 3)("application" "pdf" ("name*" "utf-8\'\'a%20b.pdf") NIL NIL "base64" 4) "mixed")',
        b'("Mon, 4 Mar 2024 10:00:00 +0100" "=?utf-8?q?h=C3=A9llo?= world" (("Alice A." NIL "alice" "example.org")) (("Alice A." NIL "alice" "example.org")) (("Alice A." NIL "alice" "example.org")) ((NIL NIL "bob" "example.com")(NIL NIL "Group" NIL)(NIL NIL "c" "d")(NIL NIL "e" "f")(NIL NIL NIL NIL)) NIL NIL NIL "<abc@x>")',
    ),
    "no_mime_version_cte_ignored": (
        b"Content-Transfer-Encoding: base64\r\nSubject: s\r\n\r\nAAAA\r\n",
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 6 1 NIL NIL NIL NIL)',
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 6 1)',
        b'(NIL "s" NIL NIL NIL NIL NIL NIL NIL NIL)',
    ),
    "broken_content_types": (
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text\r\n\r\nx\r\n--b\r\nContent-Type: image/png x; d=e\r\n\r\ny\r\n--b\r\nContent-Type: text/\r\n\r\nz\r\n--b--\r\n",
        b'(("text" "" ("charset" "us-ascii") NIL NIL "7bit" 1 0 NIL NIL NIL NIL)("" "" NIL NIL NIL "7bit" 1 NIL NIL NIL NIL)("" "" NIL NIL NIL "7bit" 1 NIL NIL NIL NIL) "mixed" ("boundary" "b") NIL NIL NIL)',
        b'(("text" "" ("charset" "us-ascii") NIL NIL "7bit" 1 0)("" "" NIL NIL NIL "7bit" 1)("" "" NIL NIL NIL "7bit" 1) "mixed")',
        b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)",
    ),
    "missing_final_boundary": (
        b'Content-Type: multipart/alternative; boundary="q"\n\n--q\nContent-Type: text/plain\n\na\n--q\nContent-Type: text/html\n\n<b>b</b>\n',
        b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 1 0 NIL NIL NIL NIL)("text" "html" ("charset" "us-ascii") NIL NIL "7bit" 10 1 NIL NIL NIL NIL) "alternative" ("boundary" "q") NIL NIL NIL)',
        b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 1 0)("text" "html" ("charset" "us-ascii") NIL NIL "7bit" 10 1) "alternative")',
        b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)",
    ),
    "digest": (
        b"Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nFrom: a@b\r\nSubject: one\r\n\r\nx\r\n--d\r\nContent-Type: text/plain\r\n\r\ny\r\n--d--\r\n",
        b'(("message" "rfc822" NIL NIL NIL "7bit" 28 (NIL "one" ((NIL NIL "a" "b")) ((NIL NIL "a" "b")) ((NIL NIL "a" "b")) NIL NIL NIL NIL NIL) ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 1 0 NIL NIL NIL NIL) 3 NIL NIL NIL NIL)("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 1 0 NIL NIL NIL NIL) "digest" ("boundary" "d") NIL NIL NIL)',
        b'(("message" "rfc822" NIL NIL NIL "7bit" 28 (NIL "one" ((NIL NIL "a" "b")) ((NIL NIL "a" "b")) ((NIL NIL "a" "b")) NIL NIL NIL NIL NIL) ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 1 0) 3)("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 1 0) "digest")',
        b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)",
    ),
    "header_cut_by_boundary": (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nX: y\r\n--b--\r\n",
        b'(("message" "rfc822" NIL NIL NIL "7bit" 0 (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL) 0 NIL NIL NIL NIL)("message" "rfc822" NIL NIL NIL "7bit" 6 (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL) 1 NIL NIL NIL NIL) "mixed" ("boundary" "b") NIL NIL NIL)',
        b'(("message" "rfc822" NIL NIL NIL "7bit" 0 (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0) 0)("message" "rfc822" NIL NIL NIL "7bit" 6 (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0) 1) "mixed")',
        b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)",
    ),
    "same_boundary_prefix": (
        b"Content-Type: multipart/alternative; boundary=----=_A\r\n\r\n------=_A\r\nContent-Type: multipart/signed; boundary=----=_B\r\n\r\n------=_B\r\nContent-Type: text/html\r\n\r\nx\r\n------=_B--\r\nepilogue text\r\n\r\n------=_A--",
        b'((("text" "html" ("charset" "us-ascii") NIL NIL "7bit" 1 0 NIL NIL NIL NIL)("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL) "signed" ("boundary" "----") NIL NIL NIL) "alternative" ("boundary" "----") NIL NIL NIL)',
        b'((("text" "html" ("charset" "us-ascii") NIL NIL "7bit" 1 0)("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0) "signed") "alternative")',
        b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)",
    ),
    "rfc2231_mixed": (
        b'MIME-Version: 1.0\r\nContent-Type: text/plain; name*0*=utf-8\'\'a%20; name*1=b; filename*=x; c*2=z\r\nContent-Disposition: inline; filename="a\\"b"\r\nContent-Language: en, de-CH\r\nContent-Location: http://x/\r\n y\r\nContent-ID: <id@x>\r\nContent-Description: =?utf-8?q?d=C3=A9sc?=\r\n\r\nx',
        b'("text" "plain" ("c*2" "z" "filename*1*" "x" "name*" "utf-8\'\'a%20b" "charset" "us-ascii") "<id@x>" "=?utf-8?q?d=C3=A9sc?=" "7bit" 1 0 NIL ("inline" ("filename" "a\\"b")) ("en" "de-CH") "http://x/ y")',
        b'("text" "plain" ("c*2" "z" "filename*1*" "x" "name*" "utf-8\'\'a%20b" "charset" "us-ascii") "<id@x>" "=?utf-8?q?d=C3=A9sc?=" "7bit" 1 0)',
        b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)",
    ),
    "addresses": (
        b'From: Dr. Carol "CJ" Jones a.b.c@example.com\r\nTo: a. b@c, x@a..b, "foo", <@r1,@r2:u@d>, undisclosed-recipients:;\r\nCc: a@b, , (c) d@e\r\nFrom: second@example.org\r\nReply-To: "Smith,\r\n\tJohn" <s@j>\r\nSubject:   Spaced   \t out "q"  \r\nDate: Wed,\r\n 5 Jun 2019 08:09:10 +0000\r\nIn-Reply-To: <p@x> (c)\r\n\r\n',
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL)',
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0)',
        b'("Wed, 5 Jun 2019 08:09:10 +0000" {14}\r\nSpaced out "q" (({24}\r\nDr. Carol CJ Jones a.b.c NIL "MISSING_MAILBOX" "MISSING_DOMAIN")(NIL NIL "second" "example.org")) (({24}\r\nDr. Carol CJ Jones a.b.c NIL "MISSING_MAILBOX" "MISSING_DOMAIN")(NIL NIL "second" "example.org")) (({11}\r\nSmith, John NIL "s" "j")) (({4}\r\na. b NIL "MISSING_MAILBOX" "MISSING_DOMAIN")) ((NIL NIL "a" "b")(NIL NIL "MISSING_MAILBOX" "MISSING_DOMAIN")(NIL NIL "d" "e")) NIL "<p@x> (c)" NIL)',
    ),
}
