//! Timer stores: [`TimerWheel`], the hierarchical timing wheel the engine runs on, and
//! [`ReferenceTimers`], the plain ordered-map store the tests compare it with.
//!
//! A keyed operator on a shard owns one store per time domain (event time, processing time). A
//! timer is a `(key, timestamp)` pair, unique per store (SEMANTICS A1.2): registering a pending pair
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
//!   next (Flink's loop re-peeks the queue head after each callback, SEMANTICS A1.10, S07).
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
//! `i64::MIN..=i64::MAX` is `0..=u64::MAX` and no arithmetic on timestamps can wrap. The wheel keeps
//! its own position on that axis, `elapsed` (`<=` the store's time; it advances inside `poll`), and
//! every pending timer is in exactly one of four tiers, chosen from `at` and `elapsed`:
//!
//! ```text
//!  axis:  0 ........... elapsed ............ end of elapsed's 2^36 block ............ u64::MAX
//!         | overdue      | wheel (6 levels x 64 slots)                 | far (beyond the horizon)
//!         | at < elapsed | same 2^36-aligned block as elapsed, at >= elapsed | any later block
//! ```
//!
//! | tier    | structure                                   | lists hold                  | register     |
//! |---------|---------------------------------------------|-----------------------------|--------------|
//! | overdue | `BTreeMap<at, list head>`                   | one timestamp each          | O(log d) (*) |
//! | wheel   | 6 levels x 64 slots, `occupied: u64`/level  | level 0: one ms; level l: 64^l ms | O(1)   |
//! | far     | `BTreeMap<at, list head>`                   | one timestamp each          | O(log d) (*) |
//!
//! (*) d = distinct timestamps in that tier; O(1) when the timestamp is the one last used there
//! (a burst of registrations at one far instant, such as `i64::MAX - 1`, touches the map once).
//!
//! * **Wheel** (tokio's `runtime/time/wheel`, after Varghese & Lauck, "Hashed and hierarchical
//!   timing wheels", SOSP 1987): level `l` has 64 slots of `64^l` ms, so the six levels span
//!   `2^36` ms (about 795 days) at 1 ms resolution. A timer goes to level
//!   `l = (highest bit where at and elapsed differ, at least 5) / 6` and slot `(at >> 6l) & 63`. Each
//!   level has an `occupied: u64` bitmap; the next expiration is the lowest occupied slot at or after
//!   `elapsed`'s digit on the lowest non-empty level, found with `trailing_zeros` in O(levels).
//!   When `elapsed` reaches the start of a slot on level `l >= 1`, the slot's list is *cascaded*:
//!   each timer moves to its slot on a lower level (tokio's invariant: a timer's level and slot are
//!   always recomputable from `(at, elapsed)`, because `elapsed` never passes an occupied slot). A
//!   level-0 slot holds a single timestamp, so the timers of one instant fire as one walk of one list.
//! * **Far tier** (the role of Kafka's overflow wheel, `TimingWheel.java`, but an ordered map so the
//!   axis reaches `i64::MAX` with no rotation and no horizon): timers beyond `elapsed`'s block, one
//!   list per distinct timestamp. When `elapsed` enters a new block (only ever with an empty wheel)
//!   the lists of that block are spliced into the wheel whole, O(1) per list; when the wheel is
//!   empty and the first far timestamp `F` is due, `elapsed` jumps straight to `F`, so `F`'s list
//!   lands on level 0 and a burst of 10 M timers at `i64::MAX - 1` never cascades.
//! * **Overdue tier**: timers registered below `elapsed` (below the watermark, or at a timestamp
//!   smaller than the one being fired). They are all smaller than anything in the wheel, so `poll`
//!   serves them first, smallest timestamp first.
//!
//! All nodes live in one slab (`Vec` of 28-byte nodes, u32 indices, free list, no allocation per
//! operation in steady state). Every list is circular and doubly linked through a **head node in the
//! slab** (the 384 slot heads are nodes `0..384`; each overdue/far list has its own head node), so a
//! timer can be unlinked in O(1) without knowing which list it is in, and emptiness is seen on the
//! spot. A wheel slot's head also caches the smallest timestamp of its list (marked stale when that
//! timer is deleted), so the earliest pending timestamp is maintained exactly at O(1) per operation
//! almost always; only deleting the earliest timer out of a coarse slot (level >= 1) rescans that
//! slot, the next time the minimum is needed.
//!
//! ```text
//!  node (28 B): at (u64 as 2 x u32) | key | prev, next (its tier list) | key_prev, key_next (its key's list)
//!  dedup:       hashbrown::HashTable<u32> of node indices, hash = ahash(key, at) with a random seed,
//!               equality by reading the node: 4 B + 1 control byte per timer
//!  per key:     Vec<{ head, count }> indexed by KeyId (dense ids; memory is O(largest key id))
//! ```
//!
//! Bytes per pending timer: 28 (node) + about 5.7 to 11.4 (dedup table at its load factor between
//! 7/16 and 7/8), plus slack of the slab `Vec`, plus 8 per key id and about 60 per distinct overdue or
//! far timestamp (map entry and list head).
//!
//! ## Invariants
//!
//! 1. `elapsed <= time`; every overdue timer has `at < elapsed`; every wheel timer has `at >= elapsed`,
//!    in the same 2^36 block, and sits in the slot computed from `(at, elapsed)`; every far timer is
//!    in a later block.
//! 2. On each level, no occupied slot lies before `elapsed`'s digit (on levels >= 1, none at it), and
//!    a slot's `occupied` bit is set iff its list is non-empty.
//! 3. **All pending timers with one timestamp are in one list, in registration order.** Inserts
//!    append at the tail. The only moves are whole-list or in-order: a cascade walks its slot from the
//!    head and appends each timer to the tail of its new slot; a far list is spliced whole into a slot
//!    that holds no timer of that timestamp (before the splice, that timestamp was far, so all its
//!    registrations went to the far list). A timestamp is never in two tiers at once: it goes
//!    far -> wheel when `elapsed` enters its block, and it can become overdue only after `elapsed`
//!    has passed it, which happens only once its level-0 list is empty. Hence FIFO among equal
//!    timestamps (checked against [`ReferenceTimers`] by `engine/tests/timer_props.rs`).
//! 4. The dedup table holds exactly the pending timers; the key lists partition them by key; the
//!    cached minimum equals the smallest pending timestamp.
//!
//! ## Complexity
//!
//! | operation                       | cost                                                            |
//! |---------------------------------|-----------------------------------------------------------------|
//! | `register`                      | one hash probe + O(1) (wheel), O(log d) overdue/far (O(1) for the last-used timestamp) |
//! | duplicate `register`, `contains`| one hash probe                                                  |
//! | `delete`                        | one hash probe + O(1); O(log d) if it empties an overdue/far list |
//! | `poll` returning a timer        | one hash probe + O(levels), plus cascades: each timer moves down at most 5 levels in its lifetime, and each far list is spliced once |
//! | `poll` with nothing due         | O(1); a jump of any size: O(levels) + the cascades and splices it triggers |
//! | `peek_timestamp`, `len`, `count_for_key` | O(1)                                                   |
//! | `timers_for_key`                | O(k log k) for the k timers of the key (they are sorted)        |
//! | `delete_all_for_key`            | O(k)                                                            |
//! | `for_each`                      | O(capacity of the dedup table)                                  |

mod reference;
mod wheel;

#[cfg(test)]
mod tests;

pub use reference::ReferenceTimers;
pub use wheel::TimerWheel;

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
    #[error(
        "too many pending timers in one timer store: at most {limit} nodes (one per timer, plus one \
         per distinct overdue or far-future timestamp)"
    )]
    CapacityExceeded {
        /// How many nodes the store can hold.
        limit: u64,
    },
}
