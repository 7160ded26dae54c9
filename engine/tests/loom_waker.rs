//! Loom model of the shard's park / wake protocol (`engine/src/shard/waker.rs`): a shard that finds
//! no work announces that it parks, looks for work once more, and parks; a producer publishes work
//! and wakes it. No interleaving may leave the shard parked with work published (loom reports such
//! a lost wake-up as a deadlock: under loom a park has no timeout).
//!
//! Run with `scripts/loom.sh` (`RUSTFLAGS="--cfg loom"`); in the normal build the same model runs
//! once, as a plain test. The shard is a spawned thread and the model's main thread produces: loom
//! 0.7 cannot unpark a thread blocked in `join` (tokio-rs/loom#249), so nobody unparks the joiner.

use pinwheel_engine::shard::ShardWaker;
use pinwheel_engine::sync::atomic::{AtomicUsize, Ordering};
use pinwheel_engine::sync::{Arc, model, thread};

/// The shard's side: the driver's idle step, as `engine/src/shard/driver.rs` runs it.
fn consume(waker: &ShardWaker, work: &AtomicUsize, want: usize) {
    let parker = waker.parker();
    let mut seen = 0;
    while seen < want {
        seen = work.load(Ordering::Acquire);
        if seen >= want {
            break;
        }
        parker.prepare();
        // The look for work after the announcement.
        seen = work.load(Ordering::Acquire);
        if seen >= want {
            parker.cancel();
            break;
        }
        parker.park(std::time::Duration::from_secs(3600));
    }
}

/// The shard, on a thread of its own, waiting for `want` units of work.
fn shard(waker: &ShardWaker, work: &Arc<AtomicUsize>, want: usize) -> thread::JoinHandle<()> {
    let (waker, work) = (waker.clone(), work.clone());
    thread::spawn(move || consume(&waker, &work, want))
}

fn produce(waker: &ShardWaker, work: &AtomicUsize) {
    work.fetch_add(1, Ordering::Release);
    waker.wake();
}

#[test]
fn a_wake_after_published_work_is_never_lost() {
    model(|| {
        let waker = ShardWaker::new();
        let work = Arc::new(AtomicUsize::new(0));
        let consumer = shard(&waker, &work, 1);
        produce(&waker, &work);
        consumer.join().unwrap();
    });
}

#[test]
fn two_producers_and_two_rounds_of_work() {
    model(|| {
        let waker = ShardWaker::new();
        let work = Arc::new(AtomicUsize::new(0));
        let consumer = shard(&waker, &work, 2);
        let (w, n) = (waker.clone(), work.clone());
        let producer = thread::spawn(move || produce(&w, &n));
        produce(&waker, &work);
        consumer.join().unwrap();
        producer.join().unwrap();
    });
}
