#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, the Kubernetes manifests and the
# Dockerfile (rendered and validated, scripts/check-k8s.sh), then every test under cargo
# nextest (unit, the SQLite + PostgreSQL conformance suite, the fuzz test of the public API,
# and the end-to-end agent tests with real icecast2, liquidsoap and nginx-rtmp), and the
# console's browser tests (Playwright driving Chromium against a real fleet).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
./scripts/check-k8s.sh
# nextest runs every test in its own process, with one throwaway PostgreSQL for the whole run
# (see .config/nextest.toml); CASTPLANE_TEST_THREADS overrides how many run at once.
# CI reports every failure, not only the first.
cargo nextest run --workspace --locked ${CI:+--no-fail-fast} \
  ${CASTPLANE_TEST_THREADS:+--test-threads "$CASTPLANE_TEST_THREADS"}

# The console: built from the protos (type-checked), then driven in a real browser against a
# real control plane, agent and icecast2 that `console-fixture` starts.
./scripts/build-console.sh
cargo build --locked -q -p castplane-integration-tests --bin console-fixture
(cd console && npx playwright test)
