#!/usr/bin/env bash
# Install Debian's headless-capable Chromium for the browser tests
# (tests/dashboard/test_dashboard_browser.py) and the dashboard screenshot. Idempotent: does
# nothing when /usr/bin/chromium is already there.
# Needs root (or sudo) and the Debian package mirror; no browser download from elsewhere.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
    echo "chromium already installed: $(/usr/bin/chromium --version 2>/dev/null || echo unknown)"
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null
echo "installed: $(/usr/bin/chromium --version)"
