//! Checkpoints of a running pipeline: a run with checkpoints, then a run restored from its
//! newest complete checkpoint, gives — the first run's output up to that checkpoint's barrier,
//! plus everything the restored run emits — exactly the output of a run without checkpoints,
//! restored on 1, 2 and 4 shards from a checkpoint taken on 2 (docs/reliability.md §4, tests
//! 8 and 9, in process; the crash tests kill real processes).
//!
//! Failure recovery (the very last tests): a function that fails or panics once restarts the job
//! from its newest complete checkpoint and the exactly-once output stays exact; one that fails
//! every time ends with a typed error after the restarts the policy allows.
//!
//! Exactly-once files (the last tests): a crash after any checkpoint's manifest, before or
//! after its commit, leaves committed output that the restored run completes to every record
//! exactly once (the crash test of the driver kills real processes).
//!
//! The job is a tumbling-window sum per key with event-time timers and map state, over records
//! with explicit watermarks that never make a record late: its output does not depend on when
//! the watermarks reach the operators, only on the records, so the runs can be compared exactly.
//! The source lets its chunks out only as barriers come back to the sinks, so every run takes
//! several checkpoints whatever the machine's speed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use pinwheel_engine::checkpoint::{CheckpointDir, CheckpointKind};
use pinwheel_operators::pipeline::{
    BuildContext, CheckpointStats, Checkpointing, ExactlyOnceFiles, FileSink, FileSinkError, Job,
    Pipeline, RestartPolicy, RunningJob, SavepointError, Sink, Stage, StagePlan, Status, Turn,
};
use pinwheel_operators::{
    Collector, ConfigError, Context, FnError, KeyedProcessFunction, MapState, MapStateDescriptor,
    OnTimerContext, OpenContext, PipelineError, StreamElement, Timestamp,
};

/// The job's output: `(key, window start, sum)`.
type Out = (u64, i64, u64);
/// Every shard's sink elements, in shard order.
type PerShard = Vec<Vec<StreamElement<Out>>>;

const WINDOW: i64 = 100;
const RECORDS: u64 = 6_000;
/// Not a multiple of a window's 400 records: a gate never falls where every window has closed.
const CHUNK: u64 = 450;

/// Sums values per key and tumbling window of 100 ms; emits `(key, window start, sum)` when the
/// watermark passes the window's end.
#[derive(Default)]
struct WindowSum {
    sums: MapState<i64, u64>,
}

impl KeyedProcessFunction for WindowSum {
    type Key = u64;
    type In = (u64, u64);
    type Out = (u64, i64, u64);

    fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), FnError> {
        self.sums = ctx.map_state(MapStateDescriptor::new("sums"))?;
        Ok(())
    }

    fn process_element(
        &mut self,
        (_, value): (u64, u64),
        ctx: &mut Context<'_, u64>,
        _: &mut Collector<'_, (u64, i64, u64)>,
    ) -> Result<(), FnError> {
        let ts = ctx.timestamp().expect("records have timestamps");
        let start = ts - ts % WINDOW;
        let sum = self.sums.get(ctx, &start)?.unwrap_or(0);
        self.sums.put(ctx, start, sum + value)?;
        ctx.timer_service().register_event_time_timer(start + WINDOW - 1)?;
        Ok(())
    }

    fn on_timer(
        &mut self,
        t: Timestamp,
        ctx: &mut OnTimerContext<'_, u64>,
        out: &mut Collector<'_, (u64, i64, u64)>,
    ) -> Result<(), FnError> {
        let start = t + 1 - WINDOW;
        if let Some(sum) = self.sums.get(ctx, &start)? {
            out.collect((*ctx.current_key(), start, sum));
            self.sums.remove(ctx, &start)?;
        }
        Ok(())
    }
}

/// The stream: record `i` has key `i * 7 mod 13`, value `i mod 10` and timestamp `i / 4`; a
/// watermark 20 ms below the next record's timestamp follows every 50 records, so that at every
/// position past the first records some window is open (a checkpoint there holds state).
fn element(i: u64) -> Vec<StreamElement<(u64, u64)>> {
    let ts = (i / 4) as i64;
    let mut out = vec![StreamElement::record(((i * 7) % 13, i % 10), ts)];
    if i % 50 == 49 {
        out.push(StreamElement::Watermark(((i + 1) / 4) as i64 - 20));
    }
    out
}

/// A source of [`element`]s on shard 0 that lets chunk `c` out only once the sinks have seen
/// `c` barriers of this run (up to `gates`), so that every run checkpoints several times.
struct Gated {
    seen: Arc<AtomicU64>,
    gates: u64,
}

struct GatedStage {
    next: u64,
    end: u64,
    emitted_in_run: u64,
    seen: Arc<AtomicU64>,
    gates: u64,
    ended: bool,
}

impl StagePlan for Gated {
    type Item = (u64, u64);
    type Stage = GatedStage;

    fn build(&self, cx: &BuildContext) -> Result<GatedStage, PipelineError> {
        self.resume(cx, &[])
    }

    fn resume(
        &self,
        cx: &BuildContext,
        positions: &[Vec<u8>],
    ) -> Result<GatedStage, PipelineError> {
        let next = match positions.first() {
            Some(p) if p.len() == 8 => u64::from_le_bytes(p[..].try_into().unwrap()),
            _ => 0,
        };
        let end = if cx.shard().index == 0 { RECORDS } else { 0 };
        Ok(GatedStage {
            next: next.min(end),
            end,
            emitted_in_run: 0,
            seen: self.seen.clone(),
            gates: self.gates,
            ended: false,
        })
    }
}

impl Stage for GatedStage {
    type Item = (u64, u64);

    fn pull(
        &mut self,
        _: &mut Turn,
        out: &mut Vec<StreamElement<(u64, u64)>>,
    ) -> Result<Status, PipelineError> {
        if self.ended {
            return Ok(Status::Done);
        }
        if self.next < self.end {
            let chunk = self.emitted_in_run / CHUNK;
            if self.emitted_in_run % CHUNK == 0
                && chunk > 0
                && chunk <= self.gates
                && self.seen.load(Ordering::Acquire) < chunk
            {
                // Waiting for a barrier to come round; the checkpoint thread wakes the shard.
                return Ok(Status::Idle);
            }
            let n = (self.end - self.next).min(50);
            for i in self.next..self.next + n {
                out.extend(element(i));
            }
            self.next += n;
            self.emitted_in_run += n;
            return Ok(Status::Busy);
        }
        self.ended = true;
        out.push(StreamElement::Watermark(i64::MAX));
        Ok(Status::Done)
    }

    fn position(&self) -> Option<Vec<u8>> {
        Some(self.next.to_le_bytes().to_vec())
    }
}

/// Collects every element; shard 0's counts the barriers it sees.
struct Recording {
    elements: Vec<StreamElement<(u64, i64, u64)>>,
    seen: Option<Arc<AtomicU64>>,
}

impl Sink<(u64, i64, u64)> for Recording {
    fn write(
        &mut self,
        e: StreamElement<(u64, i64, u64)>,
    ) -> Result<(), pinwheel_operators::SinkError> {
        self.elements.push(e);
        Ok(())
    }

    fn on_barrier(&mut self, _: u64) -> Result<(), pinwheel_operators::SinkError> {
        if let Some(seen) = &self.seen {
            seen.fetch_add(1, Ordering::AcqRel);
        }
        Ok(())
    }
}

/// One run: on `shards`, with checkpoints in `dir` (or none); every shard's elements, and the
/// checkpoint figures.
fn run(
    shards: usize,
    dir: Option<&Path>,
    gates: u64,
) -> Result<(PerShard, Option<u64>, Option<u64>), PipelineError> {
    let checkpointing =
        dir.map(|d| Checkpointing::new(d).interval(Duration::from_millis(1)).retention(1000));
    let (per_shard, stats) = run_with(shards, checkpointing, gates)?;
    Ok((
        per_shard,
        stats.as_ref().and_then(|s| s.last_completed),
        stats.and_then(|s| s.restored_from),
    ))
}

/// [`run`] with `checkpointing` as given; every shard's elements and the checkpoint figures.
fn run_with(
    shards: usize,
    checkpointing: Option<Checkpointing>,
    gates: u64,
) -> Result<(PerShard, Option<CheckpointStats>), PipelineError> {
    let mut pipeline = Pipeline::new().shards(shards);
    if let Some(c) = checkpointing {
        pipeline = pipeline.checkpointing(c);
    }
    // Shard 0's sink counts the barriers (every barrier reaches every shard's root).
    let seen = Arc::new(AtomicU64::new(0));
    let stream = pipeline
        .from_source(Gated { seen: seen.clone(), gates })
        .key_by(|e: &(u64, u64)| e.0)
        .process(WindowSum::default);
    let mut job = Job::new(&pipeline);
    let sink = job.sink(stream, move |shard| Recording {
        elements: Vec::new(),
        seen: (shard.index == 0).then(|| seen.clone()),
    });
    let mut run = job.run()?;
    let stats = run.checkpoints.clone();
    Ok((run.take(sink).into_iter().map(|s| s.elements).collect(), stats))
}

fn records(elements: &[StreamElement<(u64, i64, u64)>]) -> Vec<(u64, i64, u64)> {
    elements.iter().filter_map(|e| e.value().copied()).collect()
}

/// What each shard emitted before barrier `id`; everything for the run's final checkpoint
/// `last`, which is taken after the end and has no barrier.
fn before_barrier(
    per_shard: &[Vec<StreamElement<Out>>],
    id: u64,
    last: u64,
) -> Vec<(u64, i64, u64)> {
    let mut out = Vec::new();
    for elements in per_shard {
        if id == last {
            assert!(
                !elements.iter().any(|e| matches!(e, StreamElement::Barrier(b) if b.id == id)),
                "the final checkpoint has no barrier"
            );
            out.extend(records(elements));
            continue;
        }
        let at = elements
            .iter()
            .position(|e| matches!(e, StreamElement::Barrier(b) if b.id == id))
            .unwrap_or_else(|| panic!("barrier {id} reached every shard's sink"));
        out.extend(records(&elements[..at]));
    }
    out
}

fn sorted(mut v: Vec<(u64, i64, u64)>) -> Vec<(u64, i64, u64)> {
    v.sort_unstable();
    v
}

/// A path that does not exist yet, under Cargo's target temporary directory.
fn fresh_dir(name: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("pipeline-checkpoints");
    std::fs::create_dir_all(&root).unwrap();
    let dir = root.join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir(to).unwrap();
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700)).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// The complete checkpoints in `dir` (those with a manifest), ascending.
fn completed(dir: &Path) -> Vec<u64> {
    let mut ids: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_prefix("MANIFEST-").and_then(|n| n.parse().ok())
        })
        .collect();
    ids.sort_unstable();
    ids
}

/// A copy of checkpoint directory `dir` named `name`, in which `id` is the newest complete
/// checkpoint.
fn copy_up_to(dir: &Path, name: &str, id: u64) -> PathBuf {
    let copy = fresh_dir(name);
    copy_dir(dir, &copy);
    keep_up_to(&copy, id);
    copy
}

/// Removes the manifests of the checkpoints after `id`, so that `id` is the newest complete one.
fn keep_up_to(dir: &Path, id: u64) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if let Some(n) = name.strip_prefix("MANIFEST-") {
            if n.parse::<u64>().unwrap() > id {
                std::fs::remove_file(dir.join(&name)).unwrap();
            }
        }
    }
}

#[test]
fn restored_runs_on_1_2_and_4_shards_complete_the_output_exactly() {
    let (reference, _, _) = run(2, None, 0).unwrap();
    let reference = sorted(reference.iter().flat_map(|e| records(e)).collect());
    // 13 keys, 15 windows of 100 ms.
    assert_eq!(reference.len(), 195, "every key's every window");

    let dir = fresh_dir("rescale");
    let (first, last, restored_from) = run(2, Some(&dir), 4).unwrap();
    assert_eq!(restored_from, None, "a fresh directory has nothing to restore");
    let last = last.expect("the gated source waits for barriers, so checkpoints complete");
    assert!(last >= 4, "four gates, four barriers at least: {last}");
    // The final one (taken after the end), the last periodic one, and checkpoint 2, whose
    // barrier the source emitted before its second gate: mid-stream, with windows open.
    let periodic = completed(&dir).into_iter().filter(|&id| id < last).max().unwrap();
    for id in [last, periodic, 2] {
        let committed = before_barrier(&first, id, last);
        for shards in [1, 2, 4] {
            let copy = copy_up_to(&dir, &format!("rescale-{id}-{shards}"), id);
            let (second, _, from) = run(shards, Some(&copy), 2).unwrap();
            assert_eq!(from, Some(id), "the newest complete checkpoint is restored");
            let mut all = committed.clone();
            all.extend(second.iter().flat_map(|e| records(e)));
            assert_eq!(sorted(all), reference, "checkpoint {id} restored on {shards} shards");
            let _ = std::fs::remove_dir_all(&copy);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_completed_run_ends_with_a_final_checkpoint_from_which_a_rerun_has_nothing_to_do() {
    let dir = fresh_dir("final");
    let (first, last, _) = run(2, Some(&dir), 2).unwrap();
    let last = last.unwrap();
    let barriers: Vec<u64> = first[0]
        .iter()
        .filter_map(|e| match e {
            StreamElement::Barrier(b) => Some(b.id),
            _ => None,
        })
        .collect();
    assert!(!barriers.contains(&last), "the final checkpoint {last} follows the end: {barriers:?}");
    assert!(barriers.iter().all(|&b| b < last), "{barriers:?} then {last}");
    // The same job again: it restores the final checkpoint and emits nothing a second time.
    let (second, again, from) = run(2, Some(&dir), 0).unwrap();
    assert_eq!(from, Some(last));
    assert_eq!(second.iter().map(|e| records(e).len()).sum::<usize>(), 0);
    assert!(again > Some(last), "and ends with its own final checkpoint: {again:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_checkpoint_of_a_run_restores_to_the_same_result() {
    // Not only the newest: restoring each checkpoint of the run in turn completes the output.
    let (reference, _, _) = run(2, None, 0).unwrap();
    let reference = sorted(reference.iter().flat_map(|e| records(e)).collect());
    let dir = fresh_dir("each");
    let (first, last, _) = run(2, Some(&dir), 6).unwrap();
    let last = last.unwrap();
    assert!(last >= 6, "six gates, six barriers at least: {last}");
    for id in completed(&dir) {
        let copy = copy_up_to(&dir, &format!("each-{id}"), id);
        let (second, _, from) = run(2, Some(&copy), 0).unwrap();
        assert_eq!(from, Some(id));
        let mut all = before_barrier(&first, id, last);
        all.extend(second.iter().flat_map(|e| records(e)));
        assert_eq!(sorted(all), reference, "restored from checkpoint {id}");
        let _ = std::fs::remove_dir_all(&copy);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The kind each manifest of `dir` records, by checkpoint id.
fn kinds(dir: &Path) -> Vec<(u64, CheckpointKind)> {
    let dir = CheckpointDir::open_or_create(dir).unwrap();
    let mut kinds: Vec<(u64, CheckpointKind)> = dir
        .candidates()
        .unwrap()
        .into_iter()
        .map(|c| (c.checkpoint, c.manifest.unwrap().kind))
        .collect();
    kinds.sort_unstable_by_key(|&(id, _)| id);
    kinds
}

#[test]
fn a_savepoint_requested_from_a_running_job_is_kept_and_restores_on_any_shard_count() {
    let (reference, _, _) = run(2, None, 0).unwrap();
    let reference = sorted(reference.iter().flat_map(|e| records(e)).collect());
    let dir = fresh_dir("savepoint");
    // No periodic checkpoint (every hour): the gated source waits after its first chunk until a
    // barrier has come round, and the only one is the savepoint's.
    let pipeline = Pipeline::new()
        .shards(2)
        .checkpointing(Checkpointing::new(&dir).interval(Duration::from_secs(3600)));
    let seen = Arc::new(AtomicU64::new(0));
    let stream = pipeline
        .from_source(Gated { seen: seen.clone(), gates: 1 })
        .key_by(|e: &(u64, u64)| e.0)
        .process(WindowSum::default);
    let mut job = Job::new(&pipeline);
    let sink = job.sink(stream, move |shard| Recording {
        elements: Vec::new(),
        seen: (shard.index == 0).then(|| seen.clone()),
    });
    let running = job.spawn().unwrap();
    let id = running.savepoint().wait().unwrap();
    let mut first = running.join().unwrap();
    let stats = first.checkpoints.clone().unwrap();
    let first: PerShard = first.take(sink).into_iter().map(|s| s.elements).collect();
    assert_eq!(stats.savepoints, 1);
    let last = stats.last_completed.unwrap();
    assert_eq!(kinds(&dir), [(id, CheckpointKind::Savepoint), (last, CheckpointKind::Checkpoint)]);
    for shards in [1, 2, 4] {
        // Restored with periodic checkpoints, the newest two kept: the savepoint stays.
        let copy = copy_up_to(&dir, &format!("savepoint-{shards}"), id);
        let settings = Checkpointing::new(&copy).interval(Duration::from_millis(1)).retention(2);
        let (second, stats) = run_with(shards, Some(settings), 4).unwrap();
        let stats = stats.unwrap();
        assert_eq!(stats.restored_from, Some(id));
        let mut all = before_barrier(&first, id, last);
        all.extend(second.iter().flat_map(|e| records(e)));
        assert_eq!(sorted(all), reference, "savepoint {id} restored on {shards} shards");
        let kept = kinds(&copy);
        assert!(stats.completed >= 3, "{stats:?}");
        assert_eq!(kept.len(), 3, "the savepoint and the newest two: {kept:?}");
        assert_eq!(kept[0], (id, CheckpointKind::Savepoint));
        let _ = std::fs::remove_dir_all(&copy);
    }
    // From the savepoint in its own directory, into a new one (Flink's `--fromSavepoint`): the
    // newer checkpoint there is ignored, the new run's checkpoints follow the savepoint's id.
    let new_dir = fresh_dir("savepoint-new");
    let settings =
        Checkpointing::new(&new_dir).interval(Duration::from_millis(1)).restore_from(&dir, id);
    let (second, stats) = run_with(2, Some(settings), 2).unwrap();
    let stats = stats.unwrap();
    assert_eq!(stats.restored_from, Some(id));
    let mut all = before_barrier(&first, id, last);
    all.extend(second.iter().flat_map(|e| records(e)));
    assert_eq!(sorted(all), reference, "savepoint {id} restored into a new directory");
    assert!(completed(&new_dir).iter().all(|&c| c > id), "{:?}", completed(&new_dir));
    assert_eq!(kinds(&dir).len(), 2, "the savepoint's directory is only read");
    // Once the new directory has a checkpoint of its own, it is what a run resumes from.
    let settings = Checkpointing::new(&new_dir).restore_from(&dir, id);
    let (_, stats) = run_with(2, Some(settings), 0).unwrap();
    assert!(stats.unwrap().restored_from > Some(id));
    // A savepoint that is not there is an error naming what is missing.
    let missing = Checkpointing::new(fresh_dir("savepoint-none")).restore_from(&dir, id + 100);
    let err = run_with(2, Some(missing), 0).unwrap_err();
    assert!(matches!(err, PipelineError::Checkpoint(_)), "{err}");
    let _ = std::fs::remove_dir_all(&new_dir);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A one-shard job of the gated source (no gates) spawned on `pipeline`.
fn spawn_ungated(pipeline: &Pipeline) -> RunningJob {
    let stream = pipeline
        .from_source(Gated { seen: Arc::new(AtomicU64::new(0)), gates: 0 })
        .key_by(|e: &(u64, u64)| e.0)
        .process(WindowSum::default);
    let mut job = Job::new(pipeline);
    job.sink(stream, |_| Recording { elements: Vec::new(), seen: None });
    job.spawn().unwrap()
}

#[test]
fn a_savepoint_without_checkpointing_or_after_the_end_is_refused() {
    let running = spawn_ungated(&Pipeline::new().shards(1));
    assert_eq!(running.savepoint().wait(), Err(SavepointError::CheckpointingOff));
    running.join().unwrap();

    let dir = fresh_dir("savepoint-late");
    let running = spawn_ungated(
        &Pipeline::new()
            .shards(1)
            .checkpointing(Checkpointing::new(&dir).interval(Duration::from_secs(3600))),
    );
    while !running.is_finished() {
        std::thread::yield_now();
    }
    let handle = running.savepoint();
    running.join().unwrap();
    assert_eq!(handle.wait(), Err(SavepointError::JobEnded));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_source_that_cannot_resume_is_refused_with_checkpoints_on() {
    let dir = fresh_dir("push");
    let pipeline = Pipeline::new().shards(1).checkpointing(Checkpointing::new(&dir));
    let (input, stream) = pipeline.push_source::<u64>(16);
    drop(input);
    let err = stream.map(|v| v + 1).collect().unwrap_err();
    assert!(matches!(err, PipelineError::Config(ConfigError::NotResumable { shard: 0 })), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn state_no_operator_claims_is_an_error() {
    let dir = fresh_dir("unclaimed");
    let (_, last, _) = run(1, Some(&dir), 2).unwrap();
    // The last periodic checkpoint has the operator's state (the final one has none).
    let periodic = completed(&dir).into_iter().filter(|&id| id < last.unwrap()).max().unwrap();
    keep_up_to(&dir, periodic);
    // The same job with the operator renamed: its state has no taker.
    let pipeline = Pipeline::new()
        .shards(1)
        .checkpointing(Checkpointing::new(&dir).interval(Duration::from_secs(60)));
    let seen = Arc::new(AtomicU64::new(0));
    let err = pipeline
        .from_source(Gated { seen, gates: 0 })
        .key_by(|e: &(u64, u64)| e.0)
        .process(WindowSum::default)
        .name("renamed")
        .collect()
        .unwrap_err();
    assert!(matches!(&err, PipelineError::Config(ConfigError::CheckpointMismatch { .. })), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

// Exactly-once files: what the sinks wrote becomes visible only with a complete checkpoint, so
// the committed output is every record once, whatever moment a crash came.

/// Shard 0 counts barriers for the gates, as [`Recording`]; every shard writes exactly-once
/// files.
struct Gating {
    files: FileSink<Out>,
    seen: Option<Arc<AtomicU64>>,
}

impl Sink<Out> for Gating {
    fn write(&mut self, e: StreamElement<Out>) -> Result<(), pinwheel_operators::SinkError> {
        self.files.write(e)
    }

    fn on_barrier(&mut self, id: u64) -> Result<(), pinwheel_operators::SinkError> {
        self.files.on_barrier(id)?;
        if let Some(seen) = &self.seen {
            seen.fetch_add(1, Ordering::AcqRel);
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), pinwheel_operators::SinkError> {
        self.files.finish()
    }
}

fn line(&(key, start, sum): &Out, out: &mut Vec<u8>) {
    out.extend_from_slice(format!("{key},{start},{sum}\n").as_bytes());
}

/// A run into exactly-once files in `out` (its committer registered unless `register` is
/// false), with checkpoints in `dir` if given (every millisecond while gates are left, else
/// every hour: none but the final one); the newest complete checkpoint and the one restored.
fn run_files(
    shards: usize,
    dir: Option<&Path>,
    out: &Path,
    gates: u64,
    register: bool,
) -> Result<(Option<u64>, Option<u64>), PipelineError> {
    let stats = run_files_with(shards, dir, out, gates, register, |c| c)?;
    Ok((stats.as_ref().and_then(|s| s.last_completed), stats.and_then(|s| s.restored_from)))
}

/// [`run_files`] with `settings` applied to the checkpoint settings; the checkpoint figures.
fn run_files_with(
    shards: usize,
    dir: Option<&Path>,
    out: &Path,
    gates: u64,
    register: bool,
    settings: impl FnOnce(Checkpointing) -> Checkpointing,
) -> Result<Option<CheckpointStats>, PipelineError> {
    let interval = if gates > 0 { Duration::from_millis(1) } else { Duration::from_secs(3600) };
    let files = ExactlyOnceFiles::new(out, line).unwrap();
    let mut pipeline = Pipeline::new().shards(shards);
    if register {
        pipeline = pipeline.exactly_once(files.committer());
    }
    if let Some(dir) = dir {
        pipeline = pipeline
            .checkpointing(settings(Checkpointing::new(dir).interval(interval).retention(1000)));
    }
    let seen = Arc::new(AtomicU64::new(0));
    let stream = pipeline
        .from_source(Gated { seen: seen.clone(), gates })
        .key_by(|e: &(u64, u64)| e.0)
        .process(WindowSum::default);
    let mut job = Job::new(&pipeline);
    job.sink(stream, move |shard| Gating {
        files: files.sink(shard),
        seen: (shard.index == 0).then(|| seen.clone()),
    });
    let run = job.run()?;
    Ok(run.checkpoints.clone())
}

/// The committed output's lines, sorted; panics on a file of the directory that is not
/// committed output (the sinks leave none behind once a run has completed).
fn committed(out: &Path) -> Vec<String> {
    for entry in std::fs::read_dir(out).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(name.starts_with("part-"), "{name} left in {}", out.display());
    }
    let mut lines: Vec<String> = ExactlyOnceFiles::<Out>::committed(out)
        .unwrap()
        .iter()
        .flat_map(|p| {
            std::fs::read_to_string(p).unwrap().lines().map(str::to_string).collect::<Vec<_>>()
        })
        .collect();
    lines.sort_unstable();
    lines
}

fn reference_lines() -> Vec<String> {
    let (reference, _, _) = run(2, None, 0).unwrap();
    let mut lines: Vec<String> = reference
        .iter()
        .flat_map(|e| records(e))
        .map(|r| {
            let mut b = Vec::new();
            line(&r, &mut b);
            String::from_utf8(b).unwrap().trim_end().to_string()
        })
        .collect();
    lines.sort_unstable();
    lines
}

#[test]
fn exactly_once_files_hold_every_record_once_after_a_crash_at_any_checkpoint() {
    let reference = reference_lines();
    assert_eq!(reference.len(), 195);
    let (dir, out) = (fresh_dir("files-ck"), fresh_dir("files-out"));
    let (last, _) = run_files(2, Some(&dir), &out, 4, true).unwrap();
    let last = last.unwrap();
    assert_eq!(committed(&out), reference, "a run without a crash");
    // A crash just after checkpoint p's manifest, before its commit: parts of p and later are
    // still pending (a later barrier may have passed the sinks already), and a shard was in the
    // middle of a file. The restored run commits p's, removes the rest, and replays (taking no
    // checkpoint but its final one, whose files follow p's).
    let periodic: Vec<u64> = completed(&dir).into_iter().filter(|&id| id < last).collect();
    assert!(periodic.len() >= 4, "four gates: {periodic:?}");
    for &p in &periodic {
        for shards in [1, 2, 4] {
            let d = copy_up_to(&dir, &format!("files-ck-{p}"), p);
            let o = fresh_dir(&format!("files-out-{p}"));
            std::fs::create_dir(&o).unwrap();
            for part in ExactlyOnceFiles::<Out>::committed(&out).unwrap() {
                let name = part.file_name().unwrap().to_str().unwrap().to_string();
                let id: u64 = name["part-".len()..][..20].parse().unwrap();
                let to =
                    if id >= p { format!(".pending-{}", &name["part-".len()..]) } else { name };
                std::fs::copy(&part, o.join(to)).unwrap();
            }
            std::fs::write(o.join(".inprogress-0001"), "9,9,9\n").unwrap();
            let (_, from) = run_files(shards, Some(&d), &o, 0, true).unwrap();
            assert_eq!(from, Some(p));
            assert_eq!(committed(&o), reference, "crash after checkpoint {p}, {shards} shards");
            // What the restored run wrote comes after p's files, in name order too.
            for part in ExactlyOnceFiles::<Out>::committed(&o).unwrap() {
                let name = part.file_name().unwrap().to_str().unwrap();
                let id: u64 = name["part-".len()..][..20].parse().unwrap();
                assert!(id > p || out.join(name).exists(), "{name} is new but not after {p}");
            }
            let _ = std::fs::remove_dir_all(&d);
            let _ = std::fs::remove_dir_all(&o);
        }
    }
    // Run again on the same directories: the final checkpoint is restored, nothing is written.
    run_files(2, Some(&dir), &out, 0, true).unwrap();
    assert_eq!(committed(&out), reference, "a rerun adds nothing");
    // With new checkpoints, the committed output would be written again: refused.
    let err = run_files(2, Some(&fresh_dir("files-ck-new")), &out, 0, true).unwrap_err();
    assert!(
        matches!(&err, PipelineError::Commit { source }
            if matches!(source.downcast_ref(), Some(FileSinkError::NewerOutput { .. }))),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&out);
}

/// A checkpoint abandoned at its timeout leaves its barrier in the sinks (which pre-committed
/// for it): the next complete checkpoint commits that output too, so the committed output is
/// still every record once. With a timeout of zero nearly every periodic checkpoint is
/// abandoned; the final one is not subject to the timeout.
#[test]
fn abandoned_checkpoints_lose_nothing_of_the_exactly_once_output() {
    let (dir, out) = (fresh_dir("timeout-ck"), fresh_dir("timeout-out"));
    let stats = run_files_with(2, Some(&dir), &out, 4, true, |c| c.timeout(Duration::ZERO))
        .unwrap()
        .unwrap();
    assert_eq!(committed(&out), reference_lines());
    assert!(stats.completed >= 1, "the final checkpoint: {stats:?}");
    assert_eq!(completed(&dir).last().copied(), stats.last_completed);
    // A rerun restores the final checkpoint and adds nothing.
    run_files(2, Some(&dir), &out, 0, true).unwrap();
    assert_eq!(committed(&out), reference_lines());
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn exactly_once_files_without_checkpoints_are_committed_at_the_end() {
    let out = fresh_dir("files-plain");
    run_files(2, None, &out, 0, true).unwrap();
    assert_eq!(committed(&out), reference_lines());
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn exactly_once_files_whose_committer_is_not_registered_are_an_error() {
    let out = fresh_dir("files-unregistered");
    let err = run_files(1, None, &out, 0, false).unwrap_err();
    assert!(
        matches!(&err, PipelineError::Sink { source, .. }
            if matches!(source.downcast_ref(), Some(FileSinkError::NotRegistered { .. }))),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&out);
}

// Failure recovery: a failing or panicking function rolls every shard back to the newest
// complete checkpoint, under the restart policy; the exactly-once files stay exact.

/// When [`Flaky`] fails: at the record of timestamp `at`, `times` times (then it passes).
struct Faults {
    at: i64,
    times: AtomicU64,
    panic: bool,
    injected: AtomicU64,
}

/// [`WindowSum`], failing as its [`Faults`] say.
struct Flaky {
    inner: WindowSum,
    faults: Arc<Faults>,
}

impl KeyedProcessFunction for Flaky {
    type Key = u64;
    type In = (u64, u64);
    type Out = Out;

    fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), FnError> {
        self.inner.open(ctx)
    }

    fn process_element(
        &mut self,
        e: (u64, u64),
        ctx: &mut Context<'_, u64>,
        out: &mut Collector<'_, Out>,
    ) -> Result<(), FnError> {
        let f = &self.faults;
        if ctx.timestamp() == Some(f.at)
            && f.times
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_ok()
        {
            f.injected.fetch_add(1, Ordering::AcqRel);
            if f.panic {
                panic!("injected panic at {}", f.at);
            }
            return Err("injected failure".into());
        }
        self.inner.process_element(e, ctx, out)
    }

    fn on_timer(
        &mut self,
        t: Timestamp,
        ctx: &mut OnTimerContext<'_, u64>,
        out: &mut Collector<'_, Out>,
    ) -> Result<(), FnError> {
        self.inner.on_timer(t, ctx, out)
    }
}

/// A run of [`Flaky`] on 2 shards into exactly-once files, with checkpoints every millisecond
/// and `policy`; its checkpoint figures.
fn run_flaky(
    name: &str,
    faults: &Arc<Faults>,
    policy: RestartPolicy,
) -> (Result<Option<CheckpointStats>, PipelineError>, PathBuf) {
    let (dir, out) = (fresh_dir(&format!("{name}-ck")), fresh_dir(&format!("{name}-out")));
    let files = ExactlyOnceFiles::new(&out, line).unwrap();
    let pipeline = Pipeline::new()
        .shards(2)
        .exactly_once(files.committer())
        .checkpointing(Checkpointing::new(&dir).interval(Duration::from_millis(1)).restart(policy));
    let seen = Arc::new(AtomicU64::new(0));
    let faults = faults.clone();
    let stream = pipeline
        .from_source(Gated { seen: seen.clone(), gates: 4 })
        .key_by(|e: &(u64, u64)| e.0)
        .process(move || Flaky { inner: WindowSum::default(), faults: faults.clone() });
    let mut job = Job::new(&pipeline);
    job.sink(stream, move |shard| Gating {
        files: files.sink(shard),
        seen: (shard.index == 0).then(|| seen.clone()),
    });
    let result = job.run().map(|run| run.checkpoints.clone());
    let _ = std::fs::remove_dir_all(&dir);
    (result, out)
}

fn faults(times: u64, panic: bool) -> Arc<Faults> {
    // Record 4,000 of 6,000: after the source's four gates, so checkpoints have completed.
    Arc::new(Faults { at: 1000, times: AtomicU64::new(times), panic, injected: AtomicU64::new(0) })
}

#[test]
fn a_failure_or_a_panic_restarts_from_the_newest_checkpoint_and_the_output_stays_exact() {
    let reference = reference_lines();
    for panic in [false, true] {
        let f = faults(1, panic);
        let (result, out) =
            run_flaky(&format!("flaky-{panic}"), &f, RestartPolicy::fixed(3, Duration::ZERO));
        let stats = result.unwrap().unwrap();
        assert_eq!(f.injected.load(Ordering::Acquire), 1, "the fault happened");
        assert_eq!(stats.restarts, 1);
        assert!(stats.restored_from.is_some(), "the restart restored a checkpoint: {stats:?}");
        assert_eq!(committed(&out), reference, "panic: {panic}");
        let _ = std::fs::remove_dir_all(&out);
    }
}

#[test]
fn a_record_that_fails_every_time_ends_with_a_typed_error_after_the_allowed_restarts() {
    let f = faults(u64::MAX, false);
    let (result, out) = run_flaky("poison", &f, RestartPolicy::fixed(2, Duration::ZERO));
    let err = result.unwrap_err();
    assert!(
        matches!(&err, PipelineError::RestartsExhausted { restarts: 2, last }
            if matches!(**last, PipelineError::Function { .. })),
        "{err}"
    );
    assert_eq!(f.injected.load(Ordering::Acquire), 3, "the first run and two restarts");
    let _ = std::fs::remove_dir_all(&out);

    // Without a restart policy, the first failure ends the run as it is.
    let f = faults(u64::MAX, false);
    let (result, out) = run_flaky("no-restart", &f, RestartPolicy::none());
    assert!(matches!(result.unwrap_err(), PipelineError::Function { .. }));
    assert_eq!(f.injected.load(Ordering::Acquire), 1);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn a_checkpoint_write_that_fails_once_is_attempted_again() {
    use pinwheel_engine::checkpoint::{FaultAction, FaultPlan, FaultTrigger};
    let reference = sorted(run(2, None, 0).unwrap().0.iter().flat_map(|e| records(e)).collect());
    // Steps of the first shard file (create .. rename), its directory sync, and the manifest's.
    for k in [1u64, 2, 4, 6, 9, 12, 15] {
        let dir = fresh_dir(&format!("retry-{k}"));
        let plan = FaultPlan::inject(FaultTrigger::Step(k), FaultAction::FailOnce(5)); // EIO
        let checkpointing =
            Checkpointing::new(&dir).interval(Duration::from_millis(1)).faults(plan.clone());
        let (per_shard, stats) = run_with(2, Some(checkpointing), 2)
            .unwrap_or_else(|e| panic!("fault at step {k}: {e}"));
        let stats = stats.unwrap();
        assert_eq!(plan.fired(), 1, "the fault at step {k} happened");
        assert_eq!(stats.write_retries, 1, "step {k}");
        let got = sorted(per_shard.iter().flat_map(|e| records(e)).collect());
        assert_eq!(got, reference, "step {k}");
        // Every complete checkpoint it left restores.
        for id in completed(&dir) {
            let copy = copy_up_to(&dir, &format!("retry-{k}-{id}"), id);
            let (_, _, from) = run(2, Some(&copy), 0).unwrap();
            assert_eq!(from, Some(id));
            let _ = std::fs::remove_dir_all(&copy);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    // A write that fails every time stops the run (instead of letting it go on without
    // checkpoints, or wait for a barrier that never comes) after its attempts.
    let dir = fresh_dir("retry-persistent");
    let plan = FaultPlan::inject(FaultTrigger::Step(1), FaultAction::FailPersistent(5));
    let checkpointing = Checkpointing::new(&dir)
        .interval(Duration::from_millis(1))
        .faults(plan.clone())
        .write_attempts(2);
    let err = run_with(2, Some(checkpointing), 4).unwrap_err();
    assert!(matches!(err, PipelineError::Checkpoint(_)), "{err}");
    assert_eq!(plan.fired(), 2, "two attempts");
    let _ = std::fs::remove_dir_all(&dir);
}
