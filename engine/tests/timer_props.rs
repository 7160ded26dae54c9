//! Differential property tests: [`TimerWheel`] against [`ReferenceTimers`] (a `BTreeMap` ordered by
//! `(timestamp, registration sequence)`), on random scripts of registers, deletes, queries and poll
//! loops, with registrations and deletes made *inside* the poll loops, as `on_timer` callbacks do.
//! Every fired timer is compared (order included), every query is compared, and the wheel's
//! structural invariants are checked after every operation.
//!
//! Test families, and the bugs each one exists to catch:
//!
//! * `wheel_matches_reference` (10,000 cases, keys 0..8, timestamps near the store's time, on every
//!   wheel level, far beyond the wheel's horizon, at the extremes of `i64`, uniformly random, below
//!   the time, or equal to a pending timer's): timers lost or duplicated by a cascade, a far-tier
//!   migration or an overdue registration; firing out of timestamp order after big jumps or polls
//!   that go backwards; FIFO broken among equal timestamps (the firing sequence must match the
//!   reference exactly); a stale `peek_timestamp` after deleting the earliest timer; a dedup table,
//!   per-key index or count that drifts from the timers (re-registration after a delete or after
//!   firing, `delete_all_for_key` inside a poll loop); arithmetic that wraps at `i64::MIN`/`MAX`.
//! * `coalesced_scripts_match_reference` (keys 0..64, a handful of instants): many timers per list,
//!   so deletes inside long lists, deletes of the head or tail of the list being fired, and splices
//!   and cascades of long lists (their order must survive intact).

use pinwheel_engine::timer::{ReferenceTimers, Timer, TimerWheel};
use proptest::prelude::*;
use proptest::test_runner::Config;

/// How a script picks a timestamp; resolved against the store's state when the step runs.
#[derive(Debug, Clone)]
enum Ts {
    /// The store's time plus a small delta (negative: below the time).
    Near(i64),
    /// The store's time plus a random number of `bits` bits: lands on every wheel level.
    Level(u32, u64),
    /// The store's time minus a random number of `bits` bits.
    Back(u32, u64),
    /// 2^36..2^45 ms after the store's time: beyond the wheel's horizon.
    Far(i64),
    /// One of `i64::MIN, MIN + 1, -1, 0, MAX - 1, MAX`.
    Edge(usize),
    /// Any `i64`.
    Any(i64),
    /// The timestamp of a pending timer (picked by index), or the store's time if none.
    Pending(usize),
    /// One of a few instants (coalesced scripts).
    Instant(usize),
}

const EDGES: [i64; 6] = [i64::MIN, i64::MIN + 1, -1, 0, i64::MAX - 1, i64::MAX];

/// Where a poll loop goes.
#[derive(Debug, Clone)]
enum Target {
    /// The store's time plus a small step.
    Step(i64),
    /// The store's time plus 2^bits-ish.
    Jump(u32, u64),
    /// `i64::MAX`, the end of event time.
    Max,
    /// Below the store's time.
    Back(i64),
    /// Exactly a pending timestamp (or the time).
    Pending(usize),
    /// Any `i64`.
    Any(i64),
}

/// What an `on_timer` callback does after a timer fired.
#[derive(Debug, Clone)]
enum Inner {
    Nothing,
    Register(u32, InnerTs),
    Delete(u32, InnerTs),
    DeletePending(usize),
    DeleteAll(u32),
}

/// A timestamp picked inside a poll loop.
#[derive(Debug, Clone)]
enum InnerTs {
    /// The timestamp that just fired (docs/semantics.md S09).
    Same,
    /// Below the timestamp that just fired.
    Minus(i64),
    /// At or after the timestamp that just fired (S07).
    Plus(i64),
    /// Anything, relative to the store's time.
    Other(Ts),
}

#[derive(Debug, Clone)]
enum Op {
    Register(u32, Ts),
    Delete(u32, Ts),
    DeletePending(usize),
    Contains(u32, Ts),
    PollLoop(Target, Vec<Inner>),
    PollOnce(Target),
    Count(u32),
    List(u32),
    Peek,
    DeleteAll(u32),
    Clear,
}

fn general_ts() -> BoxedStrategy<Ts> {
    prop_oneof![
        4 => (-70i64..130).prop_map(Ts::Near),
        3 => (0u32..40, any::<u64>()).prop_map(|(b, x)| Ts::Level(b, x)),
        1 => (0u32..40, any::<u64>()).prop_map(|(b, x)| Ts::Back(b, x)),
        1 => ((1i64 << 36)..(1i64 << 45)).prop_map(Ts::Far),
        1 => (0usize..EDGES.len()).prop_map(Ts::Edge),
        1 => any::<i64>().prop_map(Ts::Any),
        3 => any::<usize>().prop_map(Ts::Pending),
    ]
    .boxed()
}

fn coalesced_ts() -> BoxedStrategy<Ts> {
    prop_oneof![
        6 => (0usize..INSTANTS.len()).prop_map(Ts::Instant),
        2 => any::<usize>().prop_map(Ts::Pending),
        1 => (-3i64..3).prop_map(Ts::Near),
    ]
    .boxed()
}

/// Instants of the coalesced scripts: relative to the store's time for small values, absolute for
/// the last three.
const INSTANTS: [i64; 8] = [0, 1, 64, 4_096, 300_000, 1 << 40, i64::MAX - 1, i64::MAX];

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        4 => (0i64..200).prop_map(Target::Step),
        2 => (10u32..46, any::<u64>()).prop_map(|(b, x)| Target::Jump(b, x)),
        1 => Just(Target::Max),
        1 => (0i64..1_000).prop_map(Target::Back),
        2 => any::<usize>().prop_map(Target::Pending),
        1 => any::<i64>().prop_map(Target::Any),
    ]
}

fn inner(keys: u32, ts: BoxedStrategy<Ts>) -> impl Strategy<Value = Inner> {
    let inner_ts = prop_oneof![
        2 => Just(InnerTs::Same),
        1 => (1i64..100).prop_map(InnerTs::Minus),
        2 => (0i64..100).prop_map(InnerTs::Plus),
        2 => ts.prop_map(InnerTs::Other),
    ]
    .boxed();
    prop_oneof![
        3 => Just(Inner::Nothing),
        4 => (0..keys, inner_ts.clone()).prop_map(|(k, t)| Inner::Register(k, t)),
        1 => (0..keys, inner_ts).prop_map(|(k, t)| Inner::Delete(k, t)),
        2 => any::<usize>().prop_map(Inner::DeletePending),
        1 => (0..keys).prop_map(Inner::DeleteAll),
    ]
}

fn op(keys: u32, ts: BoxedStrategy<Ts>) -> impl Strategy<Value = Op> {
    prop_oneof![
        40 => (0..keys, ts.clone()).prop_map(|(k, t)| Op::Register(k, t)),
        8 => (0..keys, ts.clone()).prop_map(|(k, t)| Op::Delete(k, t)),
        8 => any::<usize>().prop_map(Op::DeletePending),
        4 => (0..keys, ts.clone()).prop_map(|(k, t)| Op::Contains(k, t)),
        16 => (target(), prop::collection::vec(inner(keys, ts), 0..8))
            .prop_map(|(t, i)| Op::PollLoop(t, i)),
        8 => target().prop_map(Op::PollOnce),
        4 => (0..keys).prop_map(Op::Count),
        4 => (0..keys).prop_map(Op::List),
        6 => Just(Op::Peek),
        4 => (0..keys).prop_map(Op::DeleteAll),
        1 => Just(Op::Clear),
    ]
}

/// Both stores, driven in lockstep.
struct Pair {
    wheel: TimerWheel,
    reference: ReferenceTimers,
}

impl Pair {
    fn pending(&self) -> Vec<Timer> {
        let mut out = Vec::with_capacity(self.reference.len());
        self.reference.for_each(|t| out.push(t));
        out
    }

    fn resolve(&self, ts: &Ts) -> i64 {
        let now = self.reference.current_time();
        let bits = |b: u32, x: u64| (x & ((1u64 << b) - 1)) as i64;
        match *ts {
            Ts::Near(d) => now.saturating_add(d),
            Ts::Level(b, x) => now.saturating_add(bits(b, x)),
            Ts::Back(b, x) => now.saturating_sub(bits(b, x)),
            Ts::Far(d) => now.saturating_add(d),
            Ts::Edge(i) => EDGES[i],
            Ts::Any(t) => t,
            Ts::Pending(i) => {
                let pending = self.pending();
                if pending.is_empty() { now } else { pending[i % pending.len()].timestamp }
            }
            Ts::Instant(i) if i < INSTANTS.len() - 3 => now.saturating_add(INSTANTS[i]),
            Ts::Instant(i) => INSTANTS[i],
        }
    }

    fn resolve_target(&self, target: &Target) -> i64 {
        let now = self.reference.current_time();
        match *target {
            Target::Step(d) => now.saturating_add(d),
            Target::Jump(b, x) => {
                now.saturating_add((x & ((1u64 << b) - 1)) as i64 | (1 << (b - 1)))
            }
            Target::Max => i64::MAX,
            Target::Back(d) => now.saturating_sub(d),
            Target::Pending(i) => self.resolve(&Ts::Pending(i)),
            Target::Any(t) => t,
        }
    }

    fn register(&mut self, key: u32, ts: i64) -> Result<(), TestCaseError> {
        let got = self.wheel.register(key, ts);
        prop_assert_eq!(got, self.reference.register(key, ts), "register({}, {})", key, ts);
        Ok(())
    }

    fn delete(&mut self, key: u32, ts: i64) -> Result<(), TestCaseError> {
        let got = self.wheel.delete(key, ts);
        prop_assert_eq!(got, self.reference.delete(key, ts), "delete({}, {})", key, ts);
        Ok(())
    }

    fn delete_pending(&mut self, i: usize) -> Result<(), TestCaseError> {
        let pending = self.pending();
        if !pending.is_empty() {
            let t = pending[i % pending.len()];
            prop_assert!(self.wheel.delete(t.key, t.timestamp), "delete pending {:?}", t);
            prop_assert!(self.reference.delete(t.key, t.timestamp));
        }
        Ok(())
    }

    fn delete_all(&mut self, key: u32) -> Result<(), TestCaseError> {
        let got = self.wheel.delete_all_for_key(key);
        prop_assert_eq!(got, self.reference.delete_all_for_key(key), "delete_all_for_key({})", key);
        Ok(())
    }

    /// Cheap comparisons after every step, plus the wheel's own invariants.
    fn check(&self) -> Result<(), TestCaseError> {
        prop_assert_eq!(self.wheel.len(), self.reference.len(), "len");
        prop_assert_eq!(self.wheel.is_empty(), self.reference.is_empty());
        prop_assert_eq!(self.wheel.next_due_at_least().is_some(), !self.reference.is_empty());
        if let (Some(bound), Some(min)) =
            (self.wheel.next_due_at_least(), self.reference.peek_timestamp())
        {
            prop_assert!(
                bound <= min,
                "next_due_at_least {} above the earliest timer {}",
                bound,
                min
            );
        }
        prop_assert_eq!(self.wheel.current_time(), self.reference.current_time(), "time");
        self.wheel.assert_invariants();
        Ok(())
    }

    /// The pending sets are equal (their order is checked by firing them).
    fn check_contents(&self) -> Result<(), TestCaseError> {
        let mut wheel = Vec::new();
        self.wheel.for_each(|t| wheel.push((t.timestamp, t.key)));
        let mut reference = Vec::new();
        self.reference.for_each(|t| reference.push((t.timestamp, t.key)));
        wheel.sort_unstable();
        reference.sort_unstable();
        prop_assert_eq!(wheel, reference, "pending timers");
        Ok(())
    }

    /// Polls both stores until nothing is due at `now`, running one callback action per fired timer.
    fn poll_loop(&mut self, now: i64, actions: &[Inner]) -> Result<(), TestCaseError> {
        let mut actions = actions.iter();
        loop {
            let fired = self.wheel.poll(now);
            prop_assert_eq!(fired, self.reference.poll(now), "poll({})", now);
            self.check()?;
            let Some(t) = fired else { return Ok(()) };
            match actions.next() {
                None | Some(Inner::Nothing) => {}
                Some(Inner::Register(key, ts)) => self.register(*key, self.inner_ts(t, ts))?,
                Some(Inner::Delete(key, ts)) => self.delete(*key, self.inner_ts(t, ts))?,
                Some(Inner::DeletePending(i)) => self.delete_pending(*i)?,
                Some(Inner::DeleteAll(key)) => self.delete_all(*key)?,
            }
            self.check()?;
        }
    }

    fn inner_ts(&self, fired: Timer, ts: &InnerTs) -> i64 {
        match ts {
            InnerTs::Same => fired.timestamp,
            InnerTs::Minus(d) => fired.timestamp.saturating_sub(*d),
            InnerTs::Plus(d) => fired.timestamp.saturating_add(*d),
            InnerTs::Other(ts) => self.resolve(ts),
        }
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::Register(key, ts) => self.register(*key, self.resolve(ts))?,
            Op::Delete(key, ts) => self.delete(*key, self.resolve(ts))?,
            Op::DeletePending(i) => self.delete_pending(*i)?,
            Op::Contains(key, ts) => {
                let ts = self.resolve(ts);
                prop_assert_eq!(self.wheel.contains(*key, ts), self.reference.contains(*key, ts));
            }
            Op::PollLoop(target, actions) => {
                let now = self.resolve_target(target);
                self.poll_loop(now, actions)?;
                self.check_contents()?;
            }
            Op::PollOnce(target) => {
                let now = self.resolve_target(target);
                prop_assert_eq!(self.wheel.poll(now), self.reference.poll(now), "poll({})", now);
            }
            Op::Count(key) => {
                prop_assert_eq!(self.wheel.count_for_key(*key), self.reference.count_for_key(*key));
            }
            Op::List(key) => {
                prop_assert_eq!(
                    self.wheel.timers_for_key(*key),
                    self.reference.timers_for_key(*key)
                );
            }
            Op::Peek => {
                prop_assert_eq!(
                    self.wheel.peek_timestamp(),
                    self.reference.peek_timestamp(),
                    "peek"
                );
            }
            Op::DeleteAll(key) => self.delete_all(*key)?,
            Op::Clear => {
                self.wheel.clear();
                self.reference.clear();
            }
        }
        self.check()
    }
}

/// `default` cases, or `PINWHEEL_PROPTEST_CASES` for a longer hunt (CI runs the default).
fn cases(default: u32) -> u32 {
    std::env::var("PINWHEEL_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The default threshold (compaction is then rare in short scripts), or one so small that the
/// incremental compaction runs all the time.
fn compaction_threshold() -> impl Strategy<Value = usize> {
    prop_oneof![Just(4096usize), 0usize..3]
}

/// Runs a script; `compact_at` is the wheel's compaction threshold (small values compact stale
/// entries all the time, so the incremental compaction runs inside every kind of script).
fn run(ops: &[Op], compact_at: usize) -> Result<(), TestCaseError> {
    let wheel = TimerWheel::new().with_compaction_threshold(compact_at);
    let mut pair = Pair { wheel, reference: ReferenceTimers::new() };
    for op in ops {
        pair.step(op)?;
    }
    pair.check_contents()?;
    // Whatever is left fires, in the same order, at the end of time.
    pair.poll_loop(i64::MAX, &[])?;
    prop_assert!(pair.wheel.is_empty());
    Ok(())
}

proptest! {
    #![proptest_config(Config { cases: cases(10_000), ..Config::default() })]

    #[test]
    fn wheel_matches_reference(
        ops in prop::collection::vec(op(8, general_ts()), 1..60),
        compact_at in compaction_threshold(),
    ) {
        run(&ops, compact_at)?;
    }
}

proptest! {
    #![proptest_config(Config { cases: cases(2_000), ..Config::default() })]

    #[test]
    fn coalesced_scripts_match_reference(
        ops in prop::collection::vec(op(64, coalesced_ts()), 1..120),
        compact_at in compaction_threshold(),
    ) {
        run(&ops, compact_at)?;
    }
}
