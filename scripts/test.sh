#!/usr/bin/env bash
# Runs every test: Rust unit and end-to-end tests, then the official OpenAI Python SDK against the
# real binaries, then the dashboard in headless Chromium. Installs what it needs (a Python venv with
# the SDK, playwright-core from tests/browser/package-lock.json) on first run; Chromium itself is
# Debian's package (`apt-get install chromium`, which .ci/run does).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --bins
cargo test

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
