#!/usr/bin/env bash
# Unit tests for the browser client (client/state-recovery.js): Node's built-in test
# runner, no npm packages. Needs Node >= 20.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v node >/dev/null 2>&1; then
  echo "js-test: node not found (install Node.js 20 or newer)" >&2
  exit 1
fi
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
  echo "js-test: Node $(node --version) is too old (need 20 or newer)" >&2
  exit 1
fi

exec node --test client/test/ "$@"
