#!/usr/bin/env bash
# Installs what castplane's demo and tests need on Debian 12: the streaming servers
# (icecast2, ffmpeg, liquidsoap, nginx with the RTMP module), PostgreSQL's server binaries
# (the tests start their own throwaway cluster), Chromium (the console's browser tests drive
# Debian's build; Playwright never downloads one), Prometheus (its `promtool` checks what
# /metrics serves; the package starts no server here) and Python's venv (scripts/check-k8s.sh
# installs its tools into one). Idempotent; quiet when all is present.
set -euo pipefail

packages=(icecast2 ffmpeg liquidsoap nginx libnginx-mod-rtmp postgresql chromium ca-certificates curl prometheus python3 python3-venv)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  # --no-install-recommends keeps it to ~450 MB (Chromium is half of it); no service is started by these packages
  # except PostgreSQL's own cluster, which castplane does not use.
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v npm >/dev/null 2>&1; then
  echo "npm is missing: install Node.js 20.19 or newer (https://nodejs.org) to build the console" >&2
  exit 1
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is missing: install Rust (https://rustup.rs), version 1.94 or newer" >&2
  exit 1
fi

# The test runner (scripts/test.sh); built from crates.io when the machine lacks it.
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest" >&2
  cargo install --locked cargo-nextest
fi
