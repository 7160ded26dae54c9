#!/usr/bin/env bash
# docs/reliability.md test 18, the SPSC ring under ThreadSanitizer: the ring's unit tests and its
# two-thread stress tests (`engine/tests/ring_stress.rs`) built with `-Zsanitizer=thread`, which
# reports any data race between the producer's and the consumer's accesses that the ring's
# Acquire/Release protocol fails to order. A report fails the run. A few minutes.
#
# ThreadSanitizer needs the standard library instrumented as well (else its own synchronisation
# is invisible to it and it reports false races): `-Zbuild-std` on the nightly toolchain, whose
# rust-src component is installed if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^rust-src'; then
  rustup toolchain install nightly --profile minimal --component rust-src
fi
host=$(rustc +nightly -vV | sed -n 's/^host: //p')
export RUSTFLAGS="-Zsanitizer=thread ${RUSTFLAGS:-}"
export RUSTDOCFLAGS="-Zsanitizer=thread ${RUSTDOCFLAGS:-}"
export TSAN_OPTIONS="halt_on_error=1:abort_on_error=1${TSAN_OPTIONS:+:$TSAN_OPTIONS}"
export PINWHEEL_SANITIZER=thread
cargo +nightly test -Zbuild-std --target "$host" --target-dir target/tsan -p pinwheel-engine \
  --lib exchange::ring
cargo +nightly test -Zbuild-std --target "$host" --target-dir target/tsan -p pinwheel-engine \
  --test ring_stress
echo "tsan: no reports"
