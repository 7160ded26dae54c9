//! A bounded, lock-free, single-producer single-consumer queue whose memory follows what is queued.
//!
//! [`ring`] returns the two halves of a queue that holds at most `capacity` values at once (a full
//! queue hands the value back: backpressure). The name is kept from the fixed ring buffer it
//! replaces; what changed is where the values live. They are stored in **blocks** (small slot
//! arrays) linked into a list, allocated while the queue grows and freed or recycled while it
//! drains, so a ring costs memory in proportion to what it holds, not to its capacity: `ring(4096)`
//! allocates no slot at all, a ring that carries three messages costs one block of 8 slots, and
//! `ring(1 << 40)` is as cheap as `ring(1)`. The shards are connected by an N x N mesh of rings,
//! so this is what keeps a 128-shard job from reserving every ring's full capacity up front.
//!
//! # Blocks
//!
//! * A block is one allocation: a header (the link `next` to the following block and the number of
//!   slots `len`) followed by `len` slots (`UnsafeCell<MaybeUninit<T>>`). The blocks form a list in
//!   FIFO order: the producer writes into the last one (its *tail block*), the consumer reads from
//!   the first one (its *head block*). Every block but the last is completely filled before its
//!   successor is linked, and a block is linked only when a value is about to be written into it.
//! * **Sizes follow the queue and the rate.** When the producer links a block it sizes it for the
//!   traffic the block is about to serve: the larger of two powers of two, the one at or above
//!   twice the number of values queued once the push in progress is done (at most 512 slots), and
//!   the one at or above the number of values that arrive in 50 µs at the rate the previous block
//!   filled (at most 64 KiB of slots); never more slots than the capacity, never fewer than 8 (or
//!   the capacity, if smaller). The clock is read once per block link, never per value. Sizes
//!   grow at once, so they double (or more) from block to block while a backlog or a burst builds
//!   up; they shrink only after four links in a row wanted a quarter of the size or less, so a busy
//!   ring whose queue or rate dips now and then keeps its size. A ring that carries a few values
//!   now and then (a watermark every millisecond, say) thus lives in blocks of 8 slots however long
//!   it runs; a backlog gets blocks of 512 (or more if it builds up fast); a stream of tens of
//!   millions of values a second gets blocks of up to 64 KiB even when its consumer keeps the
//!   queue empty, so that block changes, which cost each side a few cache misses, stay rare (about
//!   20,000 a second, until the blocks reach their largest size); when the traffic calms down the
//!   ring returns to small blocks. Under `cfg(loom)` blocks have 1 or 2 slots, sized for exactly
//!   the values queued (there is no clock: an execution may depend on the schedule only), so that
//!   block links, recycling and frees occur within the few values a model can afford, and whether
//!   the spare has the wanted size depends on the interleaving.
//! * **One spare block.** When the consumer has read a whole block and moved to the next, it parks
//!   the used block in the `spare` slot (freeing the block that was parked there, if any); when the
//!   producer needs a new block it takes the spare if it has the wanted size (freeing it
//!   otherwise) and allocates only if it has no spare of that size. A busy ring whose block size
//!   is stable therefore reaches a steady state with two blocks circulating and no allocation.
//! * **Memory bound.** The allocated blocks are those that hold values, plus at most the head block
//!   (partly read), the tail block (partly written) and the spare: at most `len + 3 * max` slots
//!   (plus a 16-byte header per block) for the largest block size `max` the ring has reached,
//!   which is 512 slots (or fewer) unless values came at tens of millions a second; after a drain
//!   exactly one block plus the spare. [`Producer::memory_bytes`] and [`Consumer::memory_bytes`]
//!   report the current figure.
//!
//! # Ground rules
//!
//! This module is one of the two in the project allowed `unsafe` code. The only unsafe things it
//! does are: allocating and freeing blocks (through [`crate::sync::alloc`]) and addressing their
//! slots by pointer arithmetic, dereferencing block pointers that the other thread also holds,
//! reading and writing slots (`UnsafeCell<MaybeUninit<T>>`) without a lock, and declaring
//! [`Producer`] and [`Consumer`] `Send`. Who may touch which memory:
//!
//! * Two free-running counters count the values pushed (`tail`) and popped (`head`); they are
//!   compared with wrapping subtraction, and `tail - head` (the number of values queued) is never
//!   more than `capacity`. Value number `i` lives in slot `i - start` of the block whose first slot
//!   holds value number `start`. Slots of indices in `[head, tail)` hold initialised values and
//!   belong to the **consumer**; every other slot is uninitialised and belongs to the **producer**
//!   while its block is the tail block or a newer one.
//! * Only the producer ([`Producer`], of which there is exactly one, and which is not `Sync`) writes
//!   `tail`, allocates blocks, writes a block's header and stores a link (`first` for the first
//!   block, the tail block's `next` for the others). Only the consumer writes `head`. Each side keeps
//!   its own counter and its block position in plain fields and only *stores* the atomic counter.
//! * The producer writes a slot, then publishes it by a `Release` store of `tail`; the consumer
//!   `Acquire`-loads `tail` before reading any slot in `[head, tail)`. Symmetrically the consumer
//!   moves a value out of a slot, then hands the slot back by a `Release` store of `head`; the
//!   producer `Acquire`-loads `head` before relying on room it got back. Every slot access is
//!   therefore ordered after the other side's last access to the same slot.
//! * The producer links a block (initialised header and slots) with a `Release` store and only
//!   afterwards writes into it and publishes its values; the consumer follows a link (`Acquire`)
//!   only when `tail` says a value lies beyond its head block, so the link is always there and the
//!   block fully initialised. Once the producer has linked a successor it never touches the old tail
//!   block again (it keeps only the new one).
//! * The consumer **retires** a block only after it has read all of the block's values and moved to
//!   its successor, i.e. after the producer's last access to it. A retired block belongs to the
//!   consumer, which frees it or parks it in `spare` with a `Release` swap. Only the consumer stores
//!   a block into `spare` and only the producer takes one out (an `Acquire` swap with null), so the
//!   swaps hand over ownership: whoever gets a non-null pointer out of a swap owns that block
//!   outright, and the producer may re-initialise its header, reuse its slots, or free it.
//! * The byte count behind `memory_bytes` is a statistic, updated with `Relaxed` read-modify-writes
//!   by whichever side allocates or frees; nothing is decided from it.
//! * When the consumer is dropped it records its position (head block and its first index) in
//!   `consumer_at`, which nobody else writes. Values still queued when both halves are gone, and
//!   every block (the list from the consumer's position on, and the spare), are dropped and freed by
//!   the last half's drop (through `Drop for Shared`), which is ordered after everything the other
//!   half did by the `Arc`'s reference count (`Release` decrement, `Acquire` on the last one).
//!
//! # Protocol
//!
//! The capacity bound is Lamport's single-producer single-consumer queue ("Proving the correctness
//! of multiprocess programs", 1977) with the two refinements every fast implementation has:
//!
//! * **Cached counters.** The producer remembers the last `head` it loaded (`cached_head`) and
//!   computes free room from it; only when that says "full" does it load the real `head`. The
//!   consumer does the same with `tail`. Because each counter only moves forward, a cached value is
//!   always a safe under-estimate, so most operations touch no cache line written by the other core.
//! * **Separate cache lines.** `head` and `tail` are each in their own
//!   [`crossbeam_utils::CachePadded`] (128 bytes on x86-64 and aarch64, covering the
//!   adjacent-line prefetcher), so the producer's stores of `tail` do not invalidate the line the
//!   consumer stores `head` into. The spare slot and the byte count share a third padded line,
//!   written only when a side changes blocks; the capacity, the `first` link and the two "abandoned"
//!   flags live on a fourth line that is read-only in steady state.
//!
//! The block list is the unbounded linked-block SPSC queue (see the prior art) with the bound laid
//! over it: each side finds its slot from its own block position (`pos = index - start`, and a move
//! to the next block when `pos == len`), so the hot path is one compare more than a flat ring's and
//! a block change is out of line: for the producer one `Acquire` load of `head` (to size the
//! block; none if the push already loaded it), one clock read, one spare swap and one link store;
//! for the consumer one link load and one spare swap.
//!
//! Batches ([`Producer::push_batch`], [`Consumer::pop_batch`]) move many values with one `Acquire`
//! load (only if the cached counter says there is not enough room or data) and one `Release`
//! store, crossing as many blocks as they need, so the cost of the cross-core traffic is paid once
//! per batch, not once per record.
//!
//! # Memory orderings, and why they suffice
//!
//! | operation | ordering | pairs with | guarantees |
//! |---|---|---|---|
//! | producer stores `tail` after writing slots | `Release` | consumer's `Acquire` load of `tail` | the consumer sees the values written into `[old tail, new tail)`, and every block linked before them |
//! | consumer stores `head` after reading slots | `Release` | producer's `Acquire` load of `head` | the producer's next write to a slot happens after the consumer's read of it (no write-after-read race) |
//! | producer links a block (`first`, or the tail block's `next`) after initialising it | `Release` | consumer's `Acquire` load of the link | the consumer sees the block's header and initialised slot cells. The `tail` pair already implies this (the consumer follows a link only after seeing a `tail` beyond its block); the pair makes the link correct on its own, for one `ldar` per block on aarch64 and nothing on x86-64 |
//! | consumer parks a retired block in `spare` (swap) | `Release` | producer's `Acquire` swap that takes it | the consumer's reads of the block's slots and of its `next` happen before the producer resets `next` and writes into the slots, or frees the block |
//! | consumer's swap returns the previously parked block | (same swap) | — | only the consumer ever stores a non-null spare, so that block was parked by this same thread: program order suffices and it may be freed without `Acquire` |
//! | producer takes the spare (swap with null) | `Acquire` | consumer's `Release` swap | as above; storing null publishes nothing, so no `Release` |
//! | producer resets a recycled block's header (`next` to null) | plain write | — | the producer owns the block outright since its `Acquire` swap, which is ordered after the consumer's last access (its `Release` swap); the `Release` link publishes the new header |
//! | allocated-bytes count | `Relaxed` | — | a statistic for [`Producer::memory_bytes`]; no decision depends on it (so under loom it is a plain `std` atomic, [`crate::sync::stats`]) |
//! | half dropped: stores its "gone" flag | `Release` | other side's `Acquire` load of the flag | after seeing the producer gone, one more load of `tail` returns its final value, so [`PopError::Abandoned`] is only reported for an empty ring |
//! | producer checks "consumer gone" before a push | `Relaxed` | — | advisory: a push that races with the consumer's drop succeeds, and the value is dropped with the ring |
//! | consumer records its position in `consumer_at` as it is dropped | plain write | the `Arc` decrements | `Drop for Shared` reads the consumer's final position |
//! | last `Arc` dropped | `Release`/`Acquire` (inside `Arc`) | the other half's `Arc` drop | `Drop for Shared` sees the final `head`, `tail`, links and spare, and every slot write |
//!
//! No `SeqCst` is needed: there is no store-load pattern across two different locations that must be
//! ordered (each decision reads one counter that only moves in one direction, or takes ownership
//! through one swap). On x86-64 every `Acquire` load and `Release` store is a plain `mov`, and the
//! two swaps per block change are `xchg`.
//!
//! The protocol is model-checked with loom (`engine/tests/loom_ring.rs`, run by `scripts/loom.sh`):
//! capacities 1 to 3 with blocks of 1 and 2 slots, two threads, up to 6 items, single and batched
//! operations, block links, recycling of the spare, frees of a wrong-size spare, and dropping a ring
//! with values left in it; loom checks FIFO order, no loss, no duplicate, no double drop, that no
//! slot access races with another or with the block's free, and (through `loom::alloc`) that no
//! block leaks and none is freed twice (docs/reliability.md, test 17). The unit tests and
//! `engine/tests/ring_stress.rs` also run under Miri.
//!
//! # Prior art
//!
//! * The linked-block design is the unbounded SPSC queue family: Vyukov's node-based
//!   "unbounded single-producer/single-consumer queue" (1024cores), with a node cache so that a busy
//!   queue stops allocating, which Rust's `std::sync::mpsc` used as its `spsc_queue` until 1.67
//!   (one value per node, a bounded cache of consumed nodes handed back to the producer); FastFlow's
//!   uSPSC (Aldinucci et al., Euro-Par 2012), an unbounded queue made of a list of bounded SPSC
//!   buffers recycled through a pool; and crossbeam-channel's `list` flavor (the unbounded MPMC
//!   channel), whose blocks of 31 slots are linked by a `next: AtomicPtr` stored with `Release` and
//!   freed by the receivers. We keep blocks of many slots (one link per block, not per value), a
//!   single spare instead of a node cache, and geometric block sizes so that small rings stay small.
//! * [rtrb](https://docs.rs/rtrb) — the split `Producer`/`Consumer` design, cached indices,
//!   `is_abandoned`. Its ring is a fixed array allocated up front, which is what this module no
//!   longer does; we hand-write the queue so it runs through [`crate::sync`] under loom.
//! * glommio's `channels/spsc_queue.rs` — a raw-pointer ring with `#[repr(align(128))]` indices
//!   and a producer/consumer "disconnected" flag, used between executors.
//! * crossbeam's `ArrayQueue` (Vyukov's bounded MPMC queue) — per-slot stamps and CAS on both ends;
//!   the right tool for many producers, slower for one-to-one traffic.
//! * Errors hand the value back, as crossbeam-channel's `TrySendError::{Full(T), Disconnected(T)}`
//!   do.

use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::ptr;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::sync::Arc;
use crate::sync::UnsafeCell;
use crate::sync::alloc::{Layout, alloc, dealloc};
use crate::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use crate::sync::stats;

/// The largest capacity [`ring`] accepts. The counters are free-running and compared by wrapping
/// subtraction, so any capacity below `usize::MAX` would work; the limit keeps the value it had
/// when the ring was a fixed array (a quarter of the address space). No memory is reserved for the
/// capacity: every capacity up to this one costs the same until values are queued.
pub const MAX_CAPACITY: usize = usize::MAX / 4;

/// Slots in a ring's first block (fewer if the capacity is smaller).
#[cfg(not(loom))]
const FIRST_BLOCK_LEN: usize = 8;
/// The most slots a block sized for the queue's length has (fewer if the capacity, or
/// [`MAX_BLOCK_BYTES`], says so): a backlog costs at most the values plus a few such blocks.
#[cfg(not(loom))]
const QUEUE_BLOCK_LEN: usize = 512;
/// A new block has room for this many times the values queued when it is linked.
#[cfg(not(loom))]
const HEADROOM: usize = 2;
// Under loom, blocks of 1 or 2 slots, sized for exactly the values queued: a model of a handful of
// values then crosses several block links, and whether the spare has the wanted size depends on
// the interleaving, so loom explores both recycling the spare and freeing it.
#[cfg(loom)]
const FIRST_BLOCK_LEN: usize = 1;
#[cfg(loom)]
const QUEUE_BLOCK_LEN: usize = 2;
#[cfg(loom)]
const HEADROOM: usize = 1;
/// The most bytes of slots a block has: the limit for a block sized for a fast stream (which may
/// also have as many slots as the capacity, no more), and for large values a limit on the blocks
/// sized for the queue too. Never fewer than [`FIRST_BLOCK_LEN`] slots, though, so that the spare
/// still absorbs the churn of a busy ring.
const MAX_BLOCK_BYTES: usize = 64 * 1024;
/// The block size shrinks only after this many block links in a row wanted a quarter of it or
/// less, so that a busy ring whose queue or rate dips now and then keeps its size (and its spare)
/// instead of reallocating.
const SHRINK_AFTER: usize = 4;
/// A block should last at least this long: one that filled faster makes the next one as big as
/// the values that arrive in this time at that rate. Changing blocks costs both sides a few cache
/// misses, so this keeps a busy ring at no more than about 20,000 block changes a second (until
/// its blocks reach [`MAX_BLOCK_BYTES`] or the capacity) even when its consumer keeps the queue
/// empty, where the queue's length alone would keep the blocks small.
const BLOCK_LIFETIME_NANOS: u128 = 50_000;

/// The most slots a block of a ring of `capacity` values of `T` has: `(for the queue, for the
/// rate)`. Never more than the capacity (a queue of `capacity` values never needs a bigger block),
/// and within the limits above.
fn block_len_limits<T>(capacity: usize) -> (usize, usize) {
    let by_bytes = (MAX_BLOCK_BYTES / size_of::<Slot<T>>().max(1)).max(FIRST_BLOCK_LEN);
    let max_len = by_bytes.min(capacity);
    (QUEUE_BLOCK_LEN.min(max_len), max_len)
}

/// Creates a bounded SPSC ring that holds up to `capacity` values and returns its two halves.
///
/// The capacity is exact (it is not rounded up to a power of two). A `capacity` of 0 is treated as
/// 1: a ring that can hold nothing could never move a value, and a ring of capacity 1 is the
/// smallest one that works (it degenerates into a hand-off slot). No slot is allocated here: the
/// values live in blocks that the producer allocates as the queue grows (or recycles: see the
/// [module documentation](self)), so the capacity costs nothing until it is used.
///
/// # Panics
///
/// If `capacity` exceeds [`MAX_CAPACITY`], or if a block of `T`s would not fit the address space
/// (only for absurdly large `T`). A failed block allocation later, in a push, is reported like a
/// failed `Vec` allocation ([`std::alloc::handle_alloc_error`]: an abort by default).
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
///
/// A large capacity reserves nothing; memory follows what is queued:
///
/// ```
/// use pinwheel_engine::exchange::ring;
///
/// let (mut tx, rx) = ring::<u64>(1 << 30);
/// assert_eq!(tx.memory_bytes(), 0);
/// for i in 0..3 {
///     tx.push(i).unwrap();
/// }
/// assert!(rx.memory_bytes() < 1024, "one small block");
/// ```
pub fn ring<T>(capacity: usize) -> (Producer<T>, Consumer<T>) {
    assert!(
        capacity <= MAX_CAPACITY,
        "ring capacity {capacity} exceeds the maximum of {MAX_CAPACITY}"
    );
    let capacity = capacity.max(1);
    let (queue_len, max_len) = block_len_limits::<T>(capacity);
    // Every block has at most `max_len` slots: if that layout exists, so do all the smaller ones,
    // and the block allocations in `push` cannot fail on arithmetic.
    assert!(
        Block::<T>::layout(max_len).is_some(),
        "a ring block of {max_len} values of {} bytes exceeds the address space",
        size_of::<T>()
    );
    let shared = Arc::new(Shared {
        head: CachePadded::new(AtomicUsize::new(0)),
        tail: CachePadded::new(AtomicUsize::new(0)),
        pool: CachePadded::new(Pool {
            spare: AtomicPtr::new(ptr::null_mut()),
            bytes: stats::AtomicUsize::new(0),
        }),
        first: AtomicPtr::new(ptr::null_mut()),
        producer_gone: AtomicBool::new(false),
        consumer_gone: AtomicBool::new(false),
        consumer_at: UnsafeCell::new(Cursor::START),
        _values: PhantomData,
    });
    let min_len = FIRST_BLOCK_LEN.min(queue_len);
    let producer = Producer {
        shared: Arc::clone(&shared),
        tail: 0,
        cached_head: 0,
        capacity,
        at: Cursor::START,
        sizing: Sizing { len: min_len, quiet: 0, min_len, queue_len, max_len, linked_at: None },
    };
    let consumer = Consumer { shared, head: 0, cached_tail: 0, capacity, at: Cursor::START };
    (producer, consumer)
}

/// One slot of a block.
type Slot<T> = UnsafeCell<MaybeUninit<T>>;

/// The header of a block. The block is one allocation of [`Block::layout`]`(len)`: this header,
/// then `len` slots from byte [`Block::SLOTS_OFFSET`] on. Blocks are only handled through raw
/// pointers (never `&mut Block` or `Box`), since the other thread may be using the slots.
struct Block<T> {
    /// The next block in FIFO order; null until the producer links one (`Release`), and null
    /// again when the producer recycles the block ([`Block::reset`]).
    next: AtomicPtr<Block<T>>,
    /// The number of slots. Written when the block is allocated (and rewritten, unchanged, when it
    /// is recycled), before it is linked.
    len: usize,
}

impl<T> Block<T> {
    /// Where the slots start: after the header, rounded up to the slots' alignment (exactly what
    /// `Layout::extend` computes, which [`layout`](Self::layout) checks).
    const SLOTS_OFFSET: usize = size_of::<Block<T>>().next_multiple_of(align_of::<Slot<T>>());

    /// The layout of a block of `len` slots, or `None` if it does not fit the address space.
    fn layout(len: usize) -> Option<Layout> {
        let slots = Layout::array::<Slot<T>>(len).ok()?;
        let (layout, offset) = Layout::new::<Block<T>>().extend(slots).ok()?;
        debug_assert_eq!(offset, Self::SLOTS_OFFSET);
        Some(layout.pad_to_align())
    }

    /// Allocates a block of `len` slots with a null `next` and uninitialised slots, and returns it
    /// with its size in bytes. Reports an allocation failure as `Vec` does.
    ///
    /// # Panics
    ///
    /// If the layout of `len` slots does not exist; [`ring`] checks that it does for every block
    /// the ring may allocate.
    fn alloc(len: usize) -> (*mut Block<T>, usize) {
        let layout = Self::layout(len).expect("block layout checked by ring()");
        // SAFETY: the layout's size is not zero (the header holds a pointer).
        let raw = unsafe { alloc(layout) };
        if raw.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        let block = raw.cast::<Block<T>>();
        // SAFETY: `raw` is a fresh allocation of `layout`, which starts with a `Block<T>` at offset
        // 0, suitably aligned (the layout's alignment is at least the header's).
        unsafe { block.write(Block { next: AtomicPtr::new(ptr::null_mut()), len }) };
        for pos in 0..len {
            // SAFETY: `pos < len`, so the slot lies within the allocation (`layout` has room for
            // `len` slots from `SLOTS_OFFSET`, aligned for them); nobody else has the pointer yet.
            unsafe { Self::slot_ptr(block, pos).write(UnsafeCell::new(MaybeUninit::uninit())) };
        }
        (block, layout.size())
    }

    /// Makes a retired block new again for reuse: its `next` is null (its slots are already
    /// uninitialised). The header is written afresh, as by [`alloc`](Self::alloc), rather than by
    /// an atomic store: the caller owns the block outright.
    ///
    /// # Safety
    ///
    /// `block` is live and owned by the caller exclusively (every access by the other side happens
    /// before this call), and not linked from any block.
    unsafe fn reset(block: *mut Block<T>) {
        // SAFETY: `block` is live and ours alone (caller's contract): reading `len`, dropping the
        // old header in place (an atomic pointer and an integer: nothing to release) and writing a
        // new one race with nothing.
        unsafe {
            let len = (*block).len;
            ptr::drop_in_place(block);
            block.write(Block { next: AtomicPtr::new(ptr::null_mut()), len });
        }
    }

    /// Frees `block` and returns its size in bytes. Its values must have been moved out or dropped
    /// already: the slots are only released, never dropped as `T`.
    ///
    /// # Safety
    ///
    /// * `block` came from [`Block::alloc`] and has not been freed;
    /// * the caller owns it exclusively: every access by the other side happens before this call,
    ///   and no pointer to it will be used afterwards (it is not linked from a live block, not
    ///   parked as the spare, and neither side's position);
    /// * all its slots are uninitialised.
    unsafe fn free(block: *mut Block<T>) -> usize {
        // SAFETY: `block` is live (caller's contract); `len` never changes after allocation.
        let len = unsafe { (*block).len };
        let layout = Self::layout(len).expect("the layout it was allocated with");
        // Under loom, touch every slot as a write, so that the model checker reports a free that is
        // not ordered after the other side's last access to a slot (a use after free).
        #[cfg(loom)]
        for pos in 0..len {
            // SAFETY: `pos < len`; we own the block (caller's contract), the closure does nothing.
            unsafe { Self::slot(block, pos) }.with_mut(|_| ());
        }
        // SAFETY: the header and the `len` slot cells were initialised by `alloc` and are owned by
        // the caller; the slots' contents are uninitialised `MaybeUninit`s (dropping a cell does
        // not drop a `T`). Then the memory goes back with the layout it was allocated with.
        unsafe {
            ptr::drop_in_place(ptr::slice_from_raw_parts_mut(Self::slot_ptr(block, 0), len));
            ptr::drop_in_place(block);
            dealloc(block.cast::<u8>(), layout);
        }
        layout.size()
    }

    /// A raw pointer to slot `pos` of `block` (`pos == len` gives the one-past-the-end pointer).
    ///
    /// # Safety
    ///
    /// `block` came from [`Block::alloc`] and is not freed, and `pos <= len`.
    #[inline(always)]
    unsafe fn slot_ptr(block: *mut Block<T>, pos: usize) -> *mut Slot<T> {
        // SAFETY: the allocation holds `len` slots from `SLOTS_OFFSET` (see `layout`), so both
        // offsets stay within it (or one past its slots) for `pos <= len`; the pointer keeps the
        // provenance of the whole allocation (it is derived from `block`, never from a reference to
        // the header).
        unsafe { block.cast::<u8>().add(Self::SLOTS_OFFSET).cast::<Slot<T>>().add(pos) }
    }

    /// Slot `pos` of `block`, without a bounds check.
    ///
    /// # Safety
    ///
    /// `block` came from [`Block::alloc`] and stays unfreed for `'a`, and `pos < len`.
    #[inline(always)]
    unsafe fn slot<'a>(block: *mut Block<T>, pos: usize) -> &'a Slot<T> {
        // SAFETY: `block` is live (caller's contract).
        debug_assert!(pos < unsafe { (*block).len }, "slot {pos} out of {}", unsafe {
            (*block).len
        });
        // SAFETY: `pos < len`, so the pointer is to an initialised slot cell inside the live
        // allocation; a shared reference to an `UnsafeCell` asserts nothing about its contents, so
        // it may coexist with the other side's access to other slots.
        unsafe { &*Self::slot_ptr(block, pos) }
    }

    /// Moves `value` into slot `pos` of `block`.
    ///
    /// # Safety
    ///
    /// * `block` is live and `pos < len`;
    /// * the slot is uninitialised and owned by the producer: its index is in `[tail, head +
    ///   capacity)` for a `head` the caller has `Acquire`-loaded (or that is the initial 0), its
    ///   block is the producer's tail block, and the caller is the one producer;
    /// * the caller publishes the slot only afterwards, with a `Release` store of `tail`.
    #[inline(always)]
    unsafe fn write(block: *mut Block<T>, pos: usize, value: T) {
        // SAFETY: `block` is live and `pos < len` by the caller's contract.
        let slot = unsafe { Self::slot(block, pos) };
        // SAFETY: the producer owns this slot (caller's contract): the consumer's last read of it
        // happens before this write (its `Release` store of `head` or its `Release` swap of the
        // spare, and our `Acquire` load or swap), and the consumer will not read it before our
        // `Release` store of `tail`. Writing a `MaybeUninit<T>` never drops the previous
        // (uninitialised) contents.
        slot.with_mut(|p| unsafe { p.write(MaybeUninit::new(value)) });
    }

    /// Moves the value out of slot `pos` of `block`, leaving it uninitialised.
    ///
    /// # Safety
    ///
    /// * `block` is live and `pos < len`;
    /// * the slot is initialised and owned by the consumer: its index is in `[head, tail)` for a
    ///   `tail` the caller has `Acquire`-loaded, and the caller is the one consumer;
    /// * the caller hands the slot back only afterwards, with a `Release` store of `head` (and
    ///   never reads it again before that), so the value is moved out exactly once.
    #[inline(always)]
    unsafe fn read(block: *mut Block<T>, pos: usize) -> T {
        // SAFETY: `block` is live and `pos < len` by the caller's contract.
        let slot = unsafe { Self::slot(block, pos) };
        // SAFETY: the consumer owns this initialised slot (caller's contract): the producer's write
        // happens before this read (its `Release` store of `tail`, our `Acquire` load), and the
        // producer will not write it again before our `Release` store of `head`.
        slot.with(|p| unsafe { p.cast::<T>().read() })
    }

    /// A shared reference to the value in slot `pos` of `block`.
    ///
    /// # Safety
    ///
    /// As for [`read`](Self::read), and additionally the returned reference must not outlive the
    /// consumer's ownership of the slot nor the block: the consumer must not store a `head` past
    /// this index, nor retire the block, while the reference lives (tying it to a `&Consumer`
    /// borrow guarantees both, since each needs `&mut Consumer`).
    #[inline(always)]
    unsafe fn get<'a>(block: *mut Block<T>, pos: usize) -> &'a T {
        // SAFETY: `block` is live for `'a` and `pos < len` by the caller's contract.
        let slot = unsafe { Self::slot(block, pos) };
        // SAFETY: the slot is initialised and owned by the consumer (caller's contract); the
        // producer does not write it while the returned borrow lives. Under loom the access is
        // tracked only for the duration of the closure; the borrow rule above covers the rest.
        slot.with(|p| unsafe { &*p.cast::<T>() })
    }
}

/// A side's position in the list of blocks: the block that holds (or will hold) its next index.
struct Cursor<T> {
    /// That block; null before the first block (the position of both sides in a new ring).
    block: *mut Block<T>,
    /// The index (value number) that slot 0 of `block` holds.
    start: usize,
    /// `block`'s number of slots, copied here; 0 while `block` is null.
    len: usize,
}

// Manual impls: a derive would require `T: Copy`.
impl<T> Clone for Cursor<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Cursor<T> {}

impl<T> Cursor<T> {
    /// Before the first block: its first index, 0, is "one past the end" of a block of 0 slots, so
    /// the first access moves to the block linked from `first`.
    const START: Cursor<T> = Cursor { block: ptr::null_mut(), start: 0, len: 0 };

    /// The position of `index` in `block`, in `[0, len]` (`len`: the index is in the next block).
    #[inline(always)]
    fn pos(&self, index: usize) -> usize {
        let pos = index.wrapping_sub(self.start);
        debug_assert!(pos <= self.len, "index {index} is not in the block at {}", self.start);
        pos
    }

    /// Moves to `next`, the block linked after `block`.
    ///
    /// # Safety
    ///
    /// `next` is a live block, linked after `block` (its first index is `start + len`).
    #[inline(always)]
    unsafe fn enter(&mut self, next: *mut Block<T>) {
        debug_assert!(!next.is_null(), "entering a block that is not linked");
        self.start = self.start.wrapping_add(self.len);
        self.block = next;
        // SAFETY: `next` is live (caller's contract); `len` is written before the block is linked
        // and never changes.
        self.len = unsafe { (*next).len };
    }
}

/// The state both halves share.
struct Shared<T> {
    /// The number of values popped (free-running, wrapping). Stored only by the consumer
    /// (`Release`, after moving values out); loaded by the producer (`Acquire`) when its cached copy
    /// says the ring is full, and when it links a block (to size it).
    head: CachePadded<AtomicUsize>,
    /// The number of values pushed (free-running, wrapping). Stored only by the producer
    /// (`Release`, after writing values); loaded by the consumer (`Acquire`) when its cached copy
    /// says the ring is empty.
    tail: CachePadded<AtomicUsize>,
    /// The spare block and the byte count, written only when a side changes blocks.
    pool: CachePadded<Pool<T>>,
    /// The first block ever linked; null until the first push. Stored once by the producer
    /// (`Release`), loaded by the consumer (`Acquire`) to find its first block, and by the drop.
    first: AtomicPtr<Block<T>>,
    /// Set (`Release`) when the producer is dropped.
    producer_gone: AtomicBool,
    /// Set (`Release`) when the consumer is dropped.
    consumer_gone: AtomicBool,
    /// The consumer's final position, written by its drop and read by ours (ordered by the `Arc`).
    consumer_at: UnsafeCell<Cursor<T>>,
    /// `Shared` owns the queued `T`s (and drops them): tells the drop checker so.
    _values: PhantomData<T>,
}

/// Block recycling: the one spare block and the allocation statistic.
struct Pool<T> {
    /// A retired block waiting to be reused, or null. Only the consumer stores a block here
    /// (`Release` swap); only the producer takes it out (`Acquire` swap with null).
    spare: AtomicPtr<Block<T>>,
    /// Bytes of blocks currently allocated, the spare included (`Relaxed`; a statistic, so not
    /// modelled under loom: see [`crate::sync::stats`]).
    bytes: stats::AtomicUsize,
}

impl<T> Shared<T> {
    /// Allocates a block of `len` slots and counts it.
    fn alloc_block(&self, len: usize) -> *mut Block<T> {
        let (block, bytes) = Block::alloc(len);
        self.pool.bytes.fetch_add(bytes, Ordering::Relaxed);
        block
    }

    /// Frees `block` and uncounts it.
    ///
    /// # Safety
    ///
    /// As for [`Block::free`].
    unsafe fn free_block(&self, block: *mut Block<T>) {
        // SAFETY: the caller's contract is `Block::free`'s.
        let bytes = unsafe { Block::free(block) };
        self.pool.bytes.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// The block linked after `block` (after the start, for a null `block`); null if none is yet.
    ///
    /// # Safety
    ///
    /// `block` is null or a live block.
    #[inline]
    unsafe fn next_of(&self, block: *mut Block<T>) -> *mut Block<T> {
        if block.is_null() {
            self.first.load(Ordering::Acquire)
        } else {
            // SAFETY: `block` is live (caller's contract).
            unsafe { (*block).next.load(Ordering::Acquire) }
        }
    }
}

impl<T> Drop for Shared<T> {
    fn drop(&mut self) {
        // Both halves are gone. The last `Arc` decrement acquired everything the other half did,
        // so these loads see the final values (`Relaxed` would do; `Acquire` costs nothing here).
        let head = self.head.load(Ordering::Acquire);
        let tail = self.tail.load(Ordering::Acquire);
        // SAFETY: the consumer wrote its final position in its drop, which happens before this
        // (the `Arc`); nobody writes it any more.
        let mut at = self.consumer_at.with(|p| unsafe { *p });
        let mut index = head;
        while index != tail {
            let mut pos = at.pos(index);
            if pos == at.len {
                // SAFETY: `at.block` is null or live (blocks from the consumer's position on are
                // only freed here); index `start + len` is queued, so the next block is linked.
                let next = unsafe { self.next_of(at.block) };
                let done = at.block;
                // SAFETY: `next` is the live block linked after `done`.
                unsafe { at.enter(next) };
                if !done.is_null() {
                    // SAFETY: `done` is live and now unreachable (we moved past it and the list
                    // walk below starts at `at.block`); its values were all dropped by this loop or
                    // popped before.
                    unsafe { Block::free(done) };
                }
                pos = 0;
            }
            // SAFETY: `pos < at.len`, `at.block` is live; index `index` is in `[head, tail)`, so
            // the slot is initialised; nobody else can access it (both halves are gone and `&mut
            // self` is unique); each index is visited once, so each value is dropped exactly once.
            // If a `T::drop` panics, the remaining values and the blocks leak (never a double
            // drop or a double free).
            unsafe { Block::slot(at.block, pos) }
                .with_mut(|p| unsafe { p.cast::<T>().drop_in_place() });
            index = index.wrapping_add(1);
        }
        // Every value is gone. Free the list from the consumer's block on (the blocks before it
        // were retired: freed, or parked as the spare), then the spare.
        let mut block =
            if at.block.is_null() { self.first.load(Ordering::Acquire) } else { at.block };
        while !block.is_null() {
            // SAFETY: `block` is live; the list from the consumer's position ends with a null
            // `next` (the producer's last tail block), and no block in it is the spare.
            let next = unsafe { (*block).next.load(Ordering::Acquire) };
            // SAFETY: we own every block (both halves are gone); its slots are uninitialised (its
            // values were popped or dropped above); it is freed once, as we move past it.
            unsafe { Block::free(block) };
            block = next;
        }
        let spare = self.pool.spare.load(Ordering::Acquire);
        if !spare.is_null() {
            // SAFETY: the spare is a retired block (all slots uninitialised), not in the list.
            unsafe { Block::free(spare) };
        }
    }
}

/// `i + n` on the free-running counters.
#[inline(always)]
fn advance(i: usize, n: usize) -> usize {
    i.wrapping_add(n)
}

/// The number of values from `from` forward to `to` on the free-running counters: the number of
/// values in the ring when `from` is the head and `to` the tail.
#[inline(always)]
fn distance(capacity: usize, from: usize, to: usize) -> usize {
    let d = to.wrapping_sub(from);
    debug_assert!(d <= capacity, "head {from} and tail {to} are more than {capacity} apart");
    d
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
    /// The capacity, kept here to keep the arithmetic off the shared lines.
    capacity: usize,
    /// The tail block: where index `tail` goes (`tail == start + len`: in a block not linked yet).
    at: Cursor<T>,
    /// How big the next block is.
    sizing: Sizing,
}

/// The producer's choice of block sizes: the size follows the queue's length and the rate at which
/// values arrive, both measured each time a block is linked (see the module documentation).
#[derive(Debug, Clone, Copy)]
struct Sizing {
    /// The number of slots of the blocks linked now (and of the spare worth reusing).
    len: usize,
    /// Consecutive block links that wanted a quarter of `len` or less.
    quiet: usize,
    /// The fewest slots a block of this ring has.
    min_len: usize,
    /// The most slots a block sized for the queue's length has.
    queue_len: usize,
    /// The most slots a block of this ring has (sized for the rate).
    max_len: usize,
    /// When the last block was linked (`None` before the first, and always under loom).
    linked_at: Option<Instant>,
}

/// The time now, for block sizing. Under loom there is no clock (an execution must not depend on
/// anything but the schedule), so blocks are sized by the queue's length alone.
#[inline]
fn now() -> Option<Instant> {
    if cfg!(loom) {
        return None;
    }
    // Unit tests that check block sizes set the time themselves: tests never depend on timing.
    #[cfg(all(test, not(loom)))]
    if let Some(now) = tests::fake_now() {
        return Some(now);
    }
    Some(Instant::now())
}

impl Sizing {
    /// The block size wanted for `demand` values queued and a last block of `filled` slots that
    /// took `filled_in` to fill: the larger of the power of two at or above `HEADROOM * demand`
    /// (at most `queue_len`) and the power of two at or above the values that arrive in
    /// [`BLOCK_LIFETIME_NANOS`] at that rate (at most `max_len`), and at least `min_len`.
    fn target(&self, demand: usize, filled: usize, filled_in: Option<Duration>) -> usize {
        // Everything is clamped first so that the products cannot overflow.
        let for_queue =
            (HEADROOM * demand.min(self.queue_len)).next_power_of_two().min(self.queue_len);
        let for_rate = filled_in.map_or(0, |t| {
            let per_lifetime = filled as u128 * BLOCK_LIFETIME_NANOS / t.as_nanos().max(1);
            let per_lifetime = per_lifetime.min(self.max_len as u128) as usize;
            per_lifetime.next_power_of_two().min(self.max_len)
        });
        for_queue.max(for_rate).max(self.min_len)
    }

    /// Updates the size for a block link at which `demand` values will be queued once the push
    /// in progress is done, the tail block (of `filled` slots) having been linked at
    /// `linked_at` and filled by `now`; returns the size of the block to link. Grows at once (so a
    /// burst or a fast stream gets big blocks, and one batch seldom spans two); shrinks only when
    /// [`SHRINK_AFTER`] links in a row want a quarter of the size or less (so memory goes back when
    /// the ring calms down, without a busy ring changing block sizes, and reallocating, whenever
    /// its queue or its rate dips).
    fn next(&mut self, demand: usize, filled: usize, now: Option<Instant>) -> usize {
        let filled_in = match (self.linked_at, now) {
            (Some(then), Some(now)) if filled > 0 => Some(now.saturating_duration_since(then)),
            _ => None,
        };
        self.linked_at = now;
        let target = self.target(demand, filled, filled_in);
        if target > self.len {
            self.len = target;
            self.quiet = 0;
        } else if target.saturating_mul(4) <= self.len {
            self.quiet += 1;
            if self.quiet >= SHRINK_AFTER {
                self.len = target;
                self.quiet = 0;
            }
        } else {
            self.quiet = 0;
        }
        self.len
    }
}

// SAFETY: a `Producer` moves `T` values to the thread that owns the `Consumer` (or into the ring's
// drop), so `T: Send` is required and sufficient. Its block pointers are only used under the
// protocol in the module's ground rules, which assumes one producer thread: `Producer` is not
// `Sync` (it holds raw pointers, and the `UnsafeCell`s in `Shared` make `Arc<Shared<T>>` `!Sync`)
// and not `Clone`.
unsafe impl<T: Send> Send for Producer<T> {}

impl<T> Producer<T> {
    /// Free room according to the cached head (an under-estimate).
    #[inline(always)]
    fn cached_free(&self) -> usize {
        self.capacity - distance(self.capacity, self.cached_head, self.tail)
    }

    /// The position of index `tail` in the tail block, first linking a new tail block if the
    /// current one is full (or there is none yet). Call only when there is room for the `values`
    /// (at least 1) that the push in progress is about to write from `tail` on: a block is linked
    /// only when a value is about to be written into it. `*fresh` says whether this push has
    /// loaded `head` already; a link loads it (once per push) to size the block.
    #[inline(always)]
    fn tail_pos(&mut self, values: usize, fresh: &mut bool) -> usize {
        let pos = self.at.pos(self.tail);
        if pos == self.at.len {
            if !*fresh {
                // So the size follows the real queue (and the cached room gets better too).
                self.cached_head = self.shared.head.load(Ordering::Acquire);
                *fresh = true;
            }
            self.link_block(values);
            0
        } else {
            pos
        }
    }

    /// Links a new tail block after the full one, sized for the queue (by the `head` this push
    /// loaded) once the `values` still to be written by this push are in: the spare if it has
    /// that size, else a fresh allocation. Out of line: it runs once per block.
    #[cold]
    #[inline(never)]
    fn link_block(&mut self, values: usize) {
        let queued = distance(self.capacity, self.cached_head, self.tail);
        let want = self.sizing.next(queued.saturating_add(values), self.at.len, now());
        let spare = self.shared.pool.spare.swap(ptr::null_mut(), Ordering::Acquire);
        // SAFETY: a non-null spare is ours since the swap (ground rules), and live, so its `len`
        // may be read.
        let block = if !spare.is_null() && unsafe { (*spare).len } == want {
            // SAFETY: the spare is ours and live: the consumer's last access to it (its load of
            // `next`, and its reads of the slots) happened before its `Release` swap, which our
            // `Acquire` swap read, and it will not touch the block before we link it again.
            unsafe { Block::reset(spare) };
            spare
        } else {
            if !spare.is_null() {
                // A block of another size (from before the size last changed): give it back
                // rather than keep a block too small for the queue or too big for it.
                // SAFETY: the spare is ours (see above), retired (all slots uninitialised) and no
                // longer reachable: the consumer moved past it and it is out of the spare slot.
                unsafe { self.shared.free_block(spare) };
            }
            self.shared.alloc_block(want)
        };
        let link = if self.at.block.is_null() {
            &self.shared.first
        } else {
            // SAFETY: the tail block is live: the consumer retires a block only after we linked
            // its successor, and this is that link.
            unsafe { &(*self.at.block).next }
        };
        link.store(block, Ordering::Release);
        // SAFETY: `block` is live and now linked after the tail block.
        unsafe { self.at.enter(block) };
    }

    /// Pushes `value`, or hands it back: [`PushError::Full`] if the ring is full,
    /// [`PushError::Abandoned`] if the consumer was dropped.
    ///
    /// Wait-free but for a block allocation: one `Release` store, plus one `Acquire` load of the
    /// consumer's index only when the cached copy says the ring is full or the value starts a new
    /// block. A new block is the spare when that has the wanted size, else an allocation.
    #[inline]
    pub fn push(&mut self, value: T) -> Result<(), PushError<T>> {
        if self.shared.consumer_gone.load(Ordering::Relaxed) {
            return Err(PushError::Abandoned(value));
        }
        let mut fresh = false;
        if self.cached_free() == 0 {
            self.cached_head = self.shared.head.load(Ordering::Acquire);
            fresh = true;
            if self.cached_free() == 0 {
                return Err(PushError::Full(value));
            }
        }
        let pos = self.tail_pos(1, &mut fresh);
        // SAFETY: `pos < len` of the live tail block (`tail_pos`); index `tail` is free (fewer than
        // `capacity` values are in `[cached_head, tail)`, and `cached_head` was `Acquire`-loaded or
        // is the initial 0) and in our tail block; we are the only producer (`&mut self`,
        // `!Sync`), and publish it below with `Release`.
        unsafe { Block::write(self.at.block, pos, value) };
        self.tail = advance(self.tail, 1);
        self.shared.tail.store(self.tail, Ordering::Release);
        Ok(())
    }

    /// Moves as many values as fit from the front of `batch` into the ring, in order, and returns
    /// how many it moved (0 if the ring is full, `batch` is empty or the consumer was dropped;
    /// check [`is_abandoned`](Self::is_abandoned) to tell). The values that did not fit stay in
    /// `batch`, in order.
    ///
    /// One `Release` store for the whole batch, plus one `Acquire` load of the consumer's index
    /// only when the cached copy says there is not room for all of `batch` or the batch starts a
    /// new block. The batch may fill the tail block and continue in new ones (the spare, or
    /// allocations).
    pub fn push_batch(&mut self, batch: &mut VecDeque<T>) -> usize {
        if batch.is_empty() || self.shared.consumer_gone.load(Ordering::Relaxed) {
            return 0;
        }
        let mut fresh = false;
        if self.cached_free() < batch.len() {
            self.cached_head = self.shared.head.load(Ordering::Acquire);
            fresh = true;
        }
        let n = self.cached_free().min(batch.len());
        if n == 0 {
            return 0;
        }
        let mut values = batch.drain(..n);
        let mut left = n;
        while left > 0 {
            // The rest of the tail block (a new one if it is full), up to what is left.
            let pos = self.tail_pos(left, &mut fresh);
            let k = left.min(self.at.len - pos);
            for (i, value) in values.by_ref().take(k).enumerate() {
                // SAFETY: `pos + i < pos + k <= len` of the live tail block; the `n` indices from
                // the published tail are free (at most `cached_free` of them, `cached_head`
                // `Acquire`-loaded or initial) and these `k` are in our tail block; we are the only
                // producer and publish them below with one `Release` store. Nothing between the
                // writes panics (a failed block allocation aborts, as `handle_alloc_error` does by
                // default), so no written value is left unpublished and undropped.
                unsafe { Block::write(self.at.block, pos + i, value) };
            }
            self.tail = advance(self.tail, k);
            left -= k;
        }
        drop(values);
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

    /// Bytes of blocks the ring has allocated now, its spare block included (the same figure as
    /// [`Consumer::memory_bytes`]). Grows as values are queued and falls as they are popped; a
    /// ring that was never pushed to has allocated nothing.
    pub fn memory_bytes(&self) -> usize {
        self.shared.pool.bytes.load(Ordering::Relaxed)
    }

    /// True if the [`Consumer`] was dropped.
    pub fn is_abandoned(&self) -> bool {
        self.shared.consumer_gone.load(Ordering::Acquire)
    }
}

impl<T> Drop for Producer<T> {
    fn drop(&mut self) {
        // `Release`: our last `tail` store happens before the consumer sees this flag. Our blocks
        // are all linked (from `first`), so the consumer or the ring's drop finds them.
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
    /// The capacity, kept here to keep the arithmetic off the shared lines.
    capacity: usize,
    /// The head block: where index `head` is (`head == start + len`: in the next block).
    at: Cursor<T>,
}

// SAFETY: a `Consumer` receives `T` values written on the producer's thread and drops or returns
// them on its own, so `T: Send` is required and sufficient (`peek` hands out `&T` only to the
// owning thread, as `Consumer` is not `Sync`). Its block pointers are only used under the protocol
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

    /// The position of index `head` in the head block, first moving to the next block if the
    /// head block is used up. Call only when a value is available (`head != cached_tail`): then the
    /// next block is linked.
    #[inline(always)]
    fn head_pos(&mut self) -> usize {
        let pos = self.at.pos(self.head);
        if pos == self.at.len {
            self.next_block();
            0
        } else {
            pos
        }
    }

    /// Moves to the next block and retires the used-up one: parks it as the spare, freeing the
    /// spare it replaces. Out of line: it runs once per block.
    #[cold]
    #[inline(never)]
    fn next_block(&mut self) {
        // SAFETY: our head block is null or live (only we retire it).
        let next = unsafe { self.shared.next_of(self.at.block) };
        let done = self.at.block;
        // SAFETY: a value at index `start + len` is available (the caller's precondition: we
        // `Acquire`-loaded a `tail` past it), and the producer linked the block holding it before
        // publishing it, so `next` is that live block (the `Acquire` load of the link sees it).
        unsafe { self.at.enter(next) };
        if done.is_null() {
            return;
        }
        // We have read every value of `done` and moved past it, and the producer linked `next`
        // after its last access to `done`: retire it. `Release`: our reads of its slots and of its
        // `next` happen before the producer, taking it with `Acquire`, reuses it.
        let old = self.shared.pool.spare.swap(done, Ordering::Release);
        if !old.is_null() {
            // SAFETY: only we store non-null spares, so `old` is a block we retired earlier and
            // the producer did not take: ours, all slots uninitialised, unreachable now that it is
            // out of the spare slot.
            unsafe { self.shared.free_block(old) };
        }
    }

    /// Pops the oldest value: [`PopError::Empty`] if there is none yet, [`PopError::Abandoned`] if
    /// there is none and the producer was dropped (so none will come). Values pushed before the
    /// producer was dropped are all returned before `Abandoned` is.
    ///
    /// Wait-free but for freeing a block: one `Release` store, plus one `Acquire` load of the
    /// producer's index only when the cached copy says the ring is empty. When the value is the
    /// first of a block, the used-up block is parked as the spare (freeing the one parked before,
    /// if the producer did not take it).
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
        let pos = self.head_pos();
        // SAFETY: `pos < len` of the live head block (`head_pos`); index `head` is in `[head,
        // cached_tail)` with `cached_tail` `Acquire`-loaded, so the slot is initialised and ours;
        // we are the only consumer (`&mut self`, `!Sync`) and hand it back below with `Release`.
        let value = unsafe { Block::read(self.at.block, pos) };
        self.head = advance(self.head, 1);
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
        let mut left = n;
        while left > 0 {
            // The rest of the head block (the next one if it is used up), up to what is left.
            let pos = self.head_pos();
            let k = left.min(self.at.len - pos);
            for i in 0..k {
                // SAFETY: `pos + i < pos + k <= len` of the live head block; the `n` indices from
                // the published head are in `[head, cached_tail)` with `cached_tail`
                // `Acquire`-loaded, so initialised and ours; each is read once and handed back
                // below with one `Release` store. `out.push` cannot reallocate (reserved above),
                // so nothing between the reads can panic.
                out.push(unsafe { Block::read(self.at.block, pos + i) });
            }
            self.head = advance(self.head, k);
            left -= k;
        }
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
        let pos = self.at.pos(self.head);
        let (block, pos) = if pos == self.at.len {
            // The value is the first of the next block (we move there on the next pop).
            // SAFETY: our head block is null or live; the value is available, so the next block is
            // linked (as in `next_block`).
            (unsafe { self.shared.next_of(self.at.block) }, 0)
        } else {
            (self.at.block, pos)
        };
        debug_assert!(!block.is_null(), "a queued value is in a linked block");
        // SAFETY: `pos < len` of the live `block`; index `head` is in `[head, tail)` for an
        // `Acquire`-loaded tail, so the slot is initialised and ours; the borrow of `&self` keeps
        // `pop` (which needs `&mut self`) from handing the slot back or retiring the block while the
        // reference lives.
        Some(unsafe { Block::get(block, pos) })
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

    /// Bytes of blocks the ring has allocated now, its spare block included (the same figure as
    /// [`Producer::memory_bytes`]).
    pub fn memory_bytes(&self) -> usize {
        self.shared.pool.bytes.load(Ordering::Relaxed)
    }

    /// True if the [`Producer`] was dropped. Values it pushed before may still be in the ring.
    pub fn is_abandoned(&self) -> bool {
        self.shared.producer_gone.load(Ordering::Acquire)
    }
}

impl<T> Drop for Consumer<T> {
    fn drop(&mut self) {
        let at = self.at;
        // SAFETY: only this drop writes `consumer_at`, once; the ring's drop reads it after the
        // last `Arc` decrement, which orders it after this write. Writing a `Cursor` (no drop
        // glue) over the initial one needs no drop of the old contents.
        self.shared.consumer_at.with_mut(|p| unsafe { p.write(at) });
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
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;

    use super::*;

    thread_local! {
        /// The time block sizing sees on this thread, when a test sets it.
        static FAKE_NOW: Cell<Option<Instant>> = const { Cell::new(None) };
    }

    /// The time a test set on this thread, if any (read by `now`).
    pub(super) fn fake_now() -> Option<Instant> {
        FAKE_NOW.with(Cell::get)
    }

    /// Makes block sizing on this thread see `now` (frozen until set again).
    fn set_clock(now: Instant) {
        FAKE_NOW.with(|c| c.set(Some(now)));
    }

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
        const N: u64 = if cfg!(miri) { 2_000 } else { 200_000 };
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

    /// The bytes of one block of `len` slots of `T`.
    fn block_bytes<T>(len: usize) -> usize {
        Block::<T>::layout(len).unwrap().size()
    }

    /// An upper bound on the bytes of blocks holding `slots` slots of `u64` in all: the slots,
    /// plus room for the headers of up to 20 blocks (more than any ring in these tests has).
    fn at_most(slots: usize) -> usize {
        slots * size_of::<u64>() + 20 * block_bytes::<u64>(0)
    }

    /// Pushes `values` one by one, asserting that each fits.
    fn push_all(tx: &mut Producer<u64>, values: std::ops::Range<u64>) {
        for v in values {
            tx.push(v).unwrap();
        }
    }

    #[test]
    fn block_sizes_start_small_and_are_capped() {
        assert_eq!(FIRST_BLOCK_LEN, 8);
        // (For the queue, for the rate): 512 slots, and 64 KiB of slots.
        assert_eq!(block_len_limits::<u64>(MAX_CAPACITY), (512, 8192));
        assert_eq!(block_len_limits::<u64>(1 << 20), (512, 8192));
        // Never more than the capacity needs.
        assert_eq!(block_len_limits::<u64>(4096), (512, 4096));
        assert_eq!(block_len_limits::<u64>(100), (100, 100));
        assert_eq!(block_len_limits::<u64>(3), (3, 3));
        assert_eq!(block_len_limits::<u64>(1), (1, 1));
        // Large values: at most 64 KiB of slots for either, but at least 8 slots.
        assert_eq!(block_len_limits::<[u8; 1024]>(4096), (64, 64));
        assert_eq!(block_len_limits::<[u8; 1 << 20]>(4096), (8, 8));
        assert_eq!(block_len_limits::<()>(1 << 20), (512, 65536));
        // The slots follow the header, aligned for them.
        assert_eq!(Block::<u64>::SLOTS_OFFSET, 2 * size_of::<usize>());
        assert_eq!(Block::<Aligned>::SLOTS_OFFSET % 64, 0);
        assert_eq!(block_bytes::<u64>(8), 2 * size_of::<usize>() + 64);
    }

    #[test]
    fn a_new_ring_allocates_nothing_and_three_messages_cost_one_small_block() {
        let (mut tx, mut rx) = ring::<u64>(4096);
        assert_eq!(tx.memory_bytes(), 0);
        assert_eq!(rx.memory_bytes(), 0);
        assert_eq!(rx.pop(), Err(PopError::Empty));
        assert_eq!(rx.peek(), None);
        assert_eq!(tx.memory_bytes(), 0, "looking at an empty ring allocates nothing");
        push_all(&mut tx, 0..3);
        assert_eq!(tx.memory_bytes(), block_bytes::<u64>(8));
        assert_eq!(rx.memory_bytes(), tx.memory_bytes());
        for i in 0..3 {
            assert_eq!(rx.pop(), Ok(i));
        }
        assert_eq!(rx.memory_bytes(), block_bytes::<u64>(8));
        // A small capacity gets blocks of exactly its size.
        let (mut tx, _rx) = ring::<u64>(3);
        push_all(&mut tx, 0..3);
        assert_eq!(tx.memory_bytes(), block_bytes::<u64>(3));
    }

    #[test]
    fn huge_capacities_reserve_nothing() {
        let n: u64 = if cfg!(miri) { 1_500 } else { 100_000 };
        #[cfg(target_pointer_width = "64")]
        let capacities = [1usize << 40, MAX_CAPACITY];
        #[cfg(not(target_pointer_width = "64"))]
        let capacities = [MAX_CAPACITY];
        for cap in capacities {
            let (mut tx, mut rx) = ring::<u64>(cap);
            assert_eq!(tx.capacity(), cap);
            assert_eq!(rx.capacity(), cap);
            assert_eq!(tx.memory_bytes(), 0);
            assert_eq!(tx.free_slots(), cap);
            push_all(&mut tx, 0..n);
            assert_eq!(tx.free_slots(), cap - n as usize);
            assert_eq!(rx.len(), n as usize);
            // The values and at most three blocks' worth of slack, not the capacity.
            let bound = (n as usize + 3 * 8192) * (size_of::<u64>() + 1);
            assert!(tx.memory_bytes() <= bound, "{} bytes for {n} values", tx.memory_bytes());
            let mut out = Vec::new();
            assert_eq!(rx.pop_batch(&mut out, usize::MAX), n as usize);
            assert!(out.iter().copied().eq(0..n));
            assert!(rx.memory_bytes() <= 2 * block_bytes::<u64>(8192));
        }
    }

    /// A `Sizing` as a ring starts it, with these limits (as from `block_len_limits`).
    fn sizing(min_len: usize, queue_len: usize, max_len: usize) -> Sizing {
        Sizing { len: min_len, quiet: 0, min_len, queue_len, max_len, linked_at: None }
    }

    #[test]
    fn block_sizes_follow_the_queue() {
        // No clock (as under loom): the queue's length alone, and at most 512 slots however long
        // the queue.
        let mut s = sizing(8, 512, 8192);
        // A short queue keeps the smallest blocks, however many are linked.
        for _ in 0..100 {
            assert_eq!(s.next(1, 8, None), 8);
            assert_eq!(s.next(4, 8, None), 8);
        }
        // Twice the demand, rounded up to a power of two; growth is immediate.
        assert_eq!(s.next(5, 8, None), 16);
        assert_eq!(s.next(9, 16, None), 32);
        assert_eq!(s.next(100, 32, None), 256);
        assert_eq!(s.next(129, 256, None), 512);
        assert_eq!(s.next(1 << 40, 512, None), 512);
        assert_eq!(s.next(usize::MAX, 512, None), 512);
        // A demand between a quarter and all of the size keeps it, and resets the quiet count.
        assert_eq!(s.next(1, 512, None), 512);
        assert_eq!(s.next(1, 512, None), 512);
        assert_eq!(s.next(1, 512, None), 512);
        assert_eq!(s.next(65, 512, None), 512);
        // Shrinking takes `SHRINK_AFTER` short queues in a row, then goes straight to the target.
        for _ in 1..SHRINK_AFTER {
            assert_eq!(s.next(3, 512, None), 512);
        }
        assert_eq!(s.next(3, 512, None), 8);
        // A capacity below the first block size: one size only.
        let mut s = sizing(3, 3, 3);
        assert_eq!(s.next(1, 0, None), 3);
        assert_eq!(s.next(3, 3, None), 3);
        // A cap that is not a power of two.
        let mut s = sizing(8, 100, 100);
        assert_eq!(s.next(60, 8, None), 100);
    }

    #[test]
    fn block_sizes_follow_the_rate() {
        let us = Duration::from_micros;
        let t0 = Instant::now();
        let mut s = sizing(8, 512, 8192);
        // The first link has no rate to go by.
        assert_eq!(s.next(1, 0, Some(t0)), 8);
        // 8 values in 1 µs: 400 arrive in a block lifetime of 50 µs.
        assert_eq!(s.next(1, 8, Some(t0 + us(1))), 512);
        // 512 values in 5 µs: 5120 per lifetime; the rate may go beyond the queue's limit.
        assert_eq!(s.next(1, 512, Some(t0 + us(6))), 8192);
        // ... as far as `max_len`, however fast.
        assert_eq!(s.next(1, 8192, Some(t0 + us(7))), 8192);
        // Then 8192 values in 150 µs (2730 per lifetime, over a quarter), four times: stays.
        let mut t = t0 + us(7);
        for _ in 0..SHRINK_AFTER {
            t += us(150);
            assert_eq!(s.next(1, 8192, Some(t)), 8192);
        }
        // 8192 values in 3.2 ms (128 per lifetime), four times: shrinks to 128.
        for _ in 1..SHRINK_AFTER {
            t += us(3_200);
            assert_eq!(s.next(1, 8192, Some(t)), 8192);
        }
        t += us(3_200);
        assert_eq!(s.next(1, 8192, Some(t)), 128);
        let mut s = sizing(8, 512, 512);
        assert_eq!(s.next(1, 0, Some(t0)), 8);
        assert_eq!(s.next(1, 8, Some(t0 + us(1))), 512);
        // 512 values in 200 µs: 128 per lifetime, a quarter of the size, with a short queue: quiet.
        // Four such links in a row shrink the blocks to what the rate wants.
        for k in 1..SHRINK_AFTER as u64 {
            assert_eq!(s.next(1, 512, Some(t0 + us(1 + 200 * k))), 512);
        }
        assert_eq!(s.next(1, 512, Some(t0 + us(1 + 200 * SHRINK_AFTER as u64))), 128);
        // A steady 1 value per µs wants 64 slots: more than a quarter of 128, so 128 stays...
        let mut t = t0 + us(1_000);
        for _ in 0..10 {
            t += us(s.len as u64);
            assert_eq!(s.next(1, s.len, Some(t)), 128);
        }
        // ... and a ring that starts at that rate settles at 64-slot blocks (each lasts 64 µs).
        let mut s = sizing(8, 512, 512);
        s.next(1, 0, Some(t));
        for _ in 0..10 {
            t += us(s.len as u64);
            s.next(1, s.len, Some(t));
        }
        assert_eq!(s.len, 64);
        // One value per millisecond (a watermark stream): back to the smallest blocks.
        for _ in 0..SHRINK_AFTER {
            t += us(1_000 * s.len as u64);
            s.next(1, s.len, Some(t));
        }
        assert_eq!(s.len, 8);
        // A long queue wins over a slow rate; a fast rate over a short queue.
        t += us(1_000_000);
        assert_eq!(s.next(300, 8, Some(t)), 512);
        let mut s = sizing(8, 512, 8192);
        s.next(1, 0, Some(t));
        assert_eq!(s.next(1, 8, Some(t + us(4))), 128);
        // A clock that did not move counts as very fast, not as a division by zero.
        let mut s = sizing(8, 512, 8192);
        s.next(1, 0, Some(t));
        assert_eq!(s.next(1, 8, Some(t)), 8192);
    }

    #[test]
    fn memory_grows_with_the_queue_and_shrinks_back_when_drained() {
        // A capacity well above the largest block, so that a long queue spans many blocks. The
        // clock stands still: every block fills "at once", so the rate asks for the largest blocks.
        set_clock(Instant::now());
        const CAP: usize = 100_000;
        // (Under Miri, just over two of the largest blocks.)
        let queued_max: usize = if cfg!(miri) { 17_000 } else { 60_000 };
        let (mut tx, mut rx) = ring::<u64>(CAP);
        let (_, max) = block_len_limits::<u64>(CAP);
        assert_eq!(max, 8192);
        // Growing: blocks are allocated as values go into them, never much more than the values
        // (after the first block they have the largest size).
        let mut previous = 0;
        for i in 0..queued_max {
            tx.push(i as u64).unwrap();
            let now = tx.memory_bytes();
            assert!(now >= previous, "memory fell while the queue grew");
            assert!(now >= (i + 1) * size_of::<u64>());
            // The values, plus the unused part of the tail block.
            assert!(now <= at_most(i + 1 + max), "{now} bytes for {} values", i + 1);
            previous = now;
        }
        let full = tx.memory_bytes();
        // Draining: blocks are retired as the consumer leaves them; one is kept as the spare.
        for i in 0..queued_max as u64 {
            assert_eq!(rx.pop(), Ok(i));
            let now = rx.memory_bytes();
            assert!(now <= previous);
            let queued = queued_max - 1 - i as usize;
            assert!(now <= at_most(queued + 3 * max), "{now} bytes for {queued} values");
            previous = now;
        }
        // Drained: the head block and the spare.
        let drained = rx.memory_bytes();
        assert!(drained <= 2 * block_bytes::<u64>(max), "{drained} bytes after the drain");
        // Everything else was given back: at least the values' bytes beyond two blocks.
        let freed = full - drained;
        assert!(
            freed >= (queued_max - 2 * max) * size_of::<u64>(),
            "{freed} of {full} bytes freed"
        );
        // A busy ring in batches of 100 (queue under a block) settles on its block size and then
        // recycles the spare: no allocation, no free.
        let mut out = Vec::with_capacity(100);
        let mut src = VecDeque::with_capacity(100);
        let (mut settled, mut same_for) = (0, 0);
        let rounds: u64 = if cfg!(miri) { 150 } else { 2_000 };
        for round in 0..rounds {
            src.extend(round * 100..round * 100 + 100);
            assert_eq!(tx.push_batch(&mut src), 100);
            out.clear();
            assert_eq!(rx.pop_batch(&mut out, 100), 100);
            assert!(out.iter().copied().eq(round * 100..round * 100 + 100));
            let now = rx.memory_bytes();
            if same_for >= 100 {
                assert_eq!(now, settled, "round {round}: the block size changed once settled");
            } else if now == settled {
                same_for += 1;
            } else {
                (settled, same_for) = (now, 0);
            }
        }
        assert!(same_for >= 100, "never settled");
        assert_eq!(settled, 2 * block_bytes::<u64>(max), "a busy ring");
        // Grows again, and shrinks again.
        let again: usize = if cfg!(miri) { 3 * max / 2 } else { queued_max };
        push_all(&mut tx, 0..again as u64);
        assert!(tx.memory_bytes() >= again * size_of::<u64>());
        out.clear();
        assert_eq!(rx.pop_batch(&mut out, again), again);
        assert!(out.iter().copied().eq(0..again as u64));
        assert!(rx.memory_bytes() <= 2 * block_bytes::<u64>(max));
    }

    #[test]
    fn a_ring_whose_traffic_calms_down_returns_to_small_blocks() {
        // A burst fills a ring of 600 at once (the clock stands still: blocks of 600 slots), then
        // three values every 50 µs: four block links in a row find the queue short and the rate
        // low, and the ring goes back to two blocks of 8 slots (the big ones are freed as they
        // come back), and stays there.
        let mut t = Instant::now();
        set_clock(t);
        let (mut tx, mut rx) = ring::<u64>(600);
        push_all(&mut tx, 0..600);
        let mut out = Vec::new();
        assert_eq!(rx.pop_batch(&mut out, 600), 600);
        let after_burst = rx.memory_bytes();
        let small = 2 * block_bytes::<u64>(8);
        assert!(after_burst > small, "{after_burst} bytes after the burst");
        let mut calm_after = None;
        for round in 0..2_000u64 {
            push_all(&mut tx, round * 3..round * 3 + 3);
            for v in round * 3..round * 3 + 3 {
                assert_eq!(rx.pop(), Ok(v));
            }
            if rx.memory_bytes() == small {
                calm_after.get_or_insert(round);
            } else {
                assert!(calm_after.is_none(), "round {round}: grew again while calm");
            }
            if calm_after.is_some_and(|r| round > r + 100) {
                break;
            }
            t += Duration::from_micros(50);
            set_clock(t);
        }
        assert!(calm_after.is_some(), "still {} bytes", rx.memory_bytes());
    }

    #[test]
    fn long_run_across_many_blocks_keeps_fifo_with_batches_of_every_size() {
        // A capacity that is not a multiple of any block size, batch sizes from 1 to beyond the
        // capacity on both sides with different periods, and single pushes, pops and peeks mixed
        // in, so that every batch boundary falls at every offset in the blocks.
        const CAP: usize = 1500;
        let total: u64 = if cfg!(miri) { 30_000 } else { 5_000_000 };
        let (mut tx, mut rx) = ring::<u64>(CAP);
        let (_, max) = block_len_limits::<u64>(CAP);
        let bound = at_most(CAP + 3 * max);
        let mut src = VecDeque::new();
        let mut out = Vec::new();
        let (mut next, mut expect) = (0u64, 0u64);
        let (mut push_size, mut pop_size) = (1usize, 1usize);
        let mut step = 0u64;
        while expect < total {
            step += 1;
            while src.len() < push_size && next < total {
                src.push_back(next);
                next += 1;
            }
            if step % 7 == 0 {
                if let Some(v) = src.pop_front() {
                    if let Err(e) = tx.push(v) {
                        assert!(e.is_full());
                        src.push_front(e.into_inner());
                    }
                }
            } else {
                let before = src.len();
                let pushed = tx.push_batch(&mut src);
                assert_eq!(before - src.len(), pushed);
            }
            assert_eq!(rx.len() + tx.free_slots(), CAP);
            assert!(tx.memory_bytes() <= bound, "{} bytes", tx.memory_bytes());
            if step % 5 == 0 {
                if let Some(&v) = rx.peek() {
                    assert_eq!(v, expect);
                    assert_eq!(rx.pop(), Ok(v));
                    expect += 1;
                }
            } else {
                out.clear();
                let popped = rx.pop_batch(&mut out, pop_size);
                assert_eq!(popped, out.len());
                for &v in &out {
                    assert_eq!(v, expect, "out of order, lost or duplicated");
                    expect += 1;
                }
            }
            push_size = push_size % (CAP + 200) + 1;
            pop_size = pop_size % 613 + 1;
        }
        assert_eq!(next, total);
        assert!(rx.is_empty());
        assert!(rx.memory_bytes() <= 2 * block_bytes::<u64>(max));
    }

    #[test]
    fn peek_and_pop_at_a_block_boundary() {
        let (mut tx, mut rx) = ring::<u64>(64);
        push_all(&mut tx, 0..8);
        for i in 0..8 {
            assert_eq!(rx.pop(), Ok(i));
        }
        // The consumer is at the end of the first block; the next value opens the second.
        assert_eq!(rx.peek(), None);
        tx.push(8).unwrap();
        assert_eq!(rx.peek(), Some(&8));
        assert_eq!(rx.peek(), Some(&8));
        assert_eq!(rx.pop(), Ok(8));
        // A batch that starts at a block boundary.
        push_all(&mut tx, 9..24);
        let mut out = Vec::new();
        assert_eq!(rx.pop_batch(&mut out, 15), 15);
        assert!(out.iter().copied().eq(9..24));
        assert_eq!(rx.pop(), Err(PopError::Empty));
    }

    /// A value with a large alignment, to check the slots' placement in a block.
    #[repr(align(64))]
    #[derive(Debug, PartialEq)]
    struct Aligned(u64);

    #[test]
    fn over_aligned_values_are_aligned_in_every_block() {
        let (mut tx, mut rx) = ring::<Aligned>(100);
        for round in 0..3u64 {
            for i in 0..50 {
                tx.push(Aligned(round * 100 + i)).unwrap();
            }
            for i in 0..50 {
                let v = rx.peek().unwrap();
                assert_eq!(std::ptr::from_ref(v).addr() % 64, 0);
                assert_eq!(v.0, round * 100 + i);
                assert_eq!(rx.pop(), Ok(Aligned(round * 100 + i)));
            }
        }
    }

    #[test]
    fn items_left_in_several_blocks_and_the_spare_are_dropped_once() {
        for consumer_last in [false, true] {
            for popped in [0, 5, 8, 20, 24, 30] {
                let (drops, mut make) = tracked(40);
                let (mut tx, mut rx) = ring::<Tracked>(100);
                // Blocks of 8 and then 32 or more slots; popping more than 8 retires the first as
                // the spare.
                for id in 0..40 {
                    assert!(tx.push(make(id)).is_ok());
                }
                for id in 0..popped {
                    assert_eq!(rx.pop().unwrap().id, id);
                }
                if consumer_last {
                    drop(tx);
                    drop(rx);
                } else {
                    drop(rx);
                    drop(tx);
                }
                assert_eq!(*drops.borrow(), vec![1; 40], "popped {popped}, last {consumer_last}");
            }
        }
    }

    #[test]
    fn a_ring_never_pushed_to_or_drained_to_a_boundary_drops_cleanly() {
        // Nothing allocated at all.
        let (tx, rx) = ring::<String>(10);
        drop(rx);
        drop(tx);
        // Drained exactly to the end of a block whose successor is not linked yet.
        let (mut tx, mut rx) = ring::<String>(10);
        for i in 0..8 {
            tx.push(i.to_string()).unwrap();
        }
        for i in 0..8 {
            assert_eq!(rx.pop(), Ok(i.to_string()));
        }
        drop(tx);
        assert_eq!(rx.pop(), Err(PopError::Abandoned));
        drop(rx);
    }

    #[test]
    fn zero_sized_values_cost_only_block_headers() {
        let (mut tx, mut rx) = ring::<()>(1 << 20);
        for _ in 0..2000 {
            tx.push(()).unwrap();
        }
        assert_eq!(rx.len(), 2000);
        assert!(tx.memory_bytes() <= 16 * block_bytes::<()>(0));
        let mut out = Vec::new();
        assert_eq!(rx.pop_batch(&mut out, 5000), 2000);
    }
}
