#!/usr/bin/env bash
# Pinwheel vs Apache Flink 2.3.0, side by side on the same machine, one job of docs/benchmarks.md.
#
#   scripts/compare-flink.sh JOB [--events N] [--keys K] [--events-per-ms R] [--shards P] [--rate X]
#                                [--checkpoint-interval-ms MS] [--flink-only]
#
#   JOB: count-with-timeout | window-sum | timer-burst | heartbeat
#   Defaults (docs/benchmarks.md): --events 20000000 --keys 1000000 --events-per-ms 10 --shards 2; timer-burst runs
#   with N = K (2000000 when neither is given, else the one given); heartbeat with --rate 200000 and
#   --events 2000000 (about 10 s) unless given. --checkpoint-interval-ms MS: both sides checkpoint
#   every MS into a temporary directory (Pinwheel: --checkpoint-dir; Flink: the heap backend on
#   file://), and each line carries its checkpoint figures.
#
# Runs scripts/flink-setup.sh, then the Pinwheel side
#   cargo run --release -q -p pinwheel-bench -- JOB --events N --keys K --events-per-ms R --shards P [--rate X]
# then the Flink side (bench/flink/run.sh, same stream), one after the other. Prints each side's final
# key=value line and a last line
#   ratio job=... metric=events_per_s pinwheel=... flink=... pinwheel_over_flink=...    (count-with-timeout, window-sum)
#   ratio job=... metric=outputs_per_s_in_span ...                                      (timer-burst)
#   ratio job=heartbeat pinwheel_p50_us=... flink_p50_us=... pinwheel_p99_us=... flink_p99_us=... ...
# Each side's other output goes to stderr.
#
# Exit status: 0 both sides ran; 1 bad arguments or the Flink side failed; 2 only the Pinwheel side
# failed (its line is missing; the Flink line is still printed).
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
usage() { sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
die() { echo "compare-flink: $*" >&2; exit 1; }

[ $# -ge 1 ] || { usage >&2; exit 1; }
case "$1" in -h|--help) usage; exit 0 ;; esac
job="$1"; shift
case "$job" in
  count-with-timeout|window-sum|timer-burst|heartbeat) ;;
  *) die "unknown job '$job' (count-with-timeout, window-sum, timer-burst, heartbeat)" ;;
esac

events=""; keys=""; per_ms=10; shards=2; rate=""; flink_only=0; checkpoint_ms=
num() { [[ "${2:-}" =~ ^[0-9][0-9_,]*$ ]] || die "$1 needs a number, got '${2:-}'"; echo "${2//[_,]/}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --events) events="$(num "$1" "${2:-}")" || exit 1; shift 2 ;;
    --keys) keys="$(num "$1" "${2:-}")" || exit 1; shift 2 ;;
    --events-per-ms) per_ms="$(num "$1" "${2:-}")" || exit 1; shift 2 ;;
    --shards) shards="$(num "$1" "${2:-}")" || exit 1; shift 2 ;;
    --rate) rate="$(num "$1" "${2:-}")" || exit 1; shift 2 ;;
    --checkpoint-interval-ms) checkpoint_ms="$(num "$1" "${2:-}")" || exit 1; shift 2 ;;
    --flink-only) flink_only=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$1' (try --help)" ;;
  esac
done
case "$job" in
  timer-burst)
    if [ -z "$events" ] && [ -z "$keys" ]; then events=2000000; keys=2000000
    elif [ -z "$events" ]; then events="$keys"
    elif [ -z "$keys" ]; then keys="$events"
    fi ;;
  heartbeat)
    : "${rate:=200000}"; : "${events:=2000000}"; : "${keys:=1000000}" ;;
  *)
    : "${events:=20000000}"; : "${keys:=1000000}" ;;
esac
args=(--events "$events" --keys "$keys" --events-per-ms "$per_ms" --shards "$shards")
[ -n "$rate" ] && args+=(--rate "$rate")

"$root/scripts/flink-setup.sh" || die "Flink setup failed (see above)"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/compare-flink.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
pinwheel_args=("${args[@]}"); flink_args=("${args[@]}")
if [ -n "$checkpoint_ms" ]; then
  pinwheel_args+=(--checkpoint-interval-ms "$checkpoint_ms" --checkpoint-dir "$tmp/pinwheel-checkpoints")
  flink_args+=(--checkpoint-interval-ms "$checkpoint_ms" --checkpoint-dir "$tmp/flink-checkpoints")
fi

# The last stdout line that starts with engine=$1, from file $2.
result_line() { grep "^engine=$1 " "$2" | tail -1; }

pinwheel_line=""
if [ $flink_only -eq 1 ]; then
  echo "compare-flink: --flink-only: Pinwheel side skipped" >&2
else
  echo "compare-flink: Pinwheel: cargo run --release -q -p pinwheel-bench -- $job ${pinwheel_args[*]}" >&2
  (cd "$root" && cargo run --release -q -p pinwheel-bench -- "$job" "${pinwheel_args[@]}") >"$tmp/pinwheel.out"
  status=$?
  pinwheel_line="$(result_line pinwheel "$tmp/pinwheel.out")"
  if [ $status -ne 0 ] || [ -z "$pinwheel_line" ]; then
    echo "compare-flink: the Pinwheel side did not produce a result (exit status $status; no 'engine=pinwheel ...'" \
      "line on stdout): the pinwheel-bench driver may not implement '$job' yet. Running the Flink side anyway." >&2
    pinwheel_line=""
  fi
fi

echo "compare-flink: Flink: bench/flink/run.sh --job $job ${flink_args[*]}" >&2
"$root/bench/flink/run.sh" --job "$job" "${flink_args[@]}" >"$tmp/flink.out"
status=$?
flink_line="$(result_line flink "$tmp/flink.out")"
if [ $status -ne 0 ] || [ -z "$flink_line" ]; then
  echo "compare-flink: the Flink side failed (exit status $status)" >&2
fi

[ -n "$pinwheel_line" ] && echo "$pinwheel_line"
[ -n "$flink_line" ] && echo "$flink_line"

python3 - "$job" "$pinwheel_line" "$flink_line" <<'EOF'
import sys

job, pinwheel, flink = sys.argv[1], sys.argv[2], sys.argv[3]

def parse(line):
    out = {}
    for field in line.split():
        if "=" in field:
            k, v = field.split("=", 1)
            out[k] = v
    return out

def num(d, k):
    try:
        return float(d[k])
    except (KeyError, ValueError):
        return None

def fmt(x):
    if x is None:
        return "n/a"
    return f"{x:.1f}" if abs(x) < 1e4 else f"{x:.0f}"

p, f = parse(pinwheel), parse(flink)
if job == "heartbeat":
    parts = [f"ratio job={job}"]
    for q in ("p50_us", "p99_us", "p999_us"):
        parts += [f"pinwheel_{q}={fmt(num(p, q))}", f"flink_{q}={fmt(num(f, q))}"]
    for q in ("p50_us", "p99_us"):
        a, b = num(p, q), num(f, q)
        parts.append(f"{q.split('_')[0]}_flink_over_pinwheel=" + (f"{b / a:.1f}" if a and b is not None else "n/a"))
    print(" ".join(parts))
else:
    metric = "outputs_per_s_in_span" if job == "timer-burst" else "events_per_s"
    a, b = num(p, metric), num(f, metric)
    ratio = f"{a / b:.1f}" if a is not None and b else "n/a"
    note = "" if pinwheel else " (no pinwheel result)"
    print(f"ratio job={job} metric={metric} pinwheel={fmt(a)} flink={fmt(b)} pinwheel_over_flink={ratio}{note}")
EOF

[ -n "$flink_line" ] || exit 1
[ -n "$pinwheel_line" ] || [ $flink_only -eq 1 ] || exit 2
exit 0
