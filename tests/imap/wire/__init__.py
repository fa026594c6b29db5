"""Tests of cryptmail.imap.wire: reader, parser, responses, sequence sets."""
