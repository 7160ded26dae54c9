//! The synchronization shim: every concurrent engine module imports its atomics, `Arc`, `UnsafeCell`
//! and threads from here, never from `std` directly, so the same code runs under the
//! [loom](https://docs.rs/loom) model checker when built with `RUSTFLAGS="--cfg loom"`.
//!
//! This is the pattern of tokio's `src/loom/` and crossbeam-utils' `primitive` module:
//!
//! | item | normal build | `cfg(loom)` build |
//! |---|---|---|
//! | [`Arc`] | `std::sync::Arc` | `loom::sync::Arc` |
//! | [`atomic`]`::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence}` | `std::sync::atomic` | `loom::sync::atomic` |
//! | [`UnsafeCell`] | a zero-cost wrapper around `std::cell::UnsafeCell` | `loom::cell::UnsafeCell` |
//! | [`thread`]`::{spawn, yield_now, JoinHandle}` | `std::thread` | `loom::thread` |
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

/// Atomic integers, booleans, orderings and fences (`std::sync::atomic`, or loom's under `cfg(loom)`).
pub mod atomic {
    #[cfg(not(loom))]
    pub use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};

    #[cfg(loom)]
    pub use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
}

/// Threads (`std::thread`, or loom's simulated threads under `cfg(loom)`).
pub mod thread {
    #[cfg(not(loom))]
    pub use std::thread::{JoinHandle, spawn, yield_now};

    #[cfg(loom)]
    pub use loom::thread::{JoinHandle, spawn, yield_now};
}

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
/// (STYLE.md section 1, item 7); scale their sizes with `if cfg!(loom) { small } else { large }`.
pub fn model<F>(f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    #[cfg(loom)]
    loom::model(f);

    #[cfg(not(loom))]
    f();
}
