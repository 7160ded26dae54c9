//! The rings of one exchange (one `key_by`) between the shards of a run, and the memory budget
//! that sizes them.
//!
//! An exchange over `n` shards is `n × (n − 1)` SPSC rings: shard `i` holds the producer of ring
//! `(i, j)` and shard `j` its consumer. A ring's capacity bounds how many messages it queues (the
//! backpressure bound), but its memory follows what is queued: blocks are allocated as messages
//! arrive and given back as they are read ([`ring`](super::ring)), so an idle or lightly used ring
//! costs a few hundred bytes. The capacity of every ring is
//!
//! ```text
//!   min(ring_capacity, memory_budget / (n × (n − 1) × size of a message))
//! ```
//!
//! so that all rings of an exchange, full at once, stay within the budget. A budget too small to
//! give each ring [`MIN_RING_CAPACITY`] messages (or the ring capacity, if smaller) is refused with
//! [`ExchangeError::BudgetTooSmall`] rather than run with rings too small to batch.
//!
//! The budget bounds the *queued* messages. Besides them a ring may keep three partly used blocks
//! (the head, the tail and one spare, see [`ring`](super::ring)), each no bigger than the largest
//! block the ring's traffic has needed: a few hundred bytes for a slow ring, up to 64 KiB (or the
//! ring's capacity, if smaller) for one that carries millions of messages a second. So a fully
//! loaded exchange may exceed the budget by up to three such blocks per busy ring; the 64-shard test
//! (`operators/tests/many_shards.rs`) measures what a whole pipeline takes.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use super::message::Message;
use super::ring::{Consumer, Producer, ring};
use crate::shard::ShardWaker;

/// Messages a ring holds at most, by default.
pub const DEFAULT_RING_CAPACITY: usize = 4096;
/// The largest ring capacity accepted.
pub const MAX_RING_CAPACITY: usize = 1 << 24;
/// The bytes all the rings of one exchange may hold at once, by default: 64 MiB.
pub const DEFAULT_MEMORY_BUDGET: usize = 64 << 20;
/// The fewest messages the budget must give every ring (unless the ring capacity is smaller).
pub const MIN_RING_CAPACITY: usize = 64;
/// A batch of records for one destination is pushed into its ring once it holds this many
/// messages (or half the ring's capacity, if smaller).
pub const FLUSH_AT: usize = 128;

/// How the rings of an exchange are sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExchangeSettings {
    /// The most messages one ring holds (default [`DEFAULT_RING_CAPACITY`]).
    pub ring_capacity: usize,
    /// The bytes all rings of one exchange may hold at once (default [`DEFAULT_MEMORY_BUDGET`]).
    pub memory_budget: usize,
}

impl Default for ExchangeSettings {
    fn default() -> Self {
        ExchangeSettings {
            ring_capacity: DEFAULT_RING_CAPACITY,
            memory_budget: DEFAULT_MEMORY_BUDGET,
        }
    }
}

impl ExchangeSettings {
    /// Sets [`ring_capacity`](Self::ring_capacity).
    pub fn ring_capacity(mut self, messages: usize) -> Self {
        self.ring_capacity = messages;
        self
    }

    /// Sets [`memory_budget`](Self::memory_budget).
    pub fn memory_budget(mut self, bytes: usize) -> Self {
        self.memory_budget = bytes;
        self
    }

    /// Checks the settings on their own (the budget is checked per exchange, once the message
    /// size is known, by [`RingPlan::new`]).
    pub fn validate(&self) -> Result<(), ExchangeError> {
        if self.ring_capacity == 0 || self.ring_capacity > MAX_RING_CAPACITY {
            return Err(ExchangeError::RingCapacity {
                requested: self.ring_capacity,
                max: MAX_RING_CAPACITY,
            });
        }
        Ok(())
    }
}

/// Errors of the exchange's configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExchangeError {
    /// The ring capacity is 0 or beyond [`MAX_RING_CAPACITY`].
    #[error("a ring capacity of {requested} messages is out of range: it must be in 1..={max}")]
    RingCapacity {
        /// The capacity asked for.
        requested: usize,
        /// The largest capacity accepted.
        max: usize,
    },
    /// The memory budget cannot give every ring the minimum capacity.
    #[error(
        "an exchange over {shards} shards has {rings} rings; giving each room for {min_messages} \
         messages of {message_bytes} bytes needs {needed} bytes, beyond the exchange memory \
         budget of {budget} bytes: raise the budget (Pipeline::exchange_memory) or use fewer \
         shards"
    )]
    BudgetTooSmall {
        /// The shard count.
        shards: usize,
        /// Rings in the exchange.
        rings: usize,
        /// The size of one message.
        message_bytes: usize,
        /// The fewest messages per ring.
        min_messages: usize,
        /// Bytes needed for that.
        needed: u128,
        /// The budget.
        budget: usize,
    },
    /// A shard asked for its endpoints of an exchange twice, or for a shard that does not exist
    /// (a bug in graph construction, not a setting).
    #[error("exchange {exchange}: no endpoints left for shard {shard}")]
    NoEndpoints {
        /// The exchange's id.
        exchange: u64,
        /// The shard.
        shard: usize,
    },
}

/// The size of every ring of one exchange, and when batches are pushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingPlan {
    /// Messages per ring.
    pub capacity: usize,
    /// A destination's batch is pushed once it holds this many messages.
    pub flush_at: usize,
}

impl RingPlan {
    /// The plan for an exchange over `shards` shards whose messages are `message_bytes` long.
    pub fn new(
        settings: &ExchangeSettings,
        shards: usize,
        message_bytes: usize,
    ) -> Result<RingPlan, ExchangeError> {
        settings.validate()?;
        let rings = shards.saturating_mul(shards.saturating_sub(1)).max(1);
        let message_bytes = message_bytes.max(1);
        let fits = settings.memory_budget / rings / message_bytes;
        let capacity = settings.ring_capacity.min(fits);
        let min_messages = settings.ring_capacity.min(MIN_RING_CAPACITY);
        if capacity < min_messages {
            return Err(ExchangeError::BudgetTooSmall {
                shards,
                rings,
                message_bytes,
                min_messages,
                needed: rings as u128 * message_bytes as u128 * min_messages as u128,
                budget: settings.memory_budget,
            });
        }
        Ok(RingPlan { capacity, flush_at: FLUSH_AT.min(capacity.div_ceil(2)).max(1) })
    }
}

/// One shard's ends of one exchange: the producers towards every other shard and the consumers
/// from every other shard (`None` at the shard's own index).
pub struct Endpoints<K, V> {
    pub(super) outbound: Vec<Option<Producer<Message<K, V>>>>,
    pub(super) inbound: Vec<Option<Consumer<Message<K, V>>>>,
    pub(super) plan: RingPlan,
}

impl<K, V> fmt::Debug for Endpoints<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoints")
            .field("outbound", &self.outbound.iter().filter(|p| p.is_some()).count())
            .field("inbound", &self.inbound.iter().filter(|c| c.is_some()).count())
            .field("plan", &self.plan)
            .finish()
    }
}

impl<K, V> Endpoints<K, V> {
    /// Heap bytes the rings hold now: of this shard's outbound rings (each ring is counted once,
    /// on its producer's shard).
    pub fn memory_bytes(&self) -> usize {
        self.outbound.iter().flatten().map(Producer::memory_bytes).sum()
    }
}

/// The rings of one exchange, handed out shard by shard.
struct Mesh<K, V> {
    per_shard: Vec<Option<Endpoints<K, V>>>,
}

/// One side of the rings of every shard: `[shard][other shard]`.
type Sides<T> = Vec<Vec<Option<T>>>;

impl<K, V> Mesh<K, V> {
    fn new(shards: usize, plan: RingPlan) -> Self {
        let mut outbound: Sides<Producer<Message<K, V>>> =
            (0..shards).map(|_| (0..shards).map(|_| None).collect()).collect();
        let mut inbound: Sides<Consumer<Message<K, V>>> =
            (0..shards).map(|_| (0..shards).map(|_| None).collect()).collect();
        for from in 0..shards {
            for to in 0..shards {
                if from != to {
                    let (p, c) = ring(plan.capacity);
                    outbound[from][to] = Some(p);
                    inbound[to][from] = Some(c);
                }
            }
        }
        let per_shard = outbound
            .into_iter()
            .zip(inbound)
            .map(|(outbound, inbound)| Some(Endpoints { outbound, inbound, plan }))
            .collect();
        Mesh { per_shard }
    }
}

/// The exchanges of one run: each mesh created when the first shard asks for it, its endpoints
/// then taken shard by shard (graph construction only: the lock here is never on the data path),
/// and the wakers of every shard, which the routers use to wake a parked peer.
pub struct Exchanges {
    shards: usize,
    settings: ExchangeSettings,
    wakers: Arc<[ShardWaker]>,
    meshes: Mutex<HashMap<u64, Box<dyn Any + Send>>>,
}

impl fmt::Debug for Exchanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exchanges")
            .field("shards", &self.shards)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Exchanges {
    /// The exchanges of a run over `wakers.len()` shards.
    pub fn new(settings: ExchangeSettings, wakers: Arc<[ShardWaker]>) -> Self {
        Exchanges { shards: wakers.len(), settings, wakers, meshes: Mutex::new(HashMap::new()) }
    }

    /// The number of shards.
    pub fn shards(&self) -> usize {
        self.shards
    }

    /// Every shard's waker.
    pub fn wakers(&self) -> &Arc<[ShardWaker]> {
        &self.wakers
    }

    /// Shard `shard`'s endpoints of exchange `id` (the mesh is made on first use).
    pub fn endpoints<K: Send + 'static, V: Send + 'static>(
        &self,
        id: u64,
        shard: usize,
    ) -> Result<Endpoints<K, V>, ExchangeError> {
        let mut meshes = self.meshes.lock().unwrap_or_else(PoisonError::into_inner);
        let mesh = match meshes.entry(id) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let plan = RingPlan::new(
                    &self.settings,
                    self.shards,
                    std::mem::size_of::<Message<K, V>>(),
                )?;
                e.insert(Box::new(Mesh::<K, V>::new(self.shards, plan)))
            }
        };
        mesh.downcast_mut::<Mesh<K, V>>()
            .and_then(|m| m.per_shard.get_mut(shard))
            .and_then(Option::take)
            .ok_or(ExchangeError::NoEndpoints { exchange: id, shard })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_sizes_the_rings() {
        let s = ExchangeSettings::default();
        // 2 shards: 2 rings, the capacity is the limit.
        assert_eq!(RingPlan::new(&s, 2, 64).unwrap().capacity, DEFAULT_RING_CAPACITY);
        // 64 shards: 4,032 rings share 64 MiB: 260 messages of 64 bytes each.
        let p = RingPlan::new(&s, 64, 64).unwrap();
        assert_eq!(p.capacity, (64 << 20) / 4032 / 64);
        assert_eq!(p.flush_at, FLUSH_AT);
        // 1,000 shards do not fit.
        assert!(matches!(
            RingPlan::new(&s, 1000, 64),
            Err(ExchangeError::BudgetTooSmall { rings: 999_000, .. })
        ));
        // ... unless the budget is raised.
        let big = s.memory_budget(8 << 30);
        assert!(RingPlan::new(&big, 1000, 64).is_ok());
    }

    #[test]
    fn impossible_capacities_are_refused() {
        for bad in [0, MAX_RING_CAPACITY + 1, 1 << 40] {
            let s = ExchangeSettings::default().ring_capacity(bad);
            assert!(matches!(s.validate(), Err(ExchangeError::RingCapacity { .. })), "{bad}");
        }
        // A tiny ring is fine: it batches by half its capacity.
        let p = RingPlan::new(&ExchangeSettings::default().ring_capacity(3), 4, 64).unwrap();
        assert_eq!((p.capacity, p.flush_at), (3, 2));
    }
}
