#!/usr/bin/env bash
# Runs every test: Rust unit and end-to-end tests, then the official OpenAI Python SDK against the
# real binaries. Installs what it needs (a Python venv with the SDK) on first run.
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
