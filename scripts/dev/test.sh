#!/usr/bin/env bash
# The test command (npm test): installs what it needs, rebuilds dist/ if the source is newer,
# then runs the unit tests and the integration tests (real sshd, nix, test VPS).
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/dev/deps.sh

if [ -n "$(find src scripts/facts.sh package.json -newer dist/cli/index.js -print -quit 2>/dev/null)" ] || [ ! -f dist/cli/index.js ]; then
  echo "test: dist/ is older than src/: rebuilding" >&2
  npm run build >&2
fi

# Shell linting and nix-instantiate --parse run inside jest (__tests__/integration/static-checks.test.ts).
npx jest --ci "$@"
