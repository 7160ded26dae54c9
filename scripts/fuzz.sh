#!/usr/bin/env bash
# Fuzzes the checkpoint decoders (docs/reliability.md test 15) with cargo-fuzz / libFuzzer.
#
#   scripts/fuzz.sh [SECONDS]     default 300
#
# Installs cargo-fuzz if it is missing, seeds the corpus with real checkpoint files written by
# engine/tests/checkpoint_fuzz_seeds.rs, then runs engine/fuzz's target decode_checkpoint on the
# nightly toolchain, without a sanitizer (the engine's decoder is safe Rust) and with libFuzzer's
# 512 MiB memory limit, so unbounded allocation is a failure. Crashes land in
# engine/fuzz/artifacts/decode_checkpoint/. Not part of scripts/test.sh (CI time).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-300}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

corpus="$PWD/engine/fuzz/corpus/decode_checkpoint"
mkdir -p "$corpus"
PINWHEEL_FUZZ_SEEDS="$corpus" cargo test -p pinwheel-engine --profile test-opt --quiet \
  --test checkpoint_fuzz_seeds

cd engine
cargo +nightly fuzz run --sanitizer none decode_checkpoint -- \
  -max_total_time="$seconds" -rss_limit_mb=512 -print_final_stats=1
