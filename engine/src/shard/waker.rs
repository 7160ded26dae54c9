//! Waking a parked shard: an idle shard sleeps until work arrives, not for a fixed quantum.
//!
//! Every shard has a [`ShardWaker`]. Whoever hands a shard work from another thread (a peer
//! shard pushing into one of its exchange rings, or taking records out of a ring the shard was
//! blocked on; a push-source handle; a manual clock being moved; a request to stop) calls
//! [`ShardWaker::wake`] right after publishing the work. The shard itself parks through its
//! [`Parker`].
//!
//! # The protocol, and why no wake-up is lost
//!
//! ```text
//!   shard (consumer)                          producer (another thread)
//!   parker.prepare():  parked = true           publish the work (e.g. the ring's tail, Release)
//!                      fence(SeqCst)           waker.wake():  fence(SeqCst)
//!   look for work once more (poll every task)                 if parked: unpark the shard
//!   none: park (until unparked or a deadline)
//!   parked = false
//! ```
//!
//! This is the store-fence-load pattern on both sides (Dekker's): the two `SeqCst` fences are
//! totally ordered, so either the shard's last look sees the producer's work (it does not park),
//! or the producer's load sees `parked == true` (it unparks). And `Thread::unpark` before `park`
//! leaves a token that makes the `park` return at once, so an unpark that races with the shard
//! falling asleep is not lost either. A spurious wake-up (a token left from an earlier unpark)
//! costs one more look for work.
//!
//! The producer's side costs one fence and one load of a line that only changes when the shard
//! parks or wakes: it is paid per batch pushed into a ring, never per record.

use std::fmt;
use std::sync::PoisonError;
use std::time::Duration;

use crate::sync::atomic::{AtomicBool, Ordering, fence};
use crate::sync::thread::{self, Thread};
use crate::sync::{Arc, Mutex};

/// Wakes one shard; clone it freely (`Send + Sync`).
#[derive(Clone)]
pub struct ShardWaker {
    inner: Arc<Inner>,
}

struct Inner {
    /// True from the shard's `prepare` until it wakes up.
    parked: AtomicBool,
    /// The shard's thread, once it runs.
    thread: Mutex<Option<Thread>>,
}

impl fmt::Debug for ShardWaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardWaker")
            .field("parked", &self.inner.parked.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Default for ShardWaker {
    fn default() -> Self {
        Self::new()
    }
}

impl ShardWaker {
    /// A waker for a shard that has not started yet (waking it does nothing until its
    /// [`Parker`] is made on its thread).
    pub fn new() -> Self {
        ShardWaker {
            inner: Arc::new(Inner { parked: AtomicBool::new(false), thread: Mutex::new(None) }),
        }
    }

    /// Wakes the shard if it is parked (or about to park). Call it after publishing the work.
    #[inline]
    pub fn wake(&self) {
        fence(Ordering::SeqCst);
        if self.inner.parked.load(Ordering::Relaxed) {
            self.unpark();
        }
    }

    #[cold]
    fn unpark(&self) {
        let thread = self.inner.thread.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(thread) = thread.as_ref() {
            thread.unpark();
        }
    }

    /// The parking side of this waker, for the shard's own thread (the calling thread).
    pub fn parker(&self) -> Parker {
        *self.inner.thread.lock().unwrap_or_else(PoisonError::into_inner) = Some(thread::current());
        Parker { waker: self.clone() }
    }

    /// True when no one but the caller holds this waker any more (the shard has gone).
    pub fn is_orphan(&self) -> bool {
        Arc::strong_count(&self.inner) == 1
    }

    /// True while the shard is parked or about to park (for tests and metrics).
    pub fn is_parked(&self) -> bool {
        self.inner.parked.load(Ordering::Relaxed)
    }
}

/// The shard's side of its [`ShardWaker`]: announce, look for work once more, then park.
#[derive(Debug)]
pub struct Parker {
    waker: ShardWaker,
}

impl Parker {
    /// Announces that the shard is about to park. Look for work once more after this; then
    /// [`park`](Self::park) if there is none, or [`cancel`](Self::cancel).
    #[inline]
    pub fn prepare(&self) {
        self.waker.inner.parked.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
    }

    /// Work turned up after [`prepare`](Self::prepare): do not park.
    #[inline]
    pub fn cancel(&self) {
        self.waker.inner.parked.store(false, Ordering::Relaxed);
    }

    /// Parks until woken or until `timeout` has passed (spurious wake-ups are possible), then
    /// clears the announcement.
    pub fn park(&self, timeout: Duration) {
        thread::park_timeout(timeout);
        self.waker.inner.parked.store(false, Ordering::Relaxed);
    }

    /// The waker of this shard.
    pub fn waker(&self) -> &ShardWaker {
        &self.waker
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_wake_before_the_park_is_not_lost() {
        let waker = ShardWaker::new();
        let parker = waker.parker();
        parker.prepare();
        waker.wake();
        // The token left by the wake makes this park return at once (a lost wake-up would hang
        // for the whole hour).
        parker.park(Duration::from_secs(3600));
        assert!(!waker.is_parked());
    }

    #[test]
    fn a_parked_shard_is_woken_by_another_thread() {
        let waker = ShardWaker::new();
        let parker = waker.parker();
        let work = Arc::new(AtomicBool::new(false));
        parker.prepare();
        let (w, flag) = (waker.clone(), work.clone());
        let producer = std::thread::spawn(move || {
            flag.store(true, Ordering::Release);
            w.wake();
        });
        while !work.load(Ordering::Acquire) {
            parker.park(Duration::from_secs(3600));
            parker.prepare();
        }
        parker.cancel();
        producer.join().unwrap();
    }

    #[test]
    fn waking_a_shard_that_never_ran_does_nothing() {
        let waker = ShardWaker::new();
        waker.wake();
        assert!(!waker.is_parked());
    }
}
