#!/usr/bin/env bash
# Miri on the copy-on-write rows of the checkpoint freeze (engine/src/cow_vec.rs): the unsafe
# code whose soundness rests on aliasing rules that no sanitizer sees (a reader thread cloning rows
# out of a buffer the shard is writing elsewhere). docs/reliability.md test 18; a few minutes.
#
# Needs the nightly toolchain; installs its miri and rust-src components if they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo +nightly miri --version >/dev/null 2>&1; then
  rustup toolchain install nightly --profile minimal --component miri,rust-src
fi
MIRIFLAGS="${MIRIFLAGS:--Zmiri-disable-isolation}" cargo +nightly miri test -p pinwheel-engine --lib cow_vec
