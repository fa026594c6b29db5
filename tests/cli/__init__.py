"""Tests of the `cryptmail` command line, run as a real process (`python -m cryptmail`)."""
