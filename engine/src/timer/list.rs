//! The tier lists: [`Entry`], the 16-byte registration the lists hold, [`List`], a FIFO of entries
//! on a `Vec`, and [`Spares`], the big buffers kept for reuse. See the
//! [module documentation](super#implementation) for how the tiers use them.

use std::mem::{size_of, take};

use crate::key::KeyId;

/// A drained list keeps its buffer up to this many entries; larger buffers are freed.
const KEEP_CAPACITY: usize = 4096;

/// One registration as it sits in a tier list: 16 bytes. It is *live* while its key's record
/// holds `(at, seq)`; a delete only edits the record, so the entry turns *stale* and is dropped
/// when the lists reach it (invariant 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Entry {
    pub(super) at: u64,
    pub(super) key: KeyId,
    pub(super) seq: u32,
}

/// Big list buffers kept for reuse: a slot list that grew to hundreds of thousands of entries is
/// drained by a cascade while the next one is filling up; handing its buffer over avoids freeing
/// and re-growing it (with the page faults of fresh memory) every few seconds of event time.
#[derive(Debug, Default)]
pub(super) struct Spares(Vec<Vec<Entry>>);

impl Spares {
    /// Buffers kept at most.
    const MAX: usize = 4;

    /// Keeps `buf` if it is among the largest few.
    fn give(&mut self, mut buf: Vec<Entry>) {
        buf.clear();
        if self.0.len() < Self::MAX {
            self.0.push(buf);
        } else if let Some(smallest) = self.0.iter_mut().min_by_key(|b| b.capacity())
            && smallest.capacity() < buf.capacity()
        {
            *smallest = buf;
        }
    }

    /// The largest buffer, if it holds more than `capacity` entries.
    fn take_bigger(&mut self, capacity: usize) -> Option<Vec<Entry>> {
        let (i, _) = self.0.iter().enumerate().max_by_key(|(_, b)| b.capacity())?;
        (self.0[i].capacity() > capacity).then(|| self.0.swap_remove(i))
    }

    pub(super) fn memory_bytes(&self) -> usize {
        self.0.iter().map(|b| b.capacity() * size_of::<Entry>()).sum()
    }
}

/// A FIFO of entries on a `Vec`: pushed at the back, consumed from `head`.
///
/// The fields are visible to the compaction pass, which rewrites `entries[head..]` in place with
/// absolute indices (`compaction.rs`).
#[derive(Debug, Default)]
pub(super) struct List {
    pub(super) entries: Vec<Entry>,
    pub(super) head: usize,
}

impl List {
    #[inline]
    pub(super) fn is_empty(&self) -> bool {
        self.head == self.entries.len()
    }

    #[inline]
    pub(super) fn len(&self) -> usize {
        self.entries.len() - self.head
    }

    #[inline]
    pub(super) fn push(&mut self, e: Entry, spares: &mut Spares) {
        if self.entries.len() == self.entries.capacity() && self.entries.capacity() >= KEEP_CAPACITY
        {
            self.grow(spares);
        }
        self.entries.push(e);
    }

    /// A full big buffer: move to a bigger spare if there is one (indices stay the same, so a
    /// compaction pass inside this list is not disturbed).
    #[cold]
    fn grow(&mut self, spares: &mut Spares) {
        if let Some(mut buf) = spares.take_bigger(self.entries.capacity()) {
            buf.extend_from_slice(&self.entries);
            spares.give(std::mem::replace(&mut self.entries, buf));
        }
    }

    /// The entry `i` places after the head.
    #[inline]
    pub(super) fn get(&self, i: usize) -> Option<&Entry> {
        self.entries.get(self.head + i)
    }

    #[inline]
    pub(super) fn pop_front(&mut self, spares: &mut Spares) -> Option<Entry> {
        let e = *self.entries.get(self.head)?;
        self.head += 1;
        if self.head == self.entries.len() {
            self.reset(spares);
        } else if self.head >= KEEP_CAPACITY && self.head * 2 >= self.entries.len() {
            // A list that is consumed while it grows (re-registrations at the instant being
            // fired): drop the consumed prefix, amortised O(1).
            self.entries.drain(..self.head);
            self.head = 0;
        }
        Some(e)
    }

    /// The live part.
    pub(super) fn as_slice(&self) -> &[Entry] {
        &self.entries[self.head..]
    }

    /// Empties the list, keeping a small buffer for reuse and handing a big one to `spares`.
    pub(super) fn reset(&mut self, spares: &mut Spares) {
        self.head = 0;
        if self.entries.capacity() > KEEP_CAPACITY {
            spares.give(take(&mut self.entries));
        } else {
            self.entries.clear();
        }
    }

    /// Appends every entry of `other`, taking its buffer when this list is empty.
    pub(super) fn append(&mut self, mut other: List, spares: &mut Spares) {
        if self.is_empty() {
            let mut old = std::mem::replace(self, other);
            old.reset(spares);
        } else {
            self.entries.extend_from_slice(other.as_slice());
            other.reset(spares);
        }
    }

    /// Gives back memory after a compaction emptied most of the buffer.
    pub(super) fn shrink(&mut self) {
        if self.entries.capacity() > KEEP_CAPACITY
            && self.entries.len() * 4 < self.entries.capacity()
        {
            self.entries.shrink_to(self.entries.len() * 2);
        }
    }

    pub(super) fn capacity_bytes(&self) -> usize {
        self.entries.capacity() * size_of::<Entry>()
    }
}
