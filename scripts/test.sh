#!/usr/bin/env bash
# Pinwheel's test suite: what CI runs (.ci/run) and what the README's test command runs.
#
#   scripts/test.sh            formatting, lints, rustdoc links, unit + integration + property + doc
#                              tests, loom models
#   scripts/test.sh --quick    the tests only (no fmt/clippy, no loom)
#
# Everything it needs comes with the Rust toolchain; nothing is installed by hand.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
[ "${1:-}" = "--quick" ] && quick=1

step() { printf '\n==> %s\n' "$*"; }

if [ $quick -eq 0 ]; then
  step "cargo fmt --check"
  cargo fmt --all -- --check
  step "cargo clippy (all targets, warnings are errors)"
  cargo clippy --workspace --all-targets --quiet -- -D warnings
  step "cargo doc (broken links are errors)"
  RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
fi

step "tests (unit, integration, property, doc)"
# The property tests and the scenario suites run in release mode with debug assertions and
# overflow checks on (the test profile in Cargo.toml), so 10,000-case proptests stay fast.
cargo test --workspace --profile test-opt

if [ $quick -eq 0 ] && [ -x scripts/loom.sh ]; then
  step "loom models of the lock-free code"
  scripts/loom.sh
fi

step "all tests passed"
