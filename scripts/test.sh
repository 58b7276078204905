#!/usr/bin/env bash
# Runs every test: Rust unit and end-to-end tests, then the official OpenAI Python SDK against the
# real binaries, then the dashboard in headless Chromium. Installs what it needs (a Python venv with
# the SDK, playwright-core from tests/browser/package-lock.json) on first run; Chromium itself is
# Debian's package (`apt-get install chromium`, which .ci/run does). The store and end-to-end
# tests also run on PostgreSQL and Redis: scripts/services.sh starts throwaway servers (Debian's
# `postgresql` and `redis-server` packages) and exports GOPHERGATE_TEST_POSTGRES_URL and
# GOPHERGATE_TEST_REDIS_URL.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --bins
# shellcheck source=scripts/services.sh
source scripts/services.sh
if ! services_up; then
  if [ -n "${CI:-}" ] && [ "${CI:-}" != "false" ]; then
    echo "test.sh: CI must run the PostgreSQL and Redis tests, but a server could not be started (see above)" >&2
    exit 1
  fi
  echo "test.sh: going on without it; the tests that need it will say they are skipped" >&2
fi
trap services_down EXIT
cargo test
services_down

venv=target/sdk-venv
stamp="$venv/.requirements"
if [ ! -x "$venv/bin/pytest" ] || ! cmp -s tests/sdk/requirements.txt "$stamp"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/sdk/requirements.txt
  cp tests/sdk/requirements.txt "$stamp"
fi
"$venv/bin/pytest" -q tests/sdk

# The dashboard end to end in Debian's Chromium (signs in, watches a request arrive live, creates
# and revokes a key, screenshots every page; UPDATE_SCREENSHOTS=1 refreshes docs/screenshots/).
browser=tests/browser
if [ ! -d "$browser/node_modules/playwright-core" ] \
  || ! cmp -s "$browser/package-lock.json" "$browser/node_modules/.gg-package-lock.json"; then
  (cd "$browser" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$browser/package-lock.json" "$browser/node_modules/.gg-package-lock.json"
fi
(cd "$browser" && node --test --test-reporter=spec dashboard.test.mjs)
