#!/usr/bin/env bash
# docs/reliability.md test 18, `unsafe_under_asan_tsan_valgrind`: the engine's and the operators'
# test suites (unit, integration, property tests) under AddressSanitizer, which reports
# out-of-bounds accesses, use after free and leaks in the unsafe modules (the ring, the prefetch
# hint, the sync shim, the checkpoint file I/O) and everywhere else.
#
#   scripts/asan.sh            both crates
#   scripts/asan.sh -p CRATE   one crate (any further arguments go to `cargo test`)
#
# The sanitizer needs an unstable compiler flag: `RUSTC_BOOTSTRAP=1` allows it on the stable
# toolchain. The host target is given explicitly so that build scripts and proc macros are not
# instrumented. It runs the optimized test profile; a report fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

host=$(rustc -vV | sed -n 's/^host: //p')
args=("$@")
[ ${#args[@]} -eq 0 ] && args=(-p pinwheel-engine -p pinwheel-operators)

export RUSTC_BOOTSTRAP=1
export RUSTFLAGS="-Zsanitizer=address ${RUSTFLAGS:-}"
export RUSTDOCFLAGS="-Zsanitizer=address ${RUSTDOCFLAGS:-}"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
# Tests that bound the process's memory skip the bound (shadow memory inflates it).
export PINWHEEL_SANITIZER=address
cargo test --target "$host" --target-dir target/asan --profile test-opt --lib --tests --no-fail-fast \
  "${args[@]}"
echo "asan: no reports"
