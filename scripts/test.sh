#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, then every test (unit, the
# SQLite + PostgreSQL conformance suite, the end-to-end agent tests with real icecast2), and
# the console's browser tests (Playwright driving Chromium against a real fleet).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# Tests mostly wait on real servers (icecast2 takes ~3 s to stop), so run more of them at once
# than there are cores.
cargo test --workspace --locked -- --test-threads "${CASTPLANE_TEST_THREADS:-4}"

# The console: built from the protos (type-checked), then driven in a real browser against a
# real control plane, agent and icecast2 that `console-fixture` starts.
./scripts/build-console.sh
cargo build --locked -q -p castplane-integration-tests --bin console-fixture
(cd console && npx playwright test)
