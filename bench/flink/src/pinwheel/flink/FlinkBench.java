package pinwheel.flink;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.time.Duration;
import java.util.BitSet;
import java.util.Locale;
import java.util.stream.Stream;

import org.apache.flink.api.common.RuntimeExecutionMode;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.tuple.Tuple3;
import org.apache.flink.configuration.CheckpointingOptions;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.configuration.ExternalizedCheckpointRetention;
import org.apache.flink.configuration.ExecutionOptions;
import org.apache.flink.configuration.PipelineOptions;
import org.apache.flink.configuration.RestOptions;
import org.apache.flink.configuration.StateBackendOptions;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.datastream.KeyedStream;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;

import pinwheel.flink.StandardStream.Event;

/**
 * The Apache Flink side of Pinwheel's side-by-side benchmark (docs/benchmarks.md, bench/flink/README.md).
 *
 * <pre>
 * java -cp 'bench/flink/classes:bench/flink/lib/*' pinwheel.flink.FlinkBench \
 *     --job count-with-timeout|window-sum|timer-burst|heartbeat \
 *     [--events N] [--keys K] [--events-per-ms R] [--shards P] [--rate EV_PER_S]
 *     [--checkpoint-interval-ms MS --checkpoint-dir DIR]
 * </pre>
 *
 * Prints one key=value line on stdout (everything else goes to stderr).
 */
public final class FlinkBench {
    private FlinkBench() {}

    static final long DEFAULT_EVENTS = 20_000_000L;
    static final long DEFAULT_KEYS = 1_000_000L;
    static final long DEFAULT_EVENTS_PER_MS = 10L;
    static final int DEFAULT_SHARDS = 2;
    static final double DEFAULT_HEARTBEAT_RATE = 200_000;
    /** docs/benchmarks.md's ideal outputs (watermark one behind every event) at the default N, K, R. */
    static final long IDEAL_COUNT_WITH_TIMEOUT = 11_098_824L;
    static final long IDEAL_WINDOW_SUM = 15_068_582L;

    static final class Args {
        String job;
        long events = DEFAULT_EVENTS;
        long keys = DEFAULT_KEYS;
        long eventsPerMs = DEFAULT_EVENTS_PER_MS;
        int shards = DEFAULT_SHARDS;
        double rate = -1; // events/s in total; <= 0: unlimited
        long watermarkIntervalMs = 200; // Flink's default pipeline.auto-watermark-interval
        long bufferTimeoutMs = -2; // -2: per job (see bufferTimeout()); -1: flush only full buffers
        boolean objectReuse = true;
        boolean verify;
        long checkpointIntervalMs = 0; // 0: no checkpoints
        String checkpointDir;

        boolean defaultSizes() {
            return events == DEFAULT_EVENTS && keys == DEFAULT_KEYS && eventsPerMs == DEFAULT_EVENTS_PER_MS;
        }

        /** Flink's default (100 ms) for the throughput jobs, 0 (flush every record) for heartbeat. */
        long bufferTimeout() {
            if (bufferTimeoutMs != -2) {
                return bufferTimeoutMs;
            }
            return job.equals("heartbeat") ? 0 : 100;
        }
    }

    static final String USAGE = String.join("\n",
            "usage: FlinkBench --job JOB [--events N] [--keys K] [--events-per-ms R] [--shards P] [--rate EV_PER_S]",
            "  JOB: count-with-timeout | window-sum | timer-burst | heartbeat (docs/benchmarks.md)",
            "  defaults: --events 20000000 --keys 1000000 --events-per-ms 10 --shards 2;",
            "            --rate: unlimited, heartbeat 200000 (events/s in total, over all shards)",
            "  extra:  --watermark-interval-ms MS (200, Flink's default)",
            "          --buffer-timeout-ms MS (100, Flink's default; heartbeat 0 = flush every record; -1 = only full)",
            "          --no-object-reuse (object reuse is on by default)",
            "          --verify (also check every key's last count in count-with-timeout; costs memory)",
            "          --checkpoint-interval-ms MS --checkpoint-dir DIR (checkpoints of the heap backend every MS",
            "            into file://DIR, the last one retained; the result line adds checkpoints= and checkpoint_bytes=)",
            "  prints one line: engine=flink job=... events=... keys=... shards=... outputs=... sum=... seconds=...",
            "  events_per_s=... output_span_seconds=... outputs_per_s_in_span=... peak_rss_bytes=... [p50_us= p99_us=",
            "  p999_us= max_us= | ideal_outputs=]");

    static long number(String flag, String v) {
        try {
            return Long.parseLong(v.replace("_", "").replace(",", ""));
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(flag + ": not a number: " + v);
        }
    }

    static Args parse(String[] argv) {
        Args a = new Args();
        for (int k = 0; k < argv.length; k++) {
            String flag = argv[k];
            if (flag.equals("-h") || flag.equals("--help")) {
                System.out.println(USAGE);
                System.exit(0);
            }
            if (flag.equals("--no-object-reuse")) {
                a.objectReuse = false;
                continue;
            }
            if (flag.equals("--verify")) {
                a.verify = true;
                continue;
            }
            if (k + 1 >= argv.length) {
                throw new IllegalArgumentException(flag + " needs a value");
            }
            String v = argv[++k];
            switch (flag) {
                case "--job": a.job = v; break;
                case "--events": a.events = number(flag, v); break;
                case "--keys": a.keys = number(flag, v); break;
                case "--events-per-ms": a.eventsPerMs = number(flag, v); break;
                case "--shards": a.shards = (int) number(flag, v); break;
                case "--rate": a.rate = number(flag, v); break;
                case "--watermark-interval-ms": a.watermarkIntervalMs = number(flag, v); break;
                case "--buffer-timeout-ms": a.bufferTimeoutMs = number(flag, v); break;
                case "--checkpoint-interval-ms": a.checkpointIntervalMs = number(flag, v); break;
                case "--checkpoint-dir": a.checkpointDir = v; break;
                default: throw new IllegalArgumentException("unknown argument " + flag + " (try --help)");
            }
        }
        if (a.job == null) {
            throw new IllegalArgumentException("--job is required (try --help)");
        }
        if ((a.checkpointIntervalMs > 0) != (a.checkpointDir != null)) {
            throw new IllegalArgumentException("--checkpoint-interval-ms and --checkpoint-dir go together");
        }
        switch (a.job) {
            case "count-with-timeout": case "window-sum": case "timer-burst": case "heartbeat": break;
            default: throw new IllegalArgumentException("unknown job " + a.job
                    + " (count-with-timeout, window-sum, timer-burst, heartbeat)");
        }
        if (a.events < 1 || a.keys < 1 || a.eventsPerMs < 1 || a.shards < 1) {
            throw new IllegalArgumentException("--events, --keys, --events-per-ms and --shards must be >= 1");
        }
        if (a.job.equals("heartbeat") && a.rate <= 0) {
            a.rate = DEFAULT_HEARTBEAT_RATE;
        }
        return a;
    }

    static KeyedProcessFunction<Long, Event, Tuple3<Long, Long, Long>> function(String job) {
        switch (job) {
            case "count-with-timeout": return new Jobs.CountWithTimeoutFunction();
            case "window-sum": return new Jobs.WindowSumFunction();
            case "timer-burst": return new Jobs.TimerBurstFunction();
            case "heartbeat": return new Jobs.HeartbeatFunction();
            default: throw new IllegalArgumentException(job);
        }
    }

    static long peakRssBytes() {
        try {
            for (String line : Files.readAllLines(Paths.get("/proc/self/status"))) {
                if (line.startsWith("VmHWM:")) {
                    return Long.parseLong(line.split("\\s+")[1]) * 1024;
                }
            }
        } catch (IOException | RuntimeException e) {
            // fall through
        }
        return -1;
    }

    /** Nearest-rank percentile of sorted nanoseconds, in microseconds. */
    static double percentileUs(long[] sorted, double q) {
        if (sorted.length == 0) {
            return 0;
        }
        int rank = (int) Math.ceil(q * sorted.length);
        return sorted[Math.max(0, Math.min(sorted.length - 1, rank - 1))] / 1000.0;
    }

    public static void main(String[] argv) throws Exception {
        Args a;
        try {
            a = parse(argv);
        } catch (IllegalArgumentException e) {
            System.err.println("FlinkBench: " + e.getMessage());
            System.exit(2);
            return;
        }
        // Flink and its log4j print nothing on our stdout: the one result line is ours.
        PrintStream stdout = System.out;
        System.setOut(System.err);

        int p = a.shards;
        long m = (a.events + p - 1) / p; // M = ceil(N/P)
        boolean heartbeat = a.job.equals("heartbeat");

        Configuration conf = new Configuration();
        conf.set(StateBackendOptions.STATE_BACKEND, "hashmap");
        conf.set(ExecutionOptions.RUNTIME_MODE, RuntimeExecutionMode.STREAMING);
        conf.set(PipelineOptions.OBJECT_REUSE, a.objectReuse);
        conf.set(PipelineOptions.AUTO_WATERMARK_INTERVAL, Duration.ofMillis(a.watermarkIntervalMs));
        long bufferTimeout = a.bufferTimeout();
        if (bufferTimeout < 0) {
            conf.set(ExecutionOptions.BUFFER_TIMEOUT_ENABLED, false);
        } else {
            conf.set(ExecutionOptions.BUFFER_TIMEOUT, Duration.ofMillis(bufferTimeout));
        }
        conf.set(RestOptions.BIND_PORT, "0"); // several runs on one machine never collide
        if (a.checkpointIntervalMs > 0) {
            conf.set(CheckpointingOptions.CHECKPOINTING_INTERVAL, Duration.ofMillis(a.checkpointIntervalMs));
            conf.set(CheckpointingOptions.CHECKPOINT_STORAGE, "filesystem");
            conf.set(CheckpointingOptions.CHECKPOINTS_DIRECTORY,
                    Paths.get(a.checkpointDir).toAbsolutePath().toUri().toString());
            // The last checkpoint stays once the job has finished: its id counts them, its files size them.
            conf.set(CheckpointingOptions.EXTERNALIZED_CHECKPOINT_RETENTION,
                    ExternalizedCheckpointRetention.RETAIN_ON_CANCELLATION);
        }
        StreamExecutionEnvironment env = StreamExecutionEnvironment.createLocalEnvironment(p, conf);

        DataStream<Event> events = env.fromSequence(0, p * m - 1)
                .flatMap(new StandardStream.Generate(a.events, a.keys, a.eventsPerMs, p,
                        a.rate > 0 ? a.rate / p : -1, heartbeat))
                .name("standard-stream");
        if (!heartbeat) {
            events = events.assignTimestampsAndWatermarks(
                    WatermarkStrategy.<Event>forMonotonousTimestamps().withTimestampAssigner((e, t) -> e.ts));
        }
        KeyedStream<Event, Long> keyed = events.keyBy(new Jobs.EventKey(), Types.LONG);
        keyed.process(function(a.job)).name(a.job)
                .sinkTo(new CountingSink(heartbeat, perKeyCheck(a), a.keys)).name("counting-sink");

        System.err.printf(Locale.ROOT, "FlinkBench: job=%s N=%d K=%d R=%d P=%d rate=%s watermarks=%s "
                + "buffer-timeout=%s object-reuse=%s heap-max=%d MiB%n",
                a.job, a.events, a.keys, a.eventsPerMs, p,
                a.rate > 0 ? String.format(Locale.ROOT, "%.0f/s", a.rate) : "unlimited",
                heartbeat ? "none" : "every " + a.watermarkIntervalMs + " ms",
                bufferTimeout < 0 ? "off" : bufferTimeout + " ms", a.objectReuse,
                Runtime.getRuntime().maxMemory() >> 20);

        long submitted = System.nanoTime();
        env.execute("pinwheel-bench " + a.job);
        long returned = System.nanoTime();
        long rss = peakRssBytes();

        CountingSink.Merged r = CountingSink.merge();
        long start = StandardStream.FIRST_EMIT_NANOS.get();
        long end = r.endNanos > 0 ? r.endNanos : returned;
        double seconds = (end - start) / 1e9;
        double span = r.outputs > 0 ? (r.lastNanos - r.firstNanos) / 1e9 : 0;

        StringBuilder line = new StringBuilder();
        line.append(String.format(Locale.ROOT,
                "engine=flink job=%s events=%d keys=%d shards=%d outputs=%d sum=%d seconds=%.3f events_per_s=%.0f "
                        + "output_span_seconds=%.6f outputs_per_s_in_span=%.0f peak_rss_bytes=%d",
                a.job, a.events, a.keys, p, r.outputs, r.sum, seconds, a.events / seconds, span,
                span > 0 ? r.outputs / span : 0.0, rss));
        if (heartbeat) {
            line.append(String.format(Locale.ROOT, " p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f",
                    percentileUs(r.latencies, 0.50), percentileUs(r.latencies, 0.99),
                    percentileUs(r.latencies, 0.999), percentileUs(r.latencies, 1.0)));
        }
        if (a.checkpointIntervalMs > 0) {
            long[] last = lastCheckpoint(a.checkpointDir);
            line.append(String.format(Locale.ROOT, " checkpoint_interval_ms=%d checkpoints=%d checkpoint_bytes=%d",
                    a.checkpointIntervalMs, last[0], last[1]));
        }
        if (a.defaultSizes() && a.job.equals("count-with-timeout")) {
            line.append(" ideal_outputs=").append(IDEAL_COUNT_WITH_TIMEOUT);
        } else if (a.defaultSizes() && a.job.equals("window-sum")) {
            line.append(" ideal_outputs=").append(IDEAL_WINDOW_SUM);
        }

        System.err.printf(Locale.ROOT, "FlinkBench: execute() took %.3f s (mini-cluster start and job deployment: "
                + "%.3f s before the first event); %d sink writers%n",
                (returned - submitted) / 1e9, (start - submitted) / 1e9, r.writers);
        if (StandardStream.EXTRA_SPLITS.get() != 0) {
            System.err.println("FlinkBench: WARNING: a source subtask read more than one partition ("
                    + StandardStream.EXTRA_SPLITS.get() + " extra splits); its watermark ran ahead of them");
        }
        check(a, r);

        stdout.println(line);
        stdout.flush();
        System.exit(0); // the mini-cluster's threads need not linger
    }

    /** The id of the newest retained checkpoint under {@code dir} (JOB_ID/chk-N) and its size in bytes. */
    static long[] lastCheckpoint(String dir) throws IOException {
        long id = 0;
        Path newest = null;
        try (Stream<Path> all = Files.walk(Paths.get(dir), 2)) {
            for (Path c : (Iterable<Path>) all::iterator) {
                String name = c.getFileName().toString();
                if (Files.isDirectory(c) && name.matches("chk-[0-9]+")) {
                    long n = Long.parseLong(name.substring(4));
                    if (n > id) {
                        id = n;
                        newest = c;
                    }
                }
            }
        }
        long bytes = 0;
        if (newest != null) {
            try (Stream<Path> files = Files.walk(newest)) {
                for (Path f : (Iterable<Path>) files::iterator) {
                    if (Files.isRegularFile(f)) {
                        bytes += Files.size(f);
                    }
                }
            }
        }
        return new long[] {id, bytes};
    }

    static CountingSink.PerKey perKeyCheck(Args a) {
        if (!a.verify || a.keys > Integer.MAX_VALUE - 8) {
            return CountingSink.PerKey.NONE;
        }
        switch (a.job) {
            case "count-with-timeout": return CountingSink.PerKey.MAX;
            case "window-sum": return CountingSink.PerKey.SUM;
            default: return CountingSink.PerKey.NONE;
        }
    }

    /** Per key, the number of events (count-with-timeout) or the sum of values (window-sum). */
    static long[] expectedPerKey(Args a, boolean sumValues) {
        long[] expected = new long[(int) a.keys];
        for (long i = 0; i < a.events; i++) {
            expected[(int) StandardStream.key(i, a.keys)] += sumValues ? i % 100 : 1;
        }
        return expected;
    }

    /** Watermark-independent checks from docs/benchmarks.md, on stderr. */
    static void check(Args a, CountingSink.Merged r) {
        if (a.verify && a.keys <= Integer.MAX_VALUE - 8
                && (a.job.equals("count-with-timeout") || a.job.equals("window-sum"))) {
            long[] ideal = Ideal.compute(a.events, a.keys, a.eventsPerMs);
            long outputs = a.job.equals("window-sum") ? ideal[2] : ideal[0];
            System.err.printf(Locale.ROOT, "FlinkBench: ideal (watermark one behind every event): %d outputs; "
                    + "Flink's %d are %.3f%% of it%n", outputs, r.outputs, 100.0 * r.outputs / outputs);
        }
        switch (a.job) {
            case "window-sum": {
                long n = a.events;
                long expected = (n / 100) * 4950 + (n % 100) * (n % 100 - 1) / 2;
                System.err.printf("FlinkBench: check: sum of window sums %d, sum(i mod 100) %d: %s%n",
                        r.sum, expected, r.sum == expected ? "ok" : "MISMATCH");
                if (r.perKey != null) {
                    boolean ok = java.util.Arrays.equals(r.perKey, expectedPerKey(a, true));
                    System.err.println("FlinkBench: check: every key's window sums add up to its values: "
                            + (ok ? "ok" : "MISMATCH"));
                }
                break;
            }
            case "timer-burst": {
                long distinct = distinctKeys(a);
                System.err.printf("FlinkBench: check: outputs %d, distinct keys %d: %s%n",
                        r.outputs, distinct, r.outputs == distinct ? "ok" : "MISMATCH");
                break;
            }
            case "count-with-timeout": {
                System.err.printf(Locale.ROOT,
                        "FlinkBench: check: sum of counts %d >= events %d: %s (%.3f counts per event)%n",
                        r.sum, a.events, r.sum >= a.events ? "ok" : "MISMATCH", (double) r.sum / a.events);
                if (r.perKey != null) {
                    boolean ok = java.util.Arrays.equals(r.perKey, expectedPerKey(a, false));
                    System.err.println("FlinkBench: check: every key's last count equals its number of events: "
                            + (ok ? "ok" : "MISMATCH"));
                }
                break;
            }
            case "heartbeat": {
                System.err.printf("FlinkBench: check: forwarded events with an emit time %d of %d%n",
                        r.latencies.length, a.events);
                double achieved = r.latencies.length / ((r.endNanos - StandardStream.FIRST_EMIT_NANOS.get()) / 1e9);
                if (achieved < 0.95 * a.rate) {
                    System.err.printf(Locale.ROOT, "FlinkBench: WARNING: the source reached %.0f events/s of the %.0f "
                            + "asked for: Flink did not keep up, the latencies include queueing; use a lower --rate%n",
                            achieved, a.rate);
                }
                long[] l = r.laterLatencies;
                System.err.printf(Locale.ROOT, "FlinkBench: latency over the second half of the outputs (after warm-up):"
                        + " p50 %.1f us, p99 %.1f us, p99.9 %.1f us, max %.1f us%n",
                        percentileUs(l, 0.5), percentileUs(l, 0.99), percentileUs(l, 0.999), percentileUs(l, 1.0));
                break;
            }
            default:
                break;
        }
    }

    static long distinctKeys(Args a) {
        if (a.keys > Integer.MAX_VALUE) {
            return -1;
        }
        BitSet seen = new BitSet((int) a.keys);
        for (long i = 0; i < a.events; i++) {
            seen.set((int) StandardStream.key(i, a.keys));
        }
        return seen.cardinality();
    }
}
