"""Tests of cryptmail.imap: reader and parser, responses, MIME analysis, SEARCH."""
