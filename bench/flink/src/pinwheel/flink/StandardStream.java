package pinwheel.flink;

import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;

import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.functions.RichFlatMapFunction;
import org.apache.flink.util.Collector;

/**
 * docs/benchmarks.md's standard stream on top of {@code env.fromSequence(0, P*M - 1)}.
 *
 * <p>NumberSequenceSource splits {@code [0, P*M)} into P contiguous ranges of M numbers, one per
 * source subtask; {@link Generate} maps {@code j -> i = (j mod M)*P + j/M}, so the range
 * {@code [p*M, (p+1)*M)} becomes partition p: the events {@code p, p+P, p+2P, ...} in order, and
 * drops {@code i >= N}.
 */
public final class StandardStream {
    private StandardStream() {}

    /** One event of the standard stream. A Flink POJO (public fields, public no-arg constructor). */
    public static class Event {
        public long key;
        public long ts;
        public long value;
        /** System.nanoTime() when the source emitted the event (heartbeat latency); 0 otherwise. */
        public long emitNanos;

        public Event() {}

        @Override
        public String toString() {
            return "Event{key=" + key + ", ts=" + ts + ", value=" + value + "}";
        }
    }

    /** docs/benchmarks.md's splitmix64 (wrapping arithmetic; >>> is the unsigned shift). */
    public static long splitmix64(long x) {
        long z = x + 0x9E3779B97F4A7C15L;
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return z ^ (z >>> 31);
    }

    /** key = splitmix64(i) mod K, unsigned. */
    public static long key(long i, long keys) {
        return Long.remainderUnsigned(splitmix64(i), keys);
    }

    /** The nanoTime at which the first source subtask emitted its first event (0: none yet). */
    static final AtomicLong FIRST_EMIT_NANOS = new AtomicLong();
    /**
     * Times a source subtask went on to a second partition (a second split of NumberSequenceSource):
     * should stay 0, else that subtask's watermark runs ahead of the second partition's events.
     */
    static final AtomicLong EXTRA_SPLITS = new AtomicLong();

    /**
     * Maps sequence numbers to standard-stream events, optionally paced to {@code ratePerSubtask}
     * events per second (heartbeat): the n-th event of a subtask is not emitted before
     * start + n/rate; when ahead it parks the thread, so events leave in small bursts, each stamped
     * with the nanoTime at which it is actually emitted.
     */
    public static final class Generate extends RichFlatMapFunction<Long, Event> {
        private static final long serialVersionUID = 1L;
        private final long events;
        private final long keys;
        private final long eventsPerMs;
        private final long partitions;
        private final long perPartition; // M
        private final double ratePerSubtask; // events/s; <= 0: unlimited
        private final boolean stampEmitTime;

        private transient long emitted;
        private transient long startNanos;
        private transient long myPartition;

        public Generate(long events, long keys, long eventsPerMs, long partitions, double ratePerSubtask,
                boolean stampEmitTime) {
            this.events = events;
            this.keys = keys;
            this.eventsPerMs = eventsPerMs;
            this.partitions = partitions;
            this.perPartition = (events + partitions - 1) / partitions;
            this.ratePerSubtask = ratePerSubtask;
            this.stampEmitTime = stampEmitTime;
        }

        @Override
        public void open(OpenContext ctx) {
            emitted = 0;
            myPartition = -1;
        }

        @Override
        public void flatMap(Long boxed, Collector<Event> out) {
            long j = boxed;
            long p = j / perPartition;
            long i = (j % perPartition) * partitions + p;
            if (i >= events) {
                return;
            }
            if (myPartition != p) {
                if (myPartition < 0) {
                    myPartition = p;
                    startNanos = System.nanoTime();
                    FIRST_EMIT_NANOS.compareAndSet(0, startNanos);
                } else {
                    myPartition = p;
                    EXTRA_SPLITS.incrementAndGet();
                }
            }
            if (ratePerSubtask > 0) {
                long due = startNanos + (long) (emitted * 1e9 / ratePerSubtask);
                long now;
                while ((now = System.nanoTime()) < due) {
                    LockSupport.parkNanos(due - now);
                }
            }
            emitted++;
            Event e = new Event();
            e.key = key(i, keys);
            e.ts = i / eventsPerMs;
            e.value = i % 100;
            if (stampEmitTime) {
                e.emitNanos = System.nanoTime();
            }
            out.collect(e);
        }
    }
}
