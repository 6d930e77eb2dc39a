#!/usr/bin/env bash
# The browser tests drive Debian's Chromium through Playwright (never
# `playwright install`, which downloads its own browsers), and WeasyPrint
# renders the completion certificate's PDF with Pango; the certificate's test
# reads the PDF back with pdftotext (poppler-utils); a test runs makemessages
# (gettext) to find messages not yet translated. Install what is missing.
set -euo pipefail
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
for package in libpango-1.0-0 libpangoft2-1.0-0 poppler-utils gettext; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "Missing: install with 'sudo apt-get install ${missing[*]}' (Chromium for the browser tests, Pango for the certificate PDF, poppler-utils for its test, gettext for the translations' test)." >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
