//! The batched prefetch pipeline: records of a batch processed one by one while the memory of the
//! records a few places ahead is being loaded.
//!
//! With millions of keys, the memory a record touches (its key's slot in the key table, the stored
//! key, its row in every state column, its timer records) is in DRAM, about 100 ns away, and a core
//! keeps ten or more such loads in flight. So while record `i` is processed, the key-table slot of
//! record `i + SLOT_AHEAD + DATA_AHEAD` is prefetched, and the slot of record `i + DATA_AHEAD`
//! (prefetched earlier, so now in cache) is read, which names that key's id (almost always: a new
//! key, a collision or a tag match with another key only make a useless hint), and the key's rows
//! are prefetched. By the time a record is processed, its memory is in cache. The results are
//! exactly those of processing the records one by one.

use std::collections::VecDeque;
use std::ops::ControlFlow;

use super::KeyedBackend;
use crate::key::Key;

/// Records between the prefetch of a key's slot and the prefetch of its rows.
pub const SLOT_AHEAD: usize = 8;
/// Records between the prefetch of a key's rows and the record's processing.
pub const DATA_AHEAD: usize = 8;

impl<K: Key> KeyedBackend<K> {
    /// Runs `each(backend, item)` on the items of `input` in order, popping each from the front,
    /// while the memory of the records a few places ahead is prefetched: the key-table slot of
    /// the record [`SLOT_AHEAD`] + [`DATA_AHEAD`] places ahead, and the key's rows (the stored key,
    /// its state rows, its timer records) of the record [`DATA_AHEAD`] places ahead, whose slot is
    /// then in cache and names its id. `hash_of` gives the routing hash of an item that is a
    /// record (and `None` for other items: watermarks, markers).
    ///
    /// `each` returning `ControlFlow::Break` stops the loop after that item (an advance of the
    /// watermark that must continue before anything else reaches the backend): the items after it
    /// stay in `input` for the next call. An error also stops it, and is returned.
    #[inline]
    pub fn drive<T, E>(
        &mut self,
        input: &mut VecDeque<T>,
        hash_of: impl Fn(&T) -> Option<u64>,
        mut each: impl FnMut(&mut Self, T) -> Result<ControlFlow<()>, E>,
    ) -> Result<ControlFlow<()>, E> {
        const DEPTH: usize = SLOT_AHEAD + DATA_AHEAD;
        self.state.refresh_prefetch();
        // The first items have not been prefetched: start their slots, then their rows.
        for item in input.iter().take(DEPTH) {
            if let Some(hash) = hash_of(item) {
                self.keys.prefetch_slot(hash);
            }
        }
        for item in input.iter().take(DATA_AHEAD) {
            if let Some(id) = hash_of(item).and_then(|h| self.keys.candidate(h)) {
                self.prefetch_key_data(id);
            }
        }
        while let Some(item) = input.pop_front() {
            // `input[j]` is the item `j + 1` places after the one about to be processed.
            if let Some(hash) = input.get(DEPTH - 1).and_then(&hash_of) {
                self.keys.prefetch_slot(hash);
            }
            if let Some(id) =
                input.get(DATA_AHEAD - 1).and_then(&hash_of).and_then(|h| self.keys.candidate(h))
            {
                self.prefetch_key_data(id);
            }
            if each(self, item)?.is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        Ok(ControlFlow::Continue(()))
    }
}
