//! A bounded, lock-free, single-producer single-consumer ring buffer.
//!
//! # Ground rules
//!
//! This module is one of the two in the project allowed `unsafe` code. The only unsafe things it
//! does are: reading and writing the slots of the ring (`UnsafeCell<MaybeUninit<T>>`) without a
//! lock, indexing the slot array without a bounds check, and declaring [`Producer`] and [`Consumer`]
//! `Send`. Who may touch which memory:
//!
//! * The ring has `capacity` slots and two indices, `head` (the next slot to read) and `tail` (the
//!   next slot to write). Slots in `[head, tail)` hold initialised values and belong to the
//!   **consumer**; the other slots, `[tail, head + capacity)`, are uninitialised and belong to the
//!   **producer**.
//! * Only the producer ([`Producer`], of which there is exactly one, and which is not `Sync`) writes
//!   `tail`; only the consumer writes `head`. Each side keeps its own index in a plain field and
//!   only *stores* the atomic.
//! * The producer writes a slot, then publishes it by a `Release` store of `tail`; the consumer
//!   `Acquire`-loads `tail` before reading any slot in `[head, tail)`. Symmetrically the consumer
//!   moves a value out of a slot, then hands the slot back by a `Release` store of `head`; the
//!   producer `Acquire`-loads `head` before writing any slot it got back. Every slot access is
//!   therefore ordered after the other side's last access to the same slot.
//! * Values still in the ring when both halves are gone are dropped by the last half's drop
//!   (through `Drop for Shared`), which is ordered after everything the other half did by the
//!   `Arc`'s reference count (`Release` decrement, `Acquire` on the last one).
//!
//! # Protocol
//!
//! This is Lamport's single-producer single-consumer queue ("Proving the correctness of
//! multiprocess programs", 1977) with the two refinements every fast implementation has:
//!
//! * **Cached indices.** The producer remembers the last `head` it loaded (`cached_head`) and
//!   computes free space from it; only when that says "full" does it load the real `head`. The
//!   consumer does the same with `tail`. Because each index only moves forward, a cached value is
//!   always a safe under-estimate, so most operations touch no cache line written by the other core.
//! * **Separate cache lines.** `head` and `tail` are each in their own
//!   [`crossbeam_utils::CachePadded`] (128 bytes on x86-64 and aarch64, covering the
//!   adjacent-line prefetcher), so the producer's stores of `tail` do not invalidate the line the
//!   consumer stores `head` into. The capacity, the slot pointer and the two "abandoned" flags live
//!   on a third line that is read-only in steady state.
//!
//! Indices run over `[0, 2 * capacity)` rather than `[0, capacity)` so that "full" (`tail - head ==
//! capacity`) and "empty" (`tail == head`) are distinguishable without wasting a slot, and so that
//! any capacity, not only a power of two, works without a division: the slot of index `i` is `i`
//! or `i - capacity` (rtrb's scheme).
//!
//! Batches ([`Producer::push_batch`], [`Consumer::pop_batch`]) move many values with one `Acquire`
//! load (only if the cached index says there is not enough room or data) and one `Release` store,
//! so the cost of the cross-core traffic is paid once per batch, not once per record.
//!
//! # Memory orderings, and why they suffice
//!
//! | operation | ordering | pairs with | guarantees |
//! |---|---|---|---|
//! | producer stores `tail` after writing slots | `Release` | consumer's `Acquire` load of `tail` | the consumer sees the values written into `[old tail, new tail)` |
//! | consumer stores `head` after reading slots | `Release` | producer's `Acquire` load of `head` | the producer's next write to a slot happens after the consumer's read of it (no write-after-read race) |
//! | half dropped: stores its "gone" flag | `Release` | other side's `Acquire` load of the flag | after seeing the producer gone, one more load of `tail` returns its final value, so [`PopError::Abandoned`] is only reported for an empty ring |
//! | producer checks "consumer gone" before a push | `Relaxed` | — | advisory: a push that races with the consumer's drop succeeds, and the value is dropped with the ring |
//! | last `Arc` dropped | `Release`/`Acquire` (inside `Arc`) | the other half's `Arc` drop | `Drop for Shared` sees the final `head` and `tail` and every slot write |
//!
//! No `SeqCst` is needed: there is no store-load pattern across two different locations that must be
//! ordered (each decision reads one index that only moves in one direction). On x86-64 every
//! `Acquire` load and `Release` store is a plain `mov`.
//!
//! The protocol is model-checked with loom (`engine/tests/loom_ring.rs`, run by `scripts/loom.sh`):
//! capacities 1 to 3, two threads, up to 6 items, single and batched operations, wraparound, and
//! dropping a ring with values left in it; loom checks FIFO order, no loss, no duplicate, no double
//! drop, and that no slot access races with another (RELIABILITY.md test 17).
//!
//! # Prior art
//!
//! * [rtrb](https://docs.rs/rtrb) — the same split `Producer`/`Consumer` design, `[0, 2 capacity)`
//!   indices, cached indices, `is_abandoned`; STYLE.md section 5 recommends it. We hand-write the
//!   ring only so it runs through [`crate::sync`] under loom.
//! * glommio's `channels/spsc_queue.rs` — a raw-pointer ring with `#[repr(align(128))]` indices
//!   and a producer/consumer "disconnected" flag, used between executors.
//! * crossbeam's `ArrayQueue` (Vyukov's bounded MPMC queue) — per-slot stamps and CAS on both ends;
//!   the right tool for many producers, slower for one-to-one traffic.
//! * Errors hand the value back, as crossbeam-channel's `TrySendError::{Full(T), Disconnected(T)}`
//!   do.

use std::collections::VecDeque;
use std::fmt;
use std::mem::MaybeUninit;

use crossbeam_utils::CachePadded;

use crate::sync::Arc;
use crate::sync::UnsafeCell;
use crate::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The largest capacity [`ring`] accepts. Indices run over `[0, 2 * capacity)` and are added to
/// before being reduced, so `3 * capacity` must fit a `usize`; any real ring is far smaller (its
/// slots must fit in memory).
pub const MAX_CAPACITY: usize = usize::MAX / 4;

/// Creates a bounded SPSC ring that holds up to `capacity` values and returns its two halves.
///
/// The capacity is exact (it is not rounded up to a power of two). A `capacity` of 0 is treated as
/// 1: a ring that can hold nothing could never move a value, and a ring of capacity 1 is the
/// smallest one that works (it degenerates into a hand-off slot). All memory is allocated here;
/// no operation on the halves allocates.
///
/// # Panics
///
/// If `capacity` exceeds [`MAX_CAPACITY`], or if the slots cannot be allocated (as
/// `Vec::with_capacity` does).
///
/// # Examples
///
/// ```
/// use pinwheel_engine::exchange::{PopError, ring};
///
/// let (mut tx, mut rx) = ring::<u32>(2);
/// tx.push(1).unwrap();
/// tx.push(2).unwrap();
/// assert!(tx.push(3).unwrap_err().is_full());
/// assert_eq!(rx.pop(), Ok(1));
/// drop(tx);
/// assert_eq!(rx.pop(), Ok(2));
/// assert_eq!(rx.pop(), Err(PopError::Abandoned));
/// ```
pub fn ring<T>(capacity: usize) -> (Producer<T>, Consumer<T>) {
    assert!(
        capacity <= MAX_CAPACITY,
        "ring capacity {capacity} exceeds the maximum of {MAX_CAPACITY}"
    );
    let capacity = capacity.max(1);
    let mut slots = Vec::with_capacity(capacity);
    slots.resize_with(capacity, || UnsafeCell::new(MaybeUninit::uninit()));
    let shared = Arc::new(Shared {
        head: CachePadded::new(AtomicUsize::new(0)),
        tail: CachePadded::new(AtomicUsize::new(0)),
        capacity,
        slots: slots.into_boxed_slice(),
        producer_gone: AtomicBool::new(false),
        consumer_gone: AtomicBool::new(false),
    });
    let producer = Producer { shared: Arc::clone(&shared), tail: 0, cached_head: 0, capacity };
    let consumer = Consumer { shared, head: 0, cached_tail: 0, capacity };
    (producer, consumer)
}

/// The state both halves share.
struct Shared<T> {
    /// The next index the consumer reads, in `[0, 2 * capacity)`. Stored only by the consumer
    /// (`Release`, after moving values out); loaded by the producer (`Acquire`) when its cached copy
    /// says the ring is full.
    head: CachePadded<AtomicUsize>,
    /// The next index the producer writes, in `[0, 2 * capacity)`. Stored only by the producer
    /// (`Release`, after writing values); loaded by the consumer (`Acquire`) when its cached copy
    /// says the ring is empty.
    tail: CachePadded<AtomicUsize>,
    /// The number of slots. Immutable.
    capacity: usize,
    /// The slots. Index `i` lives in slot `i` if `i < capacity`, else in slot `i - capacity`.
    /// Initialised exactly for the indices in `[head, tail)`.
    slots: Box<[UnsafeCell<MaybeUninit<T>>]>,
    /// Set (`Release`) when the producer is dropped.
    producer_gone: AtomicBool,
    /// Set (`Release`) when the consumer is dropped.
    consumer_gone: AtomicBool,
}

/// `i + n` in the index space `[0, 2 * capacity)`.
#[inline(always)]
fn advance(capacity: usize, i: usize, n: usize) -> usize {
    debug_assert!(i < 2 * capacity && n <= capacity, "advance({i}, {n}) with capacity {capacity}");
    let j = i + n;
    if j >= 2 * capacity { j - 2 * capacity } else { j }
}

/// The number of indices from `from` forward to `to` in the index space `[0, 2 * capacity)`:
/// the number of values in the ring when `from` is the head and `to` the tail.
#[inline(always)]
fn distance(capacity: usize, from: usize, to: usize) -> usize {
    debug_assert!(
        from < 2 * capacity && to < 2 * capacity,
        "distance({from}, {to}) with capacity {capacity}"
    );
    let d = if to >= from { to - from } else { 2 * capacity - (from - to) };
    debug_assert!(d <= capacity, "head {from} and tail {to} are more than {capacity} apart");
    d
}

/// The slot that holds index `i`.
#[inline(always)]
fn slot_of(capacity: usize, i: usize) -> usize {
    if i >= capacity { i - capacity } else { i }
}

impl<T> Shared<T> {
    /// The slot at position `pos`, without a bounds check.
    ///
    /// # Safety
    ///
    /// `pos < self.capacity` (= `self.slots.len()`).
    #[inline(always)]
    unsafe fn slot(&self, pos: usize) -> &UnsafeCell<MaybeUninit<T>> {
        debug_assert!(pos < self.slots.len(), "slot {pos} out of {}", self.slots.len());
        // SAFETY: the caller promises `pos < capacity`, and `slots` has `capacity` elements.
        unsafe { self.slots.get_unchecked(pos) }
    }

    /// Moves `value` into the slot at position `pos`.
    ///
    /// # Safety
    ///
    /// * `pos < self.capacity`;
    /// * the slot is uninitialised and owned by the producer: its index is in `[tail, head +
    ///   capacity)` for a `head` the caller has `Acquire`-loaded (or that is the initial 0), and
    ///   the caller is the one producer;
    /// * the caller publishes the slot only afterwards, with a `Release` store of `tail`.
    #[inline(always)]
    unsafe fn write(&self, pos: usize, value: T) {
        // SAFETY: `pos < capacity` by the caller's contract.
        let slot = unsafe { self.slot(pos) };
        // SAFETY: the producer owns this slot (caller's contract): the consumer's last read of it
        // happens before this write (its `Release` store of `head`, our `Acquire` load), and the
        // consumer will not read it before our `Release` store of `tail`. Writing a
        // `MaybeUninit<T>` never drops the previous (uninitialised) contents.
        slot.with_mut(|p| unsafe { p.write(MaybeUninit::new(value)) });
    }

    /// Moves the value out of the slot at position `pos`, leaving it uninitialised.
    ///
    /// # Safety
    ///
    /// * `pos < self.capacity`;
    /// * the slot is initialised and owned by the consumer: its index is in `[head, tail)` for a
    ///   `tail` the caller has `Acquire`-loaded, and the caller is the one consumer;
    /// * the caller hands the slot back only afterwards, with a `Release` store of `head` (and
    ///   never reads it again before that), so the value is moved out exactly once.
    #[inline(always)]
    unsafe fn read(&self, pos: usize) -> T {
        // SAFETY: `pos < capacity` by the caller's contract.
        let slot = unsafe { self.slot(pos) };
        // SAFETY: the consumer owns this initialised slot (caller's contract): the producer's write
        // happens before this read (its `Release` store of `tail`, our `Acquire` load), and the
        // producer will not write it again before our `Release` store of `head`.
        slot.with(|p| unsafe { p.cast::<T>().read() })
    }

    /// A shared reference to the value in the slot at position `pos`.
    ///
    /// # Safety
    ///
    /// As for [`read`](Self::read), and additionally the returned reference must not outlive the
    /// consumer's ownership of the slot: the consumer must not store a `head` past this index
    /// while the reference lives (tying it to a `&Consumer` borrow guarantees that, since moving
    /// `head` needs `&mut Consumer`).
    #[inline(always)]
    unsafe fn get(&self, pos: usize) -> &T {
        // SAFETY: `pos < capacity` by the caller's contract.
        let slot = unsafe { self.slot(pos) };
        // SAFETY: the slot is initialised and owned by the consumer (caller's contract); the
        // producer does not write it while the returned borrow lives. Under loom the access is
        // tracked only for the duration of the closure; the borrow rule above covers the rest.
        slot.with(|p| unsafe { &*p.cast::<T>() })
    }
}

impl<T> Drop for Shared<T> {
    fn drop(&mut self) {
        // Both halves are gone. The last `Arc` decrement acquired everything the other half did,
        // so these loads see the final indices (`Relaxed` would do; `Acquire` costs nothing here).
        let head = self.head.load(Ordering::Acquire);
        let tail = self.tail.load(Ordering::Acquire);
        let len = distance(self.capacity, head, tail);
        for k in 0..len {
            let pos = slot_of(self.capacity, advance(self.capacity, head, k));
            // SAFETY: `pos < capacity` (`slot_of` of an index in `[0, 2 capacity)`); the index is
            // in `[head, tail)`, so the slot is initialised; nobody else can access it (both
            // halves are gone and `&mut self` is unique); each index is visited once, so each
            // value is dropped exactly once. If a `T::drop` panics, the remaining values leak
            // (never a double drop).
            unsafe { self.slot(pos) }.with_mut(|p| unsafe { p.cast::<T>().drop_in_place() });
        }
    }
}

/// The error of [`Producer::push`]: the value was not pushed and is handed back.
///
/// The two outcomes are the whole story of a bounded SPSC push, so the enum is exhaustive: match
/// `Full(v)` to retry later (backpressure) and `Abandoned(v)` to shut down.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum PushError<T> {
    /// The ring is full; the consumer has not caught up.
    Full(T),
    /// The consumer was dropped; nothing pushed now would ever be read.
    Abandoned(T),
}

impl<T> PushError<T> {
    /// The value that was not pushed.
    pub fn into_inner(self) -> T {
        match self {
            PushError::Full(v) | PushError::Abandoned(v) => v,
        }
    }

    /// True for [`PushError::Full`].
    pub fn is_full(&self) -> bool {
        matches!(self, PushError::Full(_))
    }

    /// True for [`PushError::Abandoned`].
    pub fn is_abandoned(&self) -> bool {
        matches!(self, PushError::Abandoned(_))
    }
}

impl<T> fmt::Debug for PushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Like crossbeam's `TrySendError`: no `T: Debug` bound, the value is elided.
        match self {
            PushError::Full(_) => f.write_str("Full(..)"),
            PushError::Abandoned(_) => f.write_str("Abandoned(..)"),
        }
    }
}

impl<T> fmt::Display for PushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushError::Full(_) => f.write_str("pushing into a full ring"),
            PushError::Abandoned(_) => {
                f.write_str("pushing into a ring whose consumer was dropped")
            }
        }
    }
}

impl<T> std::error::Error for PushError<T> {}

/// The error of [`Consumer::pop`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum PopError {
    /// The ring is empty for now; the producer is still there.
    #[error("popping from an empty ring")]
    Empty,
    /// The ring is empty and the producer was dropped: nothing will ever arrive.
    #[error("popping from an empty ring whose producer was dropped")]
    Abandoned,
}

/// The writing half of a [`ring`]. `Send` when `T: Send`, not `Sync`: exactly one thread pushes.
pub struct Producer<T> {
    shared: Arc<Shared<T>>,
    /// Our copy of `shared.tail` (we are its only writer).
    tail: usize,
    /// The last `shared.head` we loaded; the real one is never behind it.
    cached_head: usize,
    /// `shared.capacity`, copied to keep the index arithmetic off the shared line.
    capacity: usize,
}

// SAFETY: a `Producer` moves `T` values to the thread that owns the `Consumer` (or into the ring's
// drop), so `T: Send` is required and sufficient. The shared state is only accessed under the
// protocol in the module's ground rules, which assumes one producer thread: `Producer` is not
// `Sync` (the `UnsafeCell`s in `Shared` make `Arc<Shared<T>>` `!Sync`) and not `Clone`.
unsafe impl<T: Send> Send for Producer<T> {}

impl<T> Producer<T> {
    /// Free slots according to the cached head (an under-estimate).
    #[inline(always)]
    fn cached_free(&self) -> usize {
        self.capacity - distance(self.capacity, self.cached_head, self.tail)
    }

    /// Pushes `value`, or hands it back: [`PushError::Full`] if the ring is full,
    /// [`PushError::Abandoned`] if the consumer was dropped.
    ///
    /// Wait-free: one `Release` store, plus one `Acquire` load of the consumer's index only when the
    /// cached copy says the ring is full.
    #[inline]
    pub fn push(&mut self, value: T) -> Result<(), PushError<T>> {
        if self.shared.consumer_gone.load(Ordering::Relaxed) {
            return Err(PushError::Abandoned(value));
        }
        if self.cached_free() == 0 {
            self.cached_head = self.shared.head.load(Ordering::Acquire);
            if self.cached_free() == 0 {
                return Err(PushError::Full(value));
            }
        }
        let pos = slot_of(self.capacity, self.tail);
        // SAFETY: `pos < capacity`; index `tail` is free (fewer than `capacity` values are in
        // `[cached_head, tail)`, and `cached_head` was `Acquire`-loaded or is the initial 0); we
        // are the only producer (`&mut self`, `!Sync`), and publish it below with `Release`.
        unsafe { self.shared.write(pos, value) };
        self.tail = advance(self.capacity, self.tail, 1);
        self.shared.tail.store(self.tail, Ordering::Release);
        Ok(())
    }

    /// Moves as many values as fit from the front of `batch` into the ring, in order, and returns
    /// how many it moved (0 if the ring is full, `batch` is empty or the consumer was dropped;
    /// check [`is_abandoned`](Self::is_abandoned) to tell). The values that did not fit stay in
    /// `batch`, in order.
    ///
    /// One `Release` store for the whole batch, plus one `Acquire` load of the consumer's index
    /// only when the cached copy says there is not room for all of `batch`.
    pub fn push_batch(&mut self, batch: &mut VecDeque<T>) -> usize {
        if batch.is_empty() || self.shared.consumer_gone.load(Ordering::Relaxed) {
            return 0;
        }
        if self.cached_free() < batch.len() {
            self.cached_head = self.shared.head.load(Ordering::Acquire);
        }
        let n = self.cached_free().min(batch.len());
        if n == 0 {
            return 0;
        }
        // Indices `tail .. tail + n` occupy slots `start ..` up to the end of the array, then
        // wrap to slot 0.
        let start = slot_of(self.capacity, self.tail);
        let first = n.min(self.capacity - start);
        for (k, value) in batch.drain(..n).enumerate() {
            let pos = if k < first { start + k } else { k - first };
            // SAFETY: `pos < capacity` (`start + k < start + first <= capacity`, or
            // `k - first < n - first <= start`); the `n` indices from `tail` are free (at most
            // `cached_free` of them, `cached_head` `Acquire`-loaded or initial); we are the only
            // producer and publish them below with one `Release` store.
            unsafe { self.shared.write(pos, value) };
        }
        self.tail = advance(self.capacity, self.tail, n);
        self.shared.tail.store(self.tail, Ordering::Release);
        n
    }

    /// The number of values that can be pushed now without getting [`PushError::Full`] (the consumer
    /// may free more at any time). Loads the consumer's index.
    pub fn free_slots(&self) -> usize {
        let head = self.shared.head.load(Ordering::Acquire);
        self.capacity - distance(self.capacity, head, self.tail)
    }

    /// The number of values the ring can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// True if the [`Consumer`] was dropped.
    pub fn is_abandoned(&self) -> bool {
        self.shared.consumer_gone.load(Ordering::Acquire)
    }
}

impl<T> Drop for Producer<T> {
    fn drop(&mut self) {
        // `Release`: our last `tail` store happens before the consumer sees this flag.
        self.shared.producer_gone.store(true, Ordering::Release);
    }
}

impl<T> fmt::Debug for Producer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("head", &self.shared.head.load(Ordering::Relaxed))
            .field("tail", &self.tail)
            .field("capacity", &self.capacity)
            .finish()
    }
}

/// The reading half of a [`ring`]. `Send` when `T: Send`, not `Sync`: exactly one thread pops.
pub struct Consumer<T> {
    shared: Arc<Shared<T>>,
    /// Our copy of `shared.head` (we are its only writer).
    head: usize,
    /// The last `shared.tail` we loaded; the real one is never behind it.
    cached_tail: usize,
    /// `shared.capacity`, copied to keep the index arithmetic off the shared line.
    capacity: usize,
}

// SAFETY: a `Consumer` receives `T` values written on the producer's thread and drops or returns
// them on its own, so `T: Send` is required and sufficient (`peek` hands out `&T` only to the
// owning thread, as `Consumer` is not `Sync`). The shared state is only accessed under the protocol
// in the module's ground rules, which assumes one consumer thread: `Consumer` is not `Sync` and
// not `Clone`.
unsafe impl<T: Send> Send for Consumer<T> {}

impl<T> Consumer<T> {
    /// Values available according to the cached tail (an under-estimate).
    #[inline(always)]
    fn cached_len(&self) -> usize {
        distance(self.capacity, self.head, self.cached_tail)
    }

    /// Loads the producer's index into the cache and returns the number of values available.
    #[inline]
    fn refresh(&mut self) -> usize {
        self.cached_tail = self.shared.tail.load(Ordering::Acquire);
        self.cached_len()
    }

    /// Pops the oldest value: [`PopError::Empty`] if there is none yet, [`PopError::Abandoned`] if
    /// there is none and the producer was dropped (so none will come). Values pushed before the
    /// producer was dropped are all returned before `Abandoned` is.
    ///
    /// Wait-free: one `Release` store, plus one `Acquire` load of the producer's index only when the
    /// cached copy says the ring is empty.
    #[inline]
    pub fn pop(&mut self) -> Result<T, PopError> {
        if self.cached_len() == 0 && self.refresh() == 0 {
            if !self.shared.producer_gone.load(Ordering::Acquire) {
                return Err(PopError::Empty);
            }
            // The producer's last `tail` store happens before its `Release` store of the flag,
            // which we just acquired: this load returns the final tail.
            if self.refresh() == 0 {
                return Err(PopError::Abandoned);
            }
        }
        let pos = slot_of(self.capacity, self.head);
        // SAFETY: `pos < capacity`; index `head` is in `[head, cached_tail)` with `cached_tail`
        // `Acquire`-loaded, so the slot is initialised and ours; we are the only consumer
        // (`&mut self`, `!Sync`) and hand it back below with `Release`.
        let value = unsafe { self.shared.read(pos) };
        self.head = advance(self.capacity, self.head, 1);
        self.shared.head.store(self.head, Ordering::Release);
        Ok(value)
    }

    /// Moves up to `max` of the oldest values, in order, to the end of `out` and returns how many
    /// it moved (0 if the ring is empty; check [`is_abandoned`](Self::is_abandoned) to tell whether
    /// more may come).
    ///
    /// One `Release` store for the whole batch, plus one `Acquire` load of the producer's index only
    /// when the cached copy shows fewer than `max` values. `out` is grown (`Vec::reserve`) if it
    /// lacks room; reuse one with enough capacity to keep the loop allocation-free.
    pub fn pop_batch(&mut self, out: &mut Vec<T>, max: usize) -> usize {
        if max == 0 {
            return 0;
        }
        if self.cached_len() < max {
            self.refresh();
        }
        let n = self.cached_len().min(max);
        if n == 0 {
            return 0;
        }
        out.reserve(n);
        let start = slot_of(self.capacity, self.head);
        let first = n.min(self.capacity - start);
        for k in 0..n {
            let pos = if k < first { start + k } else { k - first };
            // SAFETY: `pos < capacity` (as in `push_batch`); the `n` indices from `head` are in
            // `[head, cached_tail)` with `cached_tail` `Acquire`-loaded, so initialised and ours;
            // each is read once and handed back below with one `Release` store. `out.push` cannot
            // reallocate (reserved above), so nothing between the reads can panic.
            out.push(unsafe { self.shared.read(pos) });
        }
        self.head = advance(self.capacity, self.head, n);
        self.shared.head.store(self.head, Ordering::Release);
        n
    }

    /// The oldest value, left in the ring; `None` if the ring is empty.
    pub fn peek(&self) -> Option<&T> {
        let len = match self.cached_len() {
            0 => distance(self.capacity, self.head, self.shared.tail.load(Ordering::Acquire)),
            n => n,
        };
        if len == 0 {
            return None;
        }
        let pos = slot_of(self.capacity, self.head);
        // SAFETY: `pos < capacity`; index `head` is in `[head, tail)` for an `Acquire`-loaded
        // tail, so the slot is initialised and ours; the borrow of `&self` keeps `pop` (which needs
        // `&mut self`) from handing the slot back while the reference lives.
        Some(unsafe { self.shared.get(pos) })
    }

    /// The number of values in the ring now (the producer may add more at any time). Loads the
    /// producer's index.
    pub fn len(&self) -> usize {
        distance(self.capacity, self.head, self.shared.tail.load(Ordering::Acquire))
    }

    /// True if the ring holds no value now.
    pub fn is_empty(&self) -> bool {
        self.cached_len() == 0 && self.len() == 0
    }

    /// The number of values the ring can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// True if the [`Producer`] was dropped. Values it pushed before may still be in the ring.
    pub fn is_abandoned(&self) -> bool {
        self.shared.producer_gone.load(Ordering::Acquire)
    }
}

impl<T> Drop for Consumer<T> {
    fn drop(&mut self) {
        self.shared.consumer_gone.store(true, Ordering::Release);
    }
}

impl<T> fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("head", &self.head)
            .field("tail", &self.shared.tail.load(Ordering::Relaxed))
            .field("capacity", &self.capacity)
            .finish()
    }
}

/// `Producer` and `Consumer` must not be `Sync` (one thread per side is the protocol's premise):
///
/// ```compile_fail
/// fn sync<T: Sync>() {}
/// sync::<pinwheel_engine::exchange::Producer<u8>>();
/// ```
///
/// ```compile_fail
/// fn sync<T: Sync>() {}
/// sync::<pinwheel_engine::exchange::Consumer<u8>>();
/// ```
///
/// and must not be `Send` for a `T` that is not:
///
/// ```compile_fail
/// fn send<T: Send>() {}
/// send::<pinwheel_engine::exchange::Producer<std::rc::Rc<u8>>>();
/// ```
///
/// ```compile_fail
/// fn send<T: Send>() {}
/// send::<pinwheel_engine::exchange::Consumer<std::rc::Rc<u8>>>();
/// ```
#[cfg(doctest)]
pub struct NotSyncDoctests;

#[cfg(all(test, not(loom)))]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;

    fn assert_send<T: Send>() {}

    #[test]
    fn halves_are_send() {
        assert_send::<Producer<String>>();
        assert_send::<Consumer<String>>();
    }

    #[test]
    fn fifo_and_full_and_empty() {
        let (mut tx, mut rx) = ring::<u32>(4);
        assert_eq!(tx.capacity(), 4);
        assert_eq!(rx.capacity(), 4);
        assert!(rx.is_empty());
        assert_eq!(rx.pop(), Err(PopError::Empty));
        assert_eq!(rx.peek(), None);
        for i in 0..4 {
            assert_eq!(tx.free_slots(), 4 - i as usize);
            tx.push(i).unwrap();
        }
        assert_eq!(tx.free_slots(), 0);
        let err = tx.push(99).unwrap_err();
        assert!(err.is_full());
        assert_eq!(err.into_inner(), 99);
        assert_eq!(rx.len(), 4);
        assert_eq!(rx.peek(), Some(&0));
        for i in 0..4 {
            assert_eq!(rx.pop(), Ok(i));
        }
        assert_eq!(rx.pop(), Err(PopError::Empty));
        assert!(rx.is_empty());
        assert_eq!(tx.free_slots(), 4);
    }

    #[test]
    fn capacity_zero_is_one() {
        let (mut tx, mut rx) = ring::<u8>(0);
        assert_eq!(tx.capacity(), 1);
        tx.push(7).unwrap();
        assert!(tx.push(8).unwrap_err().is_full());
        assert_eq!(rx.pop(), Ok(7));
        tx.push(8).unwrap();
        assert_eq!(rx.pop(), Ok(8));
    }

    #[test]
    fn capacity_is_exact_not_rounded() {
        let (mut tx, _rx) = ring::<u8>(3);
        assert_eq!(tx.capacity(), 3);
        for i in 0..3 {
            tx.push(i).unwrap();
        }
        assert!(tx.push(3).is_err());
    }

    #[test]
    #[should_panic(expected = "exceeds the maximum")]
    fn absurd_capacity_panics_with_a_message() {
        let _ = ring::<()>(MAX_CAPACITY + 1);
    }

    #[test]
    fn wraparound_many_laps() {
        for cap in [1usize, 2, 3, 5, 8] {
            let (mut tx, mut rx) = ring::<usize>(cap);
            let mut next_out = 0;
            for i in 0..(cap * 7 + 3) {
                if tx.push(i).is_err() {
                    assert_eq!(rx.pop(), Ok(next_out));
                    next_out += 1;
                    tx.push(i).unwrap();
                }
                // Drain sometimes, so head and tail pass the 2*cap wrap at different phases.
                if i % 3 == 0 {
                    assert_eq!(rx.pop(), Ok(next_out));
                    next_out += 1;
                }
            }
            while let Ok(v) = rx.pop() {
                assert_eq!(v, next_out);
                next_out += 1;
            }
            assert_eq!(next_out, cap * 7 + 3);
        }
    }

    #[test]
    fn batches_across_the_wrap() {
        let (mut tx, mut rx) = ring::<u32>(5);
        let mut src: VecDeque<u32> = (0..100).collect();
        let mut out = Vec::new();
        let mut expect = 0;
        while !src.is_empty() || !rx.is_empty() {
            let before = src.len();
            let pushed = tx.push_batch(&mut src);
            assert_eq!(before - src.len(), pushed);
            assert!(pushed <= 5);
            out.clear();
            let popped = rx.pop_batch(&mut out, 3);
            assert_eq!(popped, out.len());
            for v in &out {
                assert_eq!(*v, expect);
                expect += 1;
            }
        }
        assert_eq!(expect, 100);
        assert_eq!(rx.pop_batch(&mut out, 0), 0);
        assert_eq!(tx.push_batch(&mut VecDeque::new()), 0);
    }

    #[test]
    fn push_batch_fills_exactly_and_keeps_the_rest() {
        let (mut tx, mut rx) = ring::<u32>(4);
        tx.push(100).unwrap();
        let mut src: VecDeque<u32> = (0..10).collect();
        assert_eq!(tx.push_batch(&mut src), 3);
        assert_eq!(src, (3..10).collect::<VecDeque<_>>());
        assert_eq!(tx.push_batch(&mut src), 0);
        let mut out = Vec::with_capacity(16);
        assert_eq!(rx.pop_batch(&mut out, 16), 4);
        assert_eq!(out, [100, 0, 1, 2]);
    }

    /// Counts drops per id, so that a double drop or a leak shows up.
    struct Tracked {
        id: usize,
        drops: Rc<RefCell<Vec<u32>>>,
    }

    impl Drop for Tracked {
        fn drop(&mut self) {
            self.drops.borrow_mut()[self.id] += 1;
        }
    }

    fn tracked(n: usize) -> (Rc<RefCell<Vec<u32>>>, impl FnMut(usize) -> Tracked) {
        let drops = Rc::new(RefCell::new(vec![0; n]));
        let d = Rc::clone(&drops);
        (drops, move |id| Tracked { id, drops: Rc::clone(&d) })
    }

    // `Tracked` holds an `Rc`, so it is not `Send`; the ring itself does not need `T: Send` to be
    // used on one thread.
    #[test]
    fn items_left_are_dropped_exactly_once_whichever_half_goes_last() {
        for consumer_last in [false, true] {
            for popped in 0..=3 {
                let (drops, mut make) = tracked(5);
                let (mut tx, mut rx) = ring::<Tracked>(3);
                // Wrap once so the leftovers straddle the end of the slot array.
                tx.push(make(0)).unwrap();
                tx.push(make(1)).unwrap();
                drop(rx.pop().unwrap());
                drop(rx.pop().unwrap());
                for id in 2..5 {
                    tx.push(make(id)).unwrap();
                }
                for _ in 0..popped {
                    drop(rx.pop().unwrap());
                }
                if consumer_last {
                    drop(tx);
                    assert!(rx.is_abandoned());
                    drop(rx);
                } else {
                    drop(rx);
                    assert!(tx.is_abandoned());
                    drop(tx);
                }
                assert_eq!(
                    *drops.borrow(),
                    vec![1; 5],
                    "popped {popped}, consumer last {consumer_last}"
                );
            }
        }
    }

    #[test]
    fn errors_hand_values_back_without_dropping_them() {
        let (drops, mut make) = tracked(2);
        let (mut tx, rx) = ring::<Tracked>(1);
        tx.push(make(0)).unwrap();
        let full = tx.push(make(1)).unwrap_err();
        assert!(full.is_full());
        assert_eq!(*drops.borrow(), [0, 0]);
        drop(rx);
        let abandoned = tx.push(full.into_inner()).unwrap_err();
        assert!(abandoned.is_abandoned());
        assert_eq!(*drops.borrow(), [0, 0]);
        drop(abandoned);
        assert_eq!(*drops.borrow(), [0, 1]);
        drop(tx);
        assert_eq!(*drops.borrow(), [1, 1]);
    }

    #[test]
    fn abandon_detection() {
        let (mut tx, mut rx) = ring::<u8>(4);
        assert!(!tx.is_abandoned());
        assert!(!rx.is_abandoned());
        tx.push(1).unwrap();
        tx.push(2).unwrap();
        drop(tx);
        assert!(rx.is_abandoned());
        // Everything pushed before the drop still comes out, then `Abandoned`.
        assert_eq!(rx.pop(), Ok(1));
        let mut out = Vec::new();
        assert_eq!(rx.pop_batch(&mut out, 8), 1);
        assert_eq!(out, [2]);
        assert_eq!(rx.pop(), Err(PopError::Abandoned));
        assert_eq!(rx.pop(), Err(PopError::Abandoned));

        let (mut tx, rx) = ring::<u8>(4);
        drop(rx);
        assert!(tx.is_abandoned());
        assert_eq!(tx.push(1), Err(PushError::Abandoned(1)));
        let mut batch: VecDeque<u8> = [1, 2].into();
        assert_eq!(tx.push_batch(&mut batch), 0);
        assert_eq!(batch.len(), 2);
    }

    #[test]
    fn zero_sized_values() {
        let (mut tx, mut rx) = ring::<()>(2);
        tx.push(()).unwrap();
        tx.push(()).unwrap();
        assert!(tx.push(()).is_err());
        assert_eq!(rx.len(), 2);
        assert_eq!(rx.pop(), Ok(()));
    }

    #[test]
    fn debug_shows_indices_and_capacity() {
        let (mut tx, mut rx) = ring::<u8>(3);
        tx.push(1).unwrap();
        tx.push(2).unwrap();
        rx.pop().unwrap();
        assert_eq!(format!("{tx:?}"), "Producer { head: 1, tail: 2, capacity: 3 }");
        assert_eq!(format!("{rx:?}"), "Consumer { head: 1, tail: 2, capacity: 3 }");
        assert_eq!(format!("{:?}", PushError::Full(1u8)), "Full(..)");
        assert_eq!(
            PopError::Abandoned.to_string(),
            "popping from an empty ring whose producer was dropped"
        );
    }

    #[test]
    fn two_threads_small_ring() {
        const N: u64 = 200_000;
        let (mut tx, mut rx) = ring::<u64>(3);
        let producer = std::thread::spawn(move || {
            for i in 0..N {
                let mut v = i;
                loop {
                    match tx.push(v) {
                        Ok(()) => break,
                        Err(PushError::Full(back)) => {
                            v = back;
                            std::thread::yield_now();
                        }
                        Err(PushError::Abandoned(_)) => panic!("consumer vanished"),
                    }
                }
            }
        });
        let mut expect = 0;
        loop {
            match rx.pop() {
                Ok(v) => {
                    assert_eq!(v, expect);
                    expect += 1;
                }
                Err(PopError::Empty) => std::thread::yield_now(),
                Err(PopError::Abandoned) => break,
            }
        }
        producer.join().unwrap();
        assert_eq!(expect, N);
    }
}
