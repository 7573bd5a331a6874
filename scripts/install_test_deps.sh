#!/usr/bin/env bash
# What the tests need beyond the virtualenv, from Debian's archive: Chromium and its
# WebDriver (the reviewers' web page test, tests/test_web.py) and a Java runtime (the
# Spark engine's tests, tests/test_spark.py). Idempotent: installs only what is missing.
# Needs root (CI runs as root).
set -euo pipefail
missing=()
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  missing+=(chromium chromium-driver)
fi
if ! command -v java >/dev/null 2>&1; then
  missing+=(openjdk-17-jre-headless)
fi
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
