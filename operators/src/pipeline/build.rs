//! What a plan needs to build its stage on a shard.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;

use pinwheel_engine::exchange::Exchanges;
use pinwheel_engine::keygroup::KeyGroups;
use pinwheel_engine::shard::ShardWaker;
use pinwheel_engine::time::Timestamp;

use super::checkpoint::Coordinator;
use crate::context::ShardInfo;
use crate::semantics::Semantics;

/// What a plan needs to know to build its stage on a shard: which shard, the run's settings, and
/// the run's shared structures (exchanges, shared stages).
#[derive(Debug, Clone)]
pub struct BuildContext {
    pub(crate) shard: ShardInfo,
    pub(crate) semantics: Semantics,
    pub(crate) start_time: Timestamp,
    pub(crate) key_groups: KeyGroups,
    pub(crate) max_watermark_drift: Option<i64>,
    pub(crate) max_keys_per_shard: usize,
    pub(crate) exchanges: Arc<Exchanges>,
    /// This shard's shared stages (process stages read by several branches).
    pub(crate) shared: SharedStages,
    /// Exchanges built so far on this shard: an exchange compares it before and after building
    /// its upstream to learn whether another exchange lies upstream of it; a keyed operator's
    /// count is its place in the job, which identifies its state in checkpoints.
    pub(crate) exchanges_built: Cell<u64>,
    /// Sources built so far on this shard: a source's count identifies its positions in
    /// checkpoints.
    pub(crate) sources_built: Cell<u64>,
    /// The run's checkpoints, if they are on.
    pub(crate) checkpoints: Option<Arc<Coordinator>>,
}

impl BuildContext {
    /// The shard the stage runs on.
    pub fn shard(&self) -> ShardInfo {
        self.shard
    }

    /// Semantic settings.
    pub fn semantics(&self) -> Semantics {
        self.semantics
    }

    /// Processing time when the run started.
    pub fn start_time(&self) -> Timestamp {
        self.start_time
    }

    /// The key-group assignment of this run.
    pub fn key_groups(&self) -> KeyGroups {
        self.key_groups
    }

    /// This shard's waker: a source fed from another thread wakes the shard through it when data
    /// arrives (see [`Status::Idle`](super::Status::Idle)).
    pub fn waker(&self) -> &ShardWaker {
        &self.exchanges.wakers()[self.shard.index]
    }
}

/// One shard's registry of shared stages, built once and held by every branch (graph
/// construction only).
#[derive(Clone, Default)]
pub(crate) struct SharedStages {
    stages: Rc<RefCell<HashMap<u64, Rc<dyn Any>>>>,
}

impl SharedStages {
    /// The shared stage `id`, if a branch built it already.
    pub(crate) fn get(&self, id: u64) -> Option<Rc<dyn Any>> {
        self.stages.borrow().get(&id).cloned()
    }

    /// Records the shared stage `id`.
    pub(crate) fn insert(&self, id: u64, stage: Rc<dyn Any>) {
        self.stages.borrow_mut().insert(id, stage);
    }
}

impl fmt::Debug for SharedStages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SharedStages({})", self.stages.borrow().len())
    }
}
