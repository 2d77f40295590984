#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine, then runs it.
# Used by the README's test command and by CI (.ci/run).  Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v dovecot >/dev/null 2>&1 || need_apt+=(dovecot-imapd dovecot-lmtpd)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium chromium-driver)
# The PostgreSQL store's tests run a private server (tests/conftest.py, fixture pg).
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  elif command -v sudo >/dev/null 2>&1; then
    sudo apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "note: cannot install ${need_apt[*]} (not root); their tests will be skipped" >&2
  fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
[ -x .venv/bin/uv ] || .venv/bin/pip install -q uv
.venv/bin/uv pip install -q --python .venv/bin/python -e '.[test]'

# Synapse lives in its own venv so its pins never fight ours (see shared notes).
if [ ! -x .venv-synapse/bin/python ] || ! .venv-synapse/bin/python -c 'import synapse' 2>/dev/null; then
  python3 -m venv .venv-synapse
  .venv/bin/uv pip install -q --python .venv-synapse/bin/python --compile-bytecode matrix-synapse
fi
export SYNAPSE_PYTHON="$PWD/.venv-synapse/bin/python"

.venv/bin/ruff check .
.venv/bin/mypy
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
