//! Software prefetch: ask the CPU to start loading a cache line that will be needed soon.
//!
//! A keyed operator touches a handful of rows per record (the key's slot in the interner, its row
//! in every state column, its timer record), each a random DRAM access of about 100 ns when the key
//! space is larger than the cache. One core keeps a dozen or more such loads in flight, so the
//! engine works on records in small batches: it first prefetches the rows of every record of the
//! batch, then runs the user function on each, by which time the rows are (mostly) in cache. The
//! firing loop does the same a few timers ahead. This module is the one place that issues the hint.
//!
//! A prefetch is only a hint: it never faults, whatever the address (an address that is not mapped
//! is simply not loaded), never changes memory, and is a no-op where the target has no prefetch
//! instruction we use. The helpers take a slice and an index and prefetch only in-bounds elements, so
//! callers cannot even hint at memory they do not own.
//!
//! This module is one of the four allowed `unsafe` code (with `exchange::ring`, `sync` and
//! `checkpoint::fs`): the x86-64 intrinsic is declared `unsafe` because it is a
//! `#[target_feature(enable = "sse")]` function, although SSE is part of the x86-64 baseline.

/// Prefetches the cache line holding `slice[index]` for reading, if `index` is in bounds.
#[inline(always)]
pub fn prefetch_index<T>(slice: &[T], index: usize) {
    if let Some(element) = slice.get(index) {
        prefetch_ref(element);
    }
}

/// Prefetches the cache line holding `*value`.
#[inline(always)]
pub fn prefetch_ref<T>(value: &T) {
    prefetch_address(value as *const T as usize);
}

/// Prefetches the cache line at address `addr`: for memory the caller cannot name by reference at
/// this point (a state column behind a `RefCell`, whose base address was read earlier). The
/// address may be stale or wrong: nothing is ever read from it.
#[inline(always)]
pub fn prefetch_address(addr: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: `_mm_prefetch` needs SSE, which every x86-64 CPU has (it is in the target's
        // baseline feature set, so the `target_feature` precondition always holds). The
        // instruction is a hint: it reads nothing into the program, writes nothing, and cannot
        // fault, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(std::ptr::without_provenance::<i8>(addr)) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = addr;
    }
}

/// Where row `i` of a column lives: `base + i * stride`, for `i < rows`. Read once per batch of
/// records (columns may reallocate when they grow); a stale region only makes a useless hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowRegion {
    base: usize,
    stride: usize,
    rows: usize,
}

impl RowRegion {
    /// The region of a slice's elements.
    pub fn of<T>(rows: &[T]) -> Self {
        RowRegion {
            base: rows.as_ptr() as usize,
            stride: std::mem::size_of::<T>(),
            rows: rows.len(),
        }
    }

    /// Prefetches row `i`, if it exists.
    #[inline(always)]
    pub fn prefetch(&self, i: usize) {
        if i < self.rows {
            prefetch_address(self.base.wrapping_add(i.wrapping_mul(self.stride)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefetch_is_a_harmless_hint() {
        let v = vec![1u64, 2, 3];
        prefetch_index(&v, 0);
        prefetch_index(&v, 2);
        prefetch_index(&v, 3); // out of bounds: nothing happens
        prefetch_index::<u64>(&[], 0);
        prefetch_ref(&v[1]);
        prefetch_address(0);
        prefetch_address(usize::MAX);
        let region = RowRegion::of(&v);
        region.prefetch(1);
        region.prefetch(1_000); // beyond the rows: nothing happens
        assert_eq!(v, [1, 2, 3]);
    }
}
