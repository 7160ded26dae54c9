//! Timer stores: [`TimerWheel`], the hierarchical timing wheel the engine runs on, and
//! [`ReferenceTimers`], the plain ordered-map store the tests compare it with.
//!
//! A keyed operator on a shard owns one store per time domain (event time, processing time). A
//! timer is a `(key, timestamp)` pair, unique per store (docs/semantics.md A1.2): registering a pending pair
//! again does nothing, deleting a pair that is not pending does nothing (A1.7), and registering never
//! fires anything (A1.6). The firing loop is the caller's:
//!
//! ```
//! use pinwheel_engine::timer::{Timer, TimerWheel};
//!
//! let mut timers = TimerWheel::new();
//! timers.register(7, 20)?; // key 7, t = 20
//! timers.register(3, 10)?;
//! timers.register(9, 20)?;
//! timers.register(7, 20)?; // duplicate: no-op
//!
//! let mut fired = Vec::new();
//! while let Some(t) = timers.poll(25) {
//!     fired.push((t.key, t.timestamp));
//!     if (t.key, t.timestamp) == (3, 10) {
//!         timers.register(3, 15)?; // registered while firing, <= 25: fires in this same loop
//!     }
//! }
//! assert_eq!(fired, [(3, 10), (3, 15), (7, 20), (9, 20)]);
//! assert_eq!(timers.current_time(), 25);
//! # Ok::<(), pinwheel_engine::timer::TimerError>(())
//! ```
//!
//! # Ordering guarantees
//!
//! * `poll(now)` returns the pending timer with the **smallest timestamp**, if that timestamp is
//!   `<= now`. A poll loop therefore fires timers in non-decreasing timestamp order, except where a
//!   timer registered *during* the loop has a smaller timestamp than the one just fired: it fires
//!   next (Flink's loop re-peeks the queue head after each callback, docs/semantics.md A1.10, S07).
//! * **Equal timestamps fire in registration order** (FIFO), across keys. A registration after a
//!   delete, or after the timer fired, counts as a new registration and goes to the back. Flink leaves
//!   this order unspecified (A1.9: its heap queue fires `a, c, b` for `a, b, c`); Pinwheel fixes it so
//!   that runs are reproducible. Re-registering the timestamp being fired puts the timer at the back
//!   of that timestamp's queue, so it fires again in the same loop (S09; unguarded, that loops
//!   forever, as in Flink).
//! * The store's time, [`TimerWheel::current_time`], is the largest `now` ever polled, starting at
//!   `i64::MIN`. A `now` below it (a wall clock that stepped back) fires only timers `<= now`.
//!
//! # Implementation
//!
//! Timestamps are mapped order-preservingly onto a `u64` axis, `at = (ts as u64) ^ (1 << 63)`, so
//! `i64::MIN..=i64::MAX` is `0..=u64::MAX` and no arithmetic on timestamps can wrap. The store has
//! two halves: **entries** in tier lists, which give the firing order, and a **key index**, which
//! says which timers exist.
//!
//! * A registration appends a 16-byte entry `(at, key, seq)` to the list of its tier and records
//!   `(at, seq)` in the key's record. `seq` is a per-store registration number.
//! * An entry is **live** while its key's record still holds `(at, seq)`. Deleting a timer only
//!   removes it from the record: its entry turns **stale** and is dropped when the lists reach it
//!   (fired, cascaded or compacted), O(1) and without touching the lists. A re-registration after a
//!   delete gets a new `seq`, so the old entry stays stale and the new one goes to the back
//!   (registration order).
//!
//! The key index is a `Vec` indexed by key id (dense ids, `crate::key`) of 24-byte records
//! holding the key's first timer inline; a key's further timers go to a spill set (a short vector,
//! a random-seeded hash map past 16). A key with at most one pending timer per domain, the common
//! case, costs one record and no allocation; dedup, `contains`, `count_for_key` and delete read only
//! that record, which the operator prefetches before it runs the function for a batch of records.
//!
//! Entries sit in one of three tiers, chosen from `at` and the wheel's position `elapsed` (`<=` the
//! store's time; it advances inside `poll`):
//!
//! ```text
//!  axis:  0 ........... elapsed ............ end of elapsed's 2^36 block ............ u64::MAX
//!         | overdue      | wheel (6 levels x 64 slots)                 | far (beyond the horizon)
//!         | at < elapsed | same 2^36-aligned block as elapsed, at >= elapsed | any later block
//! ```
//!
//! | tier    | structure                                     | a list holds                 | append       |
//! |---------|-----------------------------------------------|------------------------------|--------------|
//! | overdue | `BTreeMap<at, list>`                          | one timestamp                | O(log d) (*) |
//! | wheel   | 6 levels x 64 slot lists, `occupied: u64`/level | level 0: one ms; level l: 64^l ms | O(1)   |
//! | far     | `BTreeMap<at, list>`                          | one timestamp                | O(log d) (*) |
//!
//! (*) d = distinct timestamps in that tier (a burst of registrations at one far instant, such as
//! `i64::MAX - 1`, finds its list in a one-entry map).
//!
//! A list is a FIFO of entries in chunks of 1,024 (16 KiB) consumed from a head index: appends and
//! the firing walk are sequential memory, so a slot of a million coalesced timers fires as one
//! pass over 16 MB, and the firing loop can prefetch the key record and state rows of the timer
//! eight places ahead. A list grows one chunk at a time, taken from the store's spare chunks when a
//! drained or compacted list gave one back: never by copying (a coarse slot that collects a 4 s
//! window of 60 s timeouts reaches hundreds of thousands of entries; doubling a `Vec` of them
//! copied megabytes into fresh pages on one record).
//!
//! * **Wheel** (tokio's `runtime/time/wheel`, after Varghese & Lauck, "Hashed and hierarchical
//!   timing wheels", SOSP 1987): level `l` has 64 slots of `64^l` ms, so the six levels span
//!   `2^36` ms (about 795 days) at 1 ms resolution. An entry goes to level
//!   `l = (highest bit where at and elapsed differ, at least 5) / 6` and slot `(at >> 6l) & 63`. Each
//!   level has an `occupied: u64` bitmap; the next expiration is the lowest occupied slot at or after
//!   `elapsed`'s digit on the lowest non-empty level, found with `trailing_zeros` in O(levels).
//!   When `elapsed` reaches the start of a slot on level `l >= 1`, the slot's list is *cascaded*:
//!   each entry is appended to its slot on a lower level (stale ones are dropped on the way).
//! * **Far tier** (the role of Kafka's overflow wheel, `TimingWheel.java`, but an ordered map so the
//!   axis reaches `i64::MAX` with no rotation and no horizon): one list per distinct timestamp. When
//!   `elapsed` enters a new block (only ever with an empty wheel) the lists of that block move into
//!   the wheel whole; when the wheel is empty and the first far timestamp `F` is due, `elapsed`
//!   jumps straight to `F`, so `F`'s list lands on level 0 and a burst of 10 M timers at
//!   `i64::MAX - 1` never cascades.
//! * **Overdue tier**: entries registered below `elapsed` (below the watermark, or at a timestamp
//!   smaller than the one being fired). They are all smaller than anything in the wheel, so `poll`
//!   serves them first, smallest timestamp first.
//! * **Compaction**: once stale entries outnumber live timers (and exceed 4,096), every delete also
//!   advances an incremental pass that rewrites the lists in place without their stale entries,
//!   four entries per deleted timer, so memory stays within about twice the live timers and no
//!   single call stalls for long (a heartbeat job deletes a timer per event). When no timer is
//!   live, all entries are dropped at once.
//!
//! Bytes per pending timer: 16 (its entry, at the lists' capacity) plus 16 per key id per store, plus
//! spill sets for keys with several timers, plus stale entries until they are dropped.
//!
//! ## Invariants
//!
//! 1. `elapsed <= time`; every overdue entry has `at < elapsed`; every wheel entry has
//!    `at >= elapsed`, in the same 2^36 block, and sits in the slot computed from `(at, elapsed)`;
//!    every far entry is in a later block.
//! 2. On each level, no occupied slot lies before `elapsed`'s digit (on levels >= 1, none at it), and
//!    a slot's `occupied` bit is set iff its list is non-empty; overdue and far lists are never
//!    empty.
//! 3. **All entries with one timestamp are in one list, in registration order.** Appends go to the
//!    tail; the only moves are in-order (a cascade walks its slot from the head and appends each
//!    entry to its new slot; a far list moves whole into a slot that holds no entry of that
//!    timestamp; compaction keeps the order). A timestamp is never in two tiers at once: it goes
//!    far -> wheel when `elapsed` enters its block, and it can become overdue only after `elapsed`
//!    has passed it, which happens only once its level-0 list is empty. Hence FIFO among equal
//!    timestamps (checked against [`ReferenceTimers`] by `engine/tests/timer_props.rs`).
//! 4. Every timer in the key index has exactly one live entry; `len` counts them and `stale` the
//!    other entries. `min` is at most the smallest live position, and equal to it when marked exact.
//! 5. Sequence numbers are unique among the entries in the lists: when they would wrap (after
//!    2^32 registrations), stale entries are compacted away first, and live entries' numbers are
//!    never handed out again while the key index holds them with the same timestamp.
//!
//! ## Complexity
//!
//! | operation                       | cost                                                            |
//! |---------------------------------|-----------------------------------------------------------------|
//! | `register`                      | one key-record read + O(1) append (wheel), O(log d) overdue/far |
//! | duplicate `register`, `contains`, `delete` | one key-record read (O(s) for a key with s <= 16 spilled timers) |
//! | `poll` returning a timer        | O(levels) + one key-record read, plus cascades (each entry moves down at most 5 levels) and stale entries skipped |
//! | `poll` with nothing due         | O(1); a jump of any size: O(levels) + the cascades and moves it triggers |
//! | `peek_timestamp`                | O(1) unless the earliest timer was deleted or fired since the last call: then the next list with a live entry is looked up (a coarse slot is scanned) |
//! | `len`, `count_for_key`, `next_due_at_least` | O(1)                                              |
//! | `timers_for_key`                | O(k log k) for the k timers of the key (they are sorted)        |
//! | `delete_all_for_key`            | O(k)                                                            |
//! | `for_each`                      | O(key ids + timers)                                             |
//!
//! ## Source files
//!
//! | file            | holds                                                                     |
//! |-----------------|---------------------------------------------------------------------------|
//! | `wheel.rs`      | [`TimerWheel`] and its public API; registration numbers and the counts    |
//! | `list.rs`       | the tier lists: entries, the FIFO in 16 KiB chunks, the spare chunks      |
//! | `key_index.rs`  | the key index: a record per key id, spill sets                            |
//! | `tiers.rs`      | the axis; the overdue, wheel and far tiers; next expiration, cascade, far migration, advance |
//! | `compaction.rs` | dropping stale entries: the incremental pass, immediate compaction        |
//! | `lookahead.rs`  | the firing loop's look-ahead, for prefetching                             |
//! | `invariants.rs` | `assert_invariants`: the invariants above, checked (for tests)            |
//! | `reference.rs`  | [`ReferenceTimers`]                                                       |

mod compaction;
mod frozen;
mod invariants;
mod key_index;
mod list;
mod lookahead;
mod reference;
mod tiers;
mod wheel;

#[cfg(test)]
mod tests;

pub use frozen::FrozenTimers;
pub use reference::ReferenceTimers;
pub use wheel::{RegistrationMark, TimerWheel};

use crate::key::KeyId;
use crate::time::Timestamp;

/// A timer: fire for `key` at `timestamp`. Unique per store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timer {
    /// The key the timer was registered for; the runtime makes it the current key while it fires.
    pub key: KeyId,
    /// When the timer fires: once the store is polled with `now >= timestamp`.
    pub timestamp: Timestamp,
}

/// Errors from the timer stores.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimerError {
    /// More pending timers than the store can index: its nodes are numbered with `u32`.
    #[error("too many pending timers in one timer store: at most {limit}")]
    CapacityExceeded {
        /// How many pending timers the store may hold.
        limit: u64,
    },
}
