//! docs/benchmarks.md's *ideal* output counts for any `N`, `K`, `R`: what count-with-timeout and window-sum
//! emit under a watermark exactly one behind every event.
//!
//! A port of `bench/flink/src/pinwheel/flink/Ideal.java` (the Flink side computes the same figures):
//! the events arrive in index order and the watermark `ts(i) - 1` reaches the operator just before
//! event `i` does. A timer at `T` then fires just before the first event with `ts >= T + 1`, whose
//! index is `(T + 1) * R`. At docs/benchmarks.md's defaults this gives its figures exactly (count-with-timeout
//! 11,098,824 outputs with sum of counts 123,293,855; window-sum 15,068,582), with the window end at
//! the window's last millisecond ([`pinwheel_examples::window_end`]).

use pinwheel_examples::StandardStream;
use pinwheel_examples::{MINUTE, window_end};

/// The ideal outputs of one stream, and each key's number of events (which count-with-timeout's
/// per-key check needs anyway).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ideal {
    /// count-with-timeout: outputs.
    pub(crate) timeouts: u64,
    /// count-with-timeout: the sum of the emitted counts.
    pub(crate) timeout_sum: u64,
    /// window-sum: outputs.
    pub(crate) windows: u64,
    /// Per key, its number of events.
    pub(crate) counts: Vec<u64>,
}

/// One key's figures, kept together so that an event costs one cache miss, not three.
#[derive(Debug, Clone, Copy, Default)]
struct PerKey {
    /// Index of the key's last event + 1; 0: none yet.
    last: u64,
    /// Events of the key so far.
    count: u64,
    /// The key's open window takes the events with index `< window_until`; 0: no window yet.
    window_until: u64,
}

/// Computes the ideal outputs of `s` (one pass over the stream, 24 bytes per key).
pub(crate) fn compute(s: &StandardStream) -> Ideal {
    let r = s.events_per_ms.max(1);
    let keys = usize::try_from(s.keys.max(1)).expect("keys fit in memory");
    let mut per_key = vec![PerKey::default(); keys];
    let (mut timeouts, mut timeout_sum, mut windows) = (0u64, 0u64, 0u64);
    for i in 0..s.events {
        let e = s.event(i);
        let k = &mut per_key[e.key as usize];
        if k.last > 0 {
            // The timer of the key's previous event; it fired before this event came.
            let timer = (k.last - 1) / r + MINUTE as u64;
            if i >= timer.saturating_add(1).saturating_mul(r) {
                timeouts += 1;
                timeout_sum += k.count;
            }
        }
        k.last = i + 1;
        k.count += 1;
        // A real window_until is at least 60,000 * R, so 0 ("none") always opens a window.
        if i >= k.window_until {
            windows += 1;
            let end = window_end(e.timestamp, MINUTE) as u64;
            k.window_until = end.saturating_add(1).saturating_mul(r);
        }
    }
    // The end of input fires every key's last timer.
    for k in per_key.iter().filter(|k| k.last > 0) {
        timeouts += 1;
        timeout_sum += k.count;
    }
    Ideal { timeouts, timeout_sum, windows, counts: per_key.into_iter().map(|k| k.count).collect() }
}

/// `sum(i mod 100)` over `i < n`: what window-sum's sums (and heartbeat's forwarded values) add up
/// to.
pub(crate) fn value_sum(n: u64) -> u64 {
    (n / 100) * 4950 + (n % 100) * (n % 100).saturating_sub(1) / 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use pinwheel::StreamElement;
    use pinwheel::harness::KeyedHarness;
    use pinwheel_examples::Event;
    use pinwheel_examples::{CountWithTimeout, WindowSum};

    #[test]
    fn reproduces_perf_md_at_the_defaults() {
        let ideal = compute(&StandardStream::default());
        assert_eq!(ideal.timeouts, 11_098_824);
        assert_eq!(ideal.timeout_sum, 123_293_855);
        assert_eq!(ideal.windows, 15_068_582);
        assert_eq!(ideal.counts.iter().sum::<u64>(), 20_000_000);
    }

    #[test]
    fn value_sum_matches_the_definition() {
        for n in [0, 1, 2, 99, 100, 101, 250, 1234] {
            assert_eq!(value_sum(n), (0..n).map(|i| i % 100).sum::<u64>(), "n = {n}");
        }
    }

    /// Drives the real job functions through the harness with the ideal's watermark (one behind
    /// every event, events in index order) and compares their outputs with [`compute`].
    #[test]
    fn agrees_with_the_jobs_under_the_ideal_watermark() {
        for (events, keys, r) in [(30_000, 300, 1), (50_000, 40, 3), (7_000, 7_000, 1)] {
            let s = StandardStream { events, keys, events_per_ms: r };
            let ideal = compute(&s);

            let mut cwt =
                KeyedHarness::new(CountWithTimeout::one_minute(), |e: &Event| e.key).unwrap();
            let mut ws = KeyedHarness::new(WindowSum::one_minute(), |e: &Event| e.key).unwrap();
            for i in 0..events {
                let e = s.event(i);
                cwt.process_watermark(e.timestamp - 1).unwrap();
                ws.process_watermark(e.timestamp - 1).unwrap();
                cwt.process_element(e, e.timestamp).unwrap();
                ws.process_element(e, e.timestamp).unwrap();
            }
            cwt.end_input().unwrap();
            ws.end_input().unwrap();
            let counts: Vec<(u64, u64)> =
                cwt.take_output().into_iter().filter_map(StreamElement::into_value).collect();
            let sums: Vec<(u64, u64)> =
                ws.take_output().into_iter().filter_map(StreamElement::into_value).collect();
            assert_eq!(counts.len() as u64, ideal.timeouts, "{s:?}");
            assert_eq!(counts.iter().map(|c| c.1).sum::<u64>(), ideal.timeout_sum, "{s:?}");
            assert_eq!(sums.len() as u64, ideal.windows, "{s:?}");
            assert_eq!(sums.iter().map(|c| c.1).sum::<u64>(), value_sum(events));
        }
    }
}
