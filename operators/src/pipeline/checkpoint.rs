//! Checkpoints of a running pipeline: aligned barriers, snapshots at the barrier, files written
//! in the background, restore at start (docs/reliability.md §1.8; docs/architecture.md, "Layers
//! and the data path").
//!
//! ```text
//!  checkpoint thread ── every interval: requested = n, wake the shards
//!        │                                      ▲
//!  source partition ── sees n > last: records its position, emits Barrier(n) in order
//!        │                                      │
//!  key_by exchange ── aligns Barrier(n) over every channel (the router holds early channels)
//!        │                                      │
//!  keyed operator ── snapshots its keys, state and timers by key group, forwards Barrier(n)
//!        │                                      │
//!  root (sink) ── Sink::on_barrier(n), acknowledges: the last acknowledgement of n hands the
//!                 shards' parts to the checkpoint thread, which writes one file per shard,
//!                 then the manifest (n is complete), then removes all but the newest R
//! ```
//!
//! **Restore.** At start, the newest complete checkpoint of the directory (validated whole
//! before anything is used) gives every keyed operator the key groups of its shard from every old
//! shard's file, so a checkpoint taken on N shards restores on M, and gives every source the
//! positions its partitions had reached ([`StagePlan::resume`](super::StagePlan::resume)).
//! Operators are matched by their place in the job (the how-manieth `key_by` of the shard's
//! build) and their name; state in the checkpoint that no operator of the job claims is an
//! error, not silently dropped (Flink's `allowNonRestoredState` is off by default too).
//!
//! **What a barrier costs a shard.** One atomic load per source pull while no checkpoint is
//! pending; at a barrier, the keyed operators' freezes (copy-on-write, O(pages), of the live
//! keys, state rows and timers' key index,
//! [`KeyedBackend::freeze`](pinwheel_engine::keyed::KeyedBackend::freeze)), measured as the stall
//! in [`CheckpointStats`]. The checkpoint thread encodes the frozen views by key group while the
//! shards go on.
//!
//! **Timeouts.** A checkpoint not acknowledged by every shard within [`Checkpointing::timeout`]
//! is abandoned and the next one triggered an interval later (Flink's checkpoint timeout).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use pinwheel_engine::checkpoint::{
    CheckpointDir, CheckpointError, CheckpointKind, Decoder, Encoder, FaultPlan, KEYED_SECTION,
    Manifest, ManifestShard, RestorePolicy, ShardFileMeta, WriteOptions, keyed_section_frozen,
    keyed_sections, shard_file_name, write_manifest, write_shard_file,
};
use pinwheel_engine::keyed::{FrozenSnapshot, WatermarkOnRestore};
use pinwheel_engine::keygroup::KeyGroups;
use pinwheel_engine::shard::ShardWaker;

use super::commit::Committer;
use super::restart::RestartPolicy;
use super::savepoint::{self, Savepoints, Waiter};
use super::stalls::Stalls;
use crate::error::{ConfigError, PipelineError};

/// The section kind of a source partition's position in a shard file.
const SOURCE_SECTION: u8 = 2;

/// The checkpoints of a pipeline: where, how often, how many to keep, how to restore.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Checkpointing {
    /// The checkpoint directory (created `0700` if missing).
    pub dir: PathBuf,
    /// Time between the completion of one checkpoint and the trigger of the next (default 1 s).
    pub interval: Duration,
    /// Complete checkpoints kept (default 2, at least 1).
    pub retention: usize,
    /// What a restore does when the newest checkpoint does not validate (default: fail).
    pub restore_policy: RestorePolicy,
    /// Where the watermark restarts (default: the minimum, as Flink).
    pub watermark_on_restore: WatermarkOnRestore,
    /// Whether and how often a failed run starts again from its newest complete checkpoint
    /// (default: never).
    pub restart: RestartPolicy,
    /// Fault injection into the checkpoint thread's file writes, for crash tests (default:
    /// none; see [`FaultPlan`]).
    pub faults: FaultPlan,
    /// Attempts of each file write (shard file or manifest) before the checkpoint fails with
    /// its error (default 3, at least 1): an I/O error or a full disk leaves nothing behind, and
    /// the next attempt writes under a new temporary name.
    pub write_attempts: u32,
    /// How long a checkpoint may take from its trigger until every shard has acknowledged its
    /// barrier (default 10 minutes, Flink's `execution.checkpointing.timeout`). A checkpoint
    /// that takes longer is abandoned, counted in [`CheckpointStats::timed_out`], and the next
    /// one is triggered an interval later; the run goes on. Nothing is lost: what exactly-once
    /// sinks pre-committed for it becomes visible with the next complete checkpoint. The
    /// writing of a checkpoint whose barriers have all been acknowledged is not cut short (its
    /// file writes are bounded by [`write_attempts`](Self::write_attempts)).
    pub timeout: Duration,
    /// Where a run starts when [`dir`](Self::dir) holds no complete checkpoint: checkpoint (or
    /// savepoint) `id` of another checkpoint directory (default none: a fresh start). Flink's
    /// `--fromSavepoint`. New checkpoints go to `dir`, numbered after it.
    pub restore_from: Option<(PathBuf, u64)>,
}

impl Checkpointing {
    /// Checkpoints in `dir`, every second, the newest 2 kept; a run resumes from the newest
    /// complete one there.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Checkpointing {
            dir: dir.into(),
            interval: Duration::from_secs(1),
            retention: 2,
            restore_policy: RestorePolicy::Strict,
            watermark_on_restore: WatermarkOnRestore::Minimum,
            restart: RestartPolicy::none(),
            faults: FaultPlan::none(),
            write_attempts: 3,
            timeout: Duration::from_secs(600),
            restore_from: None,
        }
    }

    /// Starts, when the checkpoint directory holds no complete checkpoint yet, from checkpoint
    /// or savepoint `checkpoint` of the checkpoint directory `dir` ([`restore_from`](Self::restore_from)).
    pub fn restore_from(mut self, dir: impl Into<PathBuf>, checkpoint: u64) -> Self {
        self.restore_from = Some((dir.into(), checkpoint));
        self
    }

    /// How long a checkpoint may take until every shard has acknowledged its barrier
    /// ([`timeout`](Self::timeout)).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The time between one checkpoint's completion and the next one's trigger.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// How many complete checkpoints to keep (at least 1).
    pub fn retention(mut self, keep: usize) -> Self {
        self.retention = keep.max(1);
        self
    }

    /// What a restore does when the newest checkpoint does not validate.
    pub fn restore_policy(mut self, policy: RestorePolicy) -> Self {
        self.restore_policy = policy;
        self
    }

    /// Whether and how often a failed run starts again from its newest complete checkpoint
    /// ([`RestartPolicy`]; docs/reliability.md §2.5).
    pub fn restart(mut self, policy: RestartPolicy) -> Self {
        self.restart = policy;
        self
    }

    /// Attempts of each file write before the checkpoint fails (at least 1).
    pub fn write_attempts(mut self, attempts: u32) -> Self {
        self.write_attempts = attempts.max(1);
        self
    }

    /// Injects `faults` into the checkpoint files' writes (shard files and manifests): for crash
    /// tests that make the k-th I/O step fail or abort the process.
    pub fn faults(mut self, faults: FaultPlan) -> Self {
        self.faults = faults;
        self
    }

    /// Where the watermark restarts after a restore.
    pub fn watermark_on_restore(mut self, watermark: WatermarkOnRestore) -> Self {
        self.watermark_on_restore = watermark;
        self
    }
}

/// What the checkpoints of a finished run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckpointStats {
    /// The checkpoint the run resumed from, if any.
    pub restored_from: Option<u64>,
    /// How long the restore took: reading and validating the checkpoint, then every shard's
    /// operators taking their key groups (until the last shard had built).
    pub restore_time: Duration,
    /// Checkpoints completed (manifest written), the final one included.
    pub completed: u64,
    /// The newest complete checkpoint's id.
    pub last_completed: Option<u64>,
    /// The bytes of the shard files of the newest complete periodic checkpoint (not the final
    /// one, which holds no keyed state).
    pub last_bytes: u64,
    /// Bytes written, over every checkpoint.
    pub bytes_written: u64,
    /// Time spent encoding the frozen state and writing files (shard files, manifests, syncs),
    /// on the checkpoint thread.
    pub write_time: Duration,
    /// Every shard's stall at every barrier: how long freezing its keyed operators took.
    pub stalls: Stalls,
    /// Restarts after failures ([`RestartPolicy`]); the other figures are the last attempt's.
    pub restarts: u32,
    /// File writes that failed and were attempted again ([`Checkpointing::write_attempts`]).
    pub write_retries: u64,
    /// Checkpoints abandoned because their barriers were not all acknowledged within
    /// [`Checkpointing::timeout`].
    pub timed_out: u64,
    /// Savepoints completed ([`RunningJob::savepoint`](super::RunningJob::savepoint); counted
    /// in `completed` too).
    pub savepoints: u64,
}

/// What a restored checkpoint gives the operators and sources that build from it.
#[derive(Debug, Default)]
struct Restored {
    checkpoint: u64,
    /// Keyed snapshots by operator id, one per old shard, encoded (checked, not decoded: each
    /// shard decodes its own key groups).
    keyed: HashMap<String, Vec<Vec<u8>>>,
    /// Source positions by source ordinal, indexed by old shard.
    sources: HashMap<u64, Vec<Vec<u8>>>,
    /// The operator ids claimed by an operator of this run.
    claimed: Mutex<Vec<String>>,
}

/// One shard's part of a pending checkpoint.
#[derive(Debug, Default)]
struct ShardPart {
    /// Source positions by source ordinal.
    sources: BTreeMap<u64, Vec<u8>>,
    /// The keyed operators' frozen backends, encoded into sections when the file is written.
    keyed: Vec<(Arc<str>, Box<dyn FrozenSnapshot>)>,
    acks: usize,
}

/// A checkpoint whose barriers are on their way.
#[derive(Debug)]
struct Pending {
    shards: Vec<ShardPart>,
}

#[derive(Debug)]
struct Progress {
    pending: BTreeMap<u64, Pending>,
    /// Roots on each shard that have finished (they count as acknowledged from then on).
    finished_roots: Vec<usize>,
    /// The final position of every ended source partition: `(shard, ordinal) -> position`.
    ended_sources: BTreeMap<(usize, u64), Vec<u8>>,
    /// The newest checkpoint handed to the checkpoint thread: barriers of it or an older one
    /// (abandoned) add nothing.
    handed_out: u64,
    stats: CheckpointStats,
    error: Option<PipelineError>,
    /// The savepoint in flight, and the requests it answers.
    savepoint: Option<(u64, Vec<Waiter>)>,
}

/// A checkpoint all of whose parts have arrived, for the checkpoint thread to write.
struct Complete {
    id: u64,
    shards: Vec<ShardPart>,
    /// The final checkpoint of a completed run (no keyed state).
    last: bool,
}

/// The checkpoints of one run, shared by its shards and its checkpoint thread.
pub(crate) struct Coordinator {
    settings: Checkpointing,
    dir: CheckpointDir,
    key_groups: KeyGroups,
    shards: usize,
    roots: usize,
    /// The newest checkpoint triggered; sources compare it with the last barrier they sent.
    requested: AtomicU64,
    progress: Mutex<Progress>,
    /// Complete checkpoints for the checkpoint thread; `None` stops it.
    complete_tx: Sender<Option<Complete>>,
    complete_rx: Receiver<Option<Complete>>,
    restored: Option<Restored>,
    /// The id the first checkpoint of this run gets, minus one.
    base: u64,
    /// When the restore began.
    opened: Instant,
    wakers: Arc<[ShardWaker]>,
    /// The exactly-once sinks' committers: called after every manifest.
    committers: Vec<Arc<dyn Committer>>,
    /// The run's stop flag: set when checkpointing fails.
    halt: Arc<AtomicBool>,
    /// The program's savepoint requests (they outlive this run's attempt).
    savepoints: Arc<Savepoints>,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("dir", &self.settings.dir)
            .field("requested", &self.requested.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Coordinator {
    /// Opens the directory and reads the newest complete checkpoint, if any, for a run of
    /// `roots` roots on `wakers.len()` shards.
    pub(crate) fn open(
        settings: &Checkpointing,
        key_groups: KeyGroups,
        roots: usize,
        wakers: Arc<[ShardWaker]>,
        committers: Vec<Arc<dyn Committer>>,
        halt: Arc<AtomicBool>,
        savepoints: Arc<Savepoints>,
    ) -> Result<Arc<Coordinator>, PipelineError> {
        let started = Instant::now();
        let dir = CheckpointDir::open_or_create(&settings.dir)?;
        dir.remove_leftover_tmp()?;
        // The newest complete checkpoint of the directory, else the one to start from.
        let (found, from) = match dir.newest_complete(settings.restore_policy)? {
            Some(r) => (Some(r), None),
            None => match &settings.restore_from {
                None => (None, None),
                Some((path, id)) => {
                    let from = CheckpointDir::open_existing(path)?;
                    (Some(from.complete(*id)?), Some(from))
                }
            },
        };
        let read_from = from.as_ref().unwrap_or(&dir);
        let restored = match found {
            None => None,
            Some(r) => {
                let m = &r.manifest;
                if m.max_key_groups != key_groups.max_key_groups() {
                    return Err(ConfigError::CheckpointMismatch {
                        checkpoint: m.checkpoint,
                        reason: format!(
                            "it was taken with {} key groups, this pipeline has {}",
                            m.max_key_groups,
                            key_groups.max_key_groups()
                        ),
                    }
                    .into());
                }
                let mut restored = Restored { checkpoint: m.checkpoint, ..Restored::default() };
                let old_shards = m.shard_count as usize;
                for (shard, file) in r.files.iter().enumerate() {
                    let path = read_from.path().join(shard_file_name(m.checkpoint, shard as u32));
                    for (operator, snapshot) in keyed_sections(&path, file)? {
                        restored.keyed.entry(operator).or_default().push(snapshot);
                    }
                    for (kind, bytes) in &file.sections {
                        if *kind != SOURCE_SECTION {
                            continue;
                        }
                        let (ordinal, position) =
                            decode_position(bytes).map_err(|e| e.in_file(&path, 0))?;
                        let slots = restored
                            .sources
                            .entry(ordinal)
                            .or_insert_with(|| vec![Vec::new(); old_shards]);
                        slots[shard] = position;
                    }
                }
                Some(restored)
            }
        };
        let base = restored.as_ref().map_or(0, |r| r.checkpoint);
        for c in &committers {
            c.recover(restored.as_ref().map(|r| r.checkpoint))
                .map_err(|source| PipelineError::Commit { source })?;
        }
        let shards = wakers.len();
        let (complete_tx, complete_rx) = crossbeam_channel::unbounded();
        let coordinator = Coordinator {
            settings: settings.clone(),
            dir,
            key_groups,
            shards,
            roots,
            requested: AtomicU64::new(base),
            progress: Mutex::new(Progress {
                pending: BTreeMap::new(),
                finished_roots: vec![0; shards],
                ended_sources: BTreeMap::new(),
                handed_out: base,
                stats: CheckpointStats {
                    restored_from: restored.as_ref().map(|r| r.checkpoint),
                    ..CheckpointStats::default()
                },
                error: None,
                savepoint: None,
            }),
            complete_tx,
            complete_rx,
            restored,
            base,
            opened: started,
            wakers,
            committers,
            halt,
            savepoints,
        };
        Ok(Arc::new(coordinator))
    }

    /// A shard has built its operators (and restored them): the restore lasts until the last.
    pub(crate) fn shard_built(&self) {
        if self.restored.is_some() {
            let elapsed = self.opened.elapsed();
            let mut p = self.progress();
            p.stats.restore_time = p.stats.restore_time.max(elapsed);
        }
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The newest checkpoint triggered (sources emit its barrier once they see it).
    #[inline]
    pub(crate) fn requested(&self) -> u64 {
        self.requested.load(Ordering::Acquire)
    }

    /// The id of the last checkpoint before this run (the one it resumed from, or 0).
    pub(crate) fn base(&self) -> u64 {
        self.base
    }

    /// Where the watermark restarts after a restore.
    pub(crate) fn watermark_on_restore(&self) -> WatermarkOnRestore {
        self.settings.watermark_on_restore
    }

    /// The restored snapshots of operator `id`, one per old shard, if the checkpoint has any;
    /// marks them claimed.
    pub(crate) fn restored_keyed(&self, id: &str) -> Option<&[Vec<u8>]> {
        let restored = self.restored.as_ref()?;
        let snapshots = restored.keyed.get(id)?;
        let mut claimed = restored.claimed.lock().unwrap_or_else(PoisonError::into_inner);
        if !claimed.iter().any(|c| c == id) {
            claimed.push(id.to_string());
        }
        Some(snapshots)
    }

    /// The restored positions of source `ordinal`, one per old shard, if any.
    pub(crate) fn restored_source(&self, ordinal: u64) -> Option<&[Vec<u8>]> {
        self.restored.as_ref()?.sources.get(&ordinal).map(Vec::as_slice)
    }

    /// The key-group assignment of the run.
    pub(crate) fn key_groups(&self) -> &KeyGroups {
        &self.key_groups
    }

    /// After every shard has built: state in the checkpoint that no operator claimed is an error.
    pub(crate) fn check_claimed(&self) -> Result<(), PipelineError> {
        let Some(restored) = &self.restored else { return Ok(()) };
        let claimed = restored.claimed.lock().unwrap_or_else(PoisonError::into_inner);
        let mut unclaimed: Vec<&String> =
            restored.keyed.keys().filter(|k| !claimed.contains(k)).collect();
        unclaimed.sort();
        match unclaimed.first() {
            None => Ok(()),
            Some(op) => Err(ConfigError::CheckpointMismatch {
                checkpoint: restored.checkpoint,
                reason: format!(
                    "it holds state of operator `{op}`, which this job does not have (operators \
                     are matched by their place among the job's keyed operators and their name)"
                ),
            }
            .into()),
        }
    }

    fn part<'p>(&self, progress: &'p mut Progress, id: u64, shard: usize) -> &'p mut ShardPart {
        let shards = self.shards;
        &mut progress
            .pending
            .entry(id)
            .or_insert_with(|| Pending {
                shards: (0..shards).map(|_| ShardPart::default()).collect(),
            })
            .shards[shard]
    }

    /// Source `ordinal` on `shard` emitted barrier `id` at `position`.
    pub(crate) fn source_position(&self, id: u64, shard: usize, ordinal: u64, position: &[u8]) {
        let mut p = self.progress();
        if id <= p.handed_out {
            return;
        }
        self.part(&mut p, id, shard).sources.insert(ordinal, position.to_vec());
    }

    /// Source `ordinal` on `shard` has ended at `position`: checkpoints it sends no more
    /// barriers for record this position.
    pub(crate) fn source_ended(&self, shard: usize, ordinal: u64, position: Vec<u8>) {
        self.progress().ended_sources.insert((shard, ordinal), position);
    }

    /// A keyed operator's backend frozen at barrier `id`, from `started` on (the shard's stall
    /// lasts until now); the checkpoint thread encodes it.
    pub(crate) fn keyed_frozen(
        &self,
        id: u64,
        shard: usize,
        operator: &Arc<str>,
        frozen: Box<dyn FrozenSnapshot>,
        started: Instant,
    ) {
        let stall = started.elapsed();
        let mut p = self.progress();
        p.stats.stalls.record(stall);
        if id <= p.handed_out {
            return;
        }
        self.part(&mut p, id, shard).keyed.push((operator.clone(), frozen));
    }

    /// A root on `shard` received barrier `id` (its sink has acted on it).
    pub(crate) fn root_barrier(&self, id: u64, shard: usize) {
        let mut p = self.progress();
        if id <= p.handed_out {
            return;
        }
        self.part(&mut p, id, shard).acks += 1;
        self.complete_ready(&mut p);
    }

    /// A root on `shard` has finished: it acknowledges every later checkpoint.
    pub(crate) fn root_finished(&self, shard: usize) {
        let mut p = self.progress();
        p.finished_roots[shard] += 1;
        self.complete_ready(&mut p);
    }

    /// Hands every checkpoint whose shards have all acknowledged to the checkpoint thread (older
    /// pending ones were abandoned for it, as aligned barriers of a newer checkpoint overtake).
    fn complete_ready(&self, p: &mut Progress) {
        let ready: Vec<u64> = p
            .pending
            .iter()
            .filter(|(_, pending)| {
                pending
                    .shards
                    .iter()
                    .zip(&p.finished_roots)
                    .all(|(part, finished)| part.acks + finished >= self.roots)
            })
            .map(|(&id, _)| id)
            .collect();
        let Some(&newest) = ready.last() else { return };
        let Some(mut pending) = p.pending.remove(&newest) else { return };
        p.pending.retain(|&id, _| id > newest);
        p.handed_out = newest;
        // Ended sources record their final position.
        for (&(shard, ordinal), position) in &p.ended_sources {
            pending.shards[shard].sources.entry(ordinal).or_insert_with(|| position.clone());
        }
        // The receiver lives in `self`: the send cannot fail.
        let _ = self.complete_tx.send(Some(Complete {
            id: newest,
            shards: pending.shards,
            last: false,
        }));
    }

    /// Abandons checkpoint `id` if its barriers have not all been acknowledged (it has not been
    /// handed to the checkpoint thread): its parts are dropped, and barriers of it that arrive
    /// later add nothing. Returns whether it was abandoned.
    fn expire(&self, id: u64) -> bool {
        let mut p = self.progress();
        if id <= p.handed_out {
            return false;
        }
        p.pending.retain(|&pending, _| pending > id);
        p.handed_out = id;
        p.stats.timed_out += 1;
        if let Some((_, waiters)) = p.savepoint.take_if(|(s, _)| *s == id) {
            // Taken again with the next checkpoint.
            self.savepoints.put_back(waiters);
        }
        true
    }

    /// Triggers checkpoint `requested + 1` and wakes the shards so that idle sources see it.
    #[cfg(test)]
    fn trigger(&self) -> u64 {
        self.trigger_as(false)
    }

    /// Triggers checkpoint `requested + 1`, as the savepoint the waiting requests asked for if
    /// `savepoint`, and wakes the shards so that idle sources see it.
    fn trigger_as(&self, savepoint: bool) -> u64 {
        let id = self.requested.fetch_add(1, Ordering::AcqRel) + 1;
        if savepoint {
            let waiters = self.savepoints.take();
            if !waiters.is_empty() {
                self.progress().savepoint = Some((id, waiters));
            }
        }
        self.wake_shards();
        id
    }

    /// Writes one complete checkpoint: a file per shard, then the manifest, then retention.
    fn write(&self, c: Complete) -> Result<(), PipelineError> {
        let started = Instant::now();
        let options = WriteOptions::default().with_faults(self.settings.faults.clone());
        let mut shards = Vec::with_capacity(self.shards);
        let mut bytes = 0;
        for (shard, part) in c.shards.iter().enumerate() {
            let range = self
                .key_groups
                .range_for_shard(shard, self.shards)
                .map_err(|e| CheckpointError::InvalidArgument(e.to_string()))?;
            let meta = ShardFileMeta::new(c.id, shard as u32, self.shards as u32, range);
            let mut keyed = Vec::with_capacity(part.keyed.len());
            for (operator, frozen) in &part.keyed {
                keyed.push((KEYED_SECTION, keyed_section_frozen(operator, frozen.as_ref())?));
            }
            let sources =
                part.sources.iter().map(|(&o, p)| (SOURCE_SECTION, encode_position(o, p)));
            keyed.extend(sources);
            let sections: Vec<(u8, &[u8])> =
                keyed.iter().map(|(k, b)| (*k, b.as_slice())).collect();
            let written = self.attempts(|attempt| {
                let meta = meta.clone().with_attempt(attempt);
                write_shard_file(&self.dir, &meta, &sections, &options)
            })?;
            bytes += written.size;
            shards.push(ManifestShard::new(shard as u32, range, &written, 0));
        }
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let savepoint = self.progress().savepoint.as_ref().is_some_and(|(s, _)| *s == c.id);
        let kind = if savepoint { CheckpointKind::Savepoint } else { CheckpointKind::Checkpoint };
        let manifest =
            Manifest::new(c.id, kind, self.key_groups.max_key_groups(), shards, vec![], created)?;
        self.attempts(|_| write_manifest(&self.dir, &manifest, &options))?;
        // Complete: what the exactly-once sinks pre-committed at its barriers becomes visible.
        for committer in &self.committers {
            committer.commit(c.id).map_err(|source| PipelineError::Commit { source })?;
        }
        self.dir.gc(self.settings.retention)?;
        let mut p = self.progress();
        if let Some((id, waiters)) = p.savepoint.take_if(|(s, _)| *s == c.id) {
            p.stats.savepoints += 1;
            savepoint::answer(waiters, id);
        }
        p.stats.completed += 1;
        p.stats.last_completed = Some(c.id);
        if !c.last {
            p.stats.last_bytes = bytes;
        }
        p.stats.bytes_written += bytes;
        p.stats.write_time += started.elapsed();
        Ok(())
    }

    /// Checkpointing failed: records `e` (the run's error) and stops every shard, which would
    /// otherwise go on without checkpoints (or wait for a barrier that never comes).
    fn fail(&self, e: PipelineError) {
        self.progress().error.get_or_insert(e);
        self.halt.store(true, Ordering::Relaxed);
        self.wake_shards();
    }

    fn wake_shards(&self) {
        for w in self.wakers.iter() {
            w.wake();
        }
    }

    /// Runs `write` (given the attempt number) until it succeeds, fails with an error that is
    /// not an I/O one, or has failed [`Checkpointing::write_attempts`] times; counts the retries.
    fn attempts<T>(
        &self,
        mut write: impl FnMut(u32) -> Result<T, CheckpointError>,
    ) -> Result<T, CheckpointError> {
        let mut attempt = 0;
        loop {
            match write(attempt) {
                Err(CheckpointError::Io { .. } | CheckpointError::NoSpace { .. })
                    if attempt + 1 < self.settings.write_attempts =>
                {
                    attempt += 1;
                    self.progress().stats.write_retries += 1;
                }
                result => return result,
            }
        }
    }

    /// The checkpoint thread: triggers a checkpoint `interval` after the previous one completed
    /// (or timed out), writes the complete ones, until [`stop`](Self::stop).
    fn run(self: &Arc<Self>) {
        let mut next_trigger = Instant::now() + self.settings.interval;
        // The checkpoint in flight and when it expires.
        let mut in_flight: Option<(u64, Instant)> = None;
        loop {
            if let Some((id, expires)) = in_flight {
                if Instant::now() >= expires {
                    if self.expire(id) {
                        in_flight = None;
                        next_trigger = Instant::now() + self.settings.interval;
                    } else {
                        // Handed out just now: it is on its way to this thread.
                        in_flight = Some((id, deadline(Duration::from_secs(3600))));
                    }
                }
            }
            // Every 50 ms at least: for the timeout, and for savepoint requests.
            let until = match in_flight {
                Some((_, expires)) => expires,
                None => next_trigger,
            };
            let timeout =
                Duration::from_millis(50).min(until.saturating_duration_since(Instant::now()));
            match self.complete_rx.recv_timeout(timeout) {
                Ok(None) => break,
                Ok(Some(c)) => {
                    let id = c.id;
                    if let Err(e) = self.write(c) {
                        self.fail(e);
                        break;
                    }
                    if id >= self.requested() {
                        in_flight = None;
                        next_trigger = Instant::now() + self.settings.interval;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    let savepoint = self.savepoints.is_requested();
                    if in_flight.is_none() && (savepoint || Instant::now() >= next_trigger) {
                        let id = self.trigger_as(savepoint);
                        in_flight = Some((id, deadline(self.settings.timeout)));
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
    }

    /// Starts the checkpoint thread.
    pub(crate) fn start(self: &Arc<Self>) -> Result<JoinHandle<()>, PipelineError> {
        let me = self.clone();
        std::thread::Builder::new()
            .name("pinwheel-checkpoint".to_string())
            .spawn(move || me.run())
            .map_err(|e| PipelineError::Spawn {
                thread: "pinwheel-checkpoint".to_string(),
                message: e.to_string(),
            })
    }

    /// Stops the checkpoint thread after the shards have ended; returns the run's checkpoint
    /// figures, or the error that stopped checkpointing. A checkpoint whose parts had all
    /// arrived is written first. If the run `completed` (every shard ended without an error),
    /// a final checkpoint follows ([`final_checkpoint`](Self::final_checkpoint)).
    pub(crate) fn finish(
        &self,
        thread: JoinHandle<()>,
        completed: bool,
    ) -> Result<CheckpointStats, PipelineError> {
        // The receiver lives in `self`: the send cannot fail.
        let _ = self.complete_tx.send(None);
        let _ = thread.join();
        while let Ok(Some(c)) = self.complete_rx.try_recv() {
            if let Err(e) = self.write(c) {
                self.progress().error.get_or_insert(e);
                break;
            }
        }
        if completed && self.progress().error.is_none() {
            if let Some(c) = self.final_checkpoint() {
                if let Err(e) = self.write(c) {
                    self.progress().error.get_or_insert(e);
                }
            }
        }
        let mut p = self.progress();
        if let Some((_, waiters)) = p.savepoint.take() {
            // Not complete in this attempt: the next one (after a restart) takes it.
            self.savepoints.put_back(waiters);
        }
        if let Some(e) = p.error.take() {
            return Err(e);
        }
        Ok(p.stats.clone())
    }

    /// The final checkpoint of a run that completed, as Flink takes one when a bounded job
    /// finishes: every source at its end, no keyed state (every operator has finished: its
    /// event-time timers fired at the final watermark). A later run restores it and has nothing
    /// left to do, instead of replaying the input after the last periodic checkpoint and
    /// emitting its output a second time. None unless every root has finished.
    fn final_checkpoint(&self) -> Option<Complete> {
        let mut p = self.progress();
        if p.finished_roots.iter().any(|&f| f < self.roots) {
            return None;
        }
        let id = self.requested.fetch_add(1, Ordering::AcqRel) + 1;
        let mut shards: Vec<ShardPart> = (0..self.shards).map(|_| ShardPart::default()).collect();
        for (&(shard, ordinal), position) in &p.ended_sources {
            shards[shard].sources.insert(ordinal, position.clone());
        }
        p.pending.clear();
        p.handed_out = id;
        Some(Complete { id, shards, last: true })
    }
}

/// `after` from now, or a year from now if that is beyond what an `Instant` holds.
fn deadline(after: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(after).unwrap_or(now + Duration::from_secs(365 * 86_400))
}

fn encode_position(ordinal: u64, position: &[u8]) -> Vec<u8> {
    let mut e = Encoder::with_limit(usize::MAX);
    // An encoder without a limit cannot refuse.
    let _ = e.varint(ordinal).and_then(|e| e.bytes(position));
    e.into_bytes()
}

fn decode_position(
    bytes: &[u8],
) -> Result<(u64, Vec<u8>), pinwheel_engine::checkpoint::DecodeError> {
    let mut d = Decoder::new(bytes);
    let ordinal = d.varint()?;
    let position = d.bytes(u64::MAX)?.to_vec();
    d.finish()?;
    Ok((ordinal, position))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coordinator(dir: &std::path::Path) -> Arc<Coordinator> {
        Coordinator::open(
            &Checkpointing::new(dir),
            KeyGroups::new(128).unwrap(),
            1,
            Arc::from(vec![ShardWaker::new()]),
            vec![],
            Arc::new(AtomicBool::new(false)),
            Arc::new(Savepoints::new(true)),
        )
        .unwrap()
    }

    #[test]
    fn a_checkpoint_that_times_out_is_abandoned_and_its_late_barriers_add_nothing() {
        let dir = std::env::temp_dir().join(format!("pinwheel-expire-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let c = coordinator(&dir);
        let one = c.trigger();
        c.source_position(one, 0, 0, b"first");
        assert!(c.expire(one));
        assert!(!c.expire(one), "abandoned once");
        // Its barrier reaches the root after all: nothing is handed out.
        c.root_barrier(one, 0);
        assert!(c.complete_rx.try_recv().is_err());
        let two = c.trigger();
        c.source_position(two, 0, 0, b"second");
        c.root_barrier(two, 0);
        let complete = c.complete_rx.try_recv().unwrap().unwrap();
        assert_eq!(complete.id, two);
        assert!(!c.expire(two), "handed out: it completes");
        assert_eq!(complete.shards[0].sources.get(&0).map(Vec::as_slice), Some(&b"second"[..]));
        c.write(complete).unwrap();
        let stats = c.progress().stats.clone();
        assert_eq!((stats.timed_out, stats.completed, stats.last_completed), (1, 1, Some(two)));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
