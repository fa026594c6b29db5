# Sourced by the other scripts: sets PYTHON, the interpreter cryptmail is installed
# into and run with.
#
# Debian's own python3 refuses `pip install` into the system (PEP 668:
# "externally-managed-environment"), so there a virtual environment in .venv is made
# once (with Debian's python3-venv, installed if missing) and used from then on. A
# python3 that accepts installs (a pyenv build, an activated venv) is used as it is.
# Set PYTHON yourself to choose another one.

_python_is_debians() {
  python3 - <<'PY'
import os
import sys
import sysconfig

marker = os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")
sys.exit(0 if os.path.exists(marker) and sys.prefix == sys.base_prefix else 1)
PY
}

if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then
    PYTHON=.venv/bin/python
  elif _python_is_debians; then
    if ! python3 -c "import ensurepip" 2>/dev/null; then
      echo "python.sh: installing Debian's python3-venv for a virtual environment in .venv"
      _sudo=()
      [ "$(id -u)" -eq 0 ] || _sudo=(sudo)
      "${_sudo[@]}" apt-get update -q
      "${_sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv
    fi
    echo "python.sh: this python3 is Debian's (PEP 668); using a virtual environment in .venv"
    python3 -m venv .venv
    PYTHON=.venv/bin/python
  else
    PYTHON=python3
  fi
fi
export PYTHON
