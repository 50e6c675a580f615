#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, the Kubernetes manifests and the
# Dockerfile (rendered and validated, scripts/check-k8s.sh), then every test (unit, the
# SQLite + PostgreSQL conformance suite, and the end-to-end agent tests with real icecast2).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
./scripts/check-k8s.sh
# Tests mostly wait on real servers (icecast2 takes ~3 s to stop), so run more of them at once
# than there are cores.
cargo test --workspace --locked -- --test-threads "${CASTPLANE_TEST_THREADS:-4}"
