//! Who an operator is and where a shard is running user code, so that returned errors and panics
//! name the operator, its shard and the phase alike.
//!
//! Each operator instance registers its name on its shard's thread when it is built and gets a
//! [`Site`]; before it calls into user code for a batch of records or a chunk of timers it marks
//! the site and phase (one store into a thread-local, per batch, not per record). The shard's
//! panic handler reads the mark.

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use pinwheel_engine::keyed::{FireError, SnapshotError};
use pinwheel_engine::time::TimeDomain;

use crate::error::{CapacityError, FnError, Phase, PipelineError};

thread_local! {
    /// The operators built on this thread, by site index.
    static NAMES: RefCell<Vec<Arc<str>>> = const { RefCell::new(Vec::new()) };
    /// The site and phase of the user code running now (or last).
    static CURRENT: Cell<Option<(u32, Phase)>> = const { Cell::new(None) };
}

/// An operator instance's place in its thread's table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Site(u32);

impl Site {
    /// Registers an operator built on the calling thread.
    pub(crate) fn register(name: &Arc<str>) -> Site {
        NAMES.with_borrow_mut(|names| {
            names.push(name.clone());
            Site(u32::try_from(names.len() - 1).unwrap_or(u32::MAX))
        })
    }

    /// Marks that this operator's user code runs now, in `phase`.
    #[inline]
    pub(crate) fn enter(self, phase: Phase) {
        CURRENT.set(Some((self.0, phase)));
    }
}

/// Marks that no operator's user code runs now (a source or sink is being called).
#[inline]
pub(crate) fn leave(phase: Option<Phase>) {
    CURRENT.set(phase.map(|p| (u32::MAX, p)));
}

/// Forgets every site of this thread (a new run starts on it).
pub(crate) fn reset() {
    NAMES.with_borrow_mut(Vec::clear);
    CURRENT.set(None);
}

/// The operator and phase of the user code that ran last on this thread, as far as known.
pub(crate) fn current() -> (Option<Arc<str>>, Option<Phase>) {
    match CURRENT.get() {
        None => (None, None),
        Some((index, phase)) => {
            let name = NAMES.with_borrow(|names| names.get(index as usize).cloned());
            (name, Some(phase))
        }
    }
}

/// Who an operator instance is, for the errors it returns and (through its site) the panics it
/// raises: one type for the keyed and the non-keyed operator.
#[derive(Debug, Clone)]
pub(super) struct Names {
    pub(super) name: Arc<str>,
    pub(super) shard: usize,
    pub(super) site: Site,
}

impl Names {
    /// Registers operator `name` built on the calling thread (shard `shard`).
    pub(super) fn register(name: Arc<str>, shard: usize) -> Self {
        Names { site: Site::register(&name), name, shard }
    }

    pub(super) fn function(&self, phase: Phase, source: FnError) -> PipelineError {
        PipelineError::Function { operator: self.name.clone(), shard: self.shard, phase, source }
    }

    pub(super) fn capacity(&self, source: impl Into<CapacityError>) -> PipelineError {
        PipelineError::Capacity {
            operator: self.name.clone(),
            shard: self.shard,
            source: source.into(),
        }
    }

    pub(super) fn snapshot(&self, source: SnapshotError) -> PipelineError {
        PipelineError::Snapshot { operator: self.name.clone(), shard: self.shard, source }
    }

    pub(super) fn fire(&self, e: FireError<(TimeDomain, FnError)>) -> PipelineError {
        match e {
            FireError::Callback((domain, source)) => self.function(Phase::OnTimer(domain), source),
            FireError::TimerLoop { domain, timestamp, key, refires } => PipelineError::TimerLoop {
                operator: self.name.clone(),
                shard: self.shard,
                domain,
                timestamp,
                key,
                refires,
            },
        }
    }
}
