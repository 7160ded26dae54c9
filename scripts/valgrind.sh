#!/usr/bin/env bash
# docs/reliability.md test 18, the mmap writer under valgrind memcheck: the engine's checkpoint
# file tests (round trips through the memory-mapped writer, a crash at every I/O step, every
# corruption of a written file) run under memcheck, which sees reads of uninitialised or freed
# memory and accesses outside the mapping that Miri cannot follow (Miri has no file-backed mmap).
# Any memcheck report fails the run. About three minutes.
#
# Installs valgrind with apt-get if it is missing (root or sudo needed then).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v valgrind >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq valgrind >/dev/null
fi

tests=(checkpoint_roundtrip checkpoint_faults checkpoint_corruption)
args=()
for t in "${tests[@]}"; do args+=(--test "$t"); done
# The test binaries' paths, from cargo's own report of what it built.
mapfile -t bins < <(cargo test -p pinwheel-engine "${args[@]}" --no-run --message-format=json 2>/dev/null |
  sed -n 's/.*"executable":"\([^"]*\)".*/\1/p')
if [ "${#bins[@]}" -ne "${#tests[@]}" ]; then
  echo "valgrind: expected ${#tests[@]} test binaries, cargo built ${#bins[@]}" >&2
  exit 1
fi

for bin in "${bins[@]}"; do
  echo "valgrind: $(basename "$bin")"
  # One test thread: memcheck serialises threads anyway, and the output stays readable. The
  # crash test's children (each aborts at one I/O step of its writes) run under memcheck too.
  valgrind --tool=memcheck --error-exitcode=99 --track-origins=yes --trace-children=yes -q \
    "$bin" --test-threads=1
done
echo "valgrind: no reports"
