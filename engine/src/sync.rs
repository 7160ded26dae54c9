//! The synchronization shim: every concurrent engine module imports its atomics, `Arc`, `UnsafeCell`
//! and threads from here, never from `std` directly, so the same code runs under the
//! [loom](https://docs.rs/loom) model checker when built with `RUSTFLAGS="--cfg loom"`.
//!
//! This is the pattern of tokio's `src/loom/` and crossbeam-utils' `primitive` module:
//!
//! | item | normal build | `cfg(loom)` build |
//! |---|---|---|
//! | [`Arc`] | `std::sync::Arc` | `loom::sync::Arc` |
//! | [`atomic`]`::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering, fence}` | `std::sync::atomic` | `loom::sync::atomic` |
//! | [`alloc`]`::{alloc, dealloc, Layout}` | `std::alloc` | `loom::alloc`: the same allocator, plus tracking that reports a leaked or double-freed allocation |
//! | [`stats`]`::AtomicUsize` | `std::sync::atomic` | `std::sync::atomic` too: statistics are not modelled |
//! | [`UnsafeCell`] | a zero-cost wrapper around `std::cell::UnsafeCell` | `loom::cell::UnsafeCell` |
//! | [`thread`]`::{spawn, yield_now, current, park, park_timeout, Thread, JoinHandle}` | `std::thread` | `loom::thread` (`park_timeout` parks until unparked) |
//! | [`Mutex`] | `std::sync::Mutex` | `loom::sync::Mutex` |
//! | [`model`] | calls the closure once | `loom::model`: runs it under every interleaving loom explores |
//!
//! loom's `UnsafeCell` cannot hand out a raw pointer that outlives a borrow (it tracks every access
//! to find data races), so the shared API is closure based: [`UnsafeCell::with`] for reads and
//! [`UnsafeCell::with_mut`] for writes. In the normal build both are `#[inline(always)]` and compile
//! to a plain pointer access.
//!
//! Under `cfg(loom)` the loom types only work inside [`model`]; code that touches them outside a
//! model panics, so loom-built tests must wrap their bodies in `model(|| ...)`.

#[cfg(not(loom))]
pub use std::sync::Arc;

#[cfg(loom)]
pub use loom::sync::Arc;

/// Atomic integers, booleans, pointers, orderings and fences (`std::sync::atomic`, or loom's under
/// `cfg(loom)`).
pub mod atomic {
    #[cfg(not(loom))]
    pub use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering, fence};

    #[cfg(loom)]
    pub use loom::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering, fence};
}

/// Raw heap allocation (`std::alloc`, or `loom::alloc` under `cfg(loom)`).
///
/// Code that manages its own allocations (the exchange ring's blocks) allocates and frees through
/// here, so that under loom every execution is checked for a leaked block (an allocation still live
/// when the model ends) and for a double free (freeing a pointer loom does not know). The two
/// functions have `std::alloc`'s contracts; [`Layout`](self::alloc::Layout) is
/// `std::alloc::Layout` in both builds.
pub mod alloc {
    #[cfg(not(loom))]
    pub use std::alloc::{Layout, alloc, dealloc};

    #[cfg(loom)]
    pub use loom::alloc::{Layout, alloc, dealloc};
}

/// Atomic counters for statistics: `std::sync::atomic::AtomicUsize` in both builds.
///
/// For figures that are only reported and never decide anything (the exchange ring's allocated
/// bytes), updated and read with `Relaxed`. A loom atomic would make every update a point where
/// loom explores other interleavings, multiplying the executions of a model without checking
/// anything more; the loom tests keep their drop counters in `std` atomics for the same reason.
/// Loom runs one simulated thread at a time, so the counts stay exact.
pub mod stats {
    pub use std::sync::atomic::AtomicUsize;
}

/// Threads (`std::thread`, or loom's simulated threads under `cfg(loom)`).
pub mod thread {
    #[cfg(not(loom))]
    pub use std::thread::{JoinHandle, Thread, current, park, spawn, yield_now};

    #[cfg(loom)]
    pub use loom::thread::{JoinHandle, Thread, current, park, spawn, yield_now};

    /// Parks the calling thread until it is unparked or `timeout` has passed. Loom has no
    /// timeouts: under `cfg(loom)` it parks until unparked, so a lost wake-up is a deadlock that
    /// loom reports.
    #[inline]
    pub fn park_timeout(timeout: std::time::Duration) {
        #[cfg(not(loom))]
        std::thread::park_timeout(timeout);
        #[cfg(loom)]
        {
            let _ = timeout;
            loom::thread::park();
        }
    }
}

/// A mutex (`std::sync::Mutex`, or loom's under `cfg(loom)`), for cold paths only.
#[cfg(not(loom))]
pub use std::sync::Mutex;

#[cfg(loom)]
pub use loom::sync::Mutex;

#[cfg(loom)]
pub use loom::cell::UnsafeCell;

#[cfg(not(loom))]
pub use self::std_cell::UnsafeCell;

#[cfg(not(loom))]
mod std_cell {
    use std::fmt;

    /// `std::cell::UnsafeCell` with loom's closure-based API, so that both builds share one API.
    ///
    /// [`with`](Self::with) gives a `*const T` for reads, [`with_mut`](Self::with_mut) a `*mut T`
    /// for writes; what may be done with the pointer is the caller's `unsafe` business, exactly as
    /// with `UnsafeCell::get`. Under `cfg(loom)` this type is `loom::cell::UnsafeCell`, which
    /// additionally checks that no read overlaps a write from another thread without a
    /// happens-before edge between them.
    #[repr(transparent)]
    pub struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

    impl<T> UnsafeCell<T> {
        /// Wraps `data`.
        #[inline(always)]
        pub fn new(data: T) -> UnsafeCell<T> {
            UnsafeCell(std::cell::UnsafeCell::new(data))
        }

        /// Unwraps the value.
        #[inline(always)]
        pub fn into_inner(self) -> T {
            self.0.into_inner()
        }

        /// Calls `f` with a read pointer to the contents.
        #[inline(always)]
        pub fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
            f(self.0.get())
        }

        /// Calls `f` with a write pointer to the contents.
        #[inline(always)]
        pub fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }
    }

    impl<T> fmt::Debug for UnsafeCell<T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            // The contents cannot be read without knowing who else may be writing them.
            f.write_str("UnsafeCell { .. }")
        }
    }
}

/// Runs a concurrency test: under `cfg(loom)` with `loom::model` (every interleaving, within the
/// bounds set by `LOOM_MAX_PREEMPTIONS` and friends), otherwise by calling `f` once.
///
/// Tests written as `model(|| { ... })` with threads from [`thread`] and atomics from [`atomic`]
/// therefore double as stress tests in the normal build and as model-checked tests under loom
/// (docs/conventions.md, "Concurrency"); scale their sizes with `if cfg!(loom) { small } else {
/// large }`.
pub fn model<F>(f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    #[cfg(loom)]
    loom::model(f);

    #[cfg(not(loom))]
    f();
}
