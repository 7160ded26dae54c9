//! The exchange behind `key_by`: the keyed operator's input on one shard.
//!
//! It pulls the local upstream chain (a source partition and its stateless steps, or an earlier
//! keyed stage) a batch at a time, runs the key selector once per record, hashes the key once
//! (its routing hash and key group then travel with the record) and hands each record to the
//! engine's [`Router`], which sends it to the shard that owns its key group, or keeps it here.
//! The router also drains the records the other shards send here and combines the channels'
//! watermarks; its `ready` queue is the keyed operator's input. See the router's docs
//! (`pinwheel_engine::exchange::router`) for order, batching, backpressure and alignment.
//!
//! **Fair turns.** One fill drains the inbound rings once, then pulls at most one batch of the
//! local upstream, then flushes the partial batches: a shard that keeps receiving from its peers
//! still reads its own partition, and a record waits at most one turn for its batch to leave.

use std::sync::Arc;

use pinwheel_engine::exchange::{Gate, Message, Router};
use pinwheel_engine::key::Key;
use pinwheel_engine::keyed::KeyedRecord;
use pinwheel_engine::keygroup::KeyGroups;
use pinwheel_engine::shard::Turn;

use super::build::BuildContext;
use super::stage::{Stage, Status};
use crate::error::{ConfigError, PipelineError};
use crate::output::StreamElement;

/// A keyed operator's input on one shard; see the [module docs](self).
pub(crate) struct Exchange<S: Stage, KS, K> {
    upstream: S,
    key_selector: Arc<KS>,
    key_groups: KeyGroups,
    router: Router<K, S::Item>,
    /// The upstream's last batch, or what is left of it when the router's gate closed in the
    /// middle of it.
    input: Vec<StreamElement<S::Item>>,
    /// Where what is left of a batch waits while the gate is closed.
    held: Vec<StreamElement<S::Item>>,
    /// The upstream has ended (its end reaches the router once `input` is routed).
    upstream_done: bool,
}

impl<S: Stage, KS, K> std::fmt::Debug for Exchange<S, KS, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchange").field("router", &self.router).finish_non_exhaustive()
    }
}

impl<S, KS, K> Exchange<S, KS, K>
where
    S: Stage,
    S::Item: Send + 'static,
    KS: Fn(&S::Item) -> K,
    K: Key + Send + Sync,
{
    /// The input of exchange `id` on the shard of `cx`, pulling `upstream`; watermark alignment
    /// (`cx`'s drift) applies only if the exchange comes right `after_source`, with no exchange
    /// upstream of it.
    pub(crate) fn new(
        upstream: S,
        key_selector: Arc<KS>,
        id: u64,
        after_source: bool,
        cx: &BuildContext,
    ) -> Result<Self, PipelineError> {
        let shards = cx.shard.count;
        let endpoints = if shards > 1 {
            Some(
                cx.exchanges
                    .endpoints::<K, S::Item>(id, cx.shard.index)
                    .map_err(ConfigError::from)?,
            )
        } else {
            None
        };
        let router = Router::new(
            cx.shard.index,
            shards,
            cx.key_groups,
            endpoints,
            cx.exchanges.wakers().clone(),
            cx.max_watermark_drift.filter(|_| after_source),
        );
        Ok(Exchange {
            upstream,
            key_selector,
            key_groups: cx.key_groups,
            router,
            input: Vec::new(),
            held: Vec::new(),
            upstream_done: false,
        })
    }

    /// The watermark alignment bound on the local input, if any.
    #[cfg(test)]
    pub(crate) fn max_watermark_drift(&self) -> Option<i64> {
        self.router.max_watermark_drift()
    }

    /// The local upstream stage.
    #[cfg(test)]
    pub(crate) fn upstream(&self) -> &S {
        &self.upstream
    }

    /// What the operator receives next, in order.
    #[inline]
    pub(crate) fn ready(&mut self) -> &mut std::collections::VecDeque<Message<K, S::Item>> {
        self.router.ready()
    }

    /// One turn of the exchange: drains the inbound rings, pulls a batch of the local upstream if
    /// the router's gate is open, routes it, flushes. The gate is checked again after every
    /// local watermark and whenever a destination's batch is full, so alignment and backpressure
    /// hold element by element: what is left of a batch waits here until the gate opens.
    /// Returns [`Status::Idle`] when nothing arrived and nothing could be routed (the shard is
    /// woken when a ring fills or empties), and [`Status::Done`] once everything has ended and
    /// been handed out, every batch pushed.
    pub(crate) fn fill(&mut self, cx: &mut Turn) -> Result<Status, PipelineError> {
        let received = self.router.drain_inbound();
        let status = match self.router.gate() {
            Gate::Open => {
                let mut status = Status::Busy;
                if self.input.is_empty() && !self.upstream_done {
                    status = self.upstream.pull(cx, &mut self.input)?;
                    self.upstream_done = status == Status::Done;
                }
                let routed = !self.input.is_empty();
                if self.route_input() && self.upstream_done {
                    self.router.local_end();
                }
                match status {
                    Status::Idle if !routed => Status::Idle,
                    _ => Status::Busy,
                }
            }
            // Waiting for the other shards: their watermarks, barriers or room in their rings
            // arrive through the rings, which wake this shard.
            Gate::Backpressure | Gate::Ahead | Gate::Aligning => Status::Idle,
            Gate::Ended => {
                if self.router.is_finished() {
                    Status::Done
                } else {
                    Status::Idle
                }
            }
        };
        self.router.flush();
        Ok(if received { Status::Busy } else { status })
    }

    /// Routes `input` until it is empty (returns true) or the router's gate closes (false: the
    /// rest stays in `input`).
    fn route_input(&mut self) -> bool {
        let mut closed = false;
        let mut elements = self.input.drain(..);
        for e in elements.by_ref() {
            match e {
                StreamElement::Record { value, timestamp } => {
                    let key = (self.key_selector)(&value);
                    let record = KeyedRecord::new(key, value, timestamp, &self.key_groups);
                    closed = self.router.route(record);
                }
                StreamElement::Watermark(w) => {
                    self.router.local_watermark(w);
                    closed = self.router.gate() != Gate::Open;
                }
                StreamElement::Idle => self.router.local_idle(),
                StreamElement::Barrier(b) => {
                    self.router.local_barrier(b);
                    closed = self.router.gate() != Gate::Open;
                }
            }
            if closed {
                break;
            }
        }
        self.held.extend(elements);
        std::mem::swap(&mut self.input, &mut self.held);
        self.input.is_empty()
    }

    /// Pushes what is left in the batches; true once the router has handed out its end and every
    /// batch is in its ring (only then may the shard's stage end).
    pub(crate) fn finish(&mut self) -> bool {
        self.router.flush();
        self.router.is_finished()
    }
}
