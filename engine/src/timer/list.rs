//! The tier lists: [`Entry`], the 16-byte registration the lists hold, [`List`], a FIFO of entries
//! in chunks, and [`Spares`], the free chunks kept for reuse. See the
//! [module documentation](super#implementation) for how the tiers use them.

use std::mem::{size_of, take};

use crate::key::KeyId;

/// log2 of the entries of a chunk: lists grow by chunks of 1,024 entries (16 KiB), never by
/// copying, so that a slot list that fills up with hundreds of thousands of registrations (every
/// 60 s timeout of a 4 s window lands in one coarse slot) costs no stall when it grows. The
/// engine's own tests use chunks of 8, so that the property tests against the reference store
/// cross chunk boundaries all the time.
const CHUNK_BITS: u32 = if cfg!(test) { 3 } else { 10 };
const CHUNK: usize = 1 << CHUNK_BITS;
const CHUNK_MASK: usize = CHUNK - 1;

/// One registration as it sits in a tier list: 16 bytes. It is *live* while its key's record
/// holds `(at, seq)`; a delete only edits the record, so the entry turns *stale* and is dropped
/// when the lists reach it (invariant 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Entry {
    pub(super) at: u64,
    pub(super) key: KeyId,
    pub(super) seq: u32,
}

/// Free chunks of the lists of one store, kept for reuse: the chunks a drained or compacted list
/// gives back feed the lists that grow, so that a store in a steady state touches no fresh memory
/// (on a virtual machine the first touch of a page costs microseconds).
#[derive(Debug, Default)]
pub(super) struct Spares(Vec<Vec<Entry>>);

impl Spares {
    /// Chunks kept at most (4 MiB of 1,024-entry chunks).
    const MAX: usize = 256;

    /// A chunk with room for [`CHUNK`] entries.
    fn take(&mut self) -> Vec<Entry> {
        self.0.pop().unwrap_or_else(|| Vec::with_capacity(CHUNK))
    }

    /// Keeps `chunk` if it is full-sized and there is room.
    fn give(&mut self, mut chunk: Vec<Entry>) {
        if chunk.capacity() == CHUNK && self.0.len() < Self::MAX {
            chunk.clear();
            self.0.push(chunk);
        }
    }

    pub(super) fn memory_bytes(&self) -> usize {
        self.0.len() * CHUNK * size_of::<Entry>()
    }
}

/// A FIFO of entries in chunks: pushed at the back, consumed from `head`.
///
/// Entries have absolute indices (`head..end()` are the live part), which the compaction pass
/// uses to rewrite the list in place with a read and a write cursor (`compaction.rs`); indices stay
/// the same while the list grows. Every chunk but the last is full; the first one grows as a `Vec`
/// (a short list stays small), the others come full-sized from [`Spares`].
#[derive(Debug, Default)]
pub(super) struct List {
    chunks: Vec<Vec<Entry>>,
    /// The absolute index after the last entry.
    len: usize,
    pub(super) head: usize,
}

impl List {
    #[inline]
    pub(super) fn is_empty(&self) -> bool {
        self.head == self.len
    }

    #[inline]
    pub(super) fn len(&self) -> usize {
        self.len - self.head
    }

    /// The absolute index after the last entry.
    #[inline]
    pub(super) fn end(&self) -> usize {
        self.len
    }

    #[inline]
    pub(super) fn push(&mut self, e: Entry, spares: &mut Spares) {
        let c = self.len >> CHUNK_BITS;
        if c == self.chunks.len() {
            self.add_chunk(spares);
        }
        if let Some(chunk) = self.chunks.get_mut(c) {
            chunk.push(e);
            self.len += 1;
        }
    }

    #[cold]
    fn add_chunk(&mut self, spares: &mut Spares) {
        let chunk = if self.chunks.is_empty() { Vec::new() } else { spares.take() };
        self.chunks.push(chunk);
    }

    /// The entry at absolute index `i`.
    #[inline]
    pub(super) fn at(&self, i: usize) -> Option<&Entry> {
        self.chunks.get(i >> CHUNK_BITS)?.get(i & CHUNK_MASK)
    }

    /// Overwrites the entry at absolute index `i` (which exists).
    #[inline]
    pub(super) fn set(&mut self, i: usize, e: Entry) {
        if let Some(slot) =
            self.chunks.get_mut(i >> CHUNK_BITS).and_then(|c| c.get_mut(i & CHUNK_MASK))
        {
            *slot = e;
        }
    }

    /// The entry `i` places after the head.
    #[inline]
    pub(super) fn get(&self, i: usize) -> Option<&Entry> {
        self.at(self.head + i)
    }

    #[inline(always)]
    pub(super) fn pop_front(&mut self, spares: &mut Spares) -> Option<Entry> {
        let e = *self.at(self.head)?;
        self.head += 1;
        if self.head == self.len || self.head == CHUNK {
            self.after_pop(spares);
        }
        Some(e)
    }

    /// The list ran empty, or its first chunk is consumed while it grows (re-registrations at
    /// the instant being fired): reset it, or hand back that chunk (indices move down by one
    /// chunk).
    #[cold]
    fn after_pop(&mut self, spares: &mut Spares) {
        if self.head == self.len {
            self.reset(spares);
        } else {
            let first = self.chunks.remove(0);
            spares.give(first);
            self.head = 0;
            self.len -= CHUNK;
        }
    }

    /// The entries at absolute indices `start..end`.
    pub(super) fn range(&self, start: usize, end: usize) -> impl Iterator<Item = &Entry> + '_ {
        let end = end.min(self.len);
        let start = start.min(end);
        let first = start >> CHUNK_BITS;
        let chunks = self.chunks.get(first..end.div_ceil(CHUNK)).unwrap_or_default();
        chunks.iter().enumerate().flat_map(move |(n, chunk)| {
            let base = (first + n) << CHUNK_BITS;
            let hi = (end - base).min(chunk.len());
            chunk[start.saturating_sub(base).min(hi)..hi].iter()
        })
    }

    /// The live part, in order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &Entry> + '_ {
        self.range(self.head, self.len)
    }

    /// Cuts the list at absolute index `end` (at least `head`), handing whole chunks beyond it to
    /// `spares`.
    pub(super) fn truncate(&mut self, end: usize, spares: &mut Spares) {
        if end >= self.len {
            return;
        }
        let keep = end.div_ceil(CHUNK);
        for chunk in self.chunks.drain(keep..) {
            spares.give(chunk);
        }
        if let Some(last) = self.chunks.last_mut() {
            last.truncate(end - ((keep - 1) << CHUNK_BITS));
        }
        self.len = end;
    }

    /// Moves the entries at absolute indices `from..end()` down to start at `to`, then cuts the
    /// list after them (closing a gap left by a compaction pass).
    pub(super) fn close_gap(&mut self, to: usize, from: usize, spares: &mut Spares) {
        let end = self.len;
        for (n, read) in (from..end).enumerate() {
            if let Some(&e) = self.at(read) {
                self.set(to + n, e);
            }
        }
        self.truncate(to + (end - from.min(end)), spares);
    }

    /// Empties the list, keeping its first chunk (a slot list is refilled soon) and handing the
    /// others to `spares`.
    #[inline]
    pub(super) fn reset(&mut self, spares: &mut Spares) {
        self.head = 0;
        self.len = 0;
        if self.chunks.len() > 1 {
            self.give_back_after_first(spares);
        }
        if let Some(first) = self.chunks.first_mut() {
            first.clear();
        }
    }

    #[cold]
    fn give_back_after_first(&mut self, spares: &mut Spares) {
        for chunk in self.chunks.drain(1..) {
            spares.give(chunk);
        }
    }

    /// Empties the list and frees or hands back all its memory.
    pub(super) fn release(&mut self, spares: &mut Spares) {
        self.head = 0;
        self.len = 0;
        for chunk in take(&mut self.chunks) {
            spares.give(chunk);
        }
    }

    /// The live part as contiguous runs of entries, in order.
    pub(super) fn runs(&self) -> impl Iterator<Item = &[Entry]> + '_ {
        let (start, end) = (self.head, self.len);
        let first = start >> CHUNK_BITS;
        let chunks = self.chunks.get(first..end.div_ceil(CHUNK)).unwrap_or_default();
        chunks.iter().enumerate().map(move |(n, chunk)| {
            let base = (first + n) << CHUNK_BITS;
            &chunk[start.saturating_sub(base).min(chunk.len())..]
        })
    }

    /// Appends every entry of `other`, taking its chunks when this list is empty.
    pub(super) fn append(&mut self, mut other: List, spares: &mut Spares) {
        if self.is_empty() {
            let mut old = std::mem::replace(self, other);
            old.reset(spares);
        } else {
            for &e in other.iter() {
                self.push(e, spares);
            }
            other.reset(spares);
        }
    }

    pub(super) fn capacity_bytes(&self) -> usize {
        self.chunks.iter().map(Vec::capacity).sum::<usize>() * size_of::<Entry>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: usize) -> Entry {
        Entry { at: i as u64, key: i as KeyId, seq: 0 }
    }

    #[test]
    fn a_list_of_chunks_behaves_as_a_fifo() {
        let mut spares = Spares::default();
        let mut list = List::default();
        let n = CHUNK * 3 + 7;
        for i in 0..n {
            list.push(entry(i), &mut spares);
        }
        assert_eq!(list.len(), n);
        assert!(list.iter().map(|e| e.at as usize).eq(0..n));
        assert!(list.range(CHUNK - 2, CHUNK + 3).map(|e| e.at as usize).eq(CHUNK - 2..CHUNK + 3));
        assert_eq!(list.range(n, n + 5).count(), 0);
        // Consuming past a chunk hands it back and moves the indices down.
        for i in 0..CHUNK + 1 {
            assert_eq!(list.pop_front(&mut spares), Some(entry(i)));
        }
        assert_eq!(list.head, 1);
        assert_eq!(spares.0.len(), 1, "the first chunk, full-sized, is kept");
        assert_eq!(list.get(0), Some(&entry(CHUNK + 1)));
        // Closing a gap and truncating give whole chunks back.
        let end = list.end();
        list.close_gap(2, CHUNK + 5, &mut spares);
        assert_eq!(list.end(), 2 + end - (CHUNK + 5));
        assert_eq!(list.at(2), Some(&entry(2 * CHUNK + 5)));
        list.truncate(list.head, &mut spares);
        assert!(list.is_empty());
        let kept = spares.0.len();
        // A new list takes its later chunks from the spares: no fresh memory.
        let mut other = List::default();
        for i in 0..CHUNK * 2 {
            other.push(entry(i), &mut spares);
        }
        assert_eq!(spares.0.len(), kept - 1);
        list.append(other, &mut spares);
        assert_eq!(list.len(), CHUNK * 2);
        assert_eq!(list.runs().map(<[Entry]>::len).sum::<usize>(), CHUNK * 2);
        list.reset(&mut spares);
        assert!(list.is_empty() && list.capacity_bytes() <= CHUNK * size_of::<Entry>());
        list.release(&mut spares);
        assert_eq!(list.capacity_bytes(), 0);
        assert!(spares.memory_bytes() > 0);
    }
}
