#!/usr/bin/env bash
# Builds the browser console (console/dist), which castplane-control serves with --console-dir.
# Installs its npm packages exactly as package-lock.json pins them, only when that changed.
set -euo pipefail
cd "$(dirname "$0")/../console"

if ! command -v npm >/dev/null 2>&1; then
  echo "npm is missing: install Node.js 20 or newer (https://nodejs.org)" >&2
  exit 1
fi
node -e 'const [major, minor] = process.versions.node.split(".").map(Number);
  if (major < 20 || (major === 20 && minor < 19)) { console.error(`Node.js ${process.versions.node} is too old: the console needs 20.19 or newer`); process.exit(1); }'

stamp=node_modules/.castplane-lock
lock=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$lock" ]; then
  npm ci --no-audit --no-fund --loglevel=error
  echo "$lock" >"$stamp"
fi
npm run --silent build >/dev/null
