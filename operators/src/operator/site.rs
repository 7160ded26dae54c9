//! Where a shard is running user code, so that a panic can be reported with the operator and
//! the phase, as returned errors are.
//!
//! Each operator instance registers its name on its shard's thread when it is built and gets a
//! [`Site`]; before it calls into user code for a batch of records or a chunk of timers it marks
//! the site and phase (one store into a thread-local, per batch, not per record). The shard's
//! panic handler reads the mark.

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use crate::error::Phase;

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
