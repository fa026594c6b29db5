"""Tests of cryptmail.imap.message: MIME analysis, part map, sections, SEARCH."""
