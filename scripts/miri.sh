#!/usr/bin/env bash
# Miri on the unsafe code whose soundness rests on aliasing and memory-model rules that no
# sanitizer sees: the copy-on-write rows of the checkpoint freeze (engine/src/cow_vec.rs: a reader
# thread cloning rows out of a buffer the shard is writing elsewhere) and the exchange's SPSC ring
# (engine/src/exchange/ring.rs: its unit tests and the two-thread stress tests of
# engine/tests/ring_stress.rs, under Stacked Borrows and the data-race detector).
# docs/reliability.md test 18; a few minutes.
#
# Needs the nightly toolchain; installs its miri and rust-src components if they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo +nightly miri --version >/dev/null 2>&1; then
  rustup toolchain install nightly --profile minimal --component miri,rust-src
fi
export MIRIFLAGS="${MIRIFLAGS:--Zmiri-disable-isolation}"
cargo +nightly miri test -p pinwheel-engine --lib cow_vec
cargo +nightly miri test -p pinwheel-engine --lib exchange::ring
cargo +nightly miri test -p pinwheel-engine --test ring_stress
