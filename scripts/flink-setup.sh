#!/usr/bin/env bash
# Prepares the Apache Flink side of the benchmark (bench/flink/README.md). Idempotent.
#
#   scripts/flink-setup.sh            download Flink's jars if missing, compile the jobs if stale
#   scripts/flink-setup.sh --force    re-extract the jars and recompile
#
# 1. Downloads apache-flink-libraries 2.3.0 from PyPI (pip download, ~330 MB) into
#    bench/flink/.cache, unless it is already there.
# 2. Extracts its pyflink/lib/*.jar into bench/flink/lib (Flink's own jars: flink-dist, log4j, ...).
# 3. Compiles bench/flink/src/**/*.java into bench/flink/classes with javac -cp 'bench/flink/lib/*'.
#
# Needs java + javac (17 or newer), python3 and pip. Works from any directory.
set -euo pipefail

FLINK_VERSION=2.3.0
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
flink="$root/bench/flink"
cache="$flink/.cache"
lib="$flink/lib"
classes="$flink/classes"

force=0
case "${1:-}" in
  --force) force=1 ;;
  "") ;;
  -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
  *) echo "flink-setup: unknown argument $1 (try --help)" >&2; exit 2 ;;
esac

die() { echo "flink-setup: $*" >&2; exit 1; }
say() { echo "flink-setup: $*" >&2; }

command -v java >/dev/null 2>&1 || die "java not found: install a JDK 17 or newer (e.g. apt-get install openjdk-17-jdk-headless)"
command -v javac >/dev/null 2>&1 || die "javac not found: install a JDK (not only a JRE) 17 or newer (e.g. apt-get install openjdk-17-jdk-headless)"
java_major="$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)"
if [ -n "$java_major" ] && [ "$java_major" -lt 17 ]; then
  die "Java $java_major found; Flink $FLINK_VERSION needs Java 17 or newer"
fi
command -v python3 >/dev/null 2>&1 || die "python3 not found (needed to unpack the PyPI wheel)"

# 1. The wheel (or sdist) from PyPI.
mkdir -p "$cache"
# One setup at a time (two comparisons started together must not rebuild under each other).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$cache/.lock"
  flock 9
fi
find_dist() {
  find "$cache" -maxdepth 1 -type f \( -name "apache_flink_libraries-$FLINK_VERSION*.whl" \
    -o -name "apache[-_]flink[-_]libraries-$FLINK_VERSION.tar.gz" \) 2>/dev/null | sort | head -1
}
dist="$(find_dist)"
if [ -z "$dist" ]; then
  if command -v pip >/dev/null 2>&1; then pip=(pip)
  elif python3 -m pip --version >/dev/null 2>&1; then pip=(python3 -m pip)
  else die "pip not found: install it (e.g. apt-get install python3-pip) or put apache-flink-libraries-$FLINK_VERSION into $cache by hand"
  fi
  say "downloading apache-flink-libraries==$FLINK_VERSION from PyPI into $cache (~330 MB)"
  "${pip[@]}" download --no-deps --disable-pip-version-check -q -d "$cache" "apache-flink-libraries==$FLINK_VERSION" >&2 \
    || die "pip download apache-flink-libraries==$FLINK_VERSION failed (is PyPI reachable?)"
  dist="$(find_dist)"
  [ -n "$dist" ] || die "pip download succeeded but no apache-flink-libraries $FLINK_VERSION file is in $cache"
fi

# 2. The jars. A stamp file names the distribution they came from.
stamp="$lib/.from"
if [ $force -eq 1 ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$(basename "$dist")" ] \
   || ! ls "$lib"/flink-dist-*.jar >/dev/null 2>&1; then
  say "extracting pyflink/lib/*.jar from $(basename "$dist") into $lib"
  rm -rf "$lib"
  mkdir -p "$lib"
  python3 - "$dist" "$lib" <<'EOF' || die "could not extract the jars from $dist"
import os, shutil, sys, tarfile, zipfile
dist, lib = sys.argv[1], sys.argv[2]
n = 0
if dist.endswith(".whl"):
    with zipfile.ZipFile(dist) as z:
        for info in z.infolist():
            name = info.filename
            if name.startswith("pyflink/lib/") and name.endswith(".jar"):
                with z.open(info) as src, open(os.path.join(lib, os.path.basename(name)), "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                n += 1
else:
    with tarfile.open(dist) as t:
        for m in t.getmembers():
            if m.isfile() and "/pyflink/lib/" in "/" + m.name and m.name.endswith(".jar"):
                with t.extractfile(m) as src, open(os.path.join(lib, os.path.basename(m.name)), "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                n += 1
if n == 0:
    sys.exit("no pyflink/lib/*.jar in " + dist)
print(f"flink-setup: {n} jars", file=sys.stderr)
EOF
  basename "$dist" > "$stamp"
  force=1  # new jars: recompile
fi

# 3. The jobs. Recompile when a source (or the jar set) is newer than the last build.
mapfile -t sources < <(find "$flink/src" -name '*.java' | sort)
[ ${#sources[@]} -gt 0 ] || die "no Java sources under $flink/src"
built="$classes/.built"
stale=$force
if [ ! -f "$built" ]; then
  stale=1
else
  for s in "${sources[@]}" "$stamp"; do
    if [ "$s" -nt "$built" ]; then stale=1; break; fi
  done
fi
if [ $stale -eq 1 ]; then
  say "compiling ${#sources[@]} Java sources into $classes"
  rm -rf "$classes"
  mkdir -p "$classes"
  javac -nowarn -encoding UTF-8 --release 17 -cp "$lib/*" -d "$classes" "${sources[@]}" \
    || die "javac failed"
  touch "$built"
  say "ready: bench/flink/run.sh --help (or java -cp '$classes:$lib/*' pinwheel.flink.FlinkBench --help)"
fi
