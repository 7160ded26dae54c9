package pinwheel.flink;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.ConcurrentLinkedQueue;

import org.apache.flink.api.connector.sink2.Sink;
import org.apache.flink.api.connector.sink2.SinkWriter;
import org.apache.flink.api.connector.sink2.WriterInitContext;
import org.apache.flink.api.java.tuple.Tuple3;

/**
 * A parallel counting sink (one writer per subtask, chained to the keyed operator). Each writer
 * counts outputs, sums their values, notes the nanoTime of its first and last output and, for
 * outputs that carry an emit time (f2 > 0), the latency in a long[]. The job runs on a local
 * mini-cluster inside this JVM, so each writer hands its figures to a static collector when it
 * finishes; the driver merges them after execute() returns.
 */
public final class CountingSink implements Sink<Tuple3<Long, Long, Long>> {
    private static final long serialVersionUID = 1L;

    /** One writer's figures. */
    static final class Stats {
        long outputs;
        long sum;
        long firstNanos = Long.MAX_VALUE;
        long lastNanos = Long.MIN_VALUE;
        /** When the writer saw the end of input (flush(true)), or closed. */
        long endNanos;
        long[] latencies = new long[0];
        int latencyCount;
        /** --verify: per key, the largest output value (count-with-timeout) or their sum (window-sum). */
        long[] perKey;
    }

    static final ConcurrentLinkedQueue<Stats> RESULTS = new ConcurrentLinkedQueue<>();

    /** How --verify keeps a figure per key. */
    enum PerKey { NONE, MAX, SUM }

    private final boolean recordLatency;
    private final PerKey perKey;
    private final int keys;

    /** perKey != NONE: keep one figure per key in a long[keys] per writer (keys < 2^31). */
    public CountingSink(boolean recordLatency, PerKey perKey, long keys) {
        this.recordLatency = recordLatency;
        this.perKey = perKey;
        this.keys = (int) Math.min(keys, Integer.MAX_VALUE - 8);
    }

    @Override
    public SinkWriter<Tuple3<Long, Long, Long>> createWriter(WriterInitContext context) {
        return new Writer(recordLatency, perKey, keys);
    }

    static final class Writer implements SinkWriter<Tuple3<Long, Long, Long>> {
        private final boolean recordLatency;
        private final PerKey perKey;
        private final Stats stats = new Stats();
        private boolean published;

        Writer(boolean recordLatency, PerKey perKey, int keys) {
            this.recordLatency = recordLatency;
            this.perKey = perKey;
            if (recordLatency) {
                stats.latencies = new long[1 << 16];
            }
            if (perKey != PerKey.NONE) {
                stats.perKey = new long[keys];
            }
        }

        @Override
        public void write(Tuple3<Long, Long, Long> element, Context context) {
            long now = System.nanoTime();
            Stats s = stats;
            if (s.outputs == 0) {
                s.firstNanos = now;
            }
            s.lastNanos = now;
            s.outputs++;
            s.sum += element.f1;
            long emitted = element.f2;
            if (recordLatency && emitted > 0) {
                if (s.latencyCount == s.latencies.length) {
                    s.latencies = Arrays.copyOf(s.latencies, s.latencies.length * 2);
                }
                s.latencies[s.latencyCount++] = now - emitted;
            }
            if (perKey == PerKey.MAX) {
                int k = (int) (long) element.f0;
                s.perKey[k] = Math.max(s.perKey[k], element.f1);
            } else if (perKey == PerKey.SUM) {
                s.perKey[(int) (long) element.f0] += element.f1;
            }
        }

        @Override
        public void flush(boolean endOfInput) {
            if (endOfInput && stats.endNanos == 0) {
                stats.endNanos = System.nanoTime();
            }
        }

        @Override
        public void close() {
            if (stats.endNanos == 0) {
                stats.endNanos = System.nanoTime();
            }
            if (!published) {
                published = true;
                RESULTS.add(stats); // the queue publishes the writes above to the driver thread
            }
        }
    }

    /** All writers' figures merged. */
    static final class Merged {
        int writers;
        long outputs;
        long sum;
        long firstNanos = Long.MAX_VALUE;
        long lastNanos = Long.MIN_VALUE;
        long endNanos;
        long[] latencies = new long[0];
        /** The latencies of each writer's second half of outputs (after warm-up), sorted. */
        long[] laterLatencies = new long[0];
        /** Per key: the writers' figures added up (each key is written by one writer only). */
        long[] perKey;
    }

    static Merged merge() {
        Merged m = new Merged();
        List<Stats> all = new ArrayList<>(RESULTS);
        int n = 0;
        for (Stats s : all) {
            n += s.latencyCount;
        }
        m.latencies = new long[n];
        int later = 0;
        for (Stats s : all) {
            later += s.latencyCount - s.latencyCount / 2;
        }
        m.laterLatencies = new long[later];
        int at = 0;
        int laterAt = 0;
        for (Stats s : all) {
            m.writers++;
            m.outputs += s.outputs;
            m.sum += s.sum;
            if (s.outputs > 0) {
                m.firstNanos = Math.min(m.firstNanos, s.firstNanos);
                m.lastNanos = Math.max(m.lastNanos, s.lastNanos);
            }
            m.endNanos = Math.max(m.endNanos, s.endNanos);
            System.arraycopy(s.latencies, 0, m.latencies, at, s.latencyCount);
            if (s.perKey != null) {
                if (m.perKey == null) {
                    m.perKey = new long[s.perKey.length];
                }
                for (int k = 0; k < s.perKey.length; k++) {
                    m.perKey[k] += s.perKey[k];
                }
            }
            at += s.latencyCount;
            int half = s.latencyCount / 2;
            System.arraycopy(s.latencies, half, m.laterLatencies, laterAt, s.latencyCount - half);
            laterAt += s.latencyCount - half;
        }
        Arrays.sort(m.latencies);
        Arrays.sort(m.laterLatencies);
        return m;
    }
}
