//! Rows that a checkpoint can freeze in O(pages) and read on another thread while the shard goes
//! on writing them: a copy-on-write epoch over one flat vector ([`CowVec`], [`FrozenVec`]).
//!
//! The rows stay in one `Vec`, addressed as before: a read is a plain index, so the hot path
//! pays nothing for checkpoints. A [`freeze`](CowVec::freeze) sets one *pending* bit per page
//! of [`PAGE`] rows and hands out a view of the rows as they are. The first write to a pending
//! page copies that page into the view (a cold path, once per page and checkpoint), and the
//! checkpoint thread copies every page it reads that is still pending, so the shard never copies
//! a page the checkpoint does not need it to. Each page of the view is filled exactly once, by
//! whichever thread gets there first, under a per-page state word (`PENDING`, `BUSY`, `DONE`).
//!
//! A vector that must reallocate while a view still reads its rows hands the old buffer to the
//! view (its rows are moved bitwise into the new buffer, and the old allocation is freed with the
//! view); clearing or dropping it hands its rows to the view, which drops them. A second freeze
//! while the view of the first is still alive fills the first view's remaining pages, so there is
//! at most one pending view at a time. The readers own a view (the vector keeps a weak reference),
//! so the last of them, the checkpoint thread once it has written the checkpoint, frees the
//! copies: the shard never pays for freeing them.
//!
//! **The rule for `T`: no mutation through a shared reference** (no interior mutability). Reads
//! (`Deref`, `Index`) hand out `&T` without looking at the page bits, so a row mutated through
//! `&T` would change a frozen page behind the view's back, and after a reallocation the view reads
//! a bitwise duplicate of the row that such a mutation could leave dangling. The engine's rows
//! (integers, key records, spill sets, keys, `Option` of state values) keep the rule; keys and
//! state values are `Sync` and reached by user code only through clones or write accesses.
//!
//! Not modelled by loom (the page states are a lock, not a lock-free protocol); the tests run
//! under Miri, including a reader thread filling pages while the vector is written.

use std::cell::UnsafeCell;
use std::mem;
use std::ops::Deref;
use std::ptr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// Rows per page: the unit of copy-on-write. 1,024 rows of 8-24 bytes are 8-24 KiB, large
/// enough that the pending bitmap (one bit per page) stays in L1 at 10 M rows, small enough that
/// a write after a freeze copies little.
pub(crate) const PAGE: usize = 1 << PAGE_BITS;
const PAGE_BITS: u32 = 10;

const PENDING: u8 = 0;
const BUSY: u8 = 1;
const DONE: u8 = 2;

/// A vector whose rows can be frozen for a checkpoint without copying them
/// (see the [module docs](self)). Reads go through `Deref<Target = [T]>`; writes through
/// [`get_mut`](Self::get_mut) and [`slice_mut`](Self::slice_mut), which copy a page shared with
/// a view first.
pub(crate) struct CowVec<T> {
    rows: Vec<T>,
    /// One bit per page: set while `view` still needs the page as the freeze found it. Empty
    /// when there is no view.
    pending: Vec<u64>,
    /// The newest freeze's view, weakly: the readers own it, so that the last of them (the
    /// checkpoint thread, once the checkpoint is written) frees its copies, not the shard.
    view: Option<Weak<View<T>>>,
}

/// The rows of a [`CowVec`] as a [`freeze`](CowVec::freeze) found them. `Send`: a checkpoint
/// thread reads it while the shard writes the vector.
pub(crate) struct FrozenVec<T> {
    view: Arc<View<T>>,
}

/// What a vector and its frozen view share.
struct View<T> {
    /// The rows at the freeze. A page whose state is not `DONE` is read from here; its rows are
    /// neither written nor dropped until the page is `DONE` (the vector copies a pending page
    /// before writing it, and hands its buffer to `retired` instead of freeing it).
    base: *const T,
    len: usize,
    /// Each page's state: `PENDING` (read from `base`), `BUSY` (being filled), `DONE` (its
    /// copy is filled, and never written again).
    states: Box<[AtomicU8]>,
    /// Each page's copy, allocated when the page is filled (so a freeze allocates nothing in
    /// proportion to the rows: a large allocation there cost the shard up to milliseconds of
    /// the allocator committing memory): set by the thread that moved the page to `BUSY`, read
    /// only once it is `DONE`.
    copies: Box<[UnsafeCell<*mut T>]>,
    /// Buffers the vector let go of while this view read them, freed with the view: those it
    /// outgrew (length 0: their rows moved on) and those it cleared or dropped (their rows,
    /// owned by the view from then on).
    retired: Mutex<Vec<Vec<T>>>,
    /// [`clone_rows`] for `T`, chosen at the freeze (the only place that needs `T: Clone`).
    clone_rows: CloneRows<T>,
}

impl<T> View<T> {
    /// Keeps `buffer` (a buffer of the vector that `base` may point into) until the view goes.
    fn retire(&self, buffer: Vec<T>) {
        self.retired.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(buffer);
    }
}

/// A copy of the `n` rows at `src`.
type CloneRows<T> = unsafe fn(src: *const T, n: usize) -> Box<[T]>;

/// [`CloneRows`] for a `Clone` type. If a `clone` panics, the rows cloned so far are dropped
/// with the vector that holds them.
///
/// # Safety
///
/// `src..src + n` must be readable rows.
unsafe fn clone_rows<T: Clone>(src: *const T, n: usize) -> Box<[T]> {
    let mut rows = Vec::with_capacity(n);
    // SAFETY: the caller vouches for the rows `src..src + n`.
    rows.extend((0..n).map(|i| unsafe { (*src.add(i)).clone() }));
    rows.into_boxed_slice()
}

// SAFETY: a view is shared by the shard and one or more readers. Readers clone rows out of
// `base` while the shard may read the same rows (`T: Sync`), and the copies they make are
// owned and dropped by whichever thread drops the view last (`T: Send`). A page's copy is
// written only by the thread that moved the page from `PENDING` to `BUSY`, and read only after
// the page is `DONE` (Release/Acquire on the state); `retired` is behind a mutex.
unsafe impl<T: Send + Sync> Send for View<T> {}
// SAFETY: as for `Send`: every shared access goes through the page states or the mutex.
unsafe impl<T: Send + Sync> Sync for View<T> {}

impl<T> View<T> {
    /// The rows of `page`: its first row and how many.
    fn span(&self, page: usize) -> (usize, usize) {
        let start = page << PAGE_BITS;
        (start, PAGE.min(self.len - start))
    }

    /// Fills `page` of the copy from `base`, unless it is filled already; waits while another
    /// thread fills it.
    fn fill(&self, page: usize) {
        let state = &self.states[page];
        let mut spins = 0u32;
        loop {
            match state.compare_exchange_weak(PENDING, BUSY, Ordering::Acquire, Ordering::Acquire) {
                Ok(_) => break,
                Err(DONE) => return,
                Err(_) => {
                    spins += 1;
                    if spins < 64 {
                        std::hint::spin_loop();
                    } else {
                        std::thread::yield_now();
                    }
                }
            }
        }
        // Gives the page back if a `clone` panics.
        struct Unwind<'a>(&'a AtomicU8);
        impl Drop for Unwind<'_> {
            fn drop(&mut self) {
                self.0.store(PENDING, Ordering::Release);
            }
        }
        let unwind = Unwind(state);
        let (start, n) = self.span(page);
        // SAFETY: `start..start + n` is within `len`: `base` holds those rows of the freeze,
        // alive and unwritten while the page is not `DONE` (see `base`).
        let rows = unsafe { (self.clone_rows)(self.base.add(start), n) };
        // SAFETY: this thread owns the page (`BUSY`): nothing else reads or writes its copy.
        unsafe { *self.copies[page].get() = Box::into_raw(rows).cast::<T>() };
        mem::forget(unwind);
        state.store(DONE, Ordering::Release);
    }

    /// Row `i` of the copy, once its page is `DONE`.
    ///
    /// # Safety
    ///
    /// `i < len`, and the page of row `i` is `DONE` (observed with Acquire).
    unsafe fn copied(&self, i: usize) -> &T {
        let page = i >> PAGE_BITS;
        // SAFETY: the page is `DONE` (the caller): its copy is set, holds the page's rows, and
        // is never written again while the view lives.
        unsafe { &*(*self.copies[page].get()).add(i - (page << PAGE_BITS)) }
    }

    fn pages(&self) -> usize {
        self.states.len()
    }
}

impl<T> Drop for View<T> {
    fn drop(&mut self) {
        for (page, state) in self.states.iter().enumerate() {
            if state.load(Ordering::Acquire) == DONE {
                let (_, n) = self.span(page);
                // SAFETY: a `DONE` page's copy came from `Box::into_raw` of a boxed slice of
                // its `n` rows (`fill`), and this is the last reference to the view.
                drop(unsafe {
                    Box::from_raw(ptr::slice_from_raw_parts_mut(*self.copies[page].get(), n))
                });
            }
        }
    }
}

impl<T> CowVec<T> {
    /// An empty vector.
    pub(crate) const fn new() -> Self {
        CowVec { rows: Vec::new(), pending: Vec::new(), view: None }
    }

    /// How many rows the vector has room for without reallocating.
    pub(crate) fn capacity(&self) -> usize {
        self.rows.capacity()
    }

    /// Row `i` for writing, copying its page into a pending view first.
    #[inline(always)]
    pub(crate) fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.get_mut_if(i, |_| true)
    }

    /// Row `i` for writing if `wanted(row)`: one bounds check, and a page shared with a view
    /// is copied only if the row is wanted (so an absent row is found without a copy).
    #[inline(always)]
    pub(crate) fn get_mut_if(
        &mut self,
        i: usize,
        wanted: impl FnOnce(&T) -> bool,
    ) -> Option<&mut T> {
        if !wanted(self.rows.get(i)?) {
            return None;
        }
        self.touch(i >> PAGE_BITS);
        // SAFETY: `i < len`. The pointer comes from `as_mut_ptr`, which materializes no
        // reference to the whole buffer, so only row `i` is borrowed: a view may be reading
        // other rows of a pending page on another thread (never this one: its page is not pending).
        Some(unsafe { &mut *self.rows.as_mut_ptr().add(i) })
    }

    /// The rows `start..end` for writing (clamped to the length), copying their pending pages
    /// into the view first.
    pub(crate) fn slice_mut(&mut self, start: usize, end: usize) -> &mut [T] {
        let end = end.min(self.rows.len());
        let start = start.min(end);
        if start < end && !self.pending.is_empty() {
            for page in start >> PAGE_BITS..=(end - 1) >> PAGE_BITS {
                self.touch(page);
            }
        }
        // SAFETY: `start..end` is within the length, and no page of it is pending; as in
        // `get_mut`, the pointer borrows only these rows.
        unsafe { std::slice::from_raw_parts_mut(self.rows.as_mut_ptr().add(start), end - start) }
    }

    /// Appends a row.
    #[inline]
    pub(crate) fn push(&mut self, value: T) {
        if self.rows.len() == self.rows.capacity() {
            self.reserve(1);
        }
        self.rows.push(value);
    }

    /// Grows the vector to `len` rows, filling new rows with `fill()`; a no-op if it is that long.
    #[inline]
    pub(crate) fn grow_with(&mut self, len: usize, fill: impl FnMut() -> T) {
        if len > self.rows.len() {
            if len > self.rows.capacity() {
                self.reserve(len - self.rows.len());
            }
            self.rows.resize_with(len, fill);
        }
    }

    /// Removes every row. Under a pending view the rows go to the view, which drops them with
    /// itself (nothing is copied, and the shard does not drop them).
    pub(crate) fn clear(&mut self) {
        self.hand_over();
        self.rows.clear();
    }

    /// Freezes the rows for a checkpoint: O(pages), no row is copied here.
    pub(crate) fn freeze(&mut self) -> FrozenVec<T>
    where
        T: Clone,
    {
        self.release();
        let len = self.rows.len();
        let pages = len.div_ceil(PAGE);
        let view = Arc::new(View {
            base: self.rows.as_ptr(),
            len,
            states: (0..pages).map(|_| AtomicU8::new(PENDING)).collect(),
            copies: (0..pages).map(|_| UnsafeCell::new(ptr::null_mut())).collect(),
            retired: Mutex::new(Vec::new()),
            clone_rows: clone_rows::<T>,
        });
        self.pending.clear();
        self.pending.resize(pages.div_ceil(64), !0);
        if pages % 64 != 0 {
            if let Some(last) = self.pending.last_mut() {
                *last = (1 << (pages % 64)) - 1;
            }
        }
        self.view = Some(Arc::downgrade(&view));
        FrozenVec { view }
    }

    /// Copies `page` into the pending view before a write, if the view still needs it.
    #[inline(always)]
    fn touch(&mut self, page: usize) {
        if let Some(&word) = self.pending.get(page >> 6) {
            if word >> (page & 63) & 1 != 0 {
                self.unshare(page);
            }
        }
    }

    #[cold]
    #[inline(never)]
    fn unshare(&mut self, page: usize) {
        match self.live_view() {
            Some(view) => {
                view.fill(page);
                self.pending[page >> 6] &= !(1 << (page & 63));
            }
            // The readers are gone: nothing is pending any more.
            _ => self.forget_view(),
        }
    }

    /// Makes room for `more` rows. Reallocating under a pending view hands the old buffer to
    /// the view instead of freeing it (its rows move bitwise into the new one; the view reads
    /// the old copies only of pages the vector has not written since).
    #[cold]
    fn reserve(&mut self, more: usize) {
        let len = self.rows.len();
        if self.rows.capacity() - len >= more {
            return;
        }
        // No page pending (all copied, or none to begin with): an ordinary reallocation.
        let view = self.live_view().filter(|_| self.pending.iter().any(|&w| w != 0));
        let Some(view) = view else {
            self.forget_view();
            self.rows.reserve(more);
            return;
        };
        let needed = len.checked_add(more).expect("capacity overflow");
        let mut grown = Vec::with_capacity(needed.max(self.rows.capacity() * 2));
        // SAFETY: `grown` has room for `len` rows and does not overlap `rows`. The rows are
        // moved: `rows` is set to length 0 so they are neither dropped nor reachable through it,
        // and its allocation stays alive in the view, which reads it as `base` until every
        // page is `DONE`.
        unsafe {
            ptr::copy_nonoverlapping(self.rows.as_ptr(), grown.as_mut_ptr(), len);
            self.rows.set_len(0);
            grown.set_len(len);
        }
        view.retire(mem::replace(&mut self.rows, grown));
    }

    /// Fills every page a pending view still needs, so that the rows may be dropped or moved.
    fn release(&mut self) {
        if let Some(view) = self.live_view() {
            for page in 0..view.pages() {
                if self.pending[page >> 6] >> (page & 63) & 1 != 0 {
                    view.fill(page);
                }
            }
        }
        self.forget_view();
    }

    /// The view, if a reader still holds it. (If the reader lets go while the vector holds
    /// this reference, the vector frees the view: rare, a race with the end of a checkpoint.)
    fn live_view(&self) -> Option<Arc<View<T>>> {
        let view = self.view.as_ref()?;
        let live = view.upgrade();
        if live.is_none() {
            // A failed upgrade is a Relaxed load: this fence pairs with the Release of the
            // readers' last `Arc` drop, so that their reads of `base` happen before the writes,
            // drops and moves of rows that follow.
            std::sync::atomic::fence(Ordering::Acquire);
        }
        live
    }

    /// Hands the rows to a pending view, which then owns (and drops) them, leaving the vector
    /// empty; without one, nothing happens.
    fn hand_over(&mut self) {
        if let Some(view) = self.live_view() {
            view.retire(mem::take(&mut self.rows));
        }
        self.forget_view();
    }

    fn forget_view(&mut self) {
        self.view = None;
        self.pending.clear();
    }
}

impl<T> Default for CowVec<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Deref for CowVec<T> {
    type Target = [T];

    #[inline(always)]
    fn deref(&self) -> &[T] {
        &self.rows
    }
}

impl<T, I: std::slice::SliceIndex<[T]>> std::ops::Index<I> for CowVec<T> {
    type Output = I::Output;

    #[inline(always)]
    fn index(&self, i: I) -> &I::Output {
        &self.rows[i]
    }
}

impl<T> std::ops::IndexMut<usize> for CowVec<T> {
    /// Row `i` for writing, as [`get_mut`](CowVec::get_mut).
    ///
    /// # Panics
    ///
    /// If `i` is out of bounds, as a `Vec` does.
    #[inline]
    fn index_mut(&mut self, i: usize) -> &mut T {
        let len = self.rows.len();
        match self.get_mut(i) {
            Some(row) => row,
            None => panic!("index out of bounds: the len is {len} but the index is {i}"),
        }
    }
}

impl<T: Clone> Clone for CowVec<T> {
    /// A copy of the rows, with no view.
    fn clone(&self) -> Self {
        CowVec { rows: self.rows.clone(), pending: Vec::new(), view: None }
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for CowVec<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.rows.iter()).finish()
    }
}

impl<T> Drop for CowVec<T> {
    /// Under a pending view the rows go to the view (no copy, no `clone` that could panic while
    /// the rows are dropped).
    fn drop(&mut self) {
        self.hand_over();
    }
}

impl<T> FrozenVec<T> {
    /// How many rows the vector had at the freeze.
    pub(crate) fn len(&self) -> usize {
        self.view.len
    }

    /// Row `i` as the freeze found it (copying its page first if the vector has not).
    #[inline]
    pub(crate) fn get(&self, i: usize) -> Option<&T> {
        if i >= self.view.len {
            return None;
        }
        let page = i >> PAGE_BITS;
        if self.view.states[page].load(Ordering::Acquire) != DONE {
            self.view.fill(page);
        }
        // SAFETY: `i < len`, and the page is `DONE` (Acquire above or in `fill`).
        Some(unsafe { self.view.copied(i) })
    }
}

impl<T> Clone for FrozenVec<T> {
    fn clone(&self) -> Self {
        FrozenVec { view: Arc::clone(&self.view) }
    }
}

impl<T> std::fmt::Debug for FrozenVec<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrozenVec").field("len", &self.view.len).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(frozen: &FrozenVec<String>) -> Vec<String> {
        (0..frozen.len()).map(|i| frozen.get(i).unwrap().clone()).collect()
    }

    #[test]
    fn a_view_keeps_the_rows_of_its_freeze_through_writes_growth_and_clear() {
        let n = 3 * PAGE + 5;
        let mut v = CowVec::new();
        for i in 0..n {
            v.push(i.to_string());
        }
        let before: Vec<String> = v.to_vec();
        let frozen = v.freeze();
        *v.get_mut(1).unwrap() = "one".into();
        v.slice_mut(2 * PAGE, 2 * PAGE + 3).iter_mut().for_each(|s| s.push('!'));
        // Reallocates: the view now reads the pages not yet written from the old buffer.
        v.grow_with(v.capacity() + 1, || "new".into());
        *v.get_mut(3 * PAGE).unwrap() = "late".into();
        assert_eq!(v[1], "one");
        assert_eq!(v[2 * PAGE], format!("{}!", 2 * PAGE));
        assert_eq!(rows(&frozen), before);
        assert_eq!(frozen.get(n), None);
        v.clear();
        assert!(v.is_empty());
        assert_eq!(rows(&frozen), before);
    }

    #[test]
    fn a_second_freeze_fills_the_first_view_and_a_dropped_view_costs_nothing() {
        let mut v = CowVec::new();
        v.grow_with(2 * PAGE, || 7u64);
        let first = v.freeze();
        *v.get_mut(0).unwrap() = 1;
        let second = v.freeze();
        *v.get_mut(PAGE).unwrap() = 2;
        assert_eq!((first.get(0), first.get(PAGE)), (Some(&7), Some(&7)));
        assert_eq!((second.get(0), second.get(PAGE)), (Some(&1), Some(&7)));
        drop((first, second));
        *v.get_mut(1).unwrap() = 3;
        assert!(v.pending.is_empty() && v.view.is_none());
        assert_eq!(&v[..3], &[1, 3, 7]);
    }

    #[test]
    fn dropping_the_vector_first_leaves_the_view_whole() {
        let mut v = CowVec::new();
        (0..PAGE + 1).for_each(|i| v.push(vec![i]));
        let frozen = v.freeze();
        *v.get_mut(PAGE).unwrap() = vec![];
        drop(v);
        assert_eq!(frozen.get(PAGE), Some(&vec![PAGE]));
        assert_eq!(frozen.get(3), Some(&vec![3]));
    }

    #[test]
    fn a_panicking_clone_gives_the_page_back() {
        #[derive(Debug, PartialEq)]
        struct Fussy(u32);
        impl Clone for Fussy {
            fn clone(&self) -> Self {
                if self.0 == 5 && FAIL.with(std::cell::Cell::get) {
                    panic!("refused");
                }
                Fussy(self.0)
            }
        }
        thread_local!(static FAIL: std::cell::Cell<bool> = const { std::cell::Cell::new(true) });
        let mut v = CowVec::new();
        (0..10).for_each(|i| v.push(Fussy(i)));
        let frozen = v.freeze();
        let failed =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| frozen.get(0).cloned()));
        assert!(failed.is_err());
        FAIL.with(|f| f.set(false));
        assert_eq!(frozen.get(5), Some(&Fussy(5)));
        *v.get_mut(5).unwrap() = Fussy(50);
        assert_eq!(frozen.get(5), Some(&Fussy(5)));
    }

    #[test]
    fn clearing_or_dropping_under_a_view_hands_the_rows_over_without_cloning() {
        #[derive(Debug, PartialEq)]
        struct NoClone(u32);
        impl Clone for NoClone {
            fn clone(&self) -> Self {
                assert!(CLONES.with(std::cell::Cell::get), "cloned {}", self.0);
                NoClone(self.0)
            }
        }
        thread_local!(static CLONES: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
        let mut v = CowVec::new();
        (0..PAGE as u32 + 3).for_each(|i| v.push(NoClone(i)));
        let frozen = v.freeze();
        v.clear();
        assert!(v.is_empty() && v.view.is_none());
        v.push(NoClone(7));
        let again = v.freeze();
        drop(v);
        CLONES.with(|c| c.set(true));
        assert_eq!(frozen.get(PAGE + 2), Some(&NoClone(PAGE as u32 + 2)));
        assert_eq!(again.get(0), Some(&NoClone(7)));
    }

    #[test]
    fn a_reader_thread_sees_the_freeze_while_the_vector_is_written() {
        let pages = if cfg!(miri) { 3 } else { 64 };
        let mut v = CowVec::new();
        (0..pages * PAGE).for_each(|i| v.push(i as u64));
        for round in 0..3u64 {
            let frozen = v.freeze();
            let reader = std::thread::spawn(move || {
                (0..pages * PAGE).rev().all(|i| frozen.get(i) == Some(&(i as u64 + round)))
            });
            for i in (0..pages * PAGE).step_by(PAGE / 4) {
                *v.get_mut(i).unwrap() += 1;
            }
            // Reallocates while the reader may still read the old buffer.
            v.grow_with(v.capacity() + 1, || 0);
            v.slice_mut(PAGE + 1, PAGE + 3).iter_mut().for_each(|x| *x += 1);
            for i in 0..pages * PAGE {
                if i % (PAGE / 4) != 0 && !(PAGE + 1..PAGE + 3).contains(&i) {
                    *v.get_mut(i).unwrap() += 1;
                }
            }
            assert!(v[..pages * PAGE].iter().enumerate().all(|(i, &x)| x == i as u64 + round + 1));
            assert!(reader.join().unwrap(), "round {round}");
        }
    }
}
