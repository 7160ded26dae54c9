package pinwheel.flink;

import java.util.Arrays;

/**
 * docs/benchmarks.md's ideal outputs for any N, K, R: the outputs of count-with-timeout and window-sum under a
 * watermark exactly one behind every event, i.e. the events arrive in index order and the watermark
 * {@code ts(i) - 1} reaches the operator just before event i does. A timer at T then fires just
 * before the first event with {@code ts >= T + 1}, whose index is {@code (T + 1) * R}.
 *
 * <p>At docs/benchmarks.md's defaults this gives exactly its figures (count-with-timeout 11,098,824 outputs,
 * sum of counts 123,293,855; window-sum 15,068,582) with the window end at the window's last
 * millisecond ({@link Jobs#windowEnd}); a window end at the next window's start would give
 * 15,068,508.
 *
 * <pre>java -cp 'bench/flink/classes:bench/flink/lib/*' pinwheel.flink.Ideal N K R</pre>
 */
public final class Ideal {
    private Ideal() {}

    /** count-with-timeout's outputs and sum of counts, window-sum's outputs. */
    static long[] compute(long events, long keys, long eventsPerMs) {
        int k = (int) keys;
        long[] last = new long[k]; // index of the key's last event, -1: none yet
        long[] count = new long[k];
        long[] windowUntil = new long[k]; // the key's open window takes events with index < this
        Arrays.fill(last, -1);
        Arrays.fill(windowUntil, -1);
        long timeouts = 0;
        long timeoutSum = 0;
        long windows = 0;
        for (long i = 0; i < events; i++) {
            int key = (int) StandardStream.key(i, keys);
            long ts = i / eventsPerMs;
            long previous = last[key];
            if (previous >= 0) {
                long timer = previous / eventsPerMs + Jobs.MINUTE;
                if (i >= (timer + 1) * eventsPerMs) { // the timer fired before this event came
                    timeouts++;
                    timeoutSum += count[key];
                }
            }
            last[key] = i;
            count[key]++;
            if (windowUntil[key] < 0 || i >= windowUntil[key]) { // the key's window fired: a new one
                windows++;
                windowUntil[key] = (Jobs.windowEnd(ts) + 1) * eventsPerMs;
            }
        }
        for (int key = 0; key < k; key++) {
            if (last[key] >= 0) { // the end of input fires every key's last timer
                timeouts++;
                timeoutSum += count[key];
            }
        }
        return new long[] {timeouts, timeoutSum, windows};
    }

    public static void main(String[] args) {
        if (args.length != 3) {
            System.err.println("usage: Ideal N K R");
            System.exit(2);
        }
        long[] r = compute(FlinkBench.number("N", args[0]), FlinkBench.number("K", args[1]),
                FlinkBench.number("R", args[2]));
        System.out.printf("count-with-timeout ideal_outputs=%d ideal_sum=%d window-sum ideal_outputs=%d%n",
                r[0], r[1], r[2]);
    }
}
