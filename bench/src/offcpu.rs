//! What the operating system takes from a thread: time spent runnable but waiting for a CPU
//! (preempted by other work), from Linux's `/proc/thread-self/schedstat` and `status`. The
//! heartbeat job reports it per shard, so that a latency tail can be told apart from the engine's
//! own stalls; the `noise` job measures it on threads that do nothing else.

use std::time::{Duration, Instant};

/// A thread's scheduler counters at one moment (Linux only; `None` elsewhere or if `/proc` is not
/// readable).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ThreadStat {
    /// Time spent waiting on a run queue (runnable, not running), ns.
    pub(crate) wait_ns: u64,
    /// Involuntary context switches: times the thread was preempted.
    pub(crate) preemptions: u64,
}

impl ThreadStat {
    /// The calling thread's counters.
    pub(crate) fn now() -> Option<Self> {
        let schedstat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
        let wait_ns = schedstat.split_whitespace().nth(1)?.parse().ok()?;
        let status = std::fs::read_to_string("/proc/thread-self/status").ok()?;
        let preemptions = status
            .lines()
            .find_map(|l| l.strip_prefix("nonvoluntary_ctxt_switches:"))?
            .trim()
            .parse()
            .ok()?;
        Some(ThreadStat { wait_ns, preemptions })
    }

    /// The counters accrued from `earlier` to `self`.
    pub(crate) fn since(self, earlier: ThreadStat) -> ThreadStat {
        ThreadStat {
            wait_ns: self.wait_ns.saturating_sub(earlier.wait_ns),
            preemptions: self.preemptions.saturating_sub(earlier.preemptions),
        }
    }
}

/// What one spinning thread saw in `seconds`: every gap of more than [`GAP_NS`] between two
/// consecutive clock reads (time the thread did not run), and its scheduler counters.
#[derive(Debug, Default)]
pub(crate) struct Gaps {
    /// Gap lengths, ns.
    pub(crate) gaps: Vec<u64>,
    pub(crate) elapsed_ns: u64,
    pub(crate) stat: Option<ThreadStat>,
}

/// Gaps shorter than this are the loop's own cost (a clock read, a `sched_yield`), not stolen time.
pub(crate) const GAP_NS: u64 = 5_000;

/// Spins for `duration` as an idle shard does (a few turns, then a yield), recording the gaps.
pub(crate) fn spin_and_record(duration: Duration) -> Gaps {
    let before = ThreadStat::now();
    let start = Instant::now();
    let mut last = start;
    let mut gaps = Vec::new();
    let mut turns = 0u32;
    loop {
        turns = turns.wrapping_add(1);
        if turns % 64 == 0 {
            std::thread::yield_now();
        }
        let now = Instant::now();
        let gap = u64::try_from((now - last).as_nanos()).unwrap_or(u64::MAX);
        last = now;
        if gap > GAP_NS {
            gaps.push(gap);
        }
        if now - start >= duration {
            break;
        }
    }
    let elapsed_ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let stat = before.and_then(|b| ThreadStat::now().map(|a| a.since(b)));
    Gaps { gaps, elapsed_ns, stat }
}

/// The delay a record arriving at a uniformly random moment would wait for the thread to run
/// again, at quantile `q`: the smallest `x` with `sum(max(0, gap - x)) <= (1 - q) * elapsed`
/// (the share of time that lies more than `x` before a gap's end).
pub(crate) fn delay_quantile_ns(gaps: &[u64], elapsed_ns: u64, q: f64) -> u64 {
    let budget = (1.0 - q) * elapsed_ns as f64;
    let excess = |x: u64| gaps.iter().map(|&g| g.saturating_sub(x) as f64).sum::<f64>();
    let (mut lo, mut hi) = (0u64, gaps.iter().copied().max().unwrap_or(0));
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if excess(mid) <= budget { hi = mid } else { lo = mid + 1 }
    }
    lo
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_quantiles_of_known_gaps() {
        // 10 s with ten 10 ms gaps: 1% of the time is in a gap, so a random arrival waits at all
        // with probability 1%: the p99 is 0, the p99.9 is 10 ms - 0.1% * 10 s / 10 = 9 ms.
        let gaps = vec![10_000_000; 10];
        let t = 10_000_000_000;
        assert_eq!(delay_quantile_ns(&gaps, t, 0.99), 0);
        assert_eq!(delay_quantile_ns(&gaps, t, 0.999), 9_000_000);
        assert_eq!(delay_quantile_ns(&[], t, 0.999), 0);
    }

    #[test]
    fn this_thread_has_counters_on_linux() {
        if cfg!(target_os = "linux") {
            let a = ThreadStat::now().expect("/proc/thread-self is readable");
            let b = ThreadStat::now().expect("/proc/thread-self is readable");
            assert!(b.since(a).wait_ns < 1_000_000_000);
        }
    }
}
