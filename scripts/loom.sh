#!/usr/bin/env bash
# Loom models of Pinwheel's lock-free code (docs/reliability.md test 17, `spsc_queue_loom_model`).
#
#   scripts/loom.sh                 run every loom model (engine/tests/loom_ring.rs, loom_waker.rs)
#   scripts/loom.sh fifo            only the models whose name contains "fifo"
#
# The engine is built with `--cfg loom`, which swaps `pinwheel_engine::sync` to loom's atomics,
# `Arc`, `UnsafeCell` and threads; loom then runs each model under every interleaving within the
# preemption bound below. It uses the `test-opt` profile (optimised, but with debug assertions and
# overflow checks on, so the ring's index `debug_assert!`s are checked in every explored execution).
#
# Tunables (environment):
#   LOOM_MAX_PREEMPTIONS  preemption bound per execution (default 3: every model completes
#                         exhaustively within that bound in a few minutes on 2 cores)
#   LOOM_TARGET_DIR       where the loom build goes (default: <target dir>/loom, kept apart from
#                         the normal build so switching RUSTFLAGS does not rebuild everything)
#   LOOM_LOG, LOOM_CHECKPOINT_FILE, LOOM_MAX_BRANCHES  passed through to loom (see loom's docs)
#
# Needs only the Rust toolchain (loom is a normal crate dependency under cfg(loom)).
set -euo pipefail
cd "$(dirname "$0")/.."

export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}"
export RUSTFLAGS="${RUSTFLAGS:-} --cfg loom"
export CARGO_TARGET_DIR="${LOOM_TARGET_DIR:-${CARGO_TARGET_DIR:-$PWD/target}/loom}"

start=$(date +%s)
echo "loom: LOOM_MAX_PREEMPTIONS=$LOOM_MAX_PREEMPTIONS, target dir $CARGO_TARGET_DIR"
# One model at a time: loom models are single-threaded, but running them side by side on a
# 2-core machine only slows each down.
cargo test -p pinwheel-engine --profile test-opt --test loom_ring --test loom_waker -- --test-threads=1 "$@"
echo "loom: all models passed in $(( $(date +%s) - start )) s"
