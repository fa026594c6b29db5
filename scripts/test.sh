#!/usr/bin/env bash
# The whole check, as CI runs it: install what is missing, run pytest, then
# ruff and mypy. Exits non-zero if any of them fails; pytest's "no tests
# collected" (exit 5) counts as a failure. Extra arguments go to pytest, e.g.
#   bash scripts/test.sh tests/integration -k postfix
#   bash scripts/test.sh --run-slow
# The fast lane for the edit-test loop: no apt, no real servers, the unit tests on
# every core, then ruff and mypy (about five minutes here):
#   bash scripts/test.sh --fast [pytest arguments]
# The pytest timeout per test comes from pyproject.toml; override it with
# CRYPTMAIL_TEST_TIMEOUT=seconds.
set -uo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/python.sh
source scripts/python.sh

fast=0
if [ "${1:-}" = "--fast" ]; then
  fast=1
  shift
fi

if [ "$fast" -eq 1 ]; then
  bash scripts/install-deps.sh --python-only || { echo "test.sh: install-deps failed"; exit 1; }
else
  bash scripts/install-deps.sh || { echo "test.sh: scripts/install-deps.sh failed"; exit 1; }
fi

log_dir=$(mktemp -d)
trap 'rm -rf "$log_dir"' EXIT

pytest_args=(-q -p no:cacheprovider -ra --durations=15)
# Every lane runs on every core (pytest-xdist): the whole suite took 40 minutes in one
# process on CI's 2-core machine and about half that on two. Each worker starts its own
# MariaDB, PostgreSQL and SeaweedFS (session fixtures) on ports of its own, and every
# other server per test, so the workers share nothing but the machine.
# CRYPTMAIL_TEST_WORKERS=0 runs in one process (a test that needs the machine alone).
workers=${CRYPTMAIL_TEST_WORKERS:-$(nproc)}
if [ "$workers" != 0 ]; then
  pytest_args+=(-n "$workers")
fi
if [ "$fast" -eq 1 ]; then
  pytest_args+=(--ignore=tests/integration)
fi
if [ -n "${CRYPTMAIL_TEST_TIMEOUT:-}" ]; then
  pytest_args+=("--timeout=$CRYPTMAIL_TEST_TIMEOUT")
fi

started=$SECONDS
"$PYTHON" -m pytest "${pytest_args[@]}" "$@" 2>&1 | tee "$log_dir/pytest.log"
pytest_rc=${PIPESTATUS[0]}
pytest_seconds=$((SECONDS - started))
# pytest -q ends with its summary line ("N passed, M failed in Xs").
closing=$(grep -E '(passed|failed|errors?|skipped|deselected|no tests ran).* in [0-9.]+s' \
  "$log_dir/pytest.log" | tail -n 1)

echo
echo "== ruff check src tests"
"$PYTHON" -m ruff check src tests
ruff_rc=$?

echo "== mypy (strict, configured in pyproject.toml): the package, then tests/ and bench/"
"$PYTHON" -m mypy
mypy_rc=$?
# The test modules import each other from tests/ (pytest's rootdir), bench/ from bench/;
# each tree is checked on its own, since both have a module named delivery.
MYPYPATH=src:tests "$PYTHON" -m mypy --explicit-package-bases tests || mypy_rc=$?
MYPYPATH=src:bench "$PYTHON" -m mypy --explicit-package-bases bench || mypy_rc=$?

echo
echo "test.sh: pytest exit $pytest_rc after ${pytest_seconds}s, ruff exit $ruff_rc, mypy exit $mypy_rc"
status=0
if [ "$pytest_rc" -eq 5 ]; then
  echo "test.sh: FAIL: pytest collected no tests; a run that tests nothing must not pass"
  status=1
elif [ "$pytest_rc" -ne 0 ]; then
  echo "test.sh: FAIL: pytest"
  status=$pytest_rc
fi
if [ "$ruff_rc" -ne 0 ]; then
  echo "test.sh: FAIL: ruff check"
  [ "$status" -ne 0 ] || status=$ruff_rc
fi
if [ "$mypy_rc" -ne 0 ]; then
  echo "test.sh: FAIL: mypy"
  [ "$status" -ne 0 ] || status=$mypy_rc
fi
# Repeat pytest's closing line last, where CI and people look for it.
if [ -n "$closing" ]; then echo "$closing"; else echo "test.sh: pytest printed no summary line"; fi
exit "$status"
