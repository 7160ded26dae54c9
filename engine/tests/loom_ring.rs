//! Loom models of the exchange ring (docs/reliability.md, test 17, `spsc_queue_loom_model`).
//!
//! Run with `scripts/loom.sh` (`RUSTFLAGS="--cfg loom"`); in a normal build this file is empty.
//! Each model has two threads (a spawned producer and the model's main thread as consumer, or the
//! other way round), a ring of capacity 1 to 3 and up to 6 values; loom runs it under every
//! interleaving (within `LOOM_MAX_PREEMPTIONS`) and every outcome the C11 memory model allows for the
//! `Acquire`/`Release` operations. It fails a model on a data race on a slot (an access to a slot's
//! `UnsafeCell` not ordered after the other side's last access, or not ordered before the free of
//! its block), a leaked or double-freed block (the ring allocates through `loom::alloc`) or `Arc`,
//! a deadlock, or a failed assertion.
//!
//! Under loom the ring's blocks have 1 or 2 slots, sized for the values queued when the block is
//! linked, so every model of more than a couple of values crosses several blocks: the consumer
//! follows block links, parks used-up blocks as the spare (freeing the one parked before when it
//! catches up over several blocks), and the producer reuses the spare or, when the interleaving made
//! it the wrong size, frees it and allocates. (Each of these paths is reached by several of the
//! models below.)
//!
//! The test families, and the bug each exists to catch:
//!
//! * `fifo_*`: values arrive in order, each once: a wrong index step, a missed block change, a
//!   block linked (`Release`) before it is initialised, or a publish (`Release` store of `tail`)
//!   before the slot write would show here.
//! * `batch_*`: batched push and pop, across blocks: an off-by-one in the per-block loops, or a
//!   batch published before all its slots are written.
//! * `block_*`: a consumer that lags behind by several blocks and then catches up: retiring blocks
//!   back to back (the spare replaced and freed) while the producer takes the spare and writes into
//!   a recycled block; a missing `Release`/`Acquire` on the spare would show as a race on a slot.
//! * `drop_*`: values left in the ring when the halves go, in either order, on either thread, are
//!   dropped exactly once, and every block is freed once: a double drop, a leak, or a drop racing a
//!   write.
//! * `abandon_*`: `PopError::Abandoned` only after every value pushed before the producer's drop
//!   was popped (the flag/tail ordering), and a push after the consumer's drop hands the value back.
//! * `peek_*`: `peek` sees exactly the value `pop` then returns.
//!
//! The drop counters are plain `std` atomics on purpose: they are instrumentation, not part of the
//! protocol under test, and keeping them out of loom's view keeps the state space small. Loom's
//! threads run one at a time, so the counters are read consistently.
#![cfg(loom)]

use std::collections::VecDeque;
use std::sync::atomic::AtomicUsize as StdAtomicUsize;
use std::sync::atomic::Ordering::SeqCst;

use pinwheel_engine::exchange::{Consumer, PopError, Producer, PushError, ring};
use pinwheel_engine::sync::{model, thread};

/// A value that records its drops in a shared table, and fails on a second drop.
struct Item {
    id: usize,
    drops: std::sync::Arc<Vec<StdAtomicUsize>>,
}

impl Drop for Item {
    fn drop(&mut self) {
        let before = self.drops[self.id].fetch_add(1, SeqCst);
        assert_eq!(before, 0, "item {} dropped twice", self.id);
    }
}

struct Items {
    drops: std::sync::Arc<Vec<StdAtomicUsize>>,
}

impl Items {
    fn new(n: usize) -> Items {
        Items { drops: std::sync::Arc::new((0..n).map(|_| StdAtomicUsize::new(0)).collect()) }
    }

    fn make(&self, id: usize) -> Item {
        Item { id, drops: std::sync::Arc::clone(&self.drops) }
    }

    fn assert_each_dropped_once(&self) {
        for (id, d) in self.drops.iter().enumerate() {
            assert_eq!(d.load(SeqCst), 1, "item {id} dropped {} times", d.load(SeqCst));
        }
    }
}

/// Pushes `value`, yielding while the ring is full; panics if the consumer is gone.
fn push_spin<T>(tx: &mut Producer<T>, mut value: T) {
    loop {
        match tx.push(value) {
            Ok(()) => return,
            Err(PushError::Full(v)) => {
                value = v;
                thread::yield_now();
            }
            Err(PushError::Abandoned(_)) => panic!("consumer gone"),
        }
    }
}

/// Pops one value, yielding while the ring is empty; `None` once abandoned and empty.
fn pop_spin<T>(rx: &mut Consumer<T>) -> Option<T> {
    loop {
        match rx.pop() {
            Ok(v) => return Some(v),
            Err(PopError::Empty) => thread::yield_now(),
            Err(PopError::Abandoned) => return None,
        }
    }
}

/// `n` values through a ring of capacity `cap`, one at a time; the consumer checks order and count
/// and the producer's drop ends the stream.
fn fifo(cap: usize, n: usize) {
    model(move || {
        let (mut tx, mut rx) = ring::<usize>(cap);
        let producer = thread::spawn(move || {
            for i in 0..n {
                push_spin(&mut tx, i);
            }
        });
        let mut got = Vec::new();
        while let Some(v) = pop_spin(&mut rx) {
            got.push(v);
        }
        producer.join().unwrap();
        assert_eq!(got, (0..n).collect::<Vec<_>>());
    });
}

#[test]
fn fifo_capacity_1_three_items() {
    fifo(1, 3);
}

#[test]
fn fifo_capacity_2_wraparound_five_items() {
    // Indices run over [0, 4): five values take the tail past the wrap.
    fifo(2, 5);
}

#[test]
fn fifo_capacity_3_wraparound_six_items() {
    // Six values through three slots: every slot reused, indices wrap at 6.
    fifo(3, 6);
}

#[test]
fn fifo_owned_values_dropped_once() {
    // Heap values (non-trivial drop) one at a time: each is moved out exactly once.
    model(|| {
        let items = Items::new(4);
        let made: Vec<Item> = (0..4).map(|i| items.make(i)).collect();
        let (mut tx, mut rx) = ring::<Item>(2);
        let producer = thread::spawn(move || {
            for item in made {
                push_spin(&mut tx, item);
            }
        });
        let mut next = 0;
        while let Some(item) = pop_spin(&mut rx) {
            assert_eq!(item.id, next);
            next += 1;
        }
        producer.join().unwrap();
        assert_eq!(next, 4);
        drop(rx);
        items.assert_each_dropped_once();
    });
}

#[test]
fn batch_push_and_pop_across_the_wrap() {
    // Six values, pushed in batches of whatever fits into 3 slots, popped two at a time.
    model(|| {
        let (mut tx, mut rx) = ring::<usize>(3);
        let producer = thread::spawn(move || {
            let mut pending: VecDeque<usize> = (0..6).collect();
            while !pending.is_empty() {
                if tx.push_batch(&mut pending) == 0 {
                    thread::yield_now();
                }
            }
        });
        let mut got = Vec::new();
        loop {
            let before = got.len();
            let n = rx.pop_batch(&mut got, 2);
            assert!(n <= 2);
            assert_eq!(got.len(), before + n);
            if n == 0 {
                if rx.is_abandoned() && rx.is_empty() {
                    break;
                }
                thread::yield_now();
            }
        }
        producer.join().unwrap();
        assert_eq!(got, (0..6).collect::<Vec<_>>());
    });
}

#[test]
fn batch_pop_against_single_pushes() {
    // Capacity 2, four values pushed one by one, drained with batches of up to 3.
    model(|| {
        let (mut tx, mut rx) = ring::<usize>(2);
        let producer = thread::spawn(move || {
            for i in 0..4 {
                push_spin(&mut tx, i);
            }
        });
        let mut got = Vec::new();
        while got.len() < 4 {
            if rx.pop_batch(&mut got, 3) == 0 {
                thread::yield_now();
            }
        }
        producer.join().unwrap();
        assert_eq!(got, [0, 1, 2, 3]);
        assert_eq!(rx.pop(), Err(PopError::Abandoned));
    });
}

#[test]
fn drop_with_items_left_producer_thread_drops_last() {
    // The consumer takes one value and leaves; the producer, on its own thread, pushes the rest
    // (up to capacity) and drops its half, possibly last. Every value is dropped exactly once:
    // popped, handed back by an `Abandoned` error, or left in the ring.
    model(|| {
        let items = Items::new(3);
        let made: Vec<Item> = (0..3).map(|i| items.make(i)).collect();
        let (mut tx, mut rx) = ring::<Item>(2);
        let producer = thread::spawn(move || {
            for item in made {
                match tx.push(item) {
                    Ok(()) => {}
                    // Backpressure or a gone consumer: the value comes back and is dropped here.
                    Err(e) => drop(e.into_inner()),
                }
            }
        });
        if let Some(item) = pop_spin_bounded(&mut rx) {
            assert_eq!(item.id, 0);
        }
        drop(rx);
        producer.join().unwrap();
        items.assert_each_dropped_once();
    });
}

/// Pops one value if one is there within a couple of tries (so the consumer may also leave
/// without taking anything, and loom explores both).
fn pop_spin_bounded<T>(rx: &mut Consumer<T>) -> Option<T> {
    for _ in 0..2 {
        match rx.pop() {
            Ok(v) => return Some(v),
            Err(_) => thread::yield_now(),
        }
    }
    None
}

#[test]
fn drop_with_items_left_consumer_thread_drops_last() {
    // The producer fills a capacity-3 ring with 3 values (the indices wrap once: one value is
    // pushed and popped first) and leaves; the consumer, on its own thread, takes one and drops
    // its half, possibly last.
    model(|| {
        let items = Items::new(4);
        let (mut tx, mut rx) = ring::<Item>(3);
        push_spin(&mut tx, items.make(0));
        drop(rx.pop().unwrap());
        let consumer = thread::spawn(move || {
            let first = pop_spin(&mut rx).expect("the producer pushes before it leaves");
            assert_eq!(first.id, 1);
            drop(first);
            // `rx` goes here, with up to two values still in the ring.
        });
        for id in 1..4 {
            // Three values fit, so `Full` cannot happen; `Abandoned` can once the consumer has
            // taken its value and left, and then the value comes back and is dropped here.
            if let Err(e) = tx.push(items.make(id)) {
                assert!(e.is_abandoned() && id > 1);
            }
        }
        drop(tx);
        consumer.join().unwrap();
        items.assert_each_dropped_once();
    });
}

#[test]
fn abandon_reported_only_after_every_value() {
    // The producer pushes two values into a capacity-1 ring and leaves; the consumer must see both
    // before `Abandoned`, whatever the interleaving of the flag store and the tail stores.
    model(|| {
        let (mut tx, mut rx) = ring::<usize>(1);
        let producer = thread::spawn(move || {
            push_spin(&mut tx, 10);
            push_spin(&mut tx, 11);
        });
        let mut got = Vec::new();
        loop {
            match rx.pop() {
                Ok(v) => got.push(v),
                Err(PopError::Empty) => thread::yield_now(),
                Err(PopError::Abandoned) => break,
            }
        }
        assert_eq!(got, [10, 11]);
        assert!(rx.is_abandoned());
        producer.join().unwrap();
    });
}

#[test]
fn abandon_push_after_consumer_drop_hands_value_back() {
    model(|| {
        let (mut tx, rx) = ring::<usize>(2);
        let consumer = thread::spawn(move || drop(rx));
        consumer.join().unwrap();
        assert!(tx.is_abandoned());
        assert_eq!(tx.push(1), Err(PushError::Abandoned(1)));
        let mut batch: VecDeque<usize> = [2, 3].into();
        assert_eq!(tx.push_batch(&mut batch), 0);
        assert_eq!(batch.len(), 2);
    });
}

#[test]
fn peek_sees_what_pop_returns() {
    model(|| {
        let (mut tx, mut rx) = ring::<usize>(2);
        let producer = thread::spawn(move || {
            for i in 0..3 {
                push_spin(&mut tx, i);
            }
        });
        let mut next = 0;
        while next < 3 {
            match rx.peek().copied() {
                Some(v) => {
                    assert_eq!(v, next);
                    assert_eq!(rx.pop(), Ok(v));
                    next += 1;
                }
                None => thread::yield_now(),
            }
        }
        producer.join().unwrap();
    });
}

#[test]
fn block_lagging_consumer_catches_up_across_blocks() {
    // Four values pushed one by one into a capacity-3 ring (blocks of 1 or 2 slots, so the queue
    // can span three blocks); the consumer takes them in batches of up to 3, so it may retire two
    // blocks in one batch (replacing and freeing the spare) while the producer links a recycled
    // or a new block.
    model(|| {
        let (mut tx, mut rx) = ring::<usize>(3);
        let producer = thread::spawn(move || {
            for i in 0..4 {
                push_spin(&mut tx, i);
            }
        });
        let mut got = Vec::new();
        while got.len() < 4 {
            if rx.pop_batch(&mut got, 3) == 0 {
                thread::yield_now();
            }
        }
        producer.join().unwrap();
        assert_eq!(got, [0, 1, 2, 3]);
        assert_eq!(rx.pop(), Err(PopError::Abandoned));
    });
}

#[test]
fn drop_with_values_across_blocks_and_a_spare() {
    // The producer pushes five values in batches (whatever fits in 3) and leaves; the consumer, on
    // its own thread, pops one to three and leaves, so the ring may be dropped with values in one
    // or two blocks, with or without a spare parked, and on either thread. Each value is dropped
    // once, each block freed once.
    model(|| {
        let items = Items::new(5);
        let (mut tx, mut rx) = ring::<Item>(3);
        let consumer = thread::spawn(move || {
            let first = pop_spin(&mut rx).expect("the producer pushes before it leaves");
            assert_eq!(first.id, 0);
            for id in 1..3 {
                match rx.pop() {
                    Ok(item) => assert_eq!(item.id, id),
                    Err(_) => break,
                }
            }
            // `rx` goes here, with values possibly still in the ring.
        });
        let mut pending: VecDeque<Item> = (0..5).map(|i| items.make(i)).collect();
        while !pending.is_empty() && !tx.is_abandoned() {
            if tx.push_batch(&mut pending) == 0 {
                thread::yield_now();
            }
        }
        drop(pending);
        drop(tx);
        consumer.join().unwrap();
        items.assert_each_dropped_once();
    });
}
