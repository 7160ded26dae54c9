package pinwheel.flink;

import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.java.functions.KeySelector;
import org.apache.flink.api.java.tuple.Tuple3;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.util.Collector;

import pinwheel.flink.StandardStream.Event;

/**
 * docs/benchmarks.md's four jobs as {@link KeyedProcessFunction}s, written the way the Flink documentation
 * writes them. Every job emits {@code Tuple3<Long, Long, Long>} = (key, value, emitNanos): value is
 * what the counting sink sums (a count, a window sum, 1), emitNanos is the source's emit time for
 * heartbeat's forwarded events (for the latency) and -1 for everything else.
 */
public final class Jobs {
    private Jobs() {}

    public static final long MINUTE = 60_000L;

    /** The instant every timer-burst timer is set for (docs/benchmarks.md: i64::MAX - 1). */
    public static final long BURST_AT = Long.MAX_VALUE - 1;

    /** Out-record of every job. */
    static Tuple3<Long, Long, Long> out(long key, long value, long emitNanos) {
        return Tuple3.of(key, value, emitNanos);
    }

    /** keyBy(event.key). */
    public static final class EventKey implements KeySelector<Event, Long> {
        private static final long serialVersionUID = 1L;

        @Override
        public Long getKey(Event e) {
            return e.key;
        }
    }

    /** The state of {@link CountWithTimeoutFunction}: the documentation's CountWithTimestamp. */
    public static class CountWithTimestamp {
        public long key;
        public long count;
        public long lastModified;

        public CountWithTimestamp() {}
    }

    /**
     * The documentation's CountWithTimeoutFunction (Flink "Process Function" page), unchanged but
     * for the types: every event increments its key's count, sets lastModified to the event's
     * timestamp and registers an event-time timer a minute later; onTimer emits (key, count) if
     * the timer is the latest one (no event came since).
     */
    public static final class CountWithTimeoutFunction
            extends KeyedProcessFunction<Long, Event, Tuple3<Long, Long, Long>> {
        private static final long serialVersionUID = 1L;
        private transient ValueState<CountWithTimestamp> state;

        @Override
        public void open(OpenContext openContext) {
            state = getRuntimeContext().getState(new ValueStateDescriptor<>("myState", CountWithTimestamp.class));
        }

        @Override
        public void processElement(Event value, Context ctx, Collector<Tuple3<Long, Long, Long>> out)
                throws Exception {
            CountWithTimestamp current = state.value();
            if (current == null) {
                current = new CountWithTimestamp();
                current.key = value.key;
            }
            current.count++;
            current.lastModified = ctx.timestamp();
            state.update(current);
            ctx.timerService().registerEventTimeTimer(current.lastModified + MINUTE);
        }

        @Override
        public void onTimer(long timestamp, OnTimerContext ctx, Collector<Tuple3<Long, Long, Long>> out)
                throws Exception {
            CountWithTimestamp result = state.value();
            if (timestamp == result.lastModified + MINUTE) {
                out.collect(out(result.key, result.count, -1));
            }
        }
    }

    /**
     * The last millisecond of the one-minute tumbling window holding ts: Flink's
     * TimeWindow.maxTimestamp() of [floor(ts/60000)*60000, +60000), with floor division.
     */
    public static long windowEnd(long ts) {
        return Math.floorDiv(ts, MINUTE) * MINUTE + MINUTE - 1;
    }

    /**
     * A one-minute tumbling sum built on a timer: the key's first event opens its window (an
     * event-time timer at the window's last millisecond) and sets the sum, later events add to it;
     * onTimer emits (key, sum) and clears the sum.
     */
    public static final class WindowSumFunction
            extends KeyedProcessFunction<Long, Event, Tuple3<Long, Long, Long>> {
        private static final long serialVersionUID = 1L;
        private transient ValueState<Long> sum;

        @Override
        public void open(OpenContext openContext) {
            sum = getRuntimeContext().getState(new ValueStateDescriptor<>("sum", Long.class));
        }

        @Override
        public void processElement(Event value, Context ctx, Collector<Tuple3<Long, Long, Long>> out)
                throws Exception {
            Long current = sum.value();
            if (current == null) {
                ctx.timerService().registerEventTimeTimer(windowEnd(ctx.timestamp()));
                sum.update(value.value);
            } else {
                sum.update(current + value.value);
            }
        }

        @Override
        public void onTimer(long timestamp, OnTimerContext ctx, Collector<Tuple3<Long, Long, Long>> out)
                throws Exception {
            Long current = sum.value();
            if (current != null) {
                out.collect(out(ctx.getCurrentKey(), current, -1));
            }
            sum.clear();
        }
    }

    /**
     * Every event registers one event-time timer at Long.MAX_VALUE - 1; the end of input (the
     * MAX watermark) fires them all, one (key, 1) per distinct key.
     */
    public static final class TimerBurstFunction
            extends KeyedProcessFunction<Long, Event, Tuple3<Long, Long, Long>> {
        private static final long serialVersionUID = 1L;

        @Override
        public void processElement(Event value, Context ctx, Collector<Tuple3<Long, Long, Long>> out) {
            ctx.timerService().registerEventTimeTimer(BURST_AT);
        }

        @Override
        public void onTimer(long timestamp, OnTimerContext ctx, Collector<Tuple3<Long, Long, Long>> out) {
            out.collect(out(ctx.getCurrentKey(), 1, -1));
        }
    }

    /**
     * The heartbeat-timeout alert on processing time: every event is forwarded at once (carrying
     * the source's emit time), the key's previous processing-time timer (kept in a ValueState, as
     * Flink users do) is deleted and a new one registered 60 s ahead; onTimer emits a timeout
     * (key, 0, -1).
     */
    public static final class HeartbeatFunction
            extends KeyedProcessFunction<Long, Event, Tuple3<Long, Long, Long>> {
        private static final long serialVersionUID = 1L;
        private transient ValueState<Long> pendingTimer;

        @Override
        public void open(OpenContext openContext) {
            pendingTimer = getRuntimeContext().getState(new ValueStateDescriptor<>("timer", Long.class));
        }

        @Override
        public void processElement(Event value, Context ctx, Collector<Tuple3<Long, Long, Long>> out)
                throws Exception {
            out.collect(out(value.key, value.value, value.emitNanos));
            Long previous = pendingTimer.value();
            if (previous != null) {
                ctx.timerService().deleteProcessingTimeTimer(previous);
            }
            long at = ctx.timerService().currentProcessingTime() + MINUTE;
            ctx.timerService().registerProcessingTimeTimer(at);
            pendingTimer.update(at);
        }

        @Override
        public void onTimer(long timestamp, OnTimerContext ctx, Collector<Tuple3<Long, Long, Long>> out)
                throws Exception {
            pendingTimer.clear();
            out.collect(out(ctx.getCurrentKey(), 0, -1));
        }
    }
}
