#!/usr/bin/env bash
# Debian's Chromium and its WebDriver, for the reviewers' web page test (tests/test_web.py).
# Idempotent: does nothing when both are installed. Needs root (CI runs as root).
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
