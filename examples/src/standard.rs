//! The standard generated stream of the benchmarks (docs/benchmarks.md): `N` events over `K` keys
//! at `R` events per millisecond of event time, one partition per shard. The examples and the
//! benchmark driver read it; it is a source like any other (a [`StagePlan`]).

use pinwheel::pipeline::{BATCH, BuildContext, Stage, StagePlan, Status, Turn};
use pinwheel::{MAX_WATERMARK, PipelineError, StreamElement, Timestamp};

/// One event of the standard stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Event {
    /// `splitmix64(i) mod K`.
    pub key: u64,
    /// `i / R` milliseconds.
    pub timestamp: Timestamp,
    /// `i mod 100`.
    pub value: u64,
}

/// splitmix64, as the benchmarks define it (wrapping arithmetic).
#[inline]
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The standard stream: `N` events over `K` keys at `R` events per millisecond of event time.
/// Partition `p` of `P` (one per shard) emits events `p, p+P, p+2P, …`.
///
/// Records carry no timestamp: assign them with a
/// [`WatermarkStrategy`](pinwheel::pipeline::WatermarkStrategy) reading [`Event::timestamp`], as
/// the benchmark jobs do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StandardStream {
    /// `N`: the number of events.
    pub events: u64,
    /// `K`: the number of keys (at least 1).
    pub keys: u64,
    /// `R`: events per millisecond of event time (at least 1).
    pub events_per_ms: u64,
}

impl Default for StandardStream {
    /// The benchmarks' defaults: N = 20,000,000, K = 1,000,000, R = 10.
    fn default() -> Self {
        StandardStream { events: 20_000_000, keys: 1_000_000, events_per_ms: 10 }
    }
}

impl StandardStream {
    /// Event `i` of the stream.
    #[inline]
    pub fn event(&self, i: u64) -> Event {
        Event {
            key: splitmix64(i) % self.keys.max(1),
            timestamp: (i / self.events_per_ms.max(1)) as Timestamp,
            value: i % 100,
        }
    }

    /// The events of partition `p` of `parts`, in order.
    pub fn partition(&self, p: u64, parts: u64) -> impl Iterator<Item = Event> + Send + use<> {
        let this = *self;
        (p..this.events).step_by(parts.max(1) as usize).map(move |i| this.event(i))
    }
}

/// The running partition of a [`StandardStream`] on one shard. It computes each event as
/// [`StandardStream::event`] does, but keeps `i / R` and `i mod 100` as running quotients and
/// remainders instead of dividing for every event (the same values: a test checks them).
#[derive(Debug)]
pub struct StandardPartition {
    /// The next event's index `i`.
    next: u64,
    /// Events in the stream, `N`.
    events: u64,
    /// `K`, at least 1.
    keys: u64,
    /// Partitions, `P`: `i` advances by this.
    step: u64,
    /// `R`, at least 1.
    per_ms: u64,
    /// `i / R` and `i mod R`.
    ts: u64,
    ts_rem: u64,
    /// `P / R` and `P mod R`: how far one step moves them.
    ts_step: u64,
    ts_step_rem: u64,
    /// `i mod 100`, and `P mod 100`.
    value: u64,
    value_step: u64,
    ended: bool,
    /// After a restore: the old partitions' positions (event `i` was emitted before iff
    /// `i < old[i mod old.len()]`), until `next` passes the largest of them that this
    /// partition's events meet.
    old: Option<(Box<[u64]>, u64)>,
}

impl StandardPartition {
    /// Partition `p` of `parts` of `stream`.
    pub fn new(stream: StandardStream, p: u64, parts: u64) -> Self {
        let per_ms = stream.events_per_ms.max(1);
        let step = parts.max(1);
        StandardPartition {
            next: p,
            events: stream.events,
            keys: stream.keys.max(1),
            step,
            per_ms,
            ts: p / per_ms,
            ts_rem: p % per_ms,
            ts_step: step / per_ms,
            ts_step_rem: step % per_ms,
            value: p % 100,
            value_step: step % 100,
            ended: false,
            old: None,
        }
    }

    /// Partition `p` of `parts`, resuming after what a checkpointed run emitted: `old[q]` is
    /// the next event index partition `q` of that run (of `old.len()` partitions) would have
    /// emitted. The events below it of that partition are skipped; any partition count restores
    /// any other.
    ///
    /// The events emitted before that lead this partition's sequence are skipped here, at once,
    /// so that its [`position`](Stage::position) is exact from the start. What is left of the old
    /// positions (after a change of the partition count, the events emitted before are
    /// interleaved with new ones) is skipped as the partition runs; until it has passed them, no
    /// single position describes what it has emitted, and it takes no checkpoint barrier
    /// ([`Stage::checkpointable`]).
    pub fn resumed(stream: StandardStream, p: u64, parts: u64, old: &[u64]) -> Self {
        let mut partition = StandardPartition::new(stream, p, parts);
        if old.is_empty() {
            return partition;
        }
        let q = old.len() as u64;
        // This partition's events `i = p + k * parts` meet old partitions `i mod q`, which run
        // through the residues congruent to `p` modulo gcd(parts, q) only.
        let g = gcd(parts.max(1), q);
        let until = (0..q).filter(|r| r % g == p % g).map(|r| old[r as usize]).max().unwrap_or(0);
        while partition.next < partition.events
            && partition.next < until
            && partition.next < old[(partition.next % q) as usize]
        {
            partition.advance();
        }
        if until > partition.next && partition.next < partition.events {
            partition.old = Some((old.into(), until));
        }
        partition
    }

    /// One pull while old positions apply: events emitted before are skipped.
    #[cold]
    fn pull_resumed(&mut self, out: &mut Vec<StreamElement<Event>>) {
        let Some((old, until)) = self.old.take() else { return };
        let parts = old.len() as u64;
        let mut pushed = 0;
        while pushed < BATCH && self.next < self.events && self.next < until {
            let i = self.next;
            let emitted_before = i < old[(i % parts) as usize];
            let e = self.advance();
            if !emitted_before {
                out.push(StreamElement::untimed(e));
                pushed += 1;
            }
        }
        if self.next < until && self.next < self.events {
            self.old = Some((old, until));
        }
    }

    /// The next event, and moves on.
    #[inline(always)]
    fn advance(&mut self) -> Event {
        let e = Event {
            key: splitmix64(self.next) % self.keys,
            timestamp: self.ts as Timestamp,
            value: self.value,
        };
        self.next += self.step;
        self.ts += self.ts_step;
        self.ts_rem += self.ts_step_rem;
        if self.ts_rem >= self.per_ms {
            self.ts_rem -= self.per_ms;
            self.ts += 1;
        }
        self.value += self.value_step;
        if self.value >= 100 {
            self.value -= 100;
        }
        e
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Stage for StandardPartition {
    type Item = Event;

    #[inline]
    fn pull(
        &mut self,
        _: &mut Turn,
        out: &mut Vec<StreamElement<Event>>,
    ) -> Result<Status, PipelineError> {
        if self.old.is_some() {
            self.pull_resumed(out);
            if self.next < self.events {
                return Ok(Status::Busy);
            }
        }
        let left = self.events.saturating_sub(self.next).div_ceil(self.step);
        let n = left.min(BATCH as u64) as usize;
        out.reserve(n + 1);
        for _ in 0..n {
            let e = self.advance();
            out.push(StreamElement::untimed(e));
        }
        if self.next < self.events {
            return Ok(Status::Busy);
        }
        if !self.ended {
            self.ended = true;
            out.push(StreamElement::Watermark(MAX_WATERMARK));
        }
        Ok(Status::Done)
    }

    /// The next event index: every event of this partition below it has been emitted (or was
    /// emitted by the run this one resumed).
    fn position(&self) -> Option<Vec<u8>> {
        Some(self.next.to_le_bytes().to_vec())
    }

    /// Not while old positions still apply: events below `next` were emitted, but some above it
    /// were too (by the run this one resumed), which no single index says.
    fn checkpointable(&self) -> bool {
        self.old.is_none()
    }
}

impl StagePlan for StandardStream {
    type Item = Event;
    type Stage = StandardPartition;

    fn build(&self, cx: &BuildContext) -> Result<StandardPartition, PipelineError> {
        let shard = cx.shard();
        Ok(StandardPartition::new(*self, shard.index as u64, shard.count as u64))
    }

    fn resume(
        &self,
        cx: &BuildContext,
        positions: &[Vec<u8>],
    ) -> Result<StandardPartition, PipelineError> {
        let old: Vec<u64> = positions
            .iter()
            .map(|p| p.as_slice().try_into().map(u64::from_le_bytes))
            .collect::<Result<_, _>>()
            .map_err(|_| PipelineError::Source {
                shard: cx.shard().index,
                source: "a standard stream position is not 8 bytes".into(),
            })?;
        let shard = cx.shard();
        Ok(StandardPartition::resumed(*self, shard.index as u64, shard.count as u64, &old))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_reference_values() {
        // Reference values of splitmix64 (Vigna's generator seeded with 0, successive states).
        assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
        assert_eq!(splitmix64(0x9E37_79B9_7F4A_7C15), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn the_running_partition_computes_the_events_of_the_definition() {
        for (events, keys, r, parts) in [(1000, 7, 10, 3), (997, 1, 1, 1), (5000, 100, 3, 7)] {
            let s = StandardStream { events, keys, events_per_ms: r };
            for p in 0..parts {
                let mut running = StandardPartition::new(s, p, parts);
                let got: Vec<Event> =
                    (p..events).step_by(parts as usize).map(|_| running.advance()).collect();
                let want: Vec<Event> = s.partition(p, parts).collect();
                assert_eq!(got, want, "N={events} K={keys} R={r} partition {p} of {parts}");
            }
        }
    }

    /// Events `[0, N)` emitted by partitions `parts` of `old` up to positions `at`, then by `new`
    /// resumed partitions: every event exactly once.
    #[test]
    fn resumed_partitions_emit_exactly_what_the_old_ones_had_not() {
        let s = StandardStream { events: 2000, keys: 7, events_per_ms: 3 };
        let drain = |p: &mut StandardPartition| {
            let mut got = Vec::new();
            let mut out = Vec::new();
            while p.next < p.events || p.old.is_some() {
                p.pull_resumed(&mut out);
                if p.old.is_none() {
                    while p.next < p.events {
                        let e = p.advance();
                        out.push(StreamElement::untimed(e));
                    }
                }
                got.extend(out.drain(..).filter_map(StreamElement::into_value));
            }
            got
        };
        for (old_parts, new_parts) in [(2u64, 1u64), (2, 2), (2, 4), (3, 2), (1, 3)] {
            let at: Vec<u64> = (0..old_parts).map(|p| p + 37 * (p + 2) * old_parts).collect();
            let mut before: Vec<Event> = Vec::new();
            for p in 0..old_parts {
                let emitted = at[p as usize].saturating_sub(p).div_ceil(old_parts);
                before.extend(s.partition(p, old_parts).take(emitted as usize));
            }
            let mut after: Vec<Event> = Vec::new();
            for q in 0..new_parts {
                after.extend(drain(&mut StandardPartition::resumed(s, q, new_parts, &at)));
            }
            let mut all: Vec<(Timestamp, u64, u64)> =
                before.iter().chain(&after).map(|e| (e.timestamp, e.value, e.key)).collect();
            all.sort_unstable();
            let mut want: Vec<(Timestamp, u64, u64)> =
                (0..s.events).map(|i| s.event(i)).map(|e| (e.timestamp, e.value, e.key)).collect();
            want.sort_unstable();
            assert_eq!(all, want, "{old_parts} partitions resumed as {new_parts}");
        }
    }

    /// One pull of a partition, as `Stage::pull` does it: while old positions apply, the
    /// resumed path; then a batch.
    fn pull_once(p: &mut StandardPartition, got: &mut Vec<Event>) {
        let mut out = Vec::new();
        if p.old.is_some() {
            p.pull_resumed(&mut out);
        } else {
            for _ in 0..BATCH.min(7) {
                if p.next >= p.events {
                    break;
                }
                let e = p.advance();
                out.push(StreamElement::untimed(e));
            }
        }
        got.extend(out.drain(..).filter_map(StreamElement::into_value));
    }

    /// A checkpoint of resumed partitions, taken after `pulls` pulls of each (and as many more
    /// as a partition needs to become checkpointable, as the barrier waits for it), resumed
    /// again on a third partition count: every event exactly once over the three runs. A
    /// barrier before the first pull of a resumed run included: its position must already
    /// cover what the run it resumed had emitted.
    #[test]
    fn a_checkpoint_of_a_resumed_run_resumes_exactly() {
        let s = StandardStream { events: 3000, keys: 7, events_per_ms: 3 };
        let positions = |parts: &[StandardPartition]| -> Vec<u64> {
            parts
                .iter()
                .map(|p| u64::from_le_bytes(p.position().unwrap()[..].try_into().unwrap()))
                .collect()
        };
        for (a, b, c) in [(2u64, 2u64, 2u64), (2, 1, 2), (2, 4, 3), (3, 2, 2), (1, 3, 1), (2, 2, 4)]
        {
            for pulls in [0usize, 1, 2, 5, 40] {
                // Run 1: partitions of `a`, stopped unevenly.
                let at: Vec<u64> = (0..a).map(|p| p + 37 * (p + 2) * a).collect();
                let mut emitted: Vec<Event> = Vec::new();
                for p in 0..a {
                    let n = at[p as usize].saturating_sub(p).div_ceil(a);
                    emitted.extend(s.partition(p, a).take(n as usize));
                }
                // Run 2: `b` partitions resumed from run 1, checkpointed after `pulls` pulls.
                let mut run2: Vec<StandardPartition> =
                    (0..b).map(|q| StandardPartition::resumed(s, q, b, &at)).collect();
                for p in &mut run2 {
                    let mut n = 0;
                    while n < pulls || !p.checkpointable() {
                        pull_once(p, &mut emitted);
                        n += 1;
                    }
                }
                let checkpoint = positions(&run2);
                // Run 3: `c` partitions resumed from run 2's checkpoint, to the end.
                for q in 0..c {
                    let mut p = StandardPartition::resumed(s, q, c, &checkpoint);
                    while p.next < p.events || p.old.is_some() {
                        pull_once(&mut p, &mut emitted);
                    }
                }
                let mut all: Vec<(Timestamp, u64, u64)> =
                    emitted.iter().map(|e| (e.timestamp, e.value, e.key)).collect();
                all.sort_unstable();
                let mut want: Vec<(Timestamp, u64, u64)> = (0..s.events)
                    .map(|i| s.event(i))
                    .map(|e| (e.timestamp, e.value, e.key))
                    .collect();
                want.sort_unstable();
                assert!(
                    all == want,
                    "{a} -> {b} (checkpoint after {pulls} pulls) -> {c}: {} events emitted, {} in \
                     the stream",
                    all.len(),
                    want.len()
                );
            }
        }
    }

    #[test]
    fn partitions_cover_the_stream_once() {
        let s = StandardStream { events: 1000, keys: 7, events_per_ms: 10 };
        let mut all: Vec<u64> = (0..3).flat_map(|p| s.partition(p, 3)).map(|e| e.value).collect();
        all.sort_unstable();
        assert_eq!(all.len(), 1000);
        assert_eq!(all.iter().sum::<u64>(), (0..1000u64).map(|i| i % 100).sum::<u64>());
        assert_eq!(s.event(25), Event { key: splitmix64(25) % 7, timestamp: 2, value: 25 });
    }
}
