#!/usr/bin/env bash
# Runs one Flink benchmark job (bench/flink/README.md) with the JVM settings the comparison uses.
#
#   bench/flink/run.sh --job count-with-timeout [--events N] [--keys K] [--events-per-ms R] [--shards P] [--rate X]
#
# Runs scripts/flink-setup.sh first (a no-op when everything is in place). The last stdout line is
# the key=value result; Flink's own logging goes to stderr at WARN.
# FLINK_BENCH_JAVA_OPTS replaces the default JVM options below.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
"$root/scripts/flink-setup.sh" >&2

# 12 GiB of heap: the default count-with-timeout keeps 1 M keys' state objects and ~10 M pending
# heap timers (docs/benchmarks.md saw 3.8 GB RSS); G1 (the JVM's and Flink's default collector); heap
# pre-touch off so RSS is what the job used. Flink 2.x on Java 17 needs the --add-opens below
# (Flink's own config.yaml env.java.opts.all) for Kryo and its closure cleaner.
default_opts=(
  -Xms2g -Xmx12g -XX:+UseG1GC
  --add-exports=java.base/sun.net.util=ALL-UNNAMED
  --add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED
  --add-exports=jdk.compiler/com.sun.tools.javac.api=ALL-UNNAMED
  --add-exports=jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
  --add-exports=jdk.compiler/com.sun.tools.javac.parser=ALL-UNNAMED
  --add-exports=jdk.compiler/com.sun.tools.javac.tree=ALL-UNNAMED
  --add-exports=jdk.compiler/com.sun.tools.javac.util=ALL-UNNAMED
  --add-exports=java.security.jgss/sun.security.krb5=ALL-UNNAMED
  --add-opens=java.base/java.lang=ALL-UNNAMED
  --add-opens=java.base/java.net=ALL-UNNAMED
  --add-opens=java.base/java.io=ALL-UNNAMED
  --add-opens=java.base/java.nio=ALL-UNNAMED
  --add-opens=java.base/sun.nio.ch=ALL-UNNAMED
  --add-opens=java.base/java.lang.reflect=ALL-UNNAMED
  --add-opens=java.base/java.text=ALL-UNNAMED
  --add-opens=java.base/java.time=ALL-UNNAMED
  --add-opens=java.base/java.util=ALL-UNNAMED
  --add-opens=java.base/java.util.concurrent=ALL-UNNAMED
  --add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED
  --add-opens=java.base/java.util.concurrent.locks=ALL-UNNAMED
)
if [ -n "${FLINK_BENCH_JAVA_OPTS:-}" ]; then
  # shellcheck disable=SC2206
  opts=($FLINK_BENCH_JAVA_OPTS)
else
  opts=("${default_opts[@]}")
fi
exec java "${opts[@]}" \
  -Dlog4j.configurationFile="$here/log4j2.properties" -Dlog4j2.configurationFile="$here/log4j2.properties" \
  -cp "$here/classes:$here/lib/*" pinwheel.flink.FlinkBench "$@"
