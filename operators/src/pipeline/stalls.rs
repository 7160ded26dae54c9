//! The shards' checkpoint stalls, summarized in bounded memory ([`Stalls`]): a log-linear
//! histogram of microseconds (32 buckets per power of two, so a quantile is within 1/32 of the
//! true value), however long the job runs and however many checkpoints it takes.

use std::time::Duration;

/// Buckets per power of two (and the values below it, which are exact).
const SUB: u64 = 32;
/// log2 of [`SUB`].
const SUB_BITS: u32 = 5;

/// Every shard's stall at every checkpoint barrier (the time it spent freezing its keyed
/// operators), as counts per bucket of microseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stalls {
    /// Counts per bucket ([`bucket`]), grown to the largest bucket seen (at most 1,920).
    counts: Vec<u64>,
    count: u64,
    max_us: u64,
}

impl Stalls {
    /// Records one stall.
    pub(crate) fn record(&mut self, stall: Duration) {
        let us = u64::try_from(stall.as_micros()).unwrap_or(u64::MAX);
        let b = bucket(us);
        if b >= self.counts.len() {
            self.counts.resize(b + 1, 0);
        }
        self.counts[b] += 1;
        self.count += 1;
        self.max_us = self.max_us.max(us);
    }

    /// How many stalls were recorded (one per shard and keyed operator per checkpoint).
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The longest stall.
    pub fn max(&self) -> Duration {
        Duration::from_micros(self.max_us)
    }

    /// The stall at quantile `q` (`0.5` the median, `0.99` the 99th percentile): the smallest
    /// bucket bound at or above that many stalls, within 1/32 of the true value and never above
    /// the maximum; zero without stalls.
    pub fn quantile(&self, q: f64) -> Duration {
        let rank = ((self.count as f64 * q.clamp(0.0, 1.0)).ceil() as u64).max(1);
        let mut seen = 0;
        for (b, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Duration::from_micros(upper(b).min(self.max_us));
            }
        }
        Duration::ZERO
    }
}

/// The bucket of `us`: values below [`SUB`] each have their own; above, each power of two is
/// split into [`SUB`] equal buckets.
fn bucket(us: u64) -> usize {
    if us < SUB {
        return us as usize;
    }
    let e = 63 - us.leading_zeros(); // >= SUB_BITS
    let sub = (us >> (e - SUB_BITS)) & (SUB - 1);
    ((u64::from(e - SUB_BITS + 1) * SUB) + sub) as usize
}

/// The largest value of bucket `b`.
fn upper(b: usize) -> u64 {
    let b = b as u64;
    if b < SUB {
        return b;
    }
    let e = (b / SUB - 1) as u32 + SUB_BITS;
    let sub = b % SUB;
    let low = (1u64 << e) + (sub << (e - SUB_BITS));
    low.saturating_add((1u64 << (e - SUB_BITS)) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn buckets_cover_every_value_in_order() {
        for us in (0..5_000u64).chain([u64::MAX / 3, u64::MAX - 1, u64::MAX]) {
            let b = bucket(us);
            assert!(upper(b) >= us, "{us} above its bucket's bound {}", upper(b));
            if b > 0 {
                assert!(upper(b - 1) < us, "{us} belongs to an earlier bucket");
            }
        }
        assert!(bucket(u64::MAX) < 1_920);
    }

    proptest! {
        #[test]
        fn quantiles_are_within_a_thirty_second_of_the_sorted_values(
            mut stalls in prop::collection::vec(0u64..10_000_000, 1..200),
            q in 0.0f64..=1.0,
        ) {
            let mut s = Stalls::default();
            for &us in &stalls {
                s.record(Duration::from_micros(us));
            }
            stalls.sort_unstable();
            let rank = ((stalls.len() as f64 * q).ceil() as usize).max(1);
            let want = stalls[rank - 1];
            let got = s.quantile(q).as_micros() as u64;
            prop_assert!(got >= want && got <= want + want / 32, "q {q}: {got} for {want}");
            prop_assert_eq!(s.max().as_micros() as u64, *stalls.last().unwrap());
            prop_assert_eq!(s.count(), stalls.len() as u64);
        }
    }
}
