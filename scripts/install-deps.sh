#!/usr/bin/env bash
# Install everything the test suite needs on Debian 12: the real servers the
# integration tests start (Postfix, MariaDB, PostgreSQL, Dovecot, Chromium,
# mbsync, swaks) and cryptmail itself with its test extras.
#
# Idempotent and non-interactive. apt is skipped when every package is
# already installed, pip when every requirement is already met by an editable
# install of this checkout. The tests start private server instances, so no
# system daemon may keep running after a package install (they would take
# ports 25, 143 and 3306): daemons are kept from starting, and stopped if they
# started anyway. Set CRYPTMAIL_FORCE_PIP=1 to run pip regardless. With
# --python-only, only the Python packages (the fast test lane needs no server).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/python.sh
source scripts/python.sh

PACKAGES=(
  postfix mariadb-server postgresql
  dovecot-core dovecot-imapd dovecot-lmtpd dovecot-sieve
  chromium chromium-driver
  isync swaks ca-certificates
  sieve-connect
  roundcube-core roundcube-plugins roundcube-sqlite3 php-cli php-sqlite3
  php-intl php-mbstring php-xml
)
SERVICES=(postfix mariadb postgresql dovecot)
POLICY=/usr/sbin/policy-rc.d

log() { echo "install-deps: $*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing_packages() {
  local pkg status
  for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null || true)
    [[ $status == ii* ]] || echo "$pkg"
  done
}

stop_system_daemons() {
  local svc
  for svc in "${SERVICES[@]}"; do
    if [ -x "/etc/init.d/$svc" ] && as_root "/etc/init.d/$svc" status >/dev/null 2>&1; then
      log "stopping the system $svc that the package install started"
      as_root "/etc/init.d/$svc" stop >/dev/null 2>&1 || log "could not stop $svc; stop it by hand"
    fi
  done
}

install_packages() {
  local -a missing
  mapfile -t missing < <(missing_packages)
  if [ "${#missing[@]}" -eq 0 ]; then
    log "Debian packages already installed"
    return
  fi
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  echo "postfix postfix/main_mailer_type select No configuration" | as_root debconf-set-selections

  # Keep maintainer scripts from starting daemons; containers often ship this already.
  local made_policy=0
  if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\n# made by cryptmail scripts/install-deps.sh for the install\nexit 101\n' \
      | as_root tee "$POLICY" >/dev/null
    as_root chmod 755 "$POLICY"
    made_policy=1
  fi
  local rc=0
  as_root apt-get update -q || rc=$?
  if [ "$rc" -eq 0 ]; then
    as_root apt-get install -y -q --no-install-recommends \
      -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
      "${missing[@]}" || rc=$?
  fi
  if [ "$made_policy" -eq 1 ]; then as_root rm -f "$POLICY"; fi
  [ "$rc" -eq 0 ] || { log "apt-get failed with exit code $rc"; exit "$rc"; }
  stop_system_daemons

  mapfile -t missing < <(missing_packages)
  if [ "${#missing[@]}" -ne 0 ]; then
    log "still missing after apt-get install: ${missing[*]}"
    exit 1
  fi
}

# Exit 0 when every requirement of cryptmail and its test extra is met and cryptmail
# is installed in editable mode from this checkout (CI clones into a new folder).
python_deps_current() {
  "$PYTHON" - <<'PY'
import json
import sys
import tomllib
from importlib import metadata
from pathlib import Path

try:
    from packaging.requirements import Requirement
except ImportError:
    from pip._vendor.packaging.requirements import Requirement

root = Path.cwd().resolve()
project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
wanted = [*project["dependencies"], *project["optional-dependencies"]["test"]]


def satisfied(text: str, seen: set[str]) -> bool:
    requirement = Requirement(text)
    if requirement.marker is not None and not requirement.marker.evaluate():
        return True
    try:
        dist = metadata.distribution(requirement.name)
    except metadata.PackageNotFoundError:
        return False
    if not requirement.specifier.contains(dist.version, prereleases=True):
        return False
    for extra in requirement.extras:
        for sub in dist.requires or []:
            subreq = Requirement(sub)
            key = f"{requirement.name}[{extra}]:{subreq.name}"
            if key in seen or subreq.marker is None:
                continue
            if subreq.marker.evaluate({"extra": extra}):
                seen.add(key)
                if not satisfied(f"{subreq.name}{subreq.specifier}", seen):
                    return False
    return True


try:
    own = metadata.distribution("cryptmail")
    direct = json.loads(own.read_text("direct_url.json") or "{}")
except metadata.PackageNotFoundError:
    sys.exit(1)
editable_here = (
    direct.get("dir_info", {}).get("editable")
    and direct.get("url", "").removeprefix("file://") == str(root)
)
sys.exit(0 if editable_here and all(satisfied(r, set()) for r in wanted) else 1)
PY
}

install_python() {
  if [ "${CRYPTMAIL_FORCE_PIP:-0}" != 1 ] && python_deps_current; then
    log "Python test dependencies already installed"
    return
  fi
  log "pip install -e '.[test]'"
  # Playwright drives Debian's /usr/bin/chromium; never `playwright install`.
  "$PYTHON" -m pip install -q --disable-pip-version-check --root-user-action=ignore -e '.[test]'
}

# The package is installed editable, so its bytecode is whatever imports wrote; where
# PYTHONDONTWRITEBYTECODE is set (CI images often set it) that is nothing, and every
# process the tests start (serve, its LMTP workers, the CLI) compiled all of src/ again:
# about 0.8 s of CPU each. A regular `pip install` compiles once at install, as here.
compile_sources() {
  "$PYTHON" -m compileall -q -j 0 src >/dev/null || log "compileall failed (tests still run, slower)"
}

if [ "${1:-}" != "--python-only" ]; then
  install_packages
fi
install_python
compile_sources
