#!/usr/bin/env bash
# Installs what xinwei needs on a fresh Debian machine with Python 3.11: Debian packages,
# a virtualenv in .venv, pinned Python packages. Idempotent and quiet when nothing changed.
# Usage: scripts/setup.sh [dev]    (dev: test and benchmark tools too)
set -euo pipefail
cd "$(dirname "$0")/.."
want_dev=${1:-}

# Debian packages: the CJK TrueType font embedded in certificates and screenshots,
# chromium for browser tests, wrk for benches, zbar-tools to decode certificate QR codes.
debs=(fonts-wqy-zenhei)
if [ "$want_dev" = dev ]; then debs+=(chromium wrk zbar-tools); fi
missing=()
for pkg in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
reqs=requirements.txt
[ "$want_dev" = dev ] && reqs=requirements-dev.txt
stamp=".venv/.installed-$(cat requirements*.txt | sha256sum | cut -c1-16)-${want_dev:-run}"
if [ ! -f "$stamp" ]; then
  echo "setup: installing Python packages from $reqs"
  .venv/bin/pip install -q -r "$reqs"
  touch "$stamp"
fi
