//! A registry's states frozen at a checkpoint barrier ([`FrozenStates`]): a copy of every
//! column's rows taken on the shard, encoded later on the checkpoint thread, so that the shard
//! stalls for the copy only, not for the encoding.

use std::collections::HashMap;

use super::StateError;
use super::column::FrozenColumn;
use super::registry::StateInfo;
use crate::key::KeyId;
use crate::varint;

/// The states of one registry as a barrier found them: the registered ones in registration
/// order, then those restored but not registered (their rows kept as they were restored).
/// `Send`: the checkpoint thread encodes it.
pub struct FrozenStates {
    infos: Vec<StateInfo>,
    columns: Vec<Box<dyn FrozenColumn>>,
    restored: Vec<HashMap<KeyId, Vec<u8>>>,
}

impl std::fmt::Debug for FrozenStates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrozenStates").field("states", &self.infos).finish_non_exhaustive()
    }
}

impl FrozenStates {
    pub(super) fn new(
        registered: Vec<(StateInfo, Box<dyn FrozenColumn>)>,
        restored: Vec<(StateInfo, HashMap<KeyId, Vec<u8>>)>,
    ) -> Self {
        let (mut infos, columns): (Vec<_>, Vec<_>) = registered.into_iter().unzip();
        let (more, restored): (Vec<_>, Vec<_>) = restored.into_iter().unzip();
        infos.extend(more);
        FrozenStates { infos, columns, restored }
    }

    /// The states, as a snapshot lists them; [`encode_rows`](Self::encode_rows) refers to them
    /// by index.
    pub fn states(&self) -> &[StateInfo] {
        &self.infos
    }

    /// Whether any state holds a row for `key`.
    pub fn has_rows(&self, key: KeyId) -> bool {
        self.columns.iter().any(|c| c.has_row(key))
            || self.restored.iter().any(|r| r.contains_key(&key))
    }

    /// Calls `row(state index, encoded row)` for every state holding a row for `key`, in state
    /// order; `scratch` is reused for the encoding.
    ///
    /// # Errors
    ///
    /// A value that serde cannot encode (postcard has no limits that plain data could hit, so
    /// this is rare), naming the state.
    pub fn encode_rows(
        &self,
        key: KeyId,
        scratch: &mut Vec<u8>,
        mut row: impl FnMut(u32, &[u8]),
    ) -> Result<(), StateError> {
        for (i, column) in self.columns.iter().enumerate() {
            scratch.clear();
            let has = column.encode_row(key, scratch).map_err(|e| StateError::Restore {
                name: self.infos[i].name.clone(),
                reason: format!("a value could not be encoded: {e}"),
            })?;
            if has {
                row(i as u32, scratch);
            }
        }
        let registered = self.columns.len();
        for (i, rows) in self.restored.iter().enumerate() {
            if let Some(bytes) = rows.get(&key) {
                row((registered + i) as u32, bytes);
            }
        }
        Ok(())
    }

    /// Appends `key`'s rows as a snapshot encodes them (postcard's `Vec<(u32, Vec<u8>)>`: a
    /// count, then each state's index, length and bytes), each row encoded in place: no copy
    /// through a scratch buffer. On an error `out` is left in an unspecified state.
    ///
    /// # Errors
    ///
    /// As [`encode_rows`](Self::encode_rows).
    pub fn encode_rows_into(&self, key: KeyId, out: &mut Vec<u8>) -> Result<(), StateError> {
        let count_at = out.len();
        out.push(0);
        let mut n = 0u64;
        for (i, column) in self.columns.iter().enumerate() {
            let at = out.len();
            varint::put(out, i as u64);
            let start = out.len() + 1;
            out.push(0);
            let has = column.encode_row(key, out).map_err(|e| StateError::Restore {
                name: self.infos[i].name.clone(),
                reason: format!("a value could not be encoded: {e}"),
            })?;
            if has {
                n += 1;
                varint::patch_len(out, start - 1, out.len() - start);
            } else {
                out.truncate(at);
            }
        }
        let registered = self.columns.len();
        for (i, rows) in self.restored.iter().enumerate() {
            if let Some(bytes) = rows.get(&key) {
                n += 1;
                varint::put(out, (registered + i) as u64);
                varint::put(out, bytes.len() as u64);
                out.extend_from_slice(bytes);
            }
        }
        varint::patch_len(out, count_at, n as usize);
        Ok(())
    }
}
