#!/usr/bin/env bash
# Install cryptmail from this checkout and run it on its embedded defaults (SQLite and
# a blob directory under ./cryptmail-data; LMTP on 127.0.0.1:2424). Arguments go to
# `cryptmail serve`, e.g. `bash scripts/serve.sh --imap 127.0.0.1:1143`.
# On Debian's own python3 this installs into a virtual environment in .venv (see
# scripts/python.sh); run later commands as `.venv/bin/cryptmail ...` there.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/python.sh
source scripts/python.sh
"$PYTHON" -m pip install -q --disable-pip-version-check --root-user-action=ignore .
exec "$PYTHON" -m cryptmail serve "$@"
