//! State time-to-live: Flink's `StateTtlConfig` (docs/semantics.md A3.10) and the expiry rules every
//! column applies.

use std::time::Duration;

use crate::time::Timestamp;

/// When the last-access timestamp of a state entry is refreshed (Flink's `StateTtlConfig.UpdateType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum UpdateType {
    /// Writes refresh the timestamp: `update`, `set(Some)`, `add`, `add_all`, `put`, `put_all`
    /// (the default).
    #[default]
    OnCreateAndWrite,
    /// Writes refresh the timestamp, and so does every successful read of an unexpired entry.
    OnReadAndWrite,
    /// No TTL: the state never expires and no timestamps are stored (Flink:
    /// `StateTtlConfig.isEnabled()` is false).
    Disabled,
}

/// What a read of an expired entry returns (Flink's `StateTtlConfig.StateVisibility`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum StateVisibility {
    /// An expired entry is never returned: the read sees it as absent and removes it (the default).
    #[default]
    NeverReturnExpired,
    /// An expired entry that was not cleaned up yet is returned **once**, by the read that finds it,
    /// and removed at that read; the next read sees it as absent.
    ReturnExpiredIfNotCleanedUp,
}

/// Time-to-live for keyed state, as Flink's `StateTtlConfig` (docs/semantics.md A3.10).
///
/// * **Time base**: processing time only, the `now` of the access's
///   [`StateScope`](super::StateScope) (the harness's manual clock in tests).
/// * **Expiry**: an entry is expired iff `last_access + ttl <= now` (saturating: an entry stamped
///   near `i64::MAX` expires only at `i64::MAX`). An entry written at 0 with a TTL of 10 is already
///   expired at 10.
/// * **Refresh**: see [`UpdateType`]; **visibility**: see [`StateVisibility`].
/// * **Granularity**: a value, reducing or aggregating state expires as a whole; list state
///   expires per element and map state per entry. An expired reducing or aggregating accumulator is
///   dropped, and the next `add` starts a fresh one.
/// * **Cleanup**: an expired entry is removed when a read finds it, and, unless
///   [`disable_cleanup_in_background`](Self::disable_cleanup_in_background) was called, by the
///   incremental background sweep ([`StateRegistry::cleanup_expired`](super::StateRegistry::cleanup_expired))
///   that the operator runtime drives with processing time.
///
/// ```
/// use pinwheel_engine::state::{StateTtlConfig, StateVisibility, UpdateType, ValueStateDescriptor};
///
/// let ttl = StateTtlConfig::new(60_000)
///     .update_type(UpdateType::OnReadAndWrite)
///     .state_visibility(StateVisibility::NeverReturnExpired);
/// let descriptor = ValueStateDescriptor::<u64>::new("last-seen").with_ttl(ttl);
/// # let _ = descriptor;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StateTtlConfig {
    ttl_ms: i64,
    update_type: UpdateType,
    visibility: StateVisibility,
    cleanup_in_background: bool,
}

impl StateTtlConfig {
    /// A TTL of `ttl_ms` milliseconds with Flink's defaults: [`UpdateType::OnCreateAndWrite`],
    /// [`StateVisibility::NeverReturnExpired`], background cleanup enabled.
    ///
    /// The TTL must be positive; registering state with a TTL `<= 0` fails with
    /// [`StateError::InvalidTtl`](super::StateError::InvalidTtl).
    pub fn new(ttl_ms: i64) -> Self {
        StateTtlConfig {
            ttl_ms,
            update_type: UpdateType::OnCreateAndWrite,
            visibility: StateVisibility::NeverReturnExpired,
            cleanup_in_background: true,
        }
    }

    /// [`new`](Self::new) with the TTL given as a [`Duration`], in whole milliseconds (saturating at
    /// `i64::MAX` ms; a duration below one millisecond is an invalid TTL of 0).
    pub fn from_duration(ttl: Duration) -> Self {
        StateTtlConfig::new(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
    }

    /// Sets when the last-access timestamp is refreshed.
    pub fn update_type(mut self, update_type: UpdateType) -> Self {
        self.update_type = update_type;
        self
    }

    /// Sets what a read of an expired entry returns.
    pub fn state_visibility(mut self, visibility: StateVisibility) -> Self {
        self.visibility = visibility;
        self
    }

    /// Turns off the incremental background cleanup for this state (Flink's
    /// `disableCleanupInBackground()`): expired entries are then removed only when a read finds
    /// them, so with [`StateVisibility::ReturnExpiredIfNotCleanedUp`] every expired entry is seen
    /// once.
    pub fn disable_cleanup_in_background(mut self) -> Self {
        self.cleanup_in_background = false;
        self
    }

    /// The TTL in milliseconds.
    pub fn ttl_ms(&self) -> i64 {
        self.ttl_ms
    }

    /// When the timestamp is refreshed.
    pub fn refresh_policy(&self) -> UpdateType {
        self.update_type
    }

    /// What a read of an expired entry returns.
    pub fn visibility(&self) -> StateVisibility {
        self.visibility
    }

    /// Whether the background sweep removes expired entries of this state.
    pub fn cleanup_in_background(&self) -> bool {
        self.cleanup_in_background
    }

    /// Whether TTL is on: false only for [`UpdateType::Disabled`].
    pub fn is_enabled(&self) -> bool {
        self.update_type != UpdateType::Disabled
    }
}

/// The TTL rules as a column applies them (a [`StateTtlConfig`] that is enabled, reduced to what
/// the access paths test).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Ttl {
    ttl_ms: i64,
    /// [`UpdateType::OnReadAndWrite`].
    pub(super) refresh_on_read: bool,
    /// [`StateVisibility::ReturnExpiredIfNotCleanedUp`].
    pub(super) return_expired: bool,
    /// Whether the background sweep visits the column.
    pub(super) background: bool,
}

impl Ttl {
    /// The rules of `config`, or `None` when TTL is disabled.
    pub(super) fn from_config(config: Option<&StateTtlConfig>) -> Option<Ttl> {
        let config = config.filter(|c| c.is_enabled())?;
        Some(Ttl {
            ttl_ms: config.ttl_ms,
            refresh_on_read: config.update_type == UpdateType::OnReadAndWrite,
            return_expired: config.visibility == StateVisibility::ReturnExpiredIfNotCleanedUp,
            background: config.cleanup_in_background,
        })
    }

    /// A3.10.2: expired iff `last_access + ttl <= now`, without overflow.
    #[inline]
    pub(super) fn expired(&self, last_access: Timestamp, now: Timestamp) -> bool {
        last_access.saturating_add(self.ttl_ms) <= now
    }
}

/// Removes the expired elements of a multi-element row (list elements, map entries) whose
/// timestamps are the parallel `stamps`, keeping the order of the others. Returns how many it
/// removed.
pub(super) fn purge_expired<E>(
    items: &mut Vec<E>,
    stamps: &mut Vec<Timestamp>,
    ttl: &Ttl,
    now: Timestamp,
) -> usize {
    let before = items.len();
    if !stamps.iter().any(|&s| ttl.expired(s, now)) {
        return 0;
    }
    // `Vec::retain` visits the elements in order, exactly once each, so the two vectors stay in
    // lockstep. An element without a timestamp (never the case: the columns keep both vectors the
    // same length) is kept.
    let mut keep = stamps.iter().map(|&s| !ttl.expired(s, now));
    items.retain(|_| keep.next().unwrap_or(true));
    stamps.retain(|&s| !ttl.expired(s, now));
    before - items.len()
}

/// The read path of a multi-element row under TTL (A3.10.4/5): with `NeverReturnExpired` the
/// expired elements are removed before `read` sees the row; with `ReturnExpiredIfNotCleanedUp`
/// `read` sees them and they are removed after it. With `OnReadAndWrite` the elements that survive
/// are refreshed to `now`. Returns `read`'s result and how many elements were removed.
pub(super) fn read_with_ttl<E, R>(
    items: &mut Vec<E>,
    stamps: &mut Vec<Timestamp>,
    ttl: &Ttl,
    now: Timestamp,
    read: impl FnOnce(&[E]) -> R,
) -> (R, usize) {
    let (result, removed) = if ttl.return_expired {
        let result = read(items);
        (result, purge_expired(items, stamps, ttl, now))
    } else {
        let removed = purge_expired(items, stamps, ttl, now);
        (read(items), removed)
    };
    if ttl.refresh_on_read {
        stamps.iter_mut().for_each(|s| *s = now);
    }
    (result, removed)
}
