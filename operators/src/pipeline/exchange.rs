//! The exchange behind `key_by`: routes every record to the shard that owns its key group.
//!
//! On each shard, an [`ExchangeStream`] sits between the local upstream chain (a source partition
//! and its stateless steps, or an earlier keyed stage) and the keyed operator:
//!
//! ```text
//!   local upstream ──route──┬─ key group owned here ──────────────► keyed operator (in place)
//!                           └─ other shard j: batch ─► ring[me→j]
//!   ring[i→me], every i ≠ me ─ batches ─► records, and watermarks through the valve ─► keyed operator
//! ```
//!
//! * Watermarks, idle markers and the end of a partition travel **in order with the records**
//!   through every ring; each shard combines them in a [`WatermarkValve`] with one channel per
//!   upstream shard (minimum over non-idle channels, strictly increasing; SEMANTICS A2.4).
//! * Rings are bounded. A full ring is backpressure: the exchange stops pulling its upstream but
//!   keeps draining its inbound rings, so two shards filling each other's rings cannot deadlock, and
//!   memory stays bounded (at most one batch per destination is held outside the rings).
//! * Partial batches are flushed whenever the upstream has nothing ready, whenever a batch
//!   reaches [`FLUSH_AT`] messages, and after every [`INBOUND_TURN`] upstream elements, so a
//!   record never waits long for its batch to fill, whatever the rate.
//! * **Fair turns.** The inbound rings and the local upstream take turns (at most
//!   [`INBOUND_TURN`] upstream elements between two drains of the inbound rings), so a shard that
//!   keeps receiving from its peers still reads its own source partition.
//! * **Watermark alignment.** A shard stops pulling its own partition while that partition's
//!   watermark is more than the pipeline's maximum drift ahead of the shard's combined watermark
//!   (Flink's `withWatermarkAlignment`, on by default here): otherwise one partition can run
//!   minutes of event time ahead of another, and the combined watermark, the minimum, lags far
//!   behind the records it releases (windows merge, timeouts are missed). The shard holding the
//!   slowest partition never pauses, so event time always progresses.

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use pinwheel_engine::exchange::{Consumer, Producer, ring};
use pinwheel_engine::key::Key;
use pinwheel_engine::keygroup::KeyGroups;
use pinwheel_engine::time::{MAX_WATERMARK, MIN_WATERMARK, Timestamp};
use pinwheel_engine::watermark::{ValveOutput, WatermarkValve};

use super::stream::{Poll, PollContext, Stream};
use crate::error::PipelineError;
use crate::output::StreamElement;

/// A partial batch is pushed into its ring once it holds this many messages.
pub const FLUSH_AT: usize = 128;

/// How many messages one poll takes from each inbound ring.
const INBOUND_BATCH: usize = 256;

/// Upstream elements pulled, at most, between two drains of the inbound rings.
pub const INBOUND_TURN: usize = 256;

/// What travels through an exchange ring.
#[derive(Debug)]
pub(crate) enum Message<T> {
    Record(T, Option<Timestamp>),
    Watermark(Timestamp),
    Idle,
    /// The sending shard's upstream has ended: nothing follows.
    End,
}

/// One shard's ends of one exchange mesh.
pub(crate) struct Endpoints<T> {
    outbound: Vec<Option<Producer<Message<T>>>>,
    inbound: Vec<Option<Consumer<Message<T>>>>,
}

/// The rings of one exchange: `shards × (shards − 1)` SPSC rings, handed out shard by shard.
struct Mesh<T> {
    per_shard: Vec<Option<Endpoints<T>>>,
}

impl<T> Mesh<T> {
    fn new(shards: usize, capacity: usize) -> Self {
        let mut outbound: Vec<Vec<Option<Producer<Message<T>>>>> =
            (0..shards).map(|_| (0..shards).map(|_| None).collect()).collect();
        let mut inbound: Vec<Vec<Option<Consumer<Message<T>>>>> =
            (0..shards).map(|_| (0..shards).map(|_| None).collect()).collect();
        for from in 0..shards {
            for to in 0..shards {
                if from != to {
                    let (p, c) = ring(capacity);
                    outbound[from][to] = Some(p);
                    inbound[to][from] = Some(c);
                }
            }
        }
        let per_shard = outbound
            .into_iter()
            .zip(inbound)
            .map(|(outbound, inbound)| Some(Endpoints { outbound, inbound }))
            .collect();
        Mesh { per_shard }
    }
}

/// The exchange meshes of one pipeline run, created on first use and handed to the shards as they
/// build their stages (graph construction only: a lock here is never on the data path).
pub(crate) struct ExchangeRegistry {
    shards: usize,
    ring_capacity: usize,
    /// The watermark alignment bound (ms of event time), if alignment is on.
    pub(crate) max_drift: Option<i64>,
    meshes: Mutex<HashMap<u64, Box<dyn Any + Send>>>,
}

impl std::fmt::Debug for ExchangeRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExchangeRegistry")
            .field("shards", &self.shards)
            .field("ring_capacity", &self.ring_capacity)
            .finish_non_exhaustive()
    }
}

impl ExchangeRegistry {
    pub(crate) fn new(shards: usize, ring_capacity: usize, max_drift: Option<i64>) -> Self {
        ExchangeRegistry { shards, ring_capacity, max_drift, meshes: Mutex::new(HashMap::new()) }
    }

    /// Shard `shard`'s endpoints of exchange `id`.
    pub(crate) fn endpoints<T: Send + 'static>(
        &self,
        id: u64,
        shard: usize,
    ) -> Result<Endpoints<T>, PipelineError> {
        let mut meshes = self.meshes.lock().unwrap_or_else(|p| p.into_inner());
        let mesh = meshes
            .entry(id)
            .or_insert_with(|| Box::new(Mesh::<T>::new(self.shards, self.ring_capacity)));
        mesh.downcast_mut::<Mesh<T>>()
            .and_then(|m| m.per_shard.get_mut(shard))
            .and_then(Option::take)
            .ok_or_else(|| {
                PipelineError::Config(format!("exchange {id}: no endpoints for shard {shard}"))
            })
    }
}

/// The running exchange on one shard: routes records to the shard owning their key group through
/// bounded SPSC rings, combines the shards' watermarks, and aligns its source partition with them.
pub struct ExchangeStream<S: Stream, KS> {
    upstream: S,
    key_selector: Arc<KS>,
    key_groups: KeyGroups,
    me: usize,
    shards: usize,
    outbound: Vec<Option<Producer<Message<S::Item>>>>,
    pending: Vec<VecDeque<Message<S::Item>>>,
    inbound: Vec<Option<Consumer<Message<S::Item>>>>,
    inbound_open: usize,
    valve: WatermarkValve,
    ready: VecDeque<StreamElement<S::Item>>,
    scratch: Vec<Message<S::Item>>,
    upstream_done: bool,
    /// The last watermark of the local upstream (its partition's progress).
    local_watermark: Timestamp,
    max_drift: Option<i64>,
    /// Upstream elements pulled since the inbound rings were last drained.
    since_drain: usize,
}

impl<S: Stream, KS> std::fmt::Debug for ExchangeStream<S, KS> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExchangeStream")
            .field("shard", &self.me)
            .field("shards", &self.shards)
            .field("watermark", &self.valve.current())
            .field("inbound_open", &self.inbound_open)
            .finish_non_exhaustive()
    }
}

impl<S: Stream, KS> ExchangeStream<S, KS> {
    pub(crate) fn new(
        upstream: S,
        key_selector: Arc<KS>,
        key_groups: KeyGroups,
        me: usize,
        shards: usize,
        endpoints: Option<Endpoints<S::Item>>,
        max_drift: Option<i64>,
    ) -> Self {
        let (outbound, inbound) = match endpoints {
            Some(e) => (e.outbound, e.inbound),
            None => (Vec::new(), Vec::new()),
        };
        let inbound_open = inbound.iter().filter(|c| c.is_some()).count();
        ExchangeStream {
            upstream,
            key_selector,
            key_groups,
            me,
            shards,
            pending: (0..outbound.len()).map(|_| VecDeque::new()).collect(),
            outbound,
            inbound,
            inbound_open,
            valve: WatermarkValve::new(shards),
            ready: VecDeque::new(),
            scratch: Vec::with_capacity(INBOUND_BATCH),
            upstream_done: false,
            local_watermark: MIN_WATERMARK,
            max_drift,
            since_drain: 0,
        }
    }

    /// The shard's combined input watermark.
    pub fn current_watermark(&self) -> Timestamp {
        self.valve.current()
    }

    fn valve_output(&mut self, out: ValveOutput) {
        if let Some(w) = out.watermark {
            self.ready.push_back(StreamElement::Watermark(w));
        }
        if out.idle {
            self.ready.push_back(StreamElement::Idle);
        }
    }

    /// Moves messages from the inbound rings into `ready`. Returns whether anything arrived.
    fn drain_inbound(&mut self) -> bool {
        let mut any = false;
        for from in 0..self.inbound.len() {
            let Some(consumer) = self.inbound[from].as_mut() else { continue };
            let mut batch = std::mem::take(&mut self.scratch);
            if consumer.pop_batch(&mut batch, INBOUND_BATCH) == 0 {
                self.scratch = batch;
                continue;
            }
            any = true;
            let mut ended = false;
            for m in batch.drain(..) {
                match m {
                    Message::Record(value, timestamp) => {
                        // A record from an idle channel reactivates it; the record itself ends
                        // idleness downstream, so there is nothing else to forward.
                        self.valve.on_record(from);
                        self.ready.push_back(StreamElement::Record { value, timestamp });
                    }
                    Message::Watermark(w) => {
                        let o = self.valve.on_watermark(from, w);
                        self.valve_output(o);
                    }
                    Message::Idle => {
                        let o = self.valve.on_idle(from);
                        self.valve_output(o);
                    }
                    Message::End => ended = true,
                }
            }
            self.scratch = batch;
            if ended {
                // A partition that ended without its final watermark still ends event time.
                let o = self.valve.on_watermark(from, MAX_WATERMARK);
                self.valve_output(o);
                self.inbound[from] = None;
                self.inbound_open -= 1;
            }
        }
        any
    }

    /// Pushes pending batches into their rings. Returns true when everything was flushed.
    fn flush(&mut self) -> bool {
        let mut all = true;
        for (to, batch) in self.pending.iter_mut().enumerate() {
            if batch.is_empty() {
                continue;
            }
            if let Some(p) = self.outbound[to].as_mut() {
                p.push_batch(batch);
            }
            all &= batch.is_empty();
        }
        all
    }

    /// True while some destination's batch is full and its ring cannot take it: backpressure.
    fn blocked(&self) -> bool {
        self.pending.iter().any(|b| b.len() >= FLUSH_AT)
    }

    fn broadcast(&mut self, make: impl Fn() -> Message<S::Item>) {
        for (to, batch) in self.pending.iter_mut().enumerate() {
            if to != self.me && self.outbound[to].is_some() {
                batch.push_back(make());
            }
        }
    }

    /// True while the local partition is too far ahead of the combined watermark to pull more.
    fn too_far_ahead(&self) -> bool {
        self.max_drift
            .is_some_and(|drift| self.local_watermark > self.valve.current().saturating_add(drift))
    }

    fn finished(&self) -> bool {
        self.upstream_done
            && self.inbound_open == 0
            && self.ready.is_empty()
            && self.pending.iter().all(VecDeque::is_empty)
    }
}

/// The shard that owns `key`'s key group.
#[inline]
fn owner_of<K: Key>(key_groups: &KeyGroups, key: &K, shards: usize) -> usize {
    key_groups.shard_for_key_group(key_groups.key_group_of(key), shards)
}

impl<S, KS, K> Stream for ExchangeStream<S, KS>
where
    S: Stream,
    KS: Fn(&S::Item) -> K,
    K: Key,
{
    type Item = S::Item;

    fn poll_next(&mut self, cx: &mut PollContext) -> Result<Poll<S::Item>, PipelineError> {
        if self.shards <= 1 {
            // One shard owns every key group: no routing, no rings.
            return self.upstream.poll_next(cx);
        }
        let mut routed = 0;
        let mut drained_now = false;
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Ok(Poll::Ready(e));
            }
            if !drained_now || self.since_drain >= INBOUND_TURN {
                // The inbound rings' turn: once per call, and again after a long upstream turn.
                if self.since_drain >= INBOUND_TURN {
                    // A long upstream turn also pushes out partial batches, so a record routed
                    // to a shard that receives little waits at most INBOUND_TURN upstream
                    // elements, not until its batch fills.
                    self.flush();
                }
                drained_now = true;
                self.since_drain = 0;
                if self.drain_inbound() {
                    continue;
                }
            }
            if self.upstream_done {
                self.flush();
                return Ok(if self.finished() { Poll::Done } else { Poll::Pending });
            }
            if self.blocked() && !self.flush() && self.blocked() {
                // Backpressure: a destination ring is full. Keep serving the inbound rings (done
                // above) and let the loop turn; do not pull more from upstream.
                return Ok(Poll::Pending);
            }
            if self.too_far_ahead() {
                // Watermark alignment: wait for the other partitions (their watermarks arrive
                // through the inbound rings, which keep being served). They are busy, so this
                // is a short wait: ask the loop to stay awake (spin, then yield) rather than
                // sleep.
                self.flush();
                cx.wake_at(cx.now());
                return Ok(Poll::Pending);
            }
            self.since_drain += 1;
            if routed >= FLUSH_AT {
                self.flush();
                return Ok(Poll::Yield);
            }
            match self.upstream.poll_next(cx)? {
                Poll::Ready(StreamElement::Record { value, timestamp }) => {
                    self.valve.on_record(self.me);
                    let key = (self.key_selector)(&value);
                    let owner = owner_of(&self.key_groups, &key, self.shards);
                    if owner == self.me {
                        return Ok(Poll::Ready(StreamElement::Record { value, timestamp }));
                    }
                    routed += 1;
                    let batch = &mut self.pending[owner];
                    batch.push_back(Message::Record(value, timestamp));
                    if batch.len() >= FLUSH_AT {
                        if let Some(p) = self.outbound[owner].as_mut() {
                            p.push_batch(batch);
                        }
                    }
                }
                Poll::Ready(StreamElement::Watermark(w)) => {
                    self.local_watermark = self.local_watermark.max(w);
                    self.broadcast(|| Message::Watermark(w));
                    let o = self.valve.on_watermark(self.me, w);
                    self.valve_output(o);
                }
                Poll::Ready(StreamElement::Idle) => {
                    self.broadcast(|| Message::Idle);
                    let o = self.valve.on_idle(self.me);
                    self.valve_output(o);
                }
                Poll::Yield => {
                    self.flush();
                    return Ok(Poll::Yield);
                }
                Poll::Pending => {
                    self.flush();
                    return Ok(Poll::Pending);
                }
                Poll::Done => {
                    self.upstream_done = true;
                    let o = self.valve.on_watermark(self.me, MAX_WATERMARK);
                    self.valve_output(o);
                    self.broadcast(|| Message::End);
                    self.flush();
                }
            }
        }
    }
}
