#!/usr/bin/env bash
# The browser tests drive Debian's Chromium through Playwright (never
# `playwright install`, which downloads its own browsers). Install it when missing.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "Chromium is missing: install it with 'sudo apt-get install chromium' (the browser tests need it)." >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
