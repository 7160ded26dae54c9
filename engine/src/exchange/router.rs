//! The router: one shard's end of one exchange. It sends each local record to the shard that owns
//! its key group, receives the records the other shards send here, and turns the channels'
//! watermarks, idleness, barriers and ends into the one ordered input of the keyed operator.
//!
//! ```text
//!   local input ──route──┬─ key group owned here ─────────────────────────► ready ──► operator
//!                        └─ shard j's group: batch[j] ─flush─► ring[me→j]
//!   ring[i→me], every i ≠ me ─drain─► records, and watermarks through the valve ──► ready
//! ```
//!
//! * **Order.** Watermarks, idle markers, barriers and the end of a channel travel in order with
//!   the records, through every ring. The channels' watermarks meet in a [`WatermarkValve`] with
//!   one channel per shard (the minimum over non-idle channels, strictly increasing; A2.4); what
//!   comes out of it goes to `ready` in order with the records.
//! * **Batching and a time bound.** Records for another shard wait in that shard's batch until it
//!   holds [`RingPlan::flush_at`] messages or until [`flush`](Router::flush), which the exchange
//!   calls at the end of every turn: a record waits at most one turn of its shard, whatever the
//!   rate.
//! * **Backpressure.** Rings are bounded. While a full batch cannot enter its full ring, the
//!   router closes its local gate ([`Gate::Backpressure`]): the local input is not pulled, but the
//!   inbound rings keep being drained, so two shards filling each other's rings cannot deadlock,
//!   and at most one batch per destination is held outside the rings. Taking messages out of a
//!   ring wakes its producer (it may be parked, waiting for room); pushing into a ring wakes its
//!   consumer.
//! * **Watermark alignment.** The gate also closes ([`Gate::Ahead`]) while the local input's
//!   watermark is more than the maximum drift ahead of the combined watermark (Flink's
//!   `withWatermarkAlignment`): otherwise one partition can run minutes of event time ahead of
//!   another, and the combined watermark, the minimum, lags far behind the records it releases.
//!   The shard holding the slowest partition never pauses, so event time always progresses.
//!   The gate stays open while a barrier aligns (another shard holds its own input until this
//!   one's barrier, which may sit behind the held records, arrives: holding both would deadlock)
//!   and after the final watermark (only the end follows it, and other shards' alignments wait
//!   for that end).
//! * **Barrier alignment.** A checkpoint barrier that arrives on a channel holds that channel (its
//!   later messages wait in a per-channel queue; for the local input, the gate closes with
//!   [`Gate::Aligning`]) until the barrier has arrived on every channel that is still open; then
//!   the barrier goes to `ready`, once, and the channels are released in order. A channel that
//!   ends counts as aligned. A barrier of a newer checkpoint arriving while an older one aligns
//!   abandons the older one (as Flink does); a barrier older than the one aligning is dropped.
//! * **The end.** A channel's end is its final watermark (a partition that ended without one still
//!   ends event time). When every channel has ended and everything was delivered, one
//!   [`Message::End`] goes to `ready`.
//!
//! With one shard there are no rings and no valve: records, watermarks and markers go straight to
//! `ready` (the operator itself drops watermarks that do not advance, and counts them).

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use super::mesh::{Endpoints, RingPlan};
use super::message::{CheckpointBarrier, Message};
use super::ring::{Consumer, Producer};
use crate::keyed::KeyedRecord;
use crate::keygroup::KeyGroups;
use crate::shard::ShardWaker;
use crate::time::{MAX_WATERMARK, MIN_WATERMARK, Timestamp};
use crate::watermark::{ValveOutput, WatermarkValve};

/// Messages one drain takes from each inbound ring, at most.
pub const INBOUND_BATCH: usize = 256;

/// Whether the local input may be pulled now, and if not, why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Pull it.
    Open,
    /// A destination's batch is full and its ring has no room.
    Backpressure,
    /// The local input is too far ahead of the combined watermark.
    Ahead,
    /// The local input delivered a checkpoint barrier that the other channels have not yet.
    Aligning,
    /// The local input has ended.
    Ended,
}

/// One shard's end of one exchange; see the [module docs](self).
pub struct Router<K, V> {
    me: usize,
    shards: usize,
    key_groups: KeyGroups,
    outbound: Vec<Option<Producer<Message<K, V>>>>,
    /// Per destination shard: the batch not yet pushed into its ring.
    batches: Vec<VecDeque<Message<K, V>>>,
    inbound: Vec<Option<Consumer<Message<K, V>>>>,
    /// Inbound rings not yet ended.
    open_inbound: usize,
    valve: WatermarkValve,
    /// What the operator receives next, in order.
    ready: VecDeque<Message<K, V>>,
    scratch: Vec<Message<K, V>>,
    barriers: BarrierAlignment<K, V>,
    local_ended: bool,
    end_sent: bool,
    /// The local input's last watermark (its partition's progress).
    local_watermark: Timestamp,
    max_drift: Option<i64>,
    flush_at: usize,
    wakers: Arc<[ShardWaker]>,
}

impl<K, V> fmt::Debug for Router<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("shard", &self.me)
            .field("shards", &self.shards)
            .field("watermark", &self.valve.current())
            .field("open_inbound", &self.open_inbound)
            .field("ready", &self.ready.len())
            .finish_non_exhaustive()
    }
}

impl<K, V> Router<K, V> {
    /// The router of shard `me` of `shards`, over `endpoints` (`None` with one shard), waking its
    /// peers through `wakers`; `max_drift` is the watermark alignment bound, if alignment is on.
    pub fn new(
        me: usize,
        shards: usize,
        key_groups: KeyGroups,
        endpoints: Option<Endpoints<K, V>>,
        wakers: Arc<[ShardWaker]>,
        max_drift: Option<i64>,
    ) -> Self {
        let (outbound, inbound, plan) = match endpoints {
            Some(e) => (e.outbound, e.inbound, e.plan),
            None => (Vec::new(), Vec::new(), RingPlan { capacity: 1, flush_at: 1 }),
        };
        let open_inbound = inbound.iter().filter(|c| c.is_some()).count();
        let channels = shards.max(1);
        Router {
            me,
            shards: channels,
            key_groups,
            batches: (0..outbound.len()).map(|_| VecDeque::new()).collect(),
            outbound,
            inbound,
            open_inbound,
            valve: WatermarkValve::new(channels),
            ready: VecDeque::new(),
            scratch: Vec::with_capacity(INBOUND_BATCH),
            barriers: BarrierAlignment::new(channels),
            local_ended: false,
            end_sent: false,
            local_watermark: MIN_WATERMARK,
            max_drift,
            flush_at: plan.flush_at,
            wakers,
        }
    }

    #[inline]
    fn sharded(&self) -> bool {
        self.shards > 1
    }

    /// The messages for the operator, in order. The operator takes them from the front.
    #[inline]
    pub fn ready(&mut self) -> &mut VecDeque<Message<K, V>> {
        &mut self.ready
    }

    /// The combined input watermark (with one shard: `i64::MIN`; the operator keeps its own).
    pub fn current_watermark(&self) -> Timestamp {
        self.valve.current()
    }

    /// The watermark alignment bound this router enforces on its local input, if any.
    pub fn max_watermark_drift(&self) -> Option<i64> {
        self.max_drift
    }

    /// Routes a record of the local input: into `ready` if its key group is this shard's, else
    /// into its owner's batch (pushed into the ring once full). Returns true when the owner's batch
    /// is full and its ring has no room: backpressure, pull no more.
    #[inline(always)]
    pub fn route(&mut self, record: KeyedRecord<K, V>) -> bool {
        if !self.sharded() {
            self.ready.push_back(Message::Record(record));
            return false;
        }
        self.route_sharded(record)
    }

    #[inline]
    fn route_sharded(&mut self, record: KeyedRecord<K, V>) -> bool {
        // A record ends the local channel's idleness (nothing to forward: the record itself
        // does downstream).
        self.valve.on_record(self.me);
        let owner = self.key_groups.shard_for_key_group(record.key_group, self.shards);
        if owner == self.me {
            self.ready.push_back(Message::Record(record));
            return false;
        }
        let batch = &mut self.batches[owner];
        batch.push_back(Message::Record(record));
        if batch.len() < self.flush_at {
            return false;
        }
        self.push(owner);
        self.batches[owner].len() >= self.flush_at
    }

    /// A watermark of the local input.
    pub fn local_watermark(&mut self, watermark: Timestamp) {
        if !self.sharded() {
            self.ready.push_back(Message::Watermark(watermark));
            return;
        }
        self.local_watermark = self.local_watermark.max(watermark);
        self.broadcast(|| Message::Watermark(watermark));
        let out = self.valve.on_watermark(self.me, watermark);
        self.valve_output(out);
    }

    /// The local input has gone idle.
    pub fn local_idle(&mut self) {
        if !self.sharded() {
            self.ready.push_back(Message::Idle);
            return;
        }
        self.broadcast(|| Message::Idle);
        let out = self.valve.on_idle(self.me);
        self.valve_output(out);
    }

    /// A checkpoint barrier of the local input: sent to every other shard, and aligned here.
    pub fn local_barrier(&mut self, barrier: CheckpointBarrier) {
        if !self.sharded() {
            self.ready.push_back(Message::Barrier(barrier));
            return;
        }
        self.broadcast(|| Message::Barrier(barrier));
        let me = self.me;
        self.on_barrier(me, barrier);
    }

    /// The local input has ended: its final watermark, and the end of its channel to every shard.
    pub fn local_end(&mut self) {
        if self.local_ended {
            return;
        }
        self.local_ended = true;
        if self.sharded() {
            let out = self.valve.on_watermark(self.me, MAX_WATERMARK);
            self.valve_output(out);
            self.broadcast(|| Message::End);
            let me = self.me;
            if let Some(b) = self.barriers.on_channel_end(me) {
                self.aligned(b);
            }
            self.flush();
        }
        self.maybe_end();
    }

    /// Whether the local input may be pulled now.
    pub fn gate(&mut self) -> Gate {
        if self.local_ended {
            return Gate::Ended;
        }
        if self.barriers.holds(self.me) {
            return Gate::Aligning;
        }
        if self.blocked() && !self.flush() && self.blocked() {
            return Gate::Backpressure;
        }
        if self.max_drift.is_some_and(|drift| {
            self.local_watermark > self.valve.current().saturating_add(drift)
                // Nothing but the end follows the final watermark.
                && self.local_watermark < MAX_WATERMARK
        }) && self.barriers.aligning.is_none()
        {
            return Gate::Ahead;
        }
        Gate::Open
    }

    /// Moves what the inbound rings hold into `ready` (records, and what the valve and the barrier
    /// alignment make of the rest). Returns whether anything arrived.
    pub fn drain_inbound(&mut self) -> bool {
        let mut any = false;
        for from in 0..self.inbound.len() {
            if self.barriers.holds(from) {
                continue;
            }
            let Some(consumer) = self.inbound[from].as_mut() else { continue };
            let mut batch = std::mem::take(&mut self.scratch);
            if consumer.pop_batch(&mut batch, INBOUND_BATCH) == 0 {
                self.scratch = batch;
                continue;
            }
            // Room was made in the ring: its producer may be parked, waiting for it.
            self.wakers[from].wake();
            any = true;
            let mut messages = batch.drain(..);
            for m in messages.by_ref() {
                if self.receive(from, m) {
                    break;
                }
            }
            // A barrier holds the channel: what followed it waits for the alignment.
            self.barriers.hold(from, messages);
            self.scratch = batch;
        }
        any
    }

    /// One message from channel `from`; returns true if it holds the channel (a barrier that
    /// has to wait for the other channels).
    fn receive(&mut self, from: usize, m: Message<K, V>) -> bool {
        match m {
            Message::Record(r) => {
                // A record from an idle channel reactivates it; the record itself ends idleness
                // downstream.
                self.valve.on_record(from);
                self.ready.push_back(Message::Record(r));
            }
            Message::Watermark(w) => {
                let out = self.valve.on_watermark(from, w);
                self.valve_output(out);
            }
            Message::Idle => {
                let out = self.valve.on_idle(from);
                self.valve_output(out);
            }
            Message::Barrier(b) => {
                self.on_barrier(from, b);
                return self.barriers.holds(from);
            }
            Message::End => {
                // A partition that ended without its final watermark still ends event time.
                let out = self.valve.on_watermark(from, MAX_WATERMARK);
                self.valve_output(out);
                self.inbound[from] = None;
                self.open_inbound -= 1;
                if let Some(b) = self.barriers.on_channel_end(from) {
                    self.aligned(b);
                }
                self.maybe_end();
            }
        }
        false
    }

    fn on_barrier(&mut self, from: usize, barrier: CheckpointBarrier) {
        if let Some(b) = self.barriers.on_barrier(from, barrier) {
            self.aligned(b);
        }
    }

    /// Barrier `b` has arrived on every open channel: it goes to the operator, and the channels'
    /// held messages follow, channel by channel.
    fn aligned(&mut self, b: CheckpointBarrier) {
        self.ready.push_back(Message::Barrier(b));
        for from in 0..self.shards {
            let mut held = self.barriers.release(from);
            while let Some(m) = held.pop_front() {
                if self.receive(from, m) {
                    // A later barrier among the held messages holds the channel again: the rest
                    // waits for that alignment.
                    self.barriers.hold(from, held.drain(..));
                    break;
                }
            }
        }
    }

    /// Pushes every partial batch into its ring (the time bound: at the end of every turn).
    /// Returns true when everything was pushed.
    pub fn flush(&mut self) -> bool {
        let mut all = true;
        for to in 0..self.batches.len() {
            if !self.batches[to].is_empty() {
                self.push(to);
                all &= self.batches[to].is_empty();
            }
        }
        all
    }

    /// Pushes what fits of `to`'s batch into its ring, and wakes `to`.
    #[inline]
    fn push(&mut self, to: usize) {
        if let Some(p) = self.outbound[to].as_mut()
            && p.push_batch(&mut self.batches[to]) > 0
        {
            self.wakers[to].wake();
        }
    }

    /// True while some destination's batch is full: backpressure.
    fn blocked(&self) -> bool {
        self.batches.iter().any(|b| b.len() >= self.flush_at)
    }

    fn broadcast(&mut self, make: impl Fn() -> Message<K, V>) {
        for to in 0..self.batches.len() {
            if to != self.me && self.outbound[to].is_some() {
                self.batches[to].push_back(make());
            }
        }
    }

    fn valve_output(&mut self, out: ValveOutput) {
        if let Some(w) = out.watermark {
            self.ready.push_back(Message::Watermark(w));
        }
        if out.idle {
            self.ready.push_back(Message::Idle);
        }
    }

    /// Every channel has ended: the end goes to the operator, once.
    fn maybe_end(&mut self) {
        if self.local_ended && self.open_inbound == 0 && !self.end_sent {
            self.end_sent = true;
            self.ready.push_back(Message::End);
        }
    }

    /// True once the end has been handed out and every batch pushed.
    pub fn is_finished(&self) -> bool {
        self.end_sent && self.ready.is_empty() && self.batches.iter().all(VecDeque::is_empty)
    }
}

/// The barrier being aligned, which channels it has arrived on, and what they hold meanwhile.
struct BarrierAlignment<K, V> {
    aligning: Option<CheckpointBarrier>,
    /// Per channel: the barrier arrived (the channel is held) or the channel has ended.
    arrived: Vec<bool>,
    ended: Vec<bool>,
    held: Vec<VecDeque<Message<K, V>>>,
}

impl<K, V> BarrierAlignment<K, V> {
    fn new(channels: usize) -> Self {
        BarrierAlignment {
            aligning: None,
            arrived: vec![false; channels],
            ended: vec![false; channels],
            held: (0..channels).map(|_| VecDeque::new()).collect(),
        }
    }

    /// True while `channel` waits for the other channels (its input must not be read).
    #[inline]
    fn holds(&self, channel: usize) -> bool {
        self.aligning.is_some() && self.arrived[channel] && !self.ended[channel]
    }

    /// Keeps what followed a barrier on a held channel (nothing to keep otherwise).
    fn hold(&mut self, channel: usize, rest: impl Iterator<Item = Message<K, V>>) {
        let held = &mut self.held[channel];
        held.extend(rest);
        debug_assert!(held.is_empty() || self.holds(channel));
    }

    /// Barrier `b` arrived on `channel`; returns the barrier if it is now aligned.
    fn on_barrier(&mut self, channel: usize, b: CheckpointBarrier) -> Option<CheckpointBarrier> {
        match self.aligning {
            Some(current) if b.id < current.id => return None,
            Some(current) if b.id > current.id => {
                // A newer checkpoint overtakes: the older one is abandoned.
                self.arrived.iter_mut().for_each(|a| *a = false);
                self.aligning = Some(b);
            }
            Some(_) => {}
            None => self.aligning = Some(b),
        }
        self.arrived[channel] = true;
        self.complete()
    }

    /// `channel` has ended; returns the barrier being aligned if that completes it.
    fn on_channel_end(&mut self, channel: usize) -> Option<CheckpointBarrier> {
        self.ended[channel] = true;
        self.aligning.and_then(|_| self.complete())
    }

    fn complete(&mut self) -> Option<CheckpointBarrier> {
        let done = self.arrived.iter().zip(&self.ended).all(|(&a, &e)| a || e);
        if !done {
            return None;
        }
        self.arrived.iter_mut().for_each(|a| *a = false);
        self.aligning.take()
    }

    /// What `channel` held during the alignment.
    fn release(&mut self, channel: usize) -> VecDeque<Message<K, V>> {
        std::mem::take(&mut self.held[channel])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::mesh::{ExchangeSettings, Exchanges};

    type Msg = Message<u64, u64>;

    /// The routers of `n` shards of one exchange, all driven from this thread.
    fn routers(n: usize, capacity: usize) -> Vec<Router<u64, u64>> {
        let wakers: Arc<[ShardWaker]> = (0..n).map(|_| ShardWaker::new()).collect();
        let exchanges =
            Exchanges::new(ExchangeSettings::default().ring_capacity(capacity), wakers.clone());
        let key_groups = KeyGroups::new(128).unwrap();
        (0..n)
            .map(|i| {
                let endpoints = exchanges.endpoints::<u64, u64>(1, i).unwrap();
                Router::new(i, n, key_groups, Some(endpoints), wakers.clone(), None)
            })
            .collect()
    }

    fn record(key: u64) -> KeyedRecord<u64, u64> {
        KeyedRecord::new(key, key * 10, Some(key as i64), &KeyGroups::new(128).unwrap())
    }

    fn take(r: &mut Router<u64, u64>) -> Vec<Msg> {
        r.drain_inbound();
        r.ready().drain(..).collect()
    }

    fn owner(key: u64, shards: usize) -> usize {
        KeyGroups::new(128).unwrap().shard_for_key(&key, shards)
    }

    #[test]
    fn records_reach_their_owner_and_watermarks_the_minimum() {
        let mut r = routers(2, 64);
        let keys: Vec<u64> = (0..40).collect();
        for &k in &keys {
            r[0].route(record(k));
        }
        r[0].local_watermark(100);
        r[0].flush();
        let here: Vec<u64> = take(&mut r[0])
            .into_iter()
            .filter_map(|m| match m {
                Message::Record(rec) => Some(rec.key),
                _ => None,
            })
            .collect();
        let there: Vec<Msg> = take(&mut r[1]);
        let there_keys: Vec<u64> = there
            .iter()
            .filter_map(|m| match m {
                Message::Record(rec) => Some(rec.key),
                _ => None,
            })
            .collect();
        assert_eq!(here, keys.iter().copied().filter(|&k| owner(k, 2) == 0).collect::<Vec<_>>());
        assert_eq!(
            there_keys,
            keys.iter().copied().filter(|&k| owner(k, 2) == 1).collect::<Vec<_>>()
        );
        // Shard 1 has not heard from its own input yet: the minimum stays back.
        assert!(!there.iter().any(|m| matches!(m, Message::Watermark(_))));
        r[1].local_watermark(50);
        assert_eq!(take(&mut r[1]), vec![Message::Watermark(50)]);
        r[1].local_watermark(200);
        assert_eq!(take(&mut r[1]), vec![Message::Watermark(100)]);
    }

    #[test]
    fn a_barrier_holds_its_channel_until_every_channel_delivered_it() {
        let mut r = routers(3, 64);
        let b = CheckpointBarrier { id: 1 };
        let k = (0..).find(|&k| owner(k, 3) == 2).unwrap();
        // Shard 0 sends a record, the barrier, then another record to shard 2.
        r[0].route(record(k));
        r[0].local_barrier(b);
        r[0].route(record(k + 1_000_000 * 3));
        let k2 = (1_000u64..).find(|&k| owner(k, 3) == 2).unwrap();
        r[0].route(record(k2));
        r[0].flush();
        let got = take(&mut r[2]);
        // Only what came before the barrier: the rest of channel 0 waits.
        assert_eq!(got.iter().filter(|m| matches!(m, Message::Record(_))).count(), 1, "{got:?}");
        assert!(!got.iter().any(|m| matches!(m, Message::Barrier(_))));
        // Shard 1 and shard 2's own input deliver the barrier: it goes out once, then the held
        // records follow.
        r[1].local_barrier(b);
        r[1].flush();
        let got = take(&mut r[2]);
        assert!(!got.iter().any(|m| matches!(m, Message::Barrier(_))), "{got:?}");
        assert_eq!(r[2].gate(), Gate::Open);
        r[2].local_barrier(b);
        assert_eq!(r[2].gate(), Gate::Open, "aligned: the local input may be read again");
        let got = take(&mut r[2]);
        let barrier_at = got.iter().position(|m| matches!(m, Message::Barrier(_))).unwrap();
        assert_eq!(got.iter().filter(|m| matches!(m, Message::Barrier(_))).count(), 1);
        assert!(got[barrier_at + 1..].iter().any(|m| matches!(m, Message::Record(_))), "{got:?}");
    }

    #[test]
    fn the_local_input_waits_at_its_barrier_and_an_ended_channel_counts_as_aligned() {
        let mut r = routers(2, 64);
        let b = CheckpointBarrier { id: 7 };
        r[0].local_barrier(b);
        assert_eq!(r[0].gate(), Gate::Aligning);
        // Shard 1 ends without a barrier: its channel no longer holds the alignment back.
        r[1].local_end();
        r[1].flush();
        let got = take(&mut r[0]);
        assert!(got.contains(&Message::Barrier(b)), "{got:?}");
        assert_eq!(r[0].gate(), Gate::Open);
    }

    #[test]
    fn a_newer_barrier_abandons_an_older_alignment() {
        let mut r = routers(2, 64);
        r[0].local_barrier(CheckpointBarrier { id: 1 });
        r[1].local_barrier(CheckpointBarrier { id: 2 });
        r[1].flush();
        take(&mut r[0]);
        // Barrier 2 replaced barrier 1; shard 0 still has to deliver barrier 2.
        assert_eq!(r[0].gate(), Gate::Open);
        r[0].local_barrier(CheckpointBarrier { id: 2 });
        assert_eq!(take(&mut r[0]), vec![Message::Barrier(CheckpointBarrier { id: 2 })]);
    }

    #[test]
    fn a_full_ring_is_backpressure_and_draining_it_reopens_the_gate() {
        let mut r = routers(2, 4);
        let k = (0..).find(|&k| owner(k, 2) == 1).unwrap();
        // The ring holds 4 and a batch 2: the sixth record fills the batch the ring cannot take.
        let routed = (1..=16).find(|_| r[0].route(record(k)));
        assert_eq!(routed, Some(6));
        assert_eq!(r[0].gate(), Gate::Backpressure);
        take(&mut r[1]);
        assert_eq!(r[0].gate(), Gate::Open);
    }

    #[test]
    fn the_end_comes_once_every_channel_has_ended() {
        let mut r = routers(2, 64);
        r[0].local_end();
        assert!(!take(&mut r[0]).contains(&Message::End));
        r[1].local_end();
        let got = take(&mut r[0]);
        assert_eq!(got.last(), Some(&Message::End));
        assert!(got.contains(&Message::Watermark(MAX_WATERMARK)));
        assert!(r[0].is_finished());
    }

    #[test]
    fn with_one_shard_everything_goes_straight_to_ready() {
        let wakers: Arc<[ShardWaker]> = Arc::from(vec![ShardWaker::new()]);
        let mut r: Router<u64, u64> =
            Router::new(0, 1, KeyGroups::new(128).unwrap(), None, wakers, None);
        r.route(record(3));
        r.local_watermark(5);
        r.local_watermark(5);
        r.local_end();
        let got: Vec<Msg> = r.ready().drain(..).collect();
        assert_eq!(
            got,
            vec![
                Message::Record(record(3)),
                Message::Watermark(5),
                Message::Watermark(5),
                Message::End
            ]
        );
    }
}
